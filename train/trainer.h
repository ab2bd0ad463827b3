/* train/trainer.h — one training run on one device: model + optimizer +
 * schedule + memory plan + prefetcher, and the step that ties them.
 *
 * defines: trainer, trainer_config, trainer_config_init, trainer_create,
 *          trainer_destroy, trainer_train_batch, trainer_eval_batch,
 *          trainer_read_stats, trainer_get_params,
 *          trainer_get_model_state, trainer_save, trainer_load, ...
 *
 * trainer_create builds the memory plan (lowering the micro-batch under the
 * budget when needed), makes the one arena allocation, binds the model
 * into it, initializes the weights from the seed and creates the
 * prefetcher over the plan's batch buffers. After that nothing is
 * allocated, on the device or the host, until trainer_destroy.
 *
 * A training step (trainer_train_step) on this rank's n <= B/w samples of
 * a global batch of N samples runs ceil(n/m) micro-batches of m: forward,
 * softmax cross-entropy with its gradient scaled by 1/N, backward with the
 * gradients of micro-batch k > 0 added to those of the earlier ones; on
 * the last micro-batch the gradient buckets are summed over the ranks as
 * backward reaches them (train/grad_sync.h); then one optimizer step at
 * the schedule's learning rate. The sum of all micro-batch gradients of
 * all ranks is the global batch's mean gradient, so the step equals one
 * process's full-batch step up to float rounding (and batch norm's
 * per-micro-batch statistics, train/model.h).
 *
 * On CUDA the calls queue work and return; trainer_read_stats and the
 * checkpoint functions synchronize.
 */
#ifndef ST_TRAIN_TRAINER_H
#define ST_TRAIN_TRAINER_H

#include <stddef.h>
#include <stdint.h>

#include "datasets/error.h"
#include "gpu/device.h"
#include "gpu/prefetch.h"
#include "train/ckpt.h"
#include "train/model.h"
#include "train/optim.h"
#include "train/plan.h"

typedef struct trainer trainer;

typedef struct trainer_config {
    model_spec model;
    optim_config optim;
    sched_config sched;
    int batch;          /* B, effective (global) batch (128) */
    int micro_batch;    /* m, 0 = B/world; B/world must be a multiple */
    int rank, world;    /* the job (train/dist.h); world 1: alone */
    size_t bucket_bytes;/* gradient bucket size (25 MB, as DDP) */
    double dist_timeout_s; /* deadline of a step's all-reduce (60) */
    int depth;          /* D device batch buffers (2) */
    size_t budget;      /* device bytes for the plan, 0 = no limit */
    uint64_t seed;      /* weight init */
} trainer_config;

/* Defaults: SGD momentum 0.9, lr 0.05 constant, B 128, D 2, seed 1; the
 * model spec is left for the caller (shape from the pack). */
void trainer_config_init(trainer_config *c);

/* @return 0, ST_EINVAL (config), ST_ENOMEM (plan does not fit even at
 *         micro-batch 1, or the arena allocation failed), ST_EDEVICE. */
int trainer_create(trainer **out, gpu_device *d, const trainer_config *cfg,
                   st_error *err);
void trainer_destroy(trainer *t); /* accepts NULL; the device stays */

const plan *trainer_plan(const trainer *t);
model *trainer_model(trainer *t);
prefetch *trainer_prefetch(trainer *t);
gpu_device *trainer_device(trainer *t);
uint64_t trainer_step(const trainer *t);     /* optimizer steps taken */
float trainer_lr(const trainer *t);          /* lr of the next step */

/* One optimizer step over batch b (pixels (n, in) uint8, labels (n)) of a
 * 1-rank job: trainer_train_step(t, b, b->n).
 * @return 0 or the device error. */
int trainer_train_batch(trainer *t, const prefetch_batch *b, st_error *err);
/* One optimizer step over this rank's part b of a global batch of
 * global_n samples (b NULL or b->n 0: this rank has none of them, and
 * still takes part in the gradient sum with zeros).
 * @return 0, the device error, or the all-reduce's (ST_ETIMEDOUT). */
int trainer_train_step(trainer *t, const prefetch_batch *b, int global_n,
                       st_error *err);
/* Averages the model state (BN running statistics) over the ranks. */
int trainer_sync_state(trainer *t, st_error *err);
/* Hash of the initial weights (host copy, at create): the ranks check
 * that they agree. */
uint64_t trainer_init_hash(const trainer *t);
/* Gradient buckets, and host seconds spent in the all-reduce so far. */
int trainer_comm_buckets(const trainer *t);
double trainer_comm_seconds(const trainer *t);
/* Loss/accuracy statistics of b, no gradients, no step. */
int trainer_eval_batch(trainer *t, const prefetch_batch *b, st_error *err);

/* Reads (and with reset=1 zeroes) the train (eval=0) or eval (eval=1)
 * statistics accumulated since the last reset. Synchronizes.
 * @return 0, ST_EDEVICE, or ST_EFORMAT when a label was out of range. */
int trainer_read_stats(trainer *t, int eval, int reset, gpu_loss_stats *out,
                       st_error *err);

/* Host copies of the parameters (P floats) and optimizer state (S floats)
 * for tests and checkpoints. Synchronizes. */
int trainer_get_params(trainer *t, float *params, float *state,
                       st_error *err);

/* Host copy of the model state (R floats: BN running statistics).
 * Synchronizes. */
int trainer_get_model_state(trainer *t, float *mstate, st_error *err);

/* Where the sample stream stands, saved with the weights. */
typedef struct trainer_stream {
    uint64_t seed, epoch, next_batch; /* the loader's position */
    uint64_t samples;                 /* train split size */
} trainer_stream;

/* Writes a checkpoint (architecture, weights, optimizer state, BN running
 * statistics, step, the stream position and the effective batch it counts
 * in) atomically, through staging
 * buffers made at create. @return 0 or a ckpt_save / device error. */
int trainer_save(trainer *t, const char *path, const trainer_stream *s,
                 st_error *err);
/* Loads a checkpoint of this model and optimizer; *got receives its step
 * and loader position. @return 0 or a ckpt_load / device error. */
int trainer_load(trainer *t, const char *path, ckpt_meta *got, st_error *err);

#endif
