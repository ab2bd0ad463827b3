/* train/run_dist.c — what a run of several ranks adds (see train/run.h):
 * the start-up agreement on the configuration and the initial weights,
 * the stop flag at step boundaries, and statistics summed over the ranks.
 * With one rank every function is a no-op.
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "train/run_impl.h"

/* The fields every rank must agree on, as text. */
static int job_fields(run *r, const model_spec *spec, dist_field *f)
{
    const run_config *c = r->cfg;
    const trainer_config *t = &c->trainer;
    int n = 0;
#define FIELD(nm, ...) \
    (f[n].name = (nm), snprintf(f[n].value, DIST_FIELD_TEXT, __VA_ARGS__), n++)
    FIELD("--data", "train '%s' %" PRIu64 " samples %dx%dx%d, %d classes, "
          "eval '%s'", c->train_split, r->train_n, spec->in_h, spec->in_w,
          spec->in_c, spec->classes, r->eval_split);
    FIELD("--model", "%s", model_arch(trainer_model(r->t)));
    FIELD("--batch", "%d", t->batch);
    FIELD("--micro-batch", "%d", trainer_plan(r->t)->micro_batch);
    FIELD("--seed", "%" PRIu64, t->seed);
    FIELD("--epochs", "%d", c->epochs);
    FIELD("--lr", "%.9g (%s)", t->sched.lr, sched_name(t->sched.kind));
    FIELD("--optimizer", "%s momentum %.9g wd %.9g", optim_name(t->optim.kind),
          t->optim.momentum, t->optim.weight_decay);
    FIELD("--resume", "%s", c->resume ? c->resume : "(none)");
    FIELD("--max-steps", "%" PRIu64, c->max_steps);
    FIELD("the initial weights (hash)", "%016" PRIx64,
          trainer_init_hash(r->t));
#undef FIELD
    return n;
}

int run__agree_budget(run *r, size_t *budget, st_error *err)
{
    const dist_job *j = r->job;
    if (j->world == 1) return 0;
    size_t own = *budget ? *budget : SIZE_MAX; /* 0: no budget */
    int shared = r->cfg->device_mem_auto && j->local_world > 1 &&
                 gpu_device_kind(r->dev) == GPU_KIND_CPU;
    uint64_t v = shared ? own / (size_t)j->local_world : own;
    ST_TRY(dist_allreduce(j, &v, 1, DIST_U64, DIST_MIN, "--device-mem", err));
    if (v == SIZE_MAX) return 0; /* no rank has a budget */
    *budget = v > 0 ? (size_t)v : 1;
    if (!shared && v == own) return 0; /* nothing changed here */
    char a[32], b[32];
    fprintf(r->out, "memory plan: a budget of %s a rank, the least any of the "
            "%d ranks can hold (rank %d's own: %s", plan_fmt_bytes(*budget, a,
            sizeof a), j->world, j->rank, own == SIZE_MAX ? "none"
            : plan_fmt_bytes(own, b, sizeof b));
    if (shared)
        fprintf(r->out, ", shared by the %d ranks on this host",
                j->local_world);
    fprintf(r->out, ")\n");
    return 0;
}

int run__check_job(run *r, const model_spec *spec, st_error *err)
{
    const dist_job *j = r->job;
    if (j->world == 1) return 0;
    dist_field f[16];
    int n = job_fields(r, spec, f);
    ST_TRY(dist_check_fields(j, f, n, err));
    fprintf(r->out, "job: %d ranks (%d on this host), global batch %d = %d "
            "a rank; ranks agree on the configuration and the initial "
            "weights; %d gradient bucket%s, all-reduce deadline %g s\n",
            j->world, j->local_world, r->cfg->trainer.batch,
            r->cfg->trainer.batch / j->world, trainer_comm_buckets(r->t),
            trainer_comm_buckets(r->t) == 1 ? "" : "s", j->timeout_s);
    return 0;
}

int run__sum_tally(run *r, tally *t, const char *what, st_error *err)
{
    if (r->job->world == 1) return 0;
    double v[3] = {t->loss_sum, (double)t->correct, (double)t->count};
    ST_TRY(dist_allreduce(r->job, v, 3, DIST_F64, DIST_SUM, what, err));
    t->loss_sum = v[0];
    t->correct = (long long)v[1];
    t->count = (long long)v[2];
    return 0;
}

int run__stop_agreed(run *r, int *stop, st_error *err)
{
    if (r->job->world == 1) return 0;
    int64_t v = *stop;
    ST_TRY(dist_allreduce(r->job, &v, 1, DIST_I64, DIST_MAX, "stop flag",
                          err));
    *stop = v != 0;
    return 0;
}

int run__global(run *r, tally *t, metrics_row *row, double secs,
                uint64_t steps, double *comm0, st_error *err)
{
    double now = trainer_comm_seconds(r->t);
    double comm = now - *comm0;
    *comm0 = now;
    row->world = r->job->world;
    if (r->job->world == 1) return 0;
    ST_TRY(run__sum_tally(r, t, "training statistics", err));
    double mx[2] = {row->loader_wait_pct, comm};
    ST_TRY(dist_allreduce(r->job, mx, 2, DIST_F64, DIST_MAX,
                          "training statistics", err));
    row->loader_wait_pct = mx[0];
    row->allreduce_ms = steps ? 1e3 * mx[1] / (double)steps : 0;
    row->allreduce_pct = secs > 0 ? 100.0 * mx[1] / secs : 0;
    return 0;
}

int run__sync_state(run *r, st_error *err)
{
    uint64_t step = trainer_step(r->t);
    if (r->job->world == 1 || r->synced_step == step) return 0;
    ST_TRY(trainer_sync_state(r->t, err));
    r->synced_step = step;
    return 0;
}
