#!/bin/sh
# bench/loader.sh — loadbench on the Fashion-MNIST packs (zstd, png, raw)
# for 1 and 2 producer threads: median [min, max] of RUNS runs of the
# warm-cache epoch (the parseable last lines), as a Markdown table.
#   bench/loader.sh [BUILD_DIR] [RUNS]
set -eu
BUILD=${1:-build}
RUNS=${2:-3}
SRC=/usr/share/datasets/fashion-mnist
mkdir -p data
for c in zstd png raw; do
    [ -f data/fm-$c/MANIFEST ] || "$BUILD/packdata" "$SRC" -o data/fm-$c --codec $c -q >/dev/null
done
T=$(mktemp)
trap 'rm -f "$T"' EXIT
echo "| codec | threads | samples/s, median [min, max] of $RUNS | MB/s | consumer wait % |"
echo "|---|---|---|---|---|"
for c in zstd png raw; do
    : >"$T"
    for r in $(seq "$RUNS"); do
        "$BUILD/loadbench" --data data/fm-$c --threads 1,2 --batch 256 --epochs 2 \
            --shuffle global | grep '^loadbench threads=' >>"$T"
    done
    for th in 1 2; do
        grep "threads=$th " "$T" | sed 's/.*samples_per_s=\([0-9]*\) mb_per_s=\([0-9.]*\) wait_pct=\([0-9.]*\)/\1 \2 \3/' |
            sort -n | awk -v c=$c -v th=$th '{s[NR]=$1; m[NR]=$2; w[NR]=$3}
                END {k=int((NR+1)/2); printf "| %s | %d | %d [%d, %d] | %.1f | %.1f |\n", c, th, s[k], s[1], s[NR], m[k], w[k]}'
    done
done
