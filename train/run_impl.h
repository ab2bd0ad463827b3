/* train/run_impl.h — internal to train/run*.c: the state of one run and
 * the functions its files share (run.c: setup and teardown; run_loop.c:
 * the data path, logging, epochs and evaluation; run_dist.c: the job's
 * agreement checks and summed statistics).
 *
 * defines: run, held, tally, run__now_s, run__drain, run__save,
 *          run__epoch, run__eval_pass, run__check_job, run__sum_tally,
 *          run__stop_agreed, run__agree_budget, run__eval_at_stop
 */
#ifndef ST_TRAIN_RUN_IMPL_H
#define ST_TRAIN_RUN_IMPL_H

#include <time.h>

#include "datasets/manifest.h"
#include "loader/loader.h"
#include "train/dist.h"
#include "train/metrics.h"
#include "train/run.h"

/* A batch the loader lent us, remembered until its host memory is free. */
typedef struct held {
    loader *l;
    loader_batch b;
} held;

/* Sums over a log interval or an epoch. */
typedef struct tally {
    double loss_sum;
    long long correct, count;
} tally;

typedef struct run {
    const run_config *cfg;
    FILE *out;
    gpu_device *dev;                /* owned */
    trainer *t;                     /* owned */
    loader *train, *eval;           /* owned; eval may be NULL */
    metrics *mx;                    /* owned, may be NULL */
    ring_allocator alloc;           /* pinned (CUDA) host memory for rings */
    held *train_held, *eval_held;   /* (slots) indexed by ring slot */
    uint32_t slots;
    char eval_split[MANIFEST_NAME_MAX];
    transform_pair tf;               /* the splits' transforms */
    uint64_t bpe;                   /* training batches per epoch */
    uint64_t train_n;               /* samples in the train split */
    uint64_t start_epoch, start_batch;
    uint64_t stream_seed;           /* --seed, or the checkpoint's */
    double t_start;
    double train_s;                 /* seconds inside training epochs */
    uint64_t train_samples;
    /* log interval */
    double iv_t, iv_wait;
    uint64_t iv_samples;
    tally epoch_tally;
    size_t mem_epoch1;              /* device memory in use after epoch 1 */
    int stopped;                    /* max_steps reached */
    const dist_job *job;            /* cfg->job, or solo */
    dist_job solo;                  /* a 1-rank job */
    uint64_t iv_step0;              /* step at the interval's start */
    double iv_comm0;                /* all-reduce seconds then */
    uint64_t synced_step;           /* step of the last BN state average
                                       (UINT64_MAX: none) */
    uint64_t eval_step;             /* step of the last evaluation
                                       (UINT64_MAX: none) */
} run;

static inline double run__now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int run__drain(run *r, st_error *err);
int run__save(run *r, st_error *err);
int run__epoch(run *r, uint64_t epoch, run_result *res, st_error *err);
int run__eval_pass(run *r, double *loss, double *acc, st_error *err);
/* --max-steps reached after the last evaluation: evaluates the final
 * weights (the ranks' mean BN statistics), prints them and logs an "eval"
 * metrics row, so that the run reports the model it ends with rather than
 * an older epoch's, or nothing. */
int run__eval_at_stop(run *r, run_result *res, st_error *err);

/* run_dist.c */
/* Averages the BN running statistics over the ranks, once per step. */
int run__sync_state(run *r, st_error *err);
/* On several ranks: *budget (this rank's --device-mem, or its auto
 * budget) becomes one budget every rank can hold, so that all plan the
 * same micro-batch: under auto on the CPU backend each rank's share of
 * its host (its ranks allocate from one memory), then the least over the
 * ranks. */
int run__agree_budget(run *r, size_t *budget, st_error *err);
/* Refuses ranks that disagree on the configuration or the weights. */
int run__check_job(run *r, const model_spec *spec, st_error *err);
/* t = the sum over ranks (in rank order). */
int run__sum_tally(run *r, tally *t, const char *what, st_error *err);
/* *stop = 1 on every rank when it is set on any. */
int run__stop_agreed(run *r, int *stop, st_error *err);
/* Over an interval of secs and steps: t summed over ranks, row's
 * loader_wait_pct the max, row's world and all-reduce figures (since
 * *comm0, which moves to now). */
int run__global(run *r, tally *t, metrics_row *row, double secs,
                uint64_t steps, double *comm0, st_error *err);

#endif
