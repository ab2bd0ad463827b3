/* train/optim.c — SGD (momentum, Nesterov) and AdamW steps over the
 * parameter block, and the learning-rate schedules.
 *
 * A step is two device calls: the decayed weights, then the biases with
 * weight decay 0, both on the whole contiguous block (no per-tensor loop).
 */
#include "train/optim.h"

#include <math.h>
#include <string.h>

void optim_config_init(optim_config *c, optim_kind kind)
{
    memset(c, 0, sizeof *c);
    c->kind = kind;
    c->momentum = 0.9f;
    c->beta1 = 0.9f;
    c->beta2 = 0.999f;
    c->eps = 1e-8f;
    c->weight_decay = kind == OPTIM_ADAMW ? 0.01f : 0.0f;
}

int optim_validate(const optim_config *c, st_error *err)
{
    if (c->kind != OPTIM_SGD && c->kind != OPTIM_ADAMW)
        return st_seterr(err, ST_EINVAL, "optimizer %d unknown", c->kind);
    if (!(c->momentum >= 0.0f && c->momentum < 1.0f))
        return st_seterr(err, ST_EINVAL, "--momentum %g outside [0, 1)",
                         c->momentum);
    if (c->nesterov && c->kind == OPTIM_SGD && c->momentum == 0.0f)
        return st_seterr(err, ST_EINVAL, "--nesterov needs --momentum > 0");
    if (!(c->beta1 >= 0.0f && c->beta1 < 1.0f) ||
        !(c->beta2 >= 0.0f && c->beta2 < 1.0f))
        return st_seterr(err, ST_EINVAL, "AdamW betas %g, %g outside [0, 1)",
                         c->beta1, c->beta2);
    if (!(c->eps > 0.0f))
        return st_seterr(err, ST_EINVAL, "AdamW eps %g must be > 0", c->eps);
    if (!(c->weight_decay >= 0.0f && c->weight_decay < 1.0f))
        return st_seterr(err, ST_EINVAL, "--weight-decay %g outside [0, 1)",
                         c->weight_decay);
    return 0;
}

size_t optim_state_floats(optim_kind kind, size_t nparams)
{
    return kind == OPTIM_ADAMW ? 2 * nparams : nparams;
}

int optim_step(const optim_config *c, gpu_device *d, float *params,
               const float *grads, float *state, size_t nparams,
               size_t n_decay, float lr, uint64_t t)
{
    size_t nb = nparams - n_decay;
    if (c->kind == OPTIM_SGD) {
        ST_TRY(gpu_sgd_update(d, params, grads, state, n_decay, lr,
                              c->momentum, c->nesterov, c->weight_decay));
        return gpu_sgd_update(d, params + n_decay, grads + n_decay,
                              state + n_decay, nb, lr, c->momentum,
                              c->nesterov, 0.0f);
    }
    float *m = state, *v = state + nparams;
    /* bias corrections in double: 1 - beta^t loses digits in float */
    float bc1 = (float)(1.0 - pow(c->beta1, (double)t));
    float bc2 = (float)(1.0 - pow(c->beta2, (double)t));
    ST_TRY(gpu_adamw_update(d, params, grads, m, v, n_decay, lr, c->beta1,
                            c->beta2, c->eps, c->weight_decay, bc1, bc2));
    return gpu_adamw_update(d, params + n_decay, grads + n_decay, m + n_decay,
                            v + n_decay, nb, lr, c->beta1, c->beta2, c->eps,
                            0.0f, bc1, bc2);
}

int optim_parse(const char *s)
{
    if (strcmp(s, "sgd") == 0) return OPTIM_SGD;
    if (strcmp(s, "adamw") == 0) return OPTIM_ADAMW;
    return -1;
}

const char *optim_name(optim_kind k)
{
    return k == OPTIM_SGD ? "sgd" : k == OPTIM_ADAMW ? "adamw" : "?";
}

/* ---- schedules ------------------------------------------------------- */

void sched_config_init(sched_config *s)
{
    memset(s, 0, sizeof *s);
    s->kind = SCHED_CONSTANT;
    s->lr = 0.05f;
    s->step_size = 1;
    s->gamma = 0.1f;
}

int sched_validate(const sched_config *s, st_error *err)
{
    if (s->kind != SCHED_CONSTANT && s->kind != SCHED_STEP &&
        s->kind != SCHED_COSINE)
        return st_seterr(err, ST_EINVAL, "schedule %d unknown", s->kind);
    if (!(s->lr > 0.0f && s->lr < 1e3f))
        return st_seterr(err, ST_EINVAL, "--lr %g outside (0, 1000)", s->lr);
    if (s->kind == SCHED_STEP && s->step_size < 1)
        return st_seterr(err, ST_EINVAL, "step schedule: step size 0");
    if (!(s->gamma > 0.0f && s->gamma <= 1.0f))
        return st_seterr(err, ST_EINVAL, "step schedule: gamma %g outside "
                         "(0, 1]", s->gamma);
    if (!(s->min_lr >= 0.0f && s->min_lr <= s->lr))
        return st_seterr(err, ST_EINVAL, "cosine schedule: min lr %g outside "
                         "[0, lr]", s->min_lr);
    return 0;
}

float sched_lr(const sched_config *s, uint64_t step)
{
    if (step < s->warmup)
        return s->lr * (float)(step + 1) / (float)s->warmup;
    uint64_t k = step - s->warmup;
    switch (s->kind) {
    case SCHED_STEP:
        return s->lr * powf(s->gamma, (float)(k / s->step_size));
    case SCHED_COSINE: {
        uint64_t span = s->total > s->warmup ? s->total - s->warmup : 1;
        double p = k >= span ? 1.0 : (double)k / (double)span;
        return s->min_lr +
               (s->lr - s->min_lr) * (float)(0.5 * (1.0 + cos(M_PI * p)));
    }
    default:
        return s->lr;
    }
}

int sched_parse(const char *s)
{
    if (strcmp(s, "constant") == 0) return SCHED_CONSTANT;
    if (strcmp(s, "step") == 0) return SCHED_STEP;
    if (strcmp(s, "cosine") == 0) return SCHED_COSINE;
    return -1;
}

const char *sched_name(sched_kind k)
{
    switch (k) {
    case SCHED_CONSTANT: return "constant";
    case SCHED_STEP: return "step";
    case SCHED_COSINE: return "cosine";
    default: return "?";
    }
}
