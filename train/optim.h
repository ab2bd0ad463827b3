/* train/optim.h — optimizers and learning-rate schedules.
 *
 * defines: optim_kind, optim_config, optim_config_init, optim_validate,
 *          optim_state_floats, optim_step, optim_parse, optim_name,
 *          sched_kind, sched_config, sched_config_init, sched_validate,
 *          sched_lr, sched_parse, sched_name
 *
 * Optimizer state lives in the arena next to the parameters, in the same
 * order:
 *   SGD    v (P)          momentum buffer
 *   AdamW  m (P) | v (P)  first and second moments
 * Weight decay applies to the first n_decay floats (the weights, see
 * train/model.h) and not to the biases: coupled (L2 added to the gradient)
 * for SGD as in PyTorch's SGD, decoupled for AdamW.
 */
#ifndef ST_TRAIN_OPTIM_H
#define ST_TRAIN_OPTIM_H

#include <stddef.h>
#include <stdint.h>

#include "datasets/error.h"
#include "gpu/device.h"

typedef enum optim_kind { OPTIM_SGD = 1, OPTIM_ADAMW = 2 } optim_kind;

typedef struct optim_config {
    optim_kind kind;
    float momentum;      /* SGD, 0..1 (0.9) */
    int nesterov;        /* SGD, 0/1 */
    float beta1, beta2;  /* AdamW (0.9, 0.999) */
    float eps;           /* AdamW (1e-8) */
    float weight_decay;  /* >= 0 (SGD 0, AdamW 0.01) */
} optim_config;

/* Defaults for kind (weight decay: SGD 0, AdamW 0.01). */
void optim_config_init(optim_config *c, optim_kind kind);
/* @return 0 or ST_EINVAL naming the value out of range. */
int optim_validate(const optim_config *c, st_error *err);
/* Floats of state for P parameters: SGD P, AdamW 2P. */
size_t optim_state_floats(optim_kind kind, size_t nparams);

/* One update of params (P) from grads (P) with state, at learning rate lr;
 * t is the 1-based step number (AdamW's bias correction).
 * @return 0 or the device's error code. */
int optim_step(const optim_config *c, gpu_device *d, float *params,
               const float *grads, float *state, size_t nparams,
               size_t n_decay, float lr, uint64_t t);

/* "sgd" / "adamw" -> kind, -1 when unknown. */
int optim_parse(const char *s);
const char *optim_name(optim_kind k);

/* ---- learning-rate schedules ----------------------------------------- */

typedef enum sched_kind {
    SCHED_CONSTANT = 1,
    SCHED_STEP = 2,    /* lr * gamma^floor(after_warmup / step_size) */
    SCHED_COSINE = 3,  /* min_lr + (lr - min_lr)(1 + cos(pi p))/2 */
} sched_kind;

typedef struct sched_config {
    sched_kind kind;
    float lr;            /* base (peak) rate */
    uint64_t warmup;     /* steps of linear warmup from lr/warmup to lr */
    uint64_t total;      /* optimizer steps of the whole run (cosine) */
    uint64_t step_size;  /* step: steps between decays (>= 1) */
    float gamma;         /* step: decay factor (0.1) */
    float min_lr;        /* cosine: floor (0) */
} sched_config;

void sched_config_init(sched_config *s);
int sched_validate(const sched_config *s, st_error *err);
/* Learning rate of optimizer step `step` (0-based). Pure function. */
float sched_lr(const sched_config *s, uint64_t step);
int sched_parse(const char *s); /* -1 when unknown */
const char *sched_name(sched_kind k);

#endif
