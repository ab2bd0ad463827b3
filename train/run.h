/* train/run.h — one whole training run, as `streamtrain` performs it: the
 * pack's shape, the device, the memory plan, the loaders, the epochs with
 * evaluation, logging, metrics and checkpoints.
 *
 * defines: run_config, run_result, run_config_init, run_train
 *
 * Data path per training step:
 *   loader_next_batch (ring slot, pinned on CUDA)
 *     -> prefetch_submit (H2D on the copy queue; CPU: in place)
 *     -> trainer_train_batch (micro-batches + one optimizer step)
 *     -> prefetch_consumed, and each host batch whose copy is done goes back
 *        to the loader (loader_release).
 * Evaluation uses a second loader on the eval split (file order, opened
 * once, one pass per epoch) through the same prefetcher and buffers.
 * Everything is allocated before the first step.
 *
 * Output: the plan and one plain line per epoch on `out`; with
 * cfg->progress a live line on stderr at every log interval.
 *
 * Several ranks (cfg->job): global batch k of an epoch is split over the
 * ranks (loader/order.h), gradients are summed every step
 * (train/grad_sync.h), BN running statistics averaged at each epoch end,
 * evaluation sharded and its sums added in rank order, statistics global
 * (loader wait: the max over ranks). Checkpoints hold global counters
 * only, so a run resumes at another world size when B allows.
 */
#ifndef ST_TRAIN_RUN_H
#define ST_TRAIN_RUN_H

#include <signal.h>
#include <stdint.h>
#include <stdio.h>

#include "datasets/error.h"
#include "gpu/device.h"
#include "train/dist.h"
#include "train/trainer.h"

/* Input normalization (--normalize). */
typedef enum run_norm {
    RUN_NORM_DEFAULT = 0, /* mlp: none; any other model: auto */
    RUN_NORM_AUTO,        /* the pack's per-channel mean/std (manifest), else
                             0.5/0.5 with a printed note */
    RUN_NORM_NONE,        /* pixel / 255 */
    RUN_NORM_GIVEN,       /* norm_mean / norm_std below */
} run_norm;

typedef struct run_config {
    const char *data;            /* pack directory (required) */
    const char *train_split;     /* "train" */
    const char *eval_split;      /* NULL: "test", else "val", else none;
                                    "none": no evaluation */
    uint32_t image_size;         /* --image-size S (0: none): the default
                                    transforms below at S x S */
    const char *train_transform; /* loader/transform.h's text form; NULL:
                                    'random-resized-crop S flip' with
                                    image_size, else none (a variable-size
                                    pack then needs image_size) */
    const char *eval_transform;  /* NULL: 'center-crop S' with image_size
                                    (S: the training output's side), else
                                    none */
    int epochs;                  /* total epochs, counting resumed ones (5) */
    trainer_config trainer;      /* the model's input shape and classes are
                                    filled from the pack, and its input
                                    normalization from `normalize` */
    run_norm normalize;
    int norm_n;                  /* RUN_NORM_GIVEN: values given (1: all
                                    channels, else one per channel) */
    float norm_mean[4], norm_std[4]; /* RUN_NORM_GIVEN, in [0, 1] units */
    int lr_step_epochs;          /* step schedule: epochs between decays
                                    (0: max(1, epochs/3)) */
    gpu_device_config device;
    int device_mem_auto;         /* budget = gpu_device_auto_budget (1) */
    size_t device_mem;           /* explicit budget when !device_mem_auto;
                                    0: no limit */
    int loader_threads;          /* producers per loader (0: max(1, C/2)) */
    const char *metrics;         /* JSONL path or NULL */
    const char *save;            /* checkpoint path or NULL */
    uint64_t save_every;         /* also save every N steps (0: epochs only) */
    const char *resume;          /* checkpoint to continue from, or NULL */
    int log_every;               /* steps between log rows (50) */
    int plan_only;               /* print the plan and return */
    int progress;                /* live progress line on stderr */
    uint64_t max_steps;          /* stop after this many optimizer steps
                                    in all, saving a checkpoint (0: none) */
    volatile sig_atomic_t *stop; /* set (SIGINT) to stop after this step;
                                    with several ranks, every rank stops
                                    after the step where any saw it */
    const dist_job *job;         /* the ranks (train/dist.h); NULL: one.
                                    With world > 1 every rank runs the
                                    same config on its part of each global
                                    batch; metrics and checkpoints are
                                    written by rank 0 alone, and the
                                    caller gives the others a mute `out`
                                    and no progress */
} run_config;

typedef struct run_result {
    int epochs;                  /* epochs completed, resumed ones included */
    uint64_t steps;              /* optimizer steps, resumed ones included */
    int has_test;
    double test_acc, test_loss;  /* the last evaluation */
    double samples_per_s;        /* training samples / training seconds,
                                    all ranks */
    int micro_batch;             /* the plan's (maybe lowered) micro-batch */
    int stopped;                 /* ended early by max_steps */
} run_result;

/* Defaults: 5 epochs, B 128, the MLP with hidden 512,256 (model arch "";
 * streamtrain's own default model is its --model default), SGD momentum
 * 0.9, lr 0.05 cosine, seed 1, device auto, device-mem auto, log every
 * 50, normalization by model. */
void run_config_init(run_config *c);

/* Runs it. @return 0 (res filled; res->stopped after max_steps), or
 * ST_ECLOSED when *cfg->stop ended it early (either way a checkpoint was
 * saved when cfg->save), or the first error of any module (bad pack, bad
 * checkpoint, plan too large, device). */
int run_train(const run_config *cfg, FILE *out, run_result *res,
              st_error *err);

#endif
