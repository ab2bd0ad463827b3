#!/bin/bash
# bench/run.sh — the throughput suite behind `make bench` (bench/README.md).
#
#   bench/run.sh [--quick] [BUILD_DIR]
#
# Measures, in one invocation and on the same data, streamtrain against
# PyTorch (Debian's python3-torch, CPU, with /usr/bin/python3):
#   1. loader     loadbench on the Fashion-MNIST packs (zstd, png, raw) with
#                 1 and 2 producer threads; PyTorch DataLoaders over the same
#                 images as a PNG folder (workers 0, 1, 2) and over an
#                 in-memory TensorDataset
#   2. trainer    streamtrain's reference recipe against the same MLP recipe
#                 in PyTorch, seeds 1..RUNS, run by run
#   3. scaling    synthetic 64x64x3 packs of 0.25, 1 and 4 GiB decoded
#                 (--quick: 64 MiB, 0.25 and 1 GiB): warm and cold-cache epochs,
#                 cost per sample, peak RSS (bench/stream.c)
# Every measurement is repeated RUNS=3 times, the two sides of each
# comparison interleaved within a repetition. Raw logs go to
# BUILD_DIR/bench/STEM/; bench/report.py turns them into
# bench/results/STEM.md and STEM-*.png (gnuplot) and prints the summary
# table last. STEM is <date>-<host>, plus -quick for --quick.
#
# Inputs it makes once and reuses (under data/bench/, ignored by git):
# fm-{zstd,png,raw} (build/packdata, its defaults but the codec),
# fm-pngdir (PIL) and synth-SIZE (build/synthpack). A pack is made again
# when its NAME.stamp (the parameters and the sha1 of the binary that wrote
# it) no longer matches: a change to the encoder is measured at once.
set -euo pipefail
cd "$(dirname "$0")/.."

QUICK=0
if [ "${1:-}" = "--quick" ]; then QUICK=1; shift; fi
BUILD=${1:-build}
PY=/usr/bin/python3
FM=/usr/share/datasets/fashion-mnist
RUNS=3
STEM=$(date +%F)-$(hostname -s)
if [ $QUICK = 1 ]; then
    STEM=$STEM-quick
    SIZES="64M 256M 1G"
    PNG_LIMIT=20000          # PyTorch PNG-folder epochs: the first 20,000 files
    TENSOR_WORKERS=0
else
    SIZES="256M 1G 4G"
    PNG_LIMIT=0
    TENSOR_WORKERS=0,1,2
fi
RAW=$BUILD/bench/$STEM
rm -rf "$RAW" && mkdir -p "$RAW" data/bench bench/results
T0=$(date +%s)

say() { printf '[bench %4ds] %s\n' $(($(date +%s) - T0)) "$*" >&2; }
# Prefixes every line of stdin with "key=value ..." tags.
tag() { awk -v t="$*" '{print t "\t" $0; fflush()}'; }
# Records a section's wall time for the report.
mark() { echo "section $1 $(($(date +%s) - $2))" >>"$RAW/times.txt"; }

# Can this machine drop the page cache? (root, and /proc/sys writable)
can_drop() { sync && echo 3 2>/dev/null >/proc/sys/vm/drop_caches; }
drop() { sync && echo 3 >/proc/sys/vm/drop_caches; }

# ---- inputs -------------------------------------------------------------------
# fresh NAME STAMP: is data/bench/NAME a pack that STAMP made?
fresh() {
    [ "$(cat "data/bench/$1.stamp" 2>/dev/null)" = "$2" ] &&
        "$BUILD/packinfo" "data/bench/$1" >/dev/null 2>&1
}

prepare() {
    local c size stamp
    for c in zstd png raw; do
        stamp="packdata --codec $c $(sha1sum "$BUILD/packdata" | cut -c1-16)"
        if ! fresh fm-$c "$stamp"; then
            say "packing Fashion-MNIST ($c) into data/bench/fm-$c"
            rm -f data/bench/fm-$c.stamp
            "$BUILD/packdata" "$FM" -o data/bench/fm-$c --codec $c --force -q >/dev/null
            echo "$stamp" >data/bench/fm-$c.stamp
        fi
    done
    if [ ! -f data/bench/fm-pngdir/.complete ]; then
        say "writing the PNG folder data/bench/fm-pngdir (PIL, once)"
        rm -rf data/bench/fm-pngdir
        $PY bench/torch_peer.py pngdir "$FM" data/bench/fm-pngdir >&2
    fi
    for size in $SIZES; do
        stamp="synthpack --size $size --shape 64x64x3 --seed 1 $(sha1sum "$BUILD/synthpack" | cut -c1-16)"
        if ! fresh "synth-$size" "$stamp"; then
            say "generating data/bench/synth-$size (once)"
            rm -f "data/bench/synth-$size.stamp"
            "$BUILD/synthpack" -o "data/bench/synth-$size" --size "$size" \
                --shape 64x64x3 --seed 1 --force >&2
            echo "$stamp" >"data/bench/synth-$size.stamp"
        fi
    done
    # bench/stream.c, linked like the tools (the Makefile's own flags)
    local mk="make -s --no-print-directory BUILD=$BUILD"
    local cflags ldlibs
    cflags=$($mk --eval='print-%: ; @echo $($*)' print-CFLAGS 2>/dev/null | tail -1)
    ldlibs=$($mk --eval='print-%: ; @echo $($*)' print-LDLIBS 2>/dev/null | tail -1)
    mkdir -p "$BUILD/bench"
    # shellcheck disable=SC2086
    cc ${cflags//-MMD -MP/} bench/stream.c "$BUILD/libstreamtrain.a" $ldlibs \
        -o "$BUILD/bench/stream"
}

# ---- 1. the loader against PyTorch DataLoaders --------------------------------
loader_section() {
    local t r c
    t=$(date +%s)
    for r in $(seq $RUNS); do
        say "loader: repetition $r/$RUNS"
        for c in zstd png raw; do
            "$BUILD/loadbench" --data data/bench/fm-$c --threads 1,2 --batch 256 \
                --epochs 2 --shuffle global | tag "rep=$r codec=$c" >>"$RAW/loader.log"
        done
        $PY bench/torch_peer.py loader --pngdir data/bench/fm-pngdir \
            --workers 0,1,2 --epochs 2 --limit $PNG_LIMIT | tag "rep=$r" >>"$RAW/torch_loader.log"
        $PY bench/torch_peer.py loader --tensor "$FM" --workers $TENSOR_WORKERS \
            --epochs 2 | tag "rep=$r" >>"$RAW/torch_loader.log"
    done
    mark loader "$t"
}

# ---- 2. the trainer against the same recipe in PyTorch ------------------------
trainer_section() {
    local t r
    t=$(date +%s)
    for r in $(seq $RUNS); do
        say "trainer: seed $r/$RUNS (streamtrain, then PyTorch)"
        "$BUILD/streamtrain" --data data/bench/fm-zstd --model mlp --seed $r -q \
            --metrics "$RAW/st-$r.jsonl" >"$RAW/st-$r.log"
        $PY bench/torch_peer.py train "$FM" --seed $r --epochs 5 --threads 1 \
            --schedule cosine >"$RAW/pt-$r.log"
    done
    mark trainer "$t"
}

# ---- 3. scaling with the size of the data -------------------------------------
scaling_section() {
    local t r size p cold=0
    t=$(date +%s)
    can_drop && cold=1
    echo "drop_caches $cold" >>"$RAW/times.txt"
    [ $cold = 1 ] || say "scaling: cannot drop the page cache here: warm runs only"
    for r in $(seq $RUNS); do
        say "scaling: repetition $r/$RUNS ($SIZES)"
        for size in $SIZES; do
            p=data/bench/synth-$size
            if [ $cold = 1 ]; then
                # cold, with the loader's fadvise read-ahead 4 batches ahead
                drop
                "$BUILD/bench/stream" $p 2 1 pread 4 |
                    tag "rep=$r size=$size run=cold_ra4" >>"$RAW/scaling.log"
                if [ $QUICK = 0 ]; then # cold, the default config (no read-ahead)
                    drop
                    "$BUILD/bench/stream" $p 2 1 pread 0 |
                        tag "rep=$r size=$size run=cold_ra0" >>"$RAW/scaling.log"
                fi
            fi
            cat $p/* >/dev/null # the warm runs start from a full page cache
            "$BUILD/bench/stream" $p 1 1 pread | tag "rep=$r size=$size run=warm" >>"$RAW/scaling.log"
            "$BUILD/bench/stream" $p 2 1 pread | tag "rep=$r size=$size run=warm" >>"$RAW/scaling.log"
        done
    done
    mark scaling "$t"
}

machine() {
    echo "cpu $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores"
    echo "mem $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
    echo "os Debian $(cat /etc/debian_version), Linux $(uname -r)"
    echo "cc $(cc --version | head -1)"
    echo "torch $($PY -c 'import torch; print(torch.__version__)' 2>/dev/null)"
    echo "host $(hostname -s)"
    echo "date $(date -u +%FT%TZ)"
    echo "git $(git rev-parse --short HEAD 2>/dev/null)$(git diff --quiet HEAD 2>/dev/null || echo '+dirty')"
    echo "command make bench$([ $QUICK = 1 ] && echo ' QUICK=1')"
}

machine >"$RAW/machine.txt"
T_IN=$(date +%s)
prepare
mark inputs "$T_IN"
for p in fm-zstd fm-png fm-raw $(printf 'synth-%s ' $SIZES); do
    "$BUILD/packinfo" "data/bench/$p" | tag "pack=$p" >>"$RAW/packs.log"
done
loader_section
trainer_section
scaling_section # last: it drops the page cache
echo "section total $(($(date +%s) - T0))" >>"$RAW/times.txt"
say "writing bench/results/$STEM.md"
$PY bench/report.py "$RAW" bench/results "$STEM"
