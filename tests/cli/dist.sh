#!/bin/sh
# tests/cli/dist.sh — data-parallel streamtrain under mpirun, as a user
# runs it, on small synthetic packs (build/synthpack): 2 ranks train the
# weights of 1 process (MLP, and a conv net with batch norm against 1
# process with micro-batches of B/2, which is what 2 ranks compute), one
# checkpoint evaluates to the same numbers at 1 and 2 ranks, accumulation
# across ranks, elastic resume (saved at 2 ranks, resumed at 1), failures
# that end the job in bounded time naming the rank (SIGKILL, a missing
# pack, a stopped rank past --dist-timeout), configuration mismatches
# refused by name, SIGTERM saving a checkpoint, and two "hosts" (network
# namespaces joined by a veth pair, Open MPI launching through an agent
# that runs its daemon with ip netns exec). Weights are compared with
# test_dist --compare (largest absolute parameter difference).
# Skipped with a reason without mpirun or in a build made with MPI=0.
# Prints cmocka-style result lines.
#   tests/cli/dist.sh BUILD_DIR
set -u
BUILD=${1:-build}
ST="$BUILD/streamtrain"
CMP="$BUILD/tests/test_dist"
pass=0 fail=0 skip=0 failed_names=""
ok() { echo "[       OK ] $1"; pass=$((pass + 1)); }
bad() { echo "[  FAILED  ] $1: $2"; fail=$((fail + 1)); failed_names="$failed_names $1"; }
finish() {
    echo "[==========] $((pass + fail + skip)) test(s) run."
    echo "[  PASSED  ] $pass test(s)."
    [ $skip -gt 0 ] && echo "[  SKIPPED ] $skip test(s)."
    if [ $fail -gt 0 ]; then
        echo "[  FAILED  ] $fail test(s), listed below:"
        for n in $failed_names; do echo "[  FAILED  ] $n"; done
        exit 1
    fi
    exit 0
}
CASES="mlp_equivalence conv_equivalence eval_identical accumulation elastic_resume \
kill_9 missing_pack stopped_rank_times_out mismatch_batch mismatch_model budget_agreed bad_batch \
sigterm_saves two_hosts"
skip_all() {
    echo "skipped: $1"
    for c in $CASES; do echo "[  SKIPPED ] $c: $1"; skip=$((skip + 1)); done
    finish
}
command -v mpirun >/dev/null 2>&1 || skip_all "mpirun not found (apt-get install openmpi-bin)"
[ -x "$ST" ] && [ -x "$CMP" ] && [ -x "$BUILD/synthpack" ] ||
    skip_all "$ST, $CMP or $BUILD/synthpack not built"
ldd "$ST" 2>/dev/null | grep -q libmpi || skip_all "$ST was built without MPI (make MPI=0)"

T=$(mktemp -d /tmp/st-dist-XXXXXX)
NS_UP=0
cleanup() {
    [ $NS_UP -eq 1 ] && { ip netns del st_dist_a; ip netns del st_dist_b; } 2>/dev/null
    rm -rf "$T"
}
trap cleanup EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_btl_vader_single_copy_mechanism=none
MPI="timeout 120 mpirun --oversubscribe"
# N = 2049 = 64 x 32 + 1: the last global batch of 32 is one sample, so
# rank 1 has none of it and still takes part in the step with zeros
"$BUILD/synthpack" -o "$T/p" --samples 2049 --test 301 --shape 16x16x1 -q --threads 1 ||
    skip_all "synthpack failed"
# the CPU backend's MPI path (a GPU machine would pick CUDA, whose NCCL
# half has its own tests)
MLP="--device cpu --data $T/p --model mlp --hidden 64 --batch 32 --epochs 4 -q --log-every 20"
CNN="--device cpu --data $T/p --model cnn:8,16 --batch 32 --epochs 3 -q --log-every 20"
ONE="--blas-threads 1 --threads 1"
# a rank-aware wrapper: writes its pid; WRAP_R1 (a sed expression) edits
# rank 1's arguments
cat >"$T/wrap.sh" <<'EOF'
#!/bin/sh
echo $$ > "$WRAP_DIR/pid.${OMPI_COMM_WORLD_RANK:-x}"
if [ "${OMPI_COMM_WORLD_RANK:-}" = 1 ] && [ -n "${WRAP_R1:-}" ]; then
    set -- $(echo "$*" | sed "$WRAP_R1")
fi
exec "$@"
EOF
chmod +x "$T/wrap.sh"
export WRAP_DIR="$T"

# compare NAME A B TOL: the checkpoints' weights agree within TOL
compare() {
    if out=$("$CMP" --compare "$2" "$3" "$4" 2>&1); then echo "    $out"; ok "$1"
    else bad "$1" "$out"; fi
}
# final_of FILE: the "test_acc=... test_loss=..." of the final line
final_of() { sed -n 's/^final .*\(test_acc=[^ ]* test_loss=[^ ]*\).*/\1/p' "$1"; }

echo "[ RUN      ] mlp_equivalence"
"$ST" $MLP $ONE --save "$T/m1.ckpt" >"$T/m1.out" 2>&1 &&
    $MPI -np 2 "$ST" $MLP --save "$T/m2.ckpt" >"$T/m2.out" 2>&1 &&
    compare mlp_equivalence "$T/m1.ckpt" "$T/m2.ckpt" 1e-5 ||
    bad mlp_equivalence "a run failed: $(tail -3 "$T/m1.out" "$T/m2.out")"

echo "[ RUN      ] conv_equivalence"
# batch norm normalizes each rank's 16 with their own statistics: the same
# as one process with micro-batches of 16. Two checks: after 20 steps the
# weights agree to float rounding (1e-5; measured 2e-7), and after the 195
# steps of 3 epochs within 5e-2. Over the long run the two trajectories
# drift apart by chance, not by a rule: this net fits random labels, and a
# max-pool window whose two largest inputs differ by a rounding error
# picks the other one and sends its gradient elsewhere; measured 1e-6 to
# 4e-3 after 195 steps, at lr 0.01-0.05, on several builds, and 1.6e-2 at
# micro-batch 8 (see accumulation). A wrong split or scaling of the global
# batch differs at the first step by far more, and after 195 steps too:
# the 2-rank run at lr 0.06 instead of 0.05 (a 20 % error) differs by 0.19.
"$ST" $CNN $ONE --micro-batch 16 --max-steps 20 --save "$T/c1s.ckpt" >"$T/c1s.out" 2>&1 &&
    $MPI -np 2 "$ST" $CNN --max-steps 20 --save "$T/c2s.ckpt" >"$T/c2s.out" 2>&1 &&
    "$CMP" --compare "$T/c1s.ckpt" "$T/c2s.ckpt" 1e-5 >"$T/cs.cmp" 2>&1 &&
    "$ST" $CNN $ONE --micro-batch 16 --save "$T/c1.ckpt" >"$T/c1.out" 2>&1 &&
    $MPI -np 2 "$ST" $CNN --save "$T/c2.ckpt" >"$T/c2.out" 2>&1 &&
    { echo "    after 20 steps: $(cat "$T/cs.cmp")"; compare conv_equivalence "$T/c1.ckpt" "$T/c2.ckpt" 5e-2; } ||
    bad conv_equivalence "$(cat "$T/cs.cmp" 2>/dev/null) $(tail -3 "$T/c1.out" "$T/c2.out" 2>/dev/null)"

echo "[ RUN      ] eval_identical"
# --resume with every epoch done evaluates the checkpoint's weights
"$ST" $CNN $ONE --resume "$T/c2.ckpt" >"$T/e1.out" 2>&1
$MPI -np 2 "$ST" $CNN --resume "$T/c2.ckpt" >"$T/e2.out" 2>&1
a=$(final_of "$T/e1.out") b=$(final_of "$T/e2.out")
if [ -n "$a" ] && [ "$a" = "$b" ]; then echo "    1 rank: $a; 2 ranks: $b"; ok eval_identical
else bad eval_identical "1 rank '$a', 2 ranks '$b'"; fi

echo "[ RUN      ] accumulation"
# 2 ranks x micro-batch 8 (2 a rank) = 1 process with 4 micro-batches of 8.
# The conv net (batch norm over each micro-batch of 8) for 20 steps: its
# trajectories part by chance later, as in conv_equivalence (measured on
# a Zen 5 VM: 1.8e-7 after 20 steps, 4.5e-4 after 40, 1.6e-2 after 195);
# the MLP, which does not part, for its whole 4 epochs (measured 7e-8).
# A wrong split or scaling of the micro-batches differs at step 1.
"$ST" $CNN $ONE --micro-batch 8 --max-steps 20 --save "$T/a1.ckpt" >"$T/a1.out" 2>&1 &&
    $MPI -np 2 "$ST" $CNN --micro-batch 8 --max-steps 20 --save "$T/a2.ckpt" >"$T/a2.out" 2>&1 &&
    "$CMP" --compare "$T/a1.ckpt" "$T/a2.ckpt" 1e-5 >"$T/ac.cmp" 2>&1 &&
    "$ST" $MLP $ONE --micro-batch 8 --save "$T/a3.ckpt" >"$T/a3.out" 2>&1 &&
    $MPI -np 2 "$ST" $MLP --micro-batch 8 --save "$T/a4.ckpt" >"$T/a4.out" 2>&1 &&
    { echo "    conv net, 20 steps: $(cat "$T/ac.cmp")"; compare accumulation "$T/a3.ckpt" "$T/a4.ckpt" 1e-5; } ||
    bad accumulation "$(cat "$T/ac.cmp" 2>/dev/null) $(tail -3 "$T/a1.out" "$T/a2.out" "$T/a3.out" "$T/a4.out" 2>/dev/null)"

echo "[ RUN      ] elastic_resume"
# 65 steps = epoch 1 at 2 ranks, then epochs 2-4 at 1 process
$MPI -np 2 "$ST" $MLP --max-steps 65 --save "$T/r2.ckpt" >"$T/r2.out" 2>&1 &&
    "$ST" $MLP $ONE --resume "$T/r2.ckpt" --save "$T/r1.ckpt" >"$T/r1.out" 2>&1 &&
    compare elastic_resume "$T/m2.ckpt" "$T/r1.ckpt" 1e-5 ||
    bad elastic_resume "a run failed: $(tail -3 "$T/r2.out" "$T/r1.out")"

# expect_job_fail NAME MAX_S WANT_IN_OUTPUT: the last job exited non-zero
# within MAX_S seconds and its output has WANT
expect_job_fail() {
    el=$(( $(date +%s) - t0 ))
    if [ "$rc" -eq 0 ]; then bad "$1" "exit 0"; return; fi
    if [ "$el" -gt "$2" ]; then bad "$1" "took $el s (bound $2 s)"; return; fi
    if ! grep -qF -- "$3" "$T/f.out"; then bad "$1" "no '$3' in: $(tail -5 "$T/f.out")"; return; fi
    echo "    exit $rc after $el s: $(grep -F -- "$3" "$T/f.out" | head -1)"
    ok "$1"
}
LONG="--device cpu --data $T/p --model mlp --hidden 64 --batch 32 --epochs 1000 -q"

echo "[ RUN      ] kill_9"
rm -f "$T"/pid.*
t0=$(date +%s)
$MPI -np 2 "$T/wrap.sh" "$ST" $LONG >"$T/f.out" 2>&1 &
job=$!
sleep 2
[ -f "$T/pid.1" ] && kill -9 "$(cat "$T/pid.1")"
wait $job; rc=$?
expect_job_fail kill_9 30 "rank 1"

echo "[ RUN      ] missing_pack"
t0=$(date +%s)
WRAP_R1="s|--data $T/p|--data $T/nope|" $MPI -np 2 "$T/wrap.sh" "$ST" $LONG >"$T/f.out" 2>&1
rc=$?
expect_job_fail missing_pack 30 "rank 1: $T/nope"

echo "[ RUN      ] stopped_rank_times_out"
# 3 ranks, rank 2 stopped (SIGSTOP): rank 0 times out, and the roll call
# that follows hears rank 1 and names rank 2 alone
rm -f "$T"/pid.*
t0=$(date +%s)
$MPI -np 3 "$T/wrap.sh" "$ST" $LONG --batch 48 --dist-timeout 3 >"$T/f.out" 2>&1 &
job=$!
for _ in $(seq 100); do [ -f "$T/pid.2" ] && grep -q '^job: ' "$T/f.out" 2>/dev/null && break; sleep 0.1; done
sleep 1
[ -f "$T/pid.2" ] && kill -STOP "$(cat "$T/pid.2")"
wait $job; rc=$?
[ -f "$T/pid.2" ] && kill -9 "$(cat "$T/pid.2")" 2>/dev/null
# rank 0 waits in the gradient sum or on the stop flag, whichever comes
grep -q "rank 0: .*did not finish within 3 s (--dist-timeout)" "$T/f.out" ||
    rc=0 # (expect_job_fail then reports it)
expect_job_fail stopped_rank_times_out 30 "no word from rank 2 within 2 s: it is stopped, stuck or gone"

echo "[ RUN      ] mismatch_batch"
t0=$(date +%s)
WRAP_R1="s|--batch 32|--batch 64|" $MPI -np 2 "$T/wrap.sh" "$ST" $MLP >"$T/f.out" 2>&1
rc=$?
expect_job_fail mismatch_batch 30 "ranks disagree: rank 1 has --batch 64, rank 0 has 32"

echo "[ RUN      ] mismatch_model"
t0=$(date +%s)
WRAP_R1="s|--hidden 64|--hidden 48|" $MPI -np 2 "$T/wrap.sh" "$ST" $MLP >"$T/f.out" 2>&1
rc=$?
expect_job_fail mismatch_model 30 "rank 1 has --model mlp: dense48"

echo "[ RUN      ] budget_agreed"
# rank 1's budget (2 MiB) fits micro-batch 4 of this net, rank 0's (auto,
# gigabytes) the whole 16: both ranks plan with the least and agree
WRAP_R1="s|--batch 32|--batch 32 --device-mem 2M|" $MPI -np 2 "$T/wrap.sh" "$ST" $CNN \
    --max-steps 3 >"$T/f.out" 2>&1
rc=$?
want="micro-batch 4 (4 accumulation steps)"
if [ $rc -ne 0 ]; then bad budget_agreed "exit $rc: $(tail -3 "$T/f.out")"
elif ! grep -q "the least any of the 2 ranks can hold" "$T/f.out" ||
    ! grep -qF "$want" "$T/f.out"; then
    bad budget_agreed "no agreed budget or '$want' in: $(grep '^memory plan' "$T/f.out")"
else echo "    $(grep '^memory plan: a budget' "$T/f.out")"; ok budget_agreed; fi

echo "[ RUN      ] bad_batch"
t0=$(date +%s)
$MPI -np 2 "$ST" $MLP --micro-batch 32 >"$T/f.out" 2>&1
rc=$?
# every rank refuses it: rank 0 alone says so, once
[ "$(grep -c '^streamtrain: ' "$T/f.out")" = 1 ] || rc=0
expect_job_fail bad_batch 30 "rank 0: --batch 32 over 2 ranks is 16 a rank, not a multiple of --micro-batch 32: --batch must be a multiple of 2 x 32 = 64 (the same on every rank)"

echo "[ RUN      ] sigterm_saves"
t0=$(date +%s)
$MPI -np 2 "$ST" $LONG --save "$T/t.ckpt" >"$T/f.out" 2>&1 &
job=$!
# signal only once the ranks have their handlers (installed before the
# "job:" line; a fixed sleep raced a slow start), then let it train a bit
for _ in $(seq 300); do grep -q '^job: ' "$T/f.out" 2>/dev/null && break; sleep 0.1; done
sleep 1
kill -TERM $job
wait $job; rc=$?
# The checkpoint is the evidence: only the stop path writes it (1000
# epochs take far longer than this job ran). Rank 0 also prints "saved
# PATH", but mpirun, aborting on its SIGTERM, may drop the ranks' last
# lines (seen on the AMD VM in 2 runs of 4, with the checkpoint written).
if [ -s "$T/t.ckpt" ] && "$CMP" --compare "$T/t.ckpt" "$T/t.ckpt" 0 >/dev/null; then
    grep -q "^saved $T/t.ckpt" "$T/f.out" ||
        echo "    (mpirun dropped rank 0's 'saved' line while aborting)"
    expect_job_fail sigterm_saves 30 "job: 2 ranks"
else
    bad sigterm_saves "no checkpoint: $(tail -3 "$T/f.out")"
fi

echo "[ RUN      ] two_hosts"
# two network namespaces are the two hosts; the agent plays ssh
cat >"$T/agent.sh" <<'EOF'
#!/bin/sh
host=$1; shift
case "$host" in
    10.77.9.1) ns=st_dist_a ;;
    10.77.9.2) ns=st_dist_b ;;
    *) echo "agent: unknown host $host" >&2; exit 1 ;;
esac
exec ip netns exec "$ns" unshare --uts sh -c "hostname $ns; $*"
EOF
chmod +x "$T/agent.sh"
if ip netns add st_dist_a 2>/dev/null && ip netns add st_dist_b 2>/dev/null &&
    NS_UP=1 && ip link add st_dist_va type veth peer name st_dist_vb &&
    ip link set st_dist_va netns st_dist_a && ip link set st_dist_vb netns st_dist_b &&
    ip -n st_dist_a addr add 10.77.9.1/24 dev st_dist_va &&
    ip -n st_dist_b addr add 10.77.9.2/24 dev st_dist_vb &&
    ip -n st_dist_a link set st_dist_va up && ip -n st_dist_b link set st_dist_vb up &&
    ip -n st_dist_a link set lo up && ip -n st_dist_b link set lo up; then
    NET="--mca btl tcp,self --mca oob_tcp_if_include 10.77.9.0/24 --mca btl_tcp_if_include 10.77.9.0/24"
    ip netns exec st_dist_a unshare --uts sh -c "hostname st_dist_a; $MPI \
        --host 10.77.9.1,10.77.9.2 -np 2 --mca plm_rsh_agent $T/agent.sh $NET \
        $ST $MLP --save $T/h.ckpt" >"$T/h.out" 2>&1
    if grep -q "job: 2 ranks (1 on this host)" "$T/h.out"; then
        compare two_hosts "$T/m1.ckpt" "$T/h.ckpt" 1e-5
    else
        bad two_hosts "$(tail -5 "$T/h.out")"
    fi
else
    # no namespaces here (not root?): TCP between two local ranks instead
    echo "    network namespaces unavailable: --mca btl tcp,self on one host"
    $MPI -np 2 --mca btl tcp,self "$ST" $MLP --save "$T/h.ckpt" >"$T/h.out" 2>&1 &&
        compare two_hosts "$T/m1.ckpt" "$T/h.ckpt" 1e-5 || bad two_hosts "$(tail -5 "$T/h.out")"
fi

finish
