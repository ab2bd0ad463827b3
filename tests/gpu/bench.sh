#!/bin/bash
# tests/gpu/bench.sh — the GPU part of the throughput suite (issue 5), for a
# lent GPU machine; runs in under 5 minutes. It measures:
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
#                                 (not all of .gpucheck: with check.sh's
#                                 bundle it is over 64 MiB)
#   tests/gpu/bench.sh --emu      a rehearsal here on cuemu (make EMU=1,
#                                 tests/emu/): 20 gpustep steps instead of
#                                 2000 and a small synthetic pack; the
#                                 figures are the CPU's and the table's
#                                 title says so
#
# On the GPU machine the script builds with make and nvcc when it can, else
# it unpacks the bundle; the IDX files come from $FM_SRC, else the bundle.
# Our binaries need cuBLAS 13 there (libcublas.so.13: /usr/local/cuda/lib64
# or anywhere under /usr or /opt); the bundle's libraries are put on their
# LD_LIBRARY_PATH only, never on PyTorch's. Every step's timeout is cut to
# keep the whole run under 5 minutes. Results go to stdout and, when $OUT is
# set, to $OUT/gpu-bench.md (the table), $OUT/gpu-bench.log (everything)
# and $OUT/st-metrics.jsonl.
set -u -o pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT" || exit 1
BUNDLE=.gpucheck
UNPACKED=0
# shellcheck source=tests/gpu/lib.sh
. tests/gpu/lib.sh

# the bundle made by --bundle, unpacked once per run
unpack() { unpack_bundle $BUNDLE/bench-bundle.tar.xz /tmp/gpubench; }
FM_SRC=${FM_SRC:-/usr/share/datasets/fashion-mnist}
STEPS=2000 # gpustep steps per timing
BUDGET=290 # seconds for the whole run, build included

# Compiles bench/gpustep.c against BUILD's library with the Makefile's flags,
# and bench/h2d.cu with nvcc, or (emu = 1, BUILD build/emu) with the
# Makefile's cuemu rule for .cu files.
# shellcheck disable=SC2016 # $($*) is make's, not the shell's
build_helpers() {
    local b=$1 emu=${2:-0} mk cflags ldlibs
    mk="make -s --no-print-directory BUILD=$b"
    [ "$emu" = 1 ] && mk="make -s --no-print-directory EMU=1"
    cflags=$($mk --eval='print-%: ; @echo $($*)' print-CFLAGS 2>/dev/null | tail -1)
    ldlibs=$($mk --eval='print-%: ; @echo $($*)' print-LDLIBS 2>/dev/null | tail -1)
    case "$cflags" in *ST_HAVE_CUDA=1*) ;; *) echo "no nvcc: the build has no CUDA backend"; return 1 ;; esac
    mkdir -p "$b/bench"
    # shellcheck disable=SC2086
    cc ${cflags//-MMD -MP/} bench/gpustep.c "$b/libstreamtrain.a" $ldlibs -o "$b/bench/gpustep" || return 1
    if [ "$emu" = 1 ]; then
        # shellcheck disable=SC2086
        $mk "$b/obj/bench/h2d.o" && c++ "$b/obj/bench/h2d.o" "$b/libstreamtrain.a" $ldlibs -o "$b/bench/h2d"
    else
        "$(make -s --no-print-directory --eval='print-%: ; @echo $($*)' print-NVCC 2>/dev/null | tail -1)" \
            -O2 -Xcompiler -Wall,-Wextra,-Werror -o "$b/bench/h2d" bench/h2d.cu
    fi
}

bundle() {
    set -e
    local b=build/gpu-bundle
    make --no-print-directory BUILD=$b -j2 $b/streamtrain $b/packdata $b/libstreamtrain.a >/dev/null
    build_helpers $b
    rm -rf $BUNDLE/bstage && mkdir -p $BUNDLE/bstage/lib $BUNDLE/bstage/idx
    cp $b/streamtrain $b/packdata $b/bench/gpustep $b/bench/h2d $BUNDLE/bstage/
    copy_libs $BUNDLE/bstage/lib $b/streamtrain $b/packdata $b/bench/gpustep $b/bench/h2d
    cp "$FM_SRC"/*-ubyte.gz $BUNDLE/bstage/idx/ # packed there: smaller
    tar -C $BUNDLE/bstage -cJf $BUNDLE/bench-bundle.tar.xz .
    rm -rf $BUNDLE/bstage
    ls -la $BUNDLE/bench-bundle.tar.xz
}




# Our binaries, with the bundle's libraries and cuBLAS on their path.
ours() { env LD_LIBRARY_PATH="$LIBPATH" "$@"; }

# ---- the table ---------------------------------------------------------------
# field NAME LINE: the value of NAME=... in LINE
field() { echo "$2" | tr ' ' '\n' | sed -n "s/^$1=//p" | tr -d '"'; }
median() { sort -g | awk '{a[NR]=$1} END {if (NR) printf "%s", a[int((NR+1)/2)]; else printf "—"}'; }
mib() { awk -v b="$1" 'BEGIN {if (b == "") print "—"; else printf "%.0f MiB", b / 1048576}'; }

table() {
    local raw=$1 m=$2 line res pf l e ep sps step
    if [ "$EMU" = 1 ]; then
        echo "# GPU bench rehearsal on cuemu (no GPU: the figures are the CPU's), $(date -u +%F)"
    else
        echo "# GPU bench — ${GPU:-unknown GPU}, $(date -u +%F)"
    fi
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
    done < <(cat "$raw/h2d.txt" 2>/dev/null)
    res=$(grep '^gpustep round' "$raw/gpustep.txt" 2>/dev/null | sed 's/.*resident_ms=\([0-9.]*\).*/\1/' | median)
    pf=$(grep '^gpustep round' "$raw/gpustep.txt" 2>/dev/null | sed 's/.*prefetch_ms=\([0-9.]*\).*/\1/' | median)
    echo "| step, batch resident on the device (median of 3 x $STEPS) | $res ms |"
    echo "| step, batches streamed through the prefetcher from pinned memory | $pf ms |"
    l=$(grep '^gpustep device' "$raw/gpustep.txt" 2>/dev/null)
    echo "| prefetcher's achieved H2D (gpustep) | $(field prefetch_h2d_gbps "$l") GB/s |"
    if [ -f "$m" ]; then
        grep '"kind":"epoch"' "$m" | sed 's/[{}"]//g' | tr ',' ' ' | tr ':' '=' | while read -r e; do
            ep=$(field epoch "$e") sps=$(field samples_per_s "$e")
            step=$(awk -v s="$sps" 'BEGIN {if (s > 0) printf "%.4f", 128e3 / s}')
            echo "| streamtrain epoch $ep: samples/s, step (loader + prefetcher + compute), loader wait, H2D, device memory in use / peak, test acc | $sps samples/s, $step ms, $(field loader_wait_pct "$e") %, $(field h2d_gbps "$e") GB/s, $(mib "$(field dev_mem_used "$e")") / $(mib "$(field dev_mem_peak "$e")"), $(field test_acc "$e") |"
        done
    fi
    if [ -f "$raw/torch.txt" ]; then
        while read -r e; do
            echo "| PyTorch, $(field workers "$e") workers, epoch $(field epoch "$e"): samples/s, step, device memory in use (driver) / allocated / peak allocated / reserved, test acc | $(field samples_per_s "$e") samples/s, $(field step_ms "$e") ms, $(mib "$(field mem_used "$e")") / $(mib "$(field mem_alloc "$e")") / $(mib "$(field mem_peak_alloc "$e")") / $(mib "$(field mem_reserved "$e")"), $(field test_acc "$e") |"
        done < <(grep '^torch_gpu_epoch' "$raw/torch.txt")
    fi
}

# Sets ST, GPUSTEP, H2D (built here, else the bundle's), DATA (a pack or
# ""), IDX (IDX files for PyTorch or "") and LIBPATH (our binaries'
# LD_LIBRARY_PATH). @return 1 when there are no binaries.
pick_binaries() {
    local b=build/gpu
    LIBPATH='' DATA='' IDX=''
    if [ "$EMU" = 1 ]; then
        b=build/emu
        make --no-print-directory EMU=1 -j"$(nproc)" $b/streamtrain $b/synthpack \
            $b/libstreamtrain.a >/tmp/gpu-bench-build.log 2>&1 &&
            build_helpers $b 1 >>/tmp/gpu-bench-build.log 2>&1 ||
            { tail -20 /tmp/gpu-bench-build.log; return 1; }
        ST=$b/streamtrain GPUSTEP=$b/bench/gpustep H2D=$b/bench/h2d
        DATA=/tmp/gpubench-emu/pack
        emu_pack $b/synthpack $DATA || DATA=
        return 0
    fi
    if make --no-print-directory BUILD=$b -j"$(nproc)" $b/streamtrain $b/packdata $b/libstreamtrain.a \
            >/tmp/gpu-bench-build.log 2>&1 && build_helpers $b >>/tmp/gpu-bench-build.log 2>&1; then
        ST=$b/streamtrain GPUSTEP=$b/bench/gpustep H2D=$b/bench/h2d
        DATA=data/fashion-mnist
    elif unpack; then
        echo "build failed here (last lines below); using $BUNDLE/bench-bundle.tar.xz"
        tail -3 /tmp/gpu-bench-build.log
        ST=/tmp/gpubench/streamtrain GPUSTEP=/tmp/gpubench/gpustep H2D=/tmp/gpubench/h2d
        LIBPATH=/tmp/gpubench/lib DATA=/tmp/gpubench/fm
    else
        echo "cannot build (last lines below) and no bundle: run tests/gpu/bench.sh --bundle first"
        tail -20 /tmp/gpu-bench-build.log
        return 1
    fi
    # no empty entries: one would put the current directory on the path
    LIBPATH=$( (echo "$LIBPATH"; cublas_dirs) | awk 'NF && !seen[$0]++' | paste -sd: -)
    echo "LD_LIBRARY_PATH for our binaries: $LIBPATH"
    ours ldd "$ST" "$GPUSTEP" | grep 'not found' | sort -u | sed 's/^/missing: /'
    if [ -d "$FM_SRC" ]; then IDX=$FM_SRC; elif unpack; then IDX=/tmp/gpubench/idx; fi
    if [ ! -f "$DATA/MANIFEST" ] && [ -n "$IDX" ]; then
        echo "packing $IDX into $DATA"
        mkdir -p "$(dirname "$DATA")"
        ours "${ST%/streamtrain}/packdata" "$IDX" -o "$DATA" -q --force >/dev/null || DATA=
    fi
    [ -f "$DATA/MANIFEST" ] || DATA=
}

main() {
    echo "== $(date -u +%FT%TZ) gpu bench"
    GPU=$(timeout 20 nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -1)
    echo "gpu: ${GPU:-nvidia-smi not available}"
    pick_binaries || return 1
    local raw status=0 m py="" p w

    raw=$(mktemp -d /tmp/gpu-bench-XXXXXX)
    echo; echo "== 1. H2D, plain cudaMemcpy"
    ours timeout "$(tmo 60 150)" "$H2D" | tee "$raw/h2d.txt" || status=1

    echo; echo "== 2. step time: batch resident vs streamed through the prefetcher ($STEPS steps x 3)"
    ours timeout "$(tmo 60 130)" "$GPUSTEP" cuda $STEPS | tee "$raw/gpustep.txt" || status=1

    m=${OUT:-/tmp}/st-metrics.jsonl
    rm -f "$m"
    if [ -n "$DATA" ]; then
        echo; echo "== 3. streamtrain --data $DATA --model mlp --epochs 3 --device cuda"
        ours timeout "$(tmo 100 60)" "$ST" --data "$DATA" --model mlp --epochs 3 --device cuda --metrics "$m" -q |
            tee "$raw/st.txt" || status=1
    else
        echo; echo "== 3. no Fashion-MNIST pack here: streamtrain skipped"
        status=1
    fi

    for p in python3 /usr/bin/python3; do
        if timeout 60 "$p" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
            py=$p; break
        fi
    done
    if [ -n "$py" ] && [ -n "$IDX" ]; then
        echo; echo "== 4. PyTorch $($py -c 'import torch; print(torch.__version__)') on the same GPU (pin_memory, non_blocking)"
        for w in 0 4; do
            timeout "$(tmo 90 5)" "$py" bench/torch_peer.py train-gpu "$IDX" --workers $w --epochs 3 |
                tee -a "$raw/torch.txt" || status=1
        done
    else
        echo; echo "== 4. PyTorch with CUDA not found here (or no IDX files): skipped"
    fi

    table "$raw" "$m" >"$MD"
    echo
    cat "$MD"
    echo
    echo "time: ${SECONDS} s; exit status $status"
    rm -rf "$raw"
    return $status
}

EMU=0
case "${1:-}" in
--bundle) bundle; exit $? ;;
--emu) EMU=1 STEPS=20; export CUEMU_PROTECT=0 ;;
"") ;;
*) echo "usage: tests/gpu/bench.sh [--bundle | --emu]" >&2; exit 2 ;;
esac
[ -n "${OUT:-}" ] && mkdir -p "$OUT"
MD=${OUT:-/tmp}/gpu-bench.md
# tee in the pipeline (not a process substitution), so that the table is
# written out before the script exits
main 2>&1 | tee "${OUT:-/tmp}/gpu-bench.log"
exit "${PIPESTATUS[0]}"
