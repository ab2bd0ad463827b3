#!/bin/sh
# tools/demo.sh — `make demo`: packs Fashion-MNIST from Debian's
# dataset-fashion-mnist package and shows what was written; then trains on
# it when streamtrain has been built.
#   tools/demo.sh [BUILD_DIR]
set -eu
BUILD=${1:-build}
SRC=/usr/share/datasets/fashion-mnist
OUT=data/fashion-mnist

if [ ! -d "$SRC" ]; then
    echo "demo: $SRC is missing; install it with: apt-get install dataset-fashion-mnist" >&2
    exit 1
fi
mkdir -p data
echo "== packdata $SRC -o $OUT"
"$BUILD/packdata" "$SRC" -o "$OUT" --force
echo
echo "== packinfo --verify $OUT"
"$BUILD/packinfo" --verify "$OUT"
if [ -x "$BUILD/streamtrain" ]; then
    echo
    # 3 epochs of the default conv net (~25 s each on 2 cores) keep the
    # whole demo, build and packing included, well under 3 minutes; the
    # default's 5-epoch accuracy is README.md's ("Conv nets")
    echo "== streamtrain --data $OUT --epochs 3"
    "$BUILD/streamtrain" --data "$OUT" --epochs 3
fi
