/* train/run_loop.c — the run's loop (see train/run.h): the data path from
 * the loaders through the prefetcher, logging, the training epochs and
 * evaluation.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gpu/prefetch.h"
#include "train/plan.h"
#include "train/run_impl.h"

/* ---- the data path ------------------------------------------------------ */

/* Gives back to the loaders every host batch whose copy has completed. */
static int release_ready(run *r, int wait, st_error *err)
{
    prefetch *pf = trainer_prefetch(r->t);
    void *tag;
    int rc;
    while ((rc = prefetch_poll(pf, wait, &tag, err)) == 1) {
        held *h = tag;
        ST_TRY(loader_release(h->l, &h->b, err));
    }
    return rc;
}

/* Next batch of l on the device: 0, or 1 when this rank's part of it is
 * empty (a last global batch of fewer samples than ranks: db->n = 0,
 * nothing submitted), or ST_EEND at the end of its epoch. *index
 * receives the global batch's number in the epoch. */
static int fetch(run *r, loader *l, held *slots, prefetch_batch *db,
                 uint64_t *index, st_error *err)
{
    loader_batch b;
    st_error e = {0};
    int rc = loader_next_batch(l, &b, &e);
    if (rc == ST_EEND) return ST_EEND;
    if (rc < 0) return st_seterr(err, e.code, "%s", e.msg);
    if (index) *index = b.index;
    if (b.n == 0) {
        memset(db, 0, sizeof *db);
        ST_TRY(loader_release(l, &b, err));
        return 1;
    }
    held *h = &slots[b.slot];
    h->l = l;
    h->b = b;
    return prefetch_submit(trainer_prefetch(r->t), b.pixels, b.labels,
                           (int)b.n, h, db, err);
}

static int consumed(run *r, const prefetch_batch *db, st_error *err)
{
    if (db->n == 0) return 0;
    ST_TRY(prefetch_consumed(trainer_prefetch(r->t), db, err));
    return release_ready(r, 0, err);
}

/* Waits until every host batch is back with its loader. */
int run__drain(run *r, st_error *err)
{
    while (prefetch_pending(trainer_prefetch(r->t)) > 0) {
        int rc = release_ready(r, 1, err);
        if (rc < 0) return rc;
        if (rc == 0 && prefetch_pending(trainer_prefetch(r->t)) > 0)
            return st_seterr(err, ST_EINTERNAL, "run: a batch is still "
                             "held by the prefetcher at the end of a pass");
    }
    return 0;
}

/* ---- logging ------------------------------------------------------------ */

static double wait_s(const run *r)
{
    loader_stats ls;
    loader_get_stats(r->train, &ls);
    return ls.wait_s;
}

static double h2d_gbps(run *r)
{
    prefetch_stats ps;
    prefetch_get_stats(trainer_prefetch(r->t), &ps);
    return ps.copy_s > 0 ? ps.bytes / ps.copy_s / 1e9 : 0.0;
}

static void fill_row(run *r, metrics_row *row, const char *kind,
                     uint64_t epoch)
{
    gpu_mem_stats ms;
    memset(row, 0, sizeof *row);
    gpu_device_mem(r->dev, &ms);
    row->kind = kind;
    row->epoch = epoch;
    row->step = trainer_step(r->t);
    row->elapsed_s = run__now_s() - r->t_start;
    row->lr = trainer_lr(r->t);
    row->h2d_gbps = h2d_gbps(r);
    row->dev_mem_used = ms.used;
    row->dev_mem_peak = ms.peak;
    row->host_rss = metrics_host_rss();
}

/* Reads and resets the device's train statistics into t and *iv. */
static int take_stats(run *r, tally *iv, st_error *err)
{
    gpu_loss_stats st;
    ST_TRY(trainer_read_stats(r->t, 0, 1, &st, err));
    iv->loss_sum = st.loss_sum;
    iv->correct = st.correct;
    iv->count = st.count;
    r->epoch_tally.loss_sum += st.loss_sum;
    r->epoch_tally.correct += st.correct;
    r->epoch_tally.count += st.count;
    return 0;
}

static int log_interval(run *r, uint64_t epoch, uint64_t batch,
                        st_error *err)
{
    tally iv;
    ST_TRY(take_stats(r, &iv, err));
    double t = run__now_s(), w = wait_s(r), dt = t - r->iv_t;
    metrics_row row;
    fill_row(r, &row, "log", epoch + 1);
    row.loader_wait_pct = dt > 0 ? 100.0 * (w - r->iv_wait) / dt : 0;
    ST_TRY(run__global(r, &iv, &row, dt, trainer_step(r->t) - r->iv_step0,
                       &r->iv_comm0, err));
    row.loss = iv.count ? iv.loss_sum / iv.count : NAN;
    row.acc = iv.count ? (double)iv.correct / iv.count : NAN;
    row.samples_per_s = dt > 0 ? iv.count / dt : 0;
    r->iv_t = t;
    r->iv_wait = w;
    r->iv_samples = 0;
    r->iv_step0 = trainer_step(r->t);
    if (r->cfg->progress)
        fprintf(stderr, "\r\033[Kepoch %llu/%d  step %llu/%llu  loss %.4f  "
                "acc %.3f  %.0f samples/s  loader wait %.1f%%",
                (unsigned long long)epoch + 1, r->cfg->epochs,
                (unsigned long long)batch, (unsigned long long)r->bpe,
                row.loss, row.acc, row.samples_per_s, row.loader_wait_pct);
    return metrics_write(r->mx, &row, err);
}

/* ---- epochs --------------------------------------------------------------- */

int run__save(run *r, st_error *err)
{
    if (r->cfg->save == NULL) return 0;
    /* every rank: the BN running statistics saved are the ranks' mean */
    ST_TRY(run__sync_state(r, err));
    if (r->job->rank != 0) return 0; /* rank 0 alone writes */
    loader_state s = loader_get_state(r->train);
    trainer_stream ts = {.seed = s.seed, .epoch = s.epoch,
                         .next_batch = s.batch, .samples = r->train_n};
    return trainer_save(r->t, r->cfg->save, &ts, err);
}

/* ST_ECLOSED when the run must stop now (a signal, or --max-steps
 * reached), else 0. */
static int should_stop(run *r, uint64_t epoch, st_error *err)
{
    const run_config *c = r->cfg;
    uint64_t step = trainer_step(r->t);
    int stop = c->stop && *c->stop;
    ST_TRY(run__stop_agreed(r, &stop, err));
    if (stop)
        return st_seterr(err, ST_ECLOSED, "interrupted at epoch %llu, step "
                         "%llu", (unsigned long long)epoch + 1,
                         (unsigned long long)step);
    if (c->max_steps && step >= c->max_steps) {
        r->stopped = 1;
        return ST_ECLOSED;
    }
    return 0;
}

/* One training epoch; *samples receives how many were trained on. A stop
 * is honoured before the first step and after any step but the epoch's
 * last: that one is followed by the epoch's evaluation and checkpoint
 * first, so that a stopped run never skips an evaluation. */
static int train_epoch(run *r, uint64_t epoch, uint64_t *samples,
                       st_error *err)
{
    const run_config *c = r->cfg;
    uint64_t batch = epoch == r->start_epoch ? r->start_batch : 0;
    prefetch_batch db;
    uint64_t k = 0;
    int rc;
    *samples = 0;
    ST_TRY(should_stop(r, epoch, err));
    while ((rc = fetch(r, r->train, r->train_held, &db, &k, err)) >= 0) {
        /* the global batch's size: B, or the epoch's last, shorter one */
        uint64_t left = r->train_n - k * (uint64_t)c->trainer.batch;
        int gn = left < (uint64_t)c->trainer.batch ? (int)left
                                                    : c->trainer.batch;
        ST_TRY(trainer_train_step(r->t, rc == 1 ? NULL : &db, gn, err));
        ST_TRY(consumed(r, &db, err));
        batch++;
        *samples += (uint64_t)db.n;
        r->iv_samples += (uint64_t)db.n;
        uint64_t step = trainer_step(r->t);
        if (c->log_every > 0 && step % (uint64_t)c->log_every == 0)
            ST_TRY(log_interval(r, epoch, batch, err));
        if (c->save_every && step % c->save_every == 0) ST_TRY(run__save(r, err));
        if (batch < r->bpe) ST_TRY(should_stop(r, epoch, err));
    }
    if (rc != ST_EEND) return rc;
    return run__drain(r, err);
}

/* One pass over the eval split. */
int run__eval_pass(run *r, double *loss, double *acc, st_error *err)
{
    prefetch_batch db;
    int rc;
    while ((rc = fetch(r, r->eval, r->eval_held, &db, NULL, err)) >= 0) {
        if (rc == 1) continue; /* none of this batch on this rank */
        ST_TRY(trainer_eval_batch(r->t, &db, err));
        ST_TRY(consumed(r, &db, err));
    }
    if (rc != ST_EEND) return rc;
    ST_TRY(run__drain(r, err));
    gpu_loss_stats st;
    ST_TRY(trainer_read_stats(r->t, 1, 1, &st, err));
    /* every rank's sums, added in rank order: the same numbers at any
     * world size, up to the order of the double additions */
    tally tl = {st.loss_sum, st.correct, st.count};
    ST_TRY(run__sum_tally(r, &tl, "evaluation", err));
    *loss = tl.count ? tl.loss_sum / tl.count : NAN;
    *acc = tl.count ? (double)tl.correct / tl.count : NAN;
    return 0;
}

/* One evaluation of the current weights, into row and res. */
static int evaluate(run *r, metrics_row *row, run_result *res, st_error *err)
{
    ST_TRY(run__eval_pass(r, &row->test_loss, &row->test_acc, err));
    r->eval_step = trainer_step(r->t);
    row->has_test = res->has_test = 1;
    res->test_loss = row->test_loss;
    res->test_acc = row->test_acc;
    return 0;
}

int run__eval_at_stop(run *r, run_result *res, st_error *err)
{
    uint64_t step = trainer_step(r->t);
    if (r->eval == NULL || r->eval_step == step) return 0;
    ST_TRY(run__sync_state(r, err));
    metrics_row row;
    fill_row(r, &row, "eval", (uint64_t)res->epochs + 1);
    ST_TRY(evaluate(r, &row, res, err));
    fprintf(r->out, "eval: test_loss %.4f test_acc %.4f (the weights at step "
            "%llu)\n", row.test_loss, row.test_acc, (unsigned long long)step);
    return metrics_write(r->mx, &row, err);
}

static void print_epoch(run *r, const metrics_row *row, double secs)
{
    char mem[32], peak[32];
    fprintf(r->out, "epoch %llu/%d: loss %.4f acc %.4f", (unsigned long long)
            row->epoch, r->cfg->epochs, row->loss, row->acc);
    if (row->has_test)
        fprintf(r->out, " | test_loss %.4f test_acc %.4f", row->test_loss,
                row->test_acc);
    fprintf(r->out, " | %.2f s, %.0f samples/s, loader wait %.1f%%", secs,
            row->samples_per_s, row->loader_wait_pct);
    if (row->world > 1)
        fprintf(r->out, ", all-reduce %.2f ms/step (%.1f%%)",
                row->allreduce_ms, row->allreduce_pct);
    /* a unified device copies nothing: no H2D figure to show */
    if (!gpu_device_unified(r->dev))
        fprintf(r->out, ", h2d %.2f GB/s", row->h2d_gbps);
    fprintf(r->out, ", device mem %s (peak %s)\n",
            plan_fmt_bytes(row->dev_mem_used, mem, sizeof mem),
            plan_fmt_bytes(row->dev_mem_peak, peak, sizeof peak));
    fflush(r->out);
}

int run__epoch(run *r, uint64_t epoch, run_result *res, st_error *err)
{
    double t0 = run__now_s(), w0 = wait_s(r), comm0 = trainer_comm_seconds(r->t);
    uint64_t n, step0 = trainer_step(r->t);
    r->epoch_tally = (tally){0};
    r->iv_t = t0, r->iv_wait = w0, r->iv_samples = 0;
    r->iv_step0 = step0, r->iv_comm0 = comm0;
    int rc = train_epoch(r, epoch, &n, err);
    if (rc == ST_ECLOSED) { /* stopped mid-epoch: its samples still count */
        r->train_s += run__now_s() - t0;
        /* every rank stops at the same step (the stop flag is agreed):
         * the count can be summed; a failed sum only loses the figure */
        tally all = {0, 0, (long long)n};
        st_error e2 = {0};
        if (run__sum_tally(r, &all, "samples", &e2) == 0) n = (uint64_t)all.count;
        r->train_samples += n;
    }
    if (rc < 0) return rc;
    tally rest;
    ST_TRY(take_stats(r, &rest, err));
    double secs = run__now_s() - t0;
    metrics_row row;
    fill_row(r, &row, "epoch", epoch + 1);
    row.loader_wait_pct = secs > 0 ? 100.0 * (wait_s(r) - w0) / secs : 0;
    tally *et = &r->epoch_tally;
    ST_TRY(run__global(r, et, &row, secs, trainer_step(r->t) - step0, &comm0,
                       err));
    n = (uint64_t)et->count; /* global */
    r->train_s += secs;
    r->train_samples += n;
    row.loss = et->count ? et->loss_sum / et->count : NAN;
    row.acc = et->count ? (double)et->correct / et->count : NAN;
    row.samples_per_s = secs > 0 ? n / secs : 0;
    /* every rank saw its own micro-batches: evaluate and save the mean */
    ST_TRY(run__sync_state(r, err));
    if (r->eval) {
        ST_TRY(evaluate(r, &row, res, err));
        /* read again after eval: CUDA loads kernels lazily, and the eval
         * pass may load some (its last, short batch) on first use; read
         * before it, epoch 1 would look smaller than epoch 2 */
        gpu_mem_stats ms;
        gpu_device_mem(r->dev, &ms);
        row.dev_mem_used = ms.used;
        row.dev_mem_peak = ms.peak;
    }
    if (r->cfg->progress) fprintf(stderr, "\r\033[K");
    print_epoch(r, &row, secs);
    if (epoch == r->start_epoch) r->mem_epoch1 = row.dev_mem_used;
    else if (row.dev_mem_used != r->mem_epoch1)
        fprintf(r->out, "warning: device memory in use changed from %zu to "
                "%zu bytes\n", r->mem_epoch1, row.dev_mem_used);
    ST_TRY(metrics_write(r->mx, &row, err));
    return run__save(r, err);
}

