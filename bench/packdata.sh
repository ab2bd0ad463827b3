#!/bin/sh
# bench/packdata.sh — packdata time and compression ratio on Fashion-MNIST
# (70,000 images) for each codec with 1 and 2 threads; median of RUNS runs
# (default 3) with min and max. Prints a Markdown table.
#   bench/packdata.sh [BUILD_DIR] [RUNS]
set -eu
BUILD=${1:-build}
RUNS=${2:-3}
SRC=/usr/share/datasets/fashion-mnist
T=$(mktemp -d /tmp/st-bench-pack-XXXXXX)
trap 'rm -rf "$T"' EXIT

median() { sort -n | awk '{a[NR]=$1} END {printf "%.2f %.2f %.2f", a[int((NR+1)/2)], a[1], a[NR]}'; }

echo "| codec | threads | time (s), median [min, max] of $RUNS | samples/s | ratio (records) | ratio (on disk) |"
echo "|---|---|---|---|---|---|"
for codec in zstd png raw; do
    for th in 1 2; do
        : >"$T/times"
        for r in $(seq "$RUNS"); do
            "$BUILD/packdata" "$SRC" -o "$T/p" --force -q --codec $codec --threads $th >"$T/out"
            sed -n 's/.*time *\([0-9.]*\) s.*/\1/p' "$T/out" >>"$T/times"
        done
        set -- $(median <"$T/times")
        rrec=$(sed -n 's/.*records .*(ratio \([0-9.]*\)), on disk.*/\1/p' "$T/out")
        rdisk=$(sed -n 's/.*on disk .*(ratio \([0-9.]*\))$/\1/p' "$T/out")
        rate=$(awk -v t="$1" 'BEGIN {printf "%.0f", 70000 / t}')
        echo "| $codec | $th | $1 [$2, $3] | $rate | $rrec | $rdisk |"
    done
done
