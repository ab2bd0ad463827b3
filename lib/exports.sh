#!/bin/sh
# lib/exports.sh — writes the linker version script of libstreamtrain.so:
# every global function defined in the given objects that one of the
# public headers declares (NAME followed by '('), under the version node
# STREAMTRAIN_1 (the soname's major); everything else stays local (not exported).
#   lib/exports.sh "HEADERS" OBJECTS... > exports.map
set -eu
headers=$1; shift
echo "STREAMTRAIN_1 {"
echo "  global:"
nm -g --defined-only "$@" | awk '$2 == "T" { print $3 }' | sort -u | while read -r f; do
    # shellcheck disable=SC2086
    if grep -Eq "(^|[^A-Za-z0-9_])$f[[:space:]]*\(" $headers; then echo "    $f;"; fi
done
echo "  local: *;"
echo "};"
