#!/bin/sh
# tests/cli/nccl_emu.sh — test_comm_nccl on cuemu as a 2-rank MPI job: the
# NCCL half of the all-reduce (gpu/comm_nccl.cu) against cuemu's NCCL over
# MPI (tests/emu/nccl.h), so its streams and events are exercised across
# two processes without a GPU. Each rank's log is printed, then one
# cmocka-style summary (a case passes when it passed on both ranks).
# Skipped, saying why, without mpirun or without the cuemu build.
#   tests/cli/nccl_emu.sh BUILD_DIR (unused: the binary is build/emu's)
set -u
BIN=build/emu/tests/test_comm_nccl
T=$(mktemp -d /tmp/st-nccl-XXXXXX)
trap 'rm -rf "$T"' EXIT

skip_all() {
    echo "skipped: $1"
    echo "[==========] 0 test(s) run."
    echo "[  PASSED  ] 0 test(s)."
    echo "[  SKIPPED ] 1 test(s), listed below:"
    echo "[  SKIPPED ] nccl_emu"
    exit 0
}
command -v mpirun >/dev/null 2>&1 || skip_all "no mpirun (apt-get install openmpi-bin)"
[ -x "$BIN" ] || skip_all "$BIN is not built (make EMU=1 emu-tests)"

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_btl_vader_single_copy_mechanism=none
# cuemu stands in for the GPU: a skip would be a failure; a reduction
# stuck for 60 s aborts instead of hanging
export ST_REQUIRE_GPU=1 CUEMU_HOST_WAIT=60
timeout 300 mpirun --oversubscribe -np 2 \
    sh -c "exec $BIN >$T/rank\$OMPI_COMM_WORLD_RANK.log 2>&1"
rc=$?

num() { # $1: label, $2: log; the count on cmocka's summary line
    n=$(sed -n "s/^\[  $1 *\] \([0-9][0-9]*\) test.*/\1/p" "$2" 2>/dev/null | tail -1)
    echo "${n:-0}"
}
for r in 0 1; do
    echo "-- rank $r"
    cat "$T/rank$r.log" 2>/dev/null || echo "(no log)"
done
p0=$(num PASSED "$T/rank0.log") p1=$(num PASSED "$T/rank1.log")
f0=$(num FAILED "$T/rank0.log") f1=$(num FAILED "$T/rank1.log")
s0=$(num SKIPPED "$T/rank0.log")
pass=$((p0 < p1 ? p0 : p1)) fail=$((f0 > f1 ? f0 : f1))
if [ $rc -ne 0 ] && [ $fail -eq 0 ]; then
    echo "mpirun exited $rc"
    fail=1
fi
echo "[==========] 2-rank job: $((pass + fail + s0)) test(s) run."
echo "[  PASSED  ] $pass test(s)."
[ "$s0" -gt 0 ] && echo "[  SKIPPED ] $s0 test(s)."
if [ $fail -gt 0 ]; then
    echo "[  FAILED  ] $fail test(s)."
    exit 1
fi
exit 0
