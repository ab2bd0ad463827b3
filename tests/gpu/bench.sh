#!/bin/bash
# tests/gpu/bench.sh — the GPU part of the throughput suite (issue 5), for a
# lent GPU machine; runs in under 3 minutes. It measures:
#   1. H2D GB/s from pinned and from pageable host memory with plain
#      cudaMemcpy, 256 MiB and batch-sized (bench/h2d.cu): the ceiling;
#   2. step time of the reference MLP with the batch resident on the device
#      against batches streamed through the prefetcher from pinned memory
#      (bench/gpustep.c), and the prefetcher's achieved H2D GB/s;
#   3. streamtrain --device cuda, 3 epochs on Fashion-MNIST: s/epoch,
#      step time (loader + prefetcher + compute), the prefetcher's H2D
#      GB/s, device memory at every epoch end;
#   4. PyTorch on the same GPU (the torch installed there, when it sees a
#      GPU): the same recipe fed by a DataLoader over in-memory uint8
#      tensors with pin_memory=True and non_blocking copies, 0 and 4
#      workers, 3 epochs each, with device memory per epoch
#      (bench/torch_peer.py train-gpu);
# then prints a Markdown table of it all.
#
#   tests/gpu/bench.sh            on the GPU machine
#   tests/gpu/bench.sh --bundle   here, when the GPU machine lacks the -dev
#                                 packages: builds with nvcc and writes
#                                 .gpucheck/bench-bundle.tar.xz (~36 MB:
#                                 streamtrain, packdata, gpustep, h2d, their
#                                 non-system shared libraries and the
#                                 Fashion-MNIST IDX files, packed there);
#                                 carry .gpucheck/bench-bundle.tar.xz
#
# On the GPU machine the script builds with make and nvcc when it can, else
# it unpacks the bundle. Results go to stdout and, when $OUT is set, to
# $OUT/gpu-bench.md (the table), $OUT/gpu-bench.log (everything) and
# $OUT/st-metrics.jsonl.
set -u -o pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT" || exit 1
BUNDLE=.gpucheck
FM_SRC=${FM_SRC:-/usr/share/datasets/fashion-mnist}
STEPS=2000 # gpustep steps per timing

# Compiles bench/gpustep.c against BUILD's library with the Makefile's flags.
build_helpers() {
    local b=$1 mk cflags ldlibs
    mk="make -s --no-print-directory BUILD=$b"
    cflags=$($mk --eval='print-%: ; @echo $($*)' print-CFLAGS 2>/dev/null | tail -1)
    ldlibs=$($mk --eval='print-%: ; @echo $($*)' print-LDLIBS 2>/dev/null | tail -1)
    case "$cflags" in *ST_HAVE_CUDA=1*) ;; *) echo "no nvcc: the build has no CUDA backend"; return 1 ;; esac
    mkdir -p "$b/bench"
    # shellcheck disable=SC2086
    cc ${cflags//-MMD -MP/} bench/gpustep.c "$b/libstreamtrain.a" $ldlibs -o "$b/bench/gpustep" &&
        "$(make -s --no-print-directory --eval='print-%: ; @echo $($*)' print-NVCC 2>/dev/null | tail -1)" \
            -O2 -Xcompiler -Wall,-Wextra,-Werror -o "$b/bench/h2d" bench/h2d.cu
}

bundle() {
    set -e
    local b=build/gpu-bundle
    make --no-print-directory BUILD=$b -j2 $b/streamtrain $b/packdata $b/libstreamtrain.a >/dev/null
    build_helpers $b
    rm -rf $BUNDLE/bstage && mkdir -p $BUNDLE/bstage/lib $BUNDLE/bstage/idx
    cp $b/streamtrain $b/packdata $b/bench/gpustep $b/bench/h2d $BUNDLE/bstage/
    # every shared library that is not glibc, libstdc++/libgcc or CUDA's
    for bin in $b/streamtrain $b/packdata $b/bench/gpustep $b/bench/h2d; do
        ldd "$bin" | awk '$3 ~ /^\// {print $3}'
    done | sort -u | grep -vE '/(libc|libm|libdl|librt|libpthread|ld-linux[^/]*|libstdc\+\+|libgcc_s)\.so|cuda|cublas' |
        while read -r lib; do cp -L "$lib" $BUNDLE/bstage/lib/; done
    cp "$FM_SRC"/*-ubyte.gz $BUNDLE/bstage/idx/ # packed there: smaller
    tar -C $BUNDLE/bstage -cJf $BUNDLE/bench-bundle.tar.xz .
    rm -rf $BUNDLE/bstage
    ls -la $BUNDLE/bench-bundle.tar.xz
}

if [ "${1:-}" = "--bundle" ]; then
    bundle
    exit $?
fi

LOG=${OUT:-/tmp}/gpu-bench.log
MD=${OUT:-/tmp}/gpu-bench.md
exec > >(tee "$LOG") 2>&1
echo "== $(date -u +%FT%TZ) gpu bench"
GPU=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -1)
echo "gpu: ${GPU:-nvidia-smi not available}"

# ---- binaries: build here, or unpack the bundle ------------------------------
B=build/gpu
if make --no-print-directory BUILD=$B -j16 $B/streamtrain $B/packdata $B/libstreamtrain.a \
        >/tmp/gpu-bench-build.log 2>&1 && build_helpers $B >>/tmp/gpu-bench-build.log 2>&1; then
    ST=$B/streamtrain GPUSTEP=$B/bench/gpustep H2D=$B/bench/h2d
    DATA=data/fashion-mnist IDX=$FM_SRC
    if [ ! -f $DATA/MANIFEST ] && [ -d "$FM_SRC" ]; then
        mkdir -p data
        $B/packdata "$FM_SRC" -o $DATA -q --force >/dev/null || DATA=
    fi
elif [ -f $BUNDLE/bench-bundle.tar.xz ]; then
    echo "build failed here (see below); using $BUNDLE/bench-bundle.tar.xz"
    tail -3 /tmp/gpu-bench-build.log
    mkdir -p /tmp/gpubench && tar -C /tmp/gpubench -xJf $BUNDLE/bench-bundle.tar.xz
    CUBLAS=$(ls -d /usr/local/cuda/lib64 2>/dev/null; \
             find /usr /opt -name 'libcublas.so.*' -printf '%h\n' 2>/dev/null | head -1)
    LD_LIBRARY_PATH="/tmp/gpubench/lib:$(echo "$CUBLAS" | paste -sd:)"
    export LD_LIBRARY_PATH
    ST=/tmp/gpubench/streamtrain GPUSTEP=/tmp/gpubench/gpustep H2D=/tmp/gpubench/h2d
    DATA=/tmp/gpubench/fm IDX=/tmp/gpubench/idx
    /tmp/gpubench/packdata $IDX -o $DATA -q --force >/dev/null || DATA=
else
    echo "cannot build (see below) and no bundle: run tests/gpu/bench.sh --bundle first"
    tail -20 /tmp/gpu-bench-build.log
    exit 1
fi
[ -d "$IDX" ] || IDX=

RAW=$(mktemp -d /tmp/gpu-bench-XXXXXX)
status=0

echo; echo "== 1. H2D, plain cudaMemcpy"
timeout 60 "$H2D" | tee "$RAW/h2d.txt" || status=1

echo; echo "== 2. step time: batch resident vs streamed through the prefetcher ($STEPS steps x 3)"
timeout 60 "$GPUSTEP" cuda $STEPS | tee "$RAW/gpustep.txt" || status=1

M=${OUT:-/tmp}/st-metrics.jsonl
if [ -n "${DATA:-}" ] && [ -f "$DATA/MANIFEST" ]; then
    echo; echo "== 3. streamtrain --data $DATA --epochs 3 --device cuda"
    timeout 120 "$ST" --data "$DATA" --epochs 3 --device cuda --metrics "$M" -q |
        tee "$RAW/st.txt" || status=1
else
    echo; echo "== 3. no Fashion-MNIST pack here: streamtrain skipped"
fi

PY=
for p in python3 /usr/bin/python3; do
    if "$p" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
        PY=$p; break
    fi
done
if [ -n "$PY" ] && [ -n "$IDX" ]; then
    echo; echo "== 4. PyTorch $($PY -c 'import torch; print(torch.__version__)') on the same GPU (pin_memory, non_blocking)"
    for w in 0 4; do
        timeout 120 "$PY" bench/torch_peer.py train-gpu "$IDX" --workers $w --epochs 3 |
            tee -a "$RAW/torch.txt" || status=1
    done
else
    echo; echo "== 4. PyTorch with CUDA not found here (or no IDX files): skipped"
fi

# ---- the table ---------------------------------------------------------------
# field NAME LINE: the value of NAME=... in LINE
field() { echo "$2" | tr ' ' '\n' | sed -n "s/^$1=//p" | tr -d '"'; }
median() { sort -g | awk '{a[NR]=$1} END {if (NR) printf "%s", a[int((NR+1)/2)]; else printf "—"}'; }
mib() { awk -v b="$1" 'BEGIN {if (b == "") print "—"; else printf "%.0f MiB", b / 1048576}'; }
{
    echo "# GPU bench — ${GPU:-unknown GPU}, $(date -u +%F)"
    echo
    echo "\`tests/gpu/bench.sh\` on $(hostname -s), $(nproc) CPU cores."
    echo
    echo "| measure | value |"
    echo "|---|---|"
    while read -r line; do
        case "$line" in h2d\ mem=*)
            printf '| H2D, plain cudaMemcpy, %s, %s bytes | %s GB/s |\n' "$(field mem "$line")" \
                "$(field bytes "$line")" "$(field gbps "$line")" ;;
        esac
    done <"$RAW/h2d.txt"
    res=$(grep '^gpustep round' "$RAW/gpustep.txt" | sed 's/.*resident_ms=\([0-9.]*\).*/\1/' | median)
    pf=$(grep '^gpustep round' "$RAW/gpustep.txt" | sed 's/.*prefetch_ms=\([0-9.]*\).*/\1/' | median)
    echo "| step, batch resident on the device (median of 3 x $STEPS) | $res ms |"
    echo "| step, batches streamed through the prefetcher from pinned memory | $pf ms |"
    l=$(grep '^gpustep device' "$RAW/gpustep.txt")
    echo "| prefetcher's achieved H2D (gpustep) | $(field prefetch_h2d_gbps "$l") GB/s |"
    if [ -f "$M" ]; then
        grep '"kind":"epoch"' "$M" | sed 's/[{}"]//g' | tr ',' ' ' | tr ':' '=' | while read -r e; do
            ep=$(field epoch "$e") sps=$(field samples_per_s "$e")
            step=$(awk -v s="$sps" 'BEGIN {if (s > 0) printf "%.4f", 128e3 / s}')
            echo "| streamtrain epoch $ep: samples/s, step (loader + prefetcher + compute), loader wait, H2D, device memory in use / peak, test acc | $sps samples/s, $step ms, $(field loader_wait_pct "$e") %, $(field h2d_gbps "$e") GB/s, $(mib "$(field dev_mem_used "$e")") / $(mib "$(field dev_mem_peak "$e")"), $(field test_acc "$e") |"
        done
    fi
    if [ -f "$RAW/torch.txt" ]; then
        while read -r e; do
            echo "| PyTorch, $(field workers "$e") workers, epoch $(field epoch "$e"): samples/s, step, device memory in use (driver) / allocated / peak allocated / reserved, test acc | $(field samples_per_s "$e") samples/s, $(field step_ms "$e") ms, $(mib "$(field mem_used "$e")") / $(mib "$(field mem_alloc "$e")") / $(mib "$(field mem_peak_alloc "$e")") / $(mib "$(field mem_reserved "$e")"), $(field test_acc "$e") |"
        done < <(grep '^torch_gpu_epoch' "$RAW/torch.txt")
    fi
} >"$MD"
echo
cat "$MD"
rm -rf "$RAW"
exit $status
