# shellcheck shell=bash
# tests/gpu/lib.sh — helpers shared by tests/gpu/check.sh and bench.sh
# (sourced, not run). The caller sets BUDGET (seconds for the whole script)
# and UNPACKED=0.

# Seconds a step may take: at most CAP ($1), and never past the budget
# less $2 seconds kept for the steps after it.
tmo() {
    local left=$((BUDGET - SECONDS - ${2:-0}))
    if [ "$left" -ge "$1" ]; then echo "$1"; elif [ "$left" -gt 10 ]; then echo "$left"; else echo 10; fi
}

# Directories holding libcublas.so.13, the usual place first.
cublas_dirs() {
    for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
        [ -e "$d/libcublas.so.13" ] && echo "$d"
    done
    timeout 30 find /usr /opt -name 'libcublas.so.13' -printf '%h\n' 2>/dev/null
}

# Unpacks bundle $1 into directory $2 once per run (never a stale copy
# from an earlier run). @return 1 without the bundle.
unpack_bundle() {
    [ "$UNPACKED" = 1 ] && return 0
    [ -f "$1" ] || return 1
    rm -rf "$2" && mkdir -p "$2" && tar -C "$2" -xJf "$1" && UNPACKED=1
}

# Copies into directory $1 every shared library the binaries $2... load
# that is not glibc, libstdc++/libgcc or CUDA's.
copy_libs() {
    local dest=$1 bin
    shift
    for bin in "$@"; do
        ldd "$bin" | awk '$3 ~ /^\// {print $3}'
    done | sort -u | grep -vE '/(libc|libm|libdl|librt|libpthread|ld-linux[^/]*|libstdc\+\+|libgcc_s)\.so|cuda|cublas' |
        while read -r lib; do cp -L "$lib" "$dest/"; done
}

# The --emu rehearsals' stand-in for Fashion-MNIST: 2,048 + 512 synthetic
# 28x28 gray samples, written by synthpack $1 into pack directory $2.
emu_pack() {
    mkdir -p "$(dirname "$2")" && "$1" -o "$2" --samples 2048 --test 512 --shape 28x28x1 -q -f
}
