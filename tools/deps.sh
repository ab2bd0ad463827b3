#!/bin/sh
# tools/deps.sh — installs the Debian packages streamtrain needs, only those missing.
#
#   tools/deps.sh            build + test + demo packages
#   tools/deps.sh bench      also the benchmark extras (gnuplot, python3-torch, ...)
#
# As root it runs apt-get; otherwise it prints the exact apt-get line to run.
set -eu

PKGS="build-essential pkg-config zlib1g-dev libzstd-dev libpng-dev libjpeg62-turbo-dev libcmocka-dev \
libopenblas-dev libxxhash-dev libstb-dev clang libclang-rt-dev dataset-fashion-mnist \
python3-pil python3-pytest python3-numpy python3-venv \
python3-pip python3-setuptools python3-wheel openmpi-bin libopenmpi-dev iproute2"
BENCH_PKGS="gnuplot-nox python3-torch python3-pil python3-numpy python3-torchvision python3-venv \
plasma-workspace-wallpapers libturbojpeg0-dev libopencv-dev"

want="$PKGS"
[ "${1:-}" = "bench" ] && want="$want $BENCH_PKGS"

missing=""
for p in $want; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done

if [ -z "$missing" ]; then
    echo "deps: all packages present"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "deps: missing:$missing" >&2
    echo "deps: run as root: apt-get update && apt-get install -y --no-install-recommends$missing" >&2
    exit 1
fi

echo "deps: installing:$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing
