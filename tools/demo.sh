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
    # 2 epochs of the default conv net (~20 s each on the 2-core Intel VM,
    # ~32 s on the 2-core AMD EPYC one) keep the whole demo, a fresh
    # machine's package installation, build and packing included, under
    # 3 minutes; the default's 5-epoch accuracy is README.md's ("Conv nets")
    echo "== streamtrain --data $OUT --epochs 2"
    "$BUILD/streamtrain" --data "$OUT" --epochs 2
fi
