#!/bin/bash
# tests/gpu/check.sh — the GPU check, for a lent GPU machine (< 5 minutes):
# runs the GPU tests (CUDA vs CPU agreement, prefetch stream, device memory
# flat across epochs, H2D reference), then trains Fashion-MNIST for 3
# epochs on the device and prints samples/s, loader wait %, H2D GB/s and
# device memory per epoch as a table.
#
#   tests/gpu/check.sh                 on the GPU machine
#   tests/gpu/check.sh --bundle        here, when the GPU machine lacks the
#                                      -dev packages: builds with nvcc and
#                                      writes .gpucheck/bundle.tar.xz
#                                      (binaries, their non-system shared
#                                      libraries, the Fashion-MNIST pack);
#                                      add /.gpucheck/ to .git/info/exclude
#                                      and carry .gpucheck
#
# On the GPU machine the script builds with make when it can, else it runs
# the bundle. Results go to stdout and, when $OUT is set, $OUT/gpu-check.txt
# and $OUT/metrics.jsonl.
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT" || exit 1
BUNDLE=.gpucheck
FM_SRC=/usr/share/datasets/fashion-mnist

bundle() {
    set -e
    B=build/gpu-bundle
    make --no-print-directory BUILD=$B -j2 $B/streamtrain $B/packdata \
        $B/tests/test_gpu >/dev/null
    rm -rf $BUNDLE && mkdir -p $BUNDLE/stage/lib
    cp $B/streamtrain $B/tests/test_gpu $BUNDLE/stage/
    # every shared library that is not glibc, libstdc++/libgcc or CUDA's
    for bin in $B/streamtrain $B/tests/test_gpu; do
        ldd "$bin" | awk '$3 ~ /^\// {print $3}'
    done | sort -u | grep -vE '/(libc|libm|libdl|librt|libpthread|ld-linux[^/]*|libstdc\+\+|libgcc_s)\.so|cuda|cublas' |
        while read -r lib; do cp -L "$lib" $BUNDLE/stage/lib/; done
    $B/packdata "$FM_SRC" -o $BUNDLE/stage/fm -q --force >/dev/null
    tar -C $BUNDLE/stage -cJf $BUNDLE/bundle.tar.xz .
    rm -rf $BUNDLE/stage
    ls -la $BUNDLE/bundle.tar.xz
}

if [ "${1:-}" = "--bundle" ]; then
    bundle
    exit $?
fi

LOG=${OUT:-/tmp}/gpu-check.txt
exec > >(tee "$LOG") 2>&1
echo "== $(date -u +%FT%TZ) gpu check"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null ||
    echo "nvidia-smi: not available"

# ---- binaries: build here, or unpack the bundle ----------------------------
B=build/gpu
if make --no-print-directory BUILD=$B -j8 $B/streamtrain $B/packdata \
        $B/tests/test_gpu >/tmp/gpu-check-build.log 2>&1; then
    ST=$B/streamtrain TEST=$B/tests/test_gpu
    DATA=data/fashion-mnist
    if [ ! -f $DATA/MANIFEST ] && [ -d "$FM_SRC" ]; then
        mkdir -p data
        $B/packdata "$FM_SRC" -o $DATA -q --force >/dev/null || DATA=
    fi
elif [ -f $BUNDLE/bundle.tar.xz ]; then
    echo "make failed here (see below); using $BUNDLE/bundle.tar.xz"
    tail -3 /tmp/gpu-check-build.log
    mkdir -p /tmp/gpucheck && tar -C /tmp/gpucheck -xJf $BUNDLE/bundle.tar.xz
    CUBLAS=$(ls -d /usr/local/cuda/lib64 2>/dev/null; \
             find /usr /opt -name 'libcublas.so.13' -printf '%h\n' 2>/dev/null | head -1)
    export LD_LIBRARY_PATH="/tmp/gpucheck/lib:$(echo "$CUBLAS" | paste -sd:)"
    ST=/tmp/gpucheck/streamtrain TEST=/tmp/gpucheck/test_gpu DATA=/tmp/gpucheck/fm
else
    echo "cannot build (see below) and no bundle: run tests/gpu/check.sh --bundle first"
    tail -20 /tmp/gpu-check-build.log
    exit 1
fi

status=0
echo
echo "== GPU tests"
timeout 180 "$TEST" || status=1

echo
if [ -z "${DATA:-}" ] || [ ! -f "$DATA/MANIFEST" ]; then
    echo "== no Fashion-MNIST pack here: training skipped"
    exit $status
fi
M=${OUT:-/tmp}/metrics.jsonl
echo "== streamtrain --data $DATA --epochs 3 --device cuda"
timeout 240 "$ST" --data "$DATA" --epochs 3 --device cuda --metrics "$M" \
    || status=1

echo
echo "== per epoch"
printf '%-6s %12s %10s %10s %16s %16s %10s\n' epoch samples/s wait% h2d_GB/s \
    dev_mem_used dev_mem_peak test_acc
grep '"kind":"epoch"' "$M" | sed 's/[{}"]//g' | tr ',' '\n' | awk -F: '
    $1 == "epoch" { e = $2 }
    $1 == "samples_per_s" { s = $2 }
    $1 == "loader_wait_pct" { w = $2 }
    $1 == "h2d_gbps" { h = $2 }
    $1 == "dev_mem_used" { u = $2 }
    $1 == "dev_mem_peak" { p = $2 }
    $1 == "test_acc" { printf "%-6s %12s %10s %10s %16s %16s %10s\n", e, s, w, h, u, p, $2 }'
exit $status
