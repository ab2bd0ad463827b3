#!/bin/sh
# tests/cli/gpucheck.sh — tests/gpu/check.sh and tests/gpu/bench.sh, the
# scripts a lent GPU machine runs, rehearsed on cuemu (--emu) so that their
# builds, their parsing of the metrics and of the tests' lines, and their
# verdict and table are known to work before device time is spent on them;
# and with no device visible check.sh must fail, not pass by skipping.
# Prints cmocka-style result lines.
#   tests/cli/gpucheck.sh BUILD_DIR (unused: the script builds build/emu)
set -u
T=$(mktemp -d /tmp/st-gpucheck-XXXXXX)
trap 'rm -rf "$T"' EXIT
pass=0 fail=0 failed_names=""

ok() { echo "[       OK ] $1"; pass=$((pass + 1)); }
bad() { echo "[  FAILED  ] $1: $2"; fail=$((fail + 1)); failed_names="$failed_names $1"; }

echo "[==========] Running 3 test(s)."
echo "[ RUN      ] rehearsal_passes"
OUT=$T tests/gpu/check.sh --emu >"$T/log" 2>&1
rc=$?
last=$(tail -1 "$T/log")
rows=$(grep -c '^[123] ' "$T/log")
if [ $rc -ne 0 ]; then bad rehearsal_passes "exit $rc: $(tail -15 "$T/log")"
elif [ "$last" != "RESULT: PASS (cuemu rehearsal: no GPU was used)" ]; then bad rehearsal_passes "last line: $last"
elif [ "$rows" -ne 4 ]; then bad rehearsal_passes "$rows epoch rows, want 3 + 1 of the resnet preset"
elif ! grep -q '^resnet step time: [0-9.]* ms (batch 32), [0-9]* images/s$' "$T/log"; then bad rehearsal_passes "no resnet step-time line"
elif ! grep -q '^resnet preset: *PASS$' "$T/log"; then bad rehearsal_passes "resnet preset not PASS"
elif ! grep -q '^device memory in use: flat across 3 epochs' "$T/log"; then bad rehearsal_passes "no flat-memory line"
elif grep -q 'no figure' "$T/log"; then bad rehearsal_passes "a target without a figure: $(grep 'no figure' "$T/log")"
elif ! grep -q '^H2D >= 80 % of plain copies: [0-9.]* GB/s = [0-9]* % of batch-sized' "$T/log"; then bad rehearsal_passes "no H2D target line"
elif [ ! -s "$T/gpu-check.txt" ] || [ ! -s "$T/metrics.jsonl" ]; then bad rehearsal_passes "nothing written to \$OUT"
else ok rehearsal_passes; fi

echo "[ RUN      ] no_device_fails"
OUT=$T CUEMU_DEVICES=0 tests/gpu/check.sh --emu >"$T/log" 2>&1
rc=$?
last=$(tail -1 "$T/log")
if [ $rc -eq 0 ]; then bad no_device_fails "exit 0 with no device"
elif [ "$last" != "RESULT: FAIL (cuemu rehearsal: no GPU was used)" ]; then bad no_device_fails "last line: $last"
elif ! grep -q 'ST_REQUIRE_GPU is set but no CUDA device' "$T/log"; then bad no_device_fails "test_gpu did not fail on the missing device"
else ok no_device_fails; fi

echo "[ RUN      ] bench_rehearsal_table"
OUT=$T/bench tests/gpu/bench.sh --emu >"$T/log" 2>&1
rc=$?
md=$T/bench/gpu-bench.md
if [ $rc -ne 0 ]; then bad bench_rehearsal_table "exit $rc: $(tail -15 "$T/log")"
elif ! head -1 "$md" | grep -q '^# GPU bench rehearsal on cuemu'; then bad bench_rehearsal_table "title: $(head -1 "$md")"
elif [ "$(grep -c '^| H2D, plain cudaMemcpy, .* | [0-9.]* GB/s |$' "$md")" -ne 4 ]; then bad bench_rehearsal_table "want 4 H2D rows: $(cat "$md")"
elif [ "$(grep -c '^| step, .* | [0-9.]* ms |$' "$md")" -ne 2 ]; then bad bench_rehearsal_table "want 2 step rows: $(cat "$md")"
elif [ "$(grep -c '^| streamtrain epoch [123]: .* | [0-9.]* samples/s, [0-9.]* ms, ' "$md")" -ne 3 ]; then bad bench_rehearsal_table "want 3 epoch rows: $(cat "$md")"
elif grep -q '| — ' "$md"; then bad bench_rehearsal_table "an empty value: $(grep '| — ' "$md")"
else ok bench_rehearsal_table; fi

echo "[==========] $((pass + fail)) test(s) run."
echo "[  PASSED  ] $pass test(s)."
if [ $fail -gt 0 ]; then
    echo "[  FAILED  ] $fail test(s), listed below:"
    for n in $failed_names; do echo "[  FAILED  ] $n"; done
    exit 1
fi
