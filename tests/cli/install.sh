#!/bin/sh
# tests/cli/install.sh — make install into a temporary DESTDIR, then a
# program outside the tree (tests/install/consumer.c) built against the
# installed copy with only `pkg-config --cflags --libs streamtrain` opens a
# synthpack pack and streams one epoch; the installed tools run; the
# library exports only its public API. Prints cmocka-style result lines.
#   tests/cli/install.sh BUILD_DIR
set -u
BUILD=${1:-build}
T=$(mktemp -d /tmp/st-install-XXXXXX)
trap 'rm -rf "$T"' EXIT
pass=0 fail=0 failed_names=""
ok() { echo "[       OK ] $1"; pass=$((pass + 1)); }
bad() { echo "[  FAILED  ] $1: $2"; fail=$((fail + 1)); failed_names="$failed_names $1"; }
ROOT=$T/root P=/usr/local
LIB=$ROOT$P/lib

echo "[ RUN      ] make_install"
if make --no-print-directory -s BUILD="$BUILD" install DESTDIR="$ROOT" PREFIX=$P >"$T/log" 2>&1 &&
   [ -L "$LIB/libstreamtrain.so" ] && [ -L "$LIB/libstreamtrain.so.1" ] &&
   [ -f "$LIB/libstreamtrain.so.1.0.0" ] && [ -f "$ROOT$P/include/streamtrain.h" ] &&
   [ -f "$ROOT$P/include/streamtrain/loader.h" ] && [ -f "$LIB/pkgconfig/streamtrain.pc" ] &&
   [ -x "$ROOT$P/bin/packinfo" ]; then ok make_install
else bad make_install "$(tail -5 "$T/log"; ls -R "$ROOT" | head -30)"; fi

echo "[ RUN      ] soname_and_exports"
so=$LIB/libstreamtrain.so.1.0.0
syms=$(nm -D --defined-only "$so" 2>/dev/null | awk '$2 == "T" { sub(/@.*/, "", $3); print $3 }')
soname=$(readelf -d "$so" 2>/dev/null | sed -n 's/.*Library soname: \[\(.*\)\]/\1/p')
missing="" leaked=""
for f in loader_open loader_next_batch loader_release pack_open pack_split_find \
         transform_parse st_strerror packer_run; do
    echo "$syms" | grep -qx "$f" || missing="$missing $f"
done
for f in ring_create shard_open order_create codec_cdict_create; do  # internal
    echo "$syms" | grep -qx "$f" && leaked="$leaked $f"
done
if [ "$soname" = libstreamtrain.so.1 ] && [ -z "$missing" ] && [ -z "$leaked" ]; then
    echo "    soname $soname, $(echo "$syms" | wc -l) functions exported"; ok soname_and_exports
else bad soname_and_exports "soname '$soname', missing:$missing, leaked:$leaked"; fi

echo "[ RUN      ] consumer_pkg_config"
export PKG_CONFIG_PATH="$LIB/pkgconfig"
flags=$(pkg-config --define-variable=prefix="$ROOT$P" --cflags --libs streamtrain 2>"$T/pc.err")
if [ $? -ne 0 ]; then bad consumer_pkg_config "pkg-config: $(cat "$T/pc.err")"
elif ! cc -std=c11 -Wall -Wextra -Werror tests/install/consumer.c $flags -o "$T/consumer" 2>"$T/cc.err"; then
    bad consumer_pkg_config "cc $flags: $(head -5 "$T/cc.err")"
elif ! "$BUILD/synthpack" -o "$T/pack" --samples 150 --shape 8x8x3 --threads 1 -q >"$T/sp.log" 2>&1; then
    bad consumer_pkg_config "synthpack: $(cat "$T/sp.log")"
elif ! LD_LIBRARY_PATH="$LIB" "$T/consumer" "$T/pack" 150 >"$T/run.log" 2>&1; then
    bad consumer_pkg_config "$(cat "$T/run.log")"
elif ! LD_LIBRARY_PATH="$LIB" ldd "$T/consumer" | grep -q "$LIB/libstreamtrain.so.1"; then
    bad consumer_pkg_config "not linked against the installed copy: $(ldd "$T/consumer")"
else sed 's/^/    /' "$T/run.log"; echo "    cc $flags"; ok consumer_pkg_config; fi

echo "[ RUN      ] consumer_needs_right_count"   # the check itself can fail
if [ -x "$T/consumer" ] && ! LD_LIBRARY_PATH="$LIB" "$T/consumer" "$T/pack" 151 >/dev/null 2>&1; then
    ok consumer_needs_right_count
else bad consumer_needs_right_count "consumer accepted a wrong count"; fi

echo "[ RUN      ] installed_tools"
if "$ROOT$P/bin/packinfo" "$T/pack" >"$T/pi.log" 2>&1 && grep -q 150 "$T/pi.log"; then ok installed_tools
else bad installed_tools "packinfo: $(head -5 "$T/pi.log")"; fi

echo "[==========] $((pass + fail)) test(s) run."
echo "[  PASSED  ] $pass test(s)."
if [ $fail -gt 0 ]; then
    echo "[  FAILED  ] $fail test(s), listed below:"
    for n in $failed_names; do echo "[  FAILED  ] $n"; done
    exit 1
fi
exit 0
