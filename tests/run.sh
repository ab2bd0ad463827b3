#!/bin/sh
# tests/run.sh — runs every cmocka test binary (the normal build, then the
# loader tests again under ThreadSanitizer and AddressSanitizer, then the
# CUDA backend's tests on cuemu, the CPU emulator of tests/emu/), a short
# bounded libFuzzer run of each fuzz target, the CLI integration tests
# (every executable tests/cli/*.sh, dist.sh's multi-rank runs under mpirun
# included) and the Python package's pytest suite, then prints one total
# line: "total: N passed, N failed, N skipped".
#
#   tests/run.sh [BUILD_DIR]
set -u
BUILD=${1:-build}
TESTS_DIR=$(cd "$(dirname "$0")" && pwd)
LOG=$(mktemp)
trap 'rm -f "$LOG"' EXIT
passed=0 failed=0 skipped=0 broken=""

count() { # $1: pattern; prints the number after it in the last run's log
    sed -n "s/^\[  $1 *\] \([0-9][0-9]*\) test.*/\1/p" "$LOG" | tail -1
}

run_one() { # $1: label, rest: command
    label=$1; shift
    echo "== $label"
    "$@" >"$LOG" 2>&1
    rc=$?
    cat "$LOG"
    p=$(count PASSED); f=$(count FAILED); s=$(count SKIPPED)
    passed=$((passed + ${p:-0})); failed=$((failed + ${f:-0})); skipped=$((skipped + ${s:-0}))
    if [ $rc -ne 0 ]; then
        broken="$broken $label"
        [ -z "$f" ] && failed=$((failed + 1))
    fi
}

for t in "$BUILD"/tests/test_*; do
    [ -x "$t" ] || continue
    run_one "$(basename "$t")" "$t"
done

for san in thread address; do
    for t in build/san-$san/tests/test_*; do
        [ -x "$t" ] || continue
        # tsan.supp: OpenBLAS's own threads, which TSan cannot follow
        export TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 suppressions=$TESTS_DIR/tsan.supp"
        export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1"
        run_one "$(basename "$t") [$san]" "$t"
    done
done

# cuemu stands in for the GPU: a skip there would be a failure
export ST_REQUIRE_GPU=1
for t in build/emu/tests/test_*; do
    [ -x "$t" ] || continue
    run_one "$(basename "$t") [cuemu]" "$t"
done
unset ST_REQUIRE_GPU

for f in build/fuzz/fuzz_*; do
    [ -x "$f" ] || continue
    n=$(basename "$f")
    mkdir -p "build/fuzz/corpus-$n"
    seeds=""
    [ -d "tests/fuzz/seeds/$n" ] && seeds="tests/fuzz/seeds/$n"
    echo "== $n (libFuzzer, 10 s)"
    if "$f" -max_total_time=10 -print_final_stats=0 -artifact_prefix=build/fuzz/ "build/fuzz/corpus-$n" $seeds >"$LOG" 2>&1; then
        tail -1 "$LOG"; passed=$((passed + 1))
    else
        tail -40 "$LOG"; failed=$((failed + 1)); broken="$broken $n"
    fi
done

for s in tests/cli/*.sh; do
    [ -x "$s" ] || continue
    run_one "$(basename "$s")" "$s" "$BUILD"
done

# the Python package's tests (python/tests, pytest), counted from pytest's
# summary line ("N failed, N passed, N skipped, N errors in ...")
echo "== python/tests (pytest)"
if /usr/bin/python3 -c 'import pytest, numpy' 2>/dev/null; then
    STREAMTRAIN_BUILD="$BUILD" /usr/bin/python3 -m pytest -q -rs -p no:cacheprovider \
        python/tests >"$LOG" 2>&1
    rc=$?
    cat "$LOG"
    sum=$(grep -E '^=*.*[0-9]+ (passed|failed|skipped|error)' "$LOG" | tail -1)
    num() { echo "$sum" | grep -oE "[0-9]+ $1" | grep -oE '[0-9]+' | head -1; }
    p=$(num passed); f=$(num failed); s=$(num skipped); e=$(num error)
    passed=$((passed + ${p:-0})); skipped=$((skipped + ${s:-0}))
    failed=$((failed + ${f:-0} + ${e:-0}))
    if [ $rc -ne 0 ]; then
        broken="$broken python/tests"
        [ -z "$f$e" ] && failed=$((failed + 1))
    fi
else
    echo "python/tests: /usr/bin/python3 lacks pytest or numpy (tools/deps.sh installs them)"
    failed=$((failed + 1)); broken="$broken python/tests"
fi

[ -n "$broken" ] && echo "failing:$broken"
echo "total: $passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ] && [ -z "$broken" ]
