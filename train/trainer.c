/* train/trainer.c — setup from the memory plan, the training and eval
 * steps, statistics and checkpoints (contract in train/trainer.h).
 */
#include "train/trainer.h"

#include <stdlib.h>
#include <string.h>

#include "train/dist.h"
#include "train/grad_sync.h"

struct trainer {
    gpu_device *d;             /* borrowed */
    trainer_config cfg;
    model *m;                  /* owned */
    plan pl;
    prefetch *pf;              /* owned */
    void *arena;               /* owned by the device */
    float *state;              /* (S) device, optimizer state */
    size_t nstate;
    gpu_loss_stats *stats;     /* (2) device: [0] train, [1] eval */
    uint64_t step;
    float *host_ps;            /* (P + S + R) host staging, owned */
    uint8_t *ckpt_buf;         /* (ckpt_file_bytes) host staging, owned */
    size_t ckpt_cap;
    int local_batch;           /* B / world */
    grad_sync *gs;             /* owned */
    uint64_t init_hash;        /* of the initial weights */
};

/* The backward hook of the step's last micro-batch. */
typedef struct hook_ctx {
    grad_sync *gs;
    st_error *err;
    int failed;         /* the all-reduce failed (err filled) */
} hook_ctx;

static int on_layer_done(void *ctx, int layer)
{
    hook_ctx *h = ctx;
    int rc = grad_sync_layer_done(h->gs, layer, h->err);
    if (rc < 0) h->failed = 1;
    return rc;
}

void trainer_config_init(trainer_config *c)
{
    memset(c, 0, sizeof *c);
    optim_config_init(&c->optim, OPTIM_SGD);
    sched_config_init(&c->sched);
    c->batch = 128;
    c->world = 1;
    c->bucket_bytes = (size_t)25 << 20;
    c->dist_timeout_s = 60;
    c->depth = 2;
    c->seed = 1;
    c->model.in_scale = 1.0f / 255.0f;
}

const plan *trainer_plan(const trainer *t) { return &t->pl; }
model *trainer_model(trainer *t) { return t->m; }
prefetch *trainer_prefetch(trainer *t) { return t->pf; }
gpu_device *trainer_device(trainer *t) { return t->d; }
uint64_t trainer_step(const trainer *t) { return t->step; }
float trainer_lr(const trainer *t) { return sched_lr(&t->cfg.sched, t->step); }

/* Points everything into the arena following the plan's offsets. */
static int bind_arena(trainer *t, st_error *err)
{
    uint8_t *a = t->arena;
    const plan_item *it = t->pl.items;
    model_mem mem = {
        .params = (float *)(a + it[PLAN_WEIGHTS].offset),
        .grads = (float *)(a + it[PLAN_GRADS].offset),
        .state = (float *)(a + it[PLAN_STATE].offset),
        .acts = (float *)(a + it[PLAN_ACTS].offset),
        .scratch = (float *)(a + it[PLAN_SCRATCH].offset),
        .work = (float *)(a + it[PLAN_LOWER].offset),
    };
    model_bind_mem(t->m, &mem, t->pl.micro_batch);
    t->state = (float *)(a + it[PLAN_OPTIM].offset);
    t->stats = (gpu_loss_stats *)(a + it[PLAN_STATS].offset);
    if (it[PLAN_WORKSPACE].bytes &&
        gpu_device_set_workspace(t->d, a + it[PLAN_WORKSPACE].offset,
                                 it[PLAN_WORKSPACE].bytes) < 0)
        return gpu_device_check(t->d, err);
    return prefetch_create(&t->pf, t->d, t->cfg.depth, t->local_batch,
                           (size_t)model_in_size(t->m),
                           a + it[PLAN_BATCHES].offset,
                           it[PLAN_BATCHES].bytes, err);
}

static int init_weights(trainer *t, st_error *err)
{
    size_t np = model_param_count(t->m), nr = model_state_count(t->m);
    float *hr = t->host_ps + np + t->nstate;
    model_init_params(t->m, t->cfg.seed, t->host_ps);
    model_init_state(t->m, hr);
    t->init_hash = dist_hash(t->host_ps, np * sizeof(float));
    /* the arena starts zeroed: gradients and optimizer state are 0 */
    if (gpu_to_device(t->d, model_params(t->m), t->host_ps,
                      np * sizeof(float)) < 0 ||
        (nr && gpu_to_device(t->d, model_state(t->m), hr,
                             nr * sizeof(float)) < 0))
        return gpu_device_check(t->d, err);
    return 0;
}

static int setup(trainer *t, st_error *err)
{
    const trainer_config *c = &t->cfg;
    ST_TRY(optim_validate(&c->optim, err));
    ST_TRY(sched_validate(&c->sched, err));
    ST_TRY(model_create(&t->m, &c->model, err));
    if (c->world < 1 || c->rank < 0 || c->rank >= c->world ||
        c->batch % c->world != 0)
        return st_seterr(err, ST_EINVAL, "trainer: --batch %d over %d ranks "
                         "(rank %d): the batch must be a multiple of the "
                         "ranks", c->batch, c->world, c->rank);
    t->local_batch = c->batch / c->world;
    if (c->micro_batch && t->local_batch % c->micro_batch)
        return st_seterr(err, ST_EINVAL, "--batch %d over %d ranks is %d a "
                         "rank, not a multiple of --micro-batch %d: --batch "
                         "must be a multiple of %d x %d = %d", c->batch,
                         c->world, t->local_batch, c->micro_batch, c->world,
                         c->micro_batch, c->world * c->micro_batch);
    plan_env env = {.unified = gpu_device_unified(t->d),
                    .workspace = gpu_device_workspace_bytes(t->d),
                    .depth = c->depth};
    ST_TRY(plan_choose(&t->pl, t->m, c->optim.kind, &env, t->local_batch,
                       c->micro_batch, c->budget, err));
    size_t np = model_param_count(t->m), nr = model_state_count(t->m);
    t->nstate = optim_state_floats(c->optim.kind, np);
    ckpt_meta meta;
    ckpt_meta_from_model(&meta, t->m, c->optim.kind, t->nstate);
    t->ckpt_cap = ckpt_file_bytes(&meta);
    t->host_ps = malloc((np + t->nstate + nr + 1) * sizeof(float));
    t->ckpt_buf = malloc(t->ckpt_cap);
    if (t->host_ps == NULL || t->ckpt_buf == NULL)
        return st_seterr(err, ST_ENOMEM, "trainer: host staging of %zu bytes",
                         t->ckpt_cap);
    ST_TRY(gpu_arena_alloc(t->d, t->pl.total, &t->arena, err));
    ST_TRY(bind_arena(t, err));
    ST_TRY(grad_sync_create(&t->gs, t->d, t->m, c->rank, c->world,
                            c->bucket_bytes, c->dist_timeout_s, err));
    return init_weights(t, err);
}

int trainer_create(trainer **out, gpu_device *d, const trainer_config *cfg,
                   st_error *err)
{
    *out = NULL;
    trainer *t = calloc(1, sizeof *t);
    if (t == NULL) return st_seterr(err, ST_ENOMEM, "trainer: out of memory");
    t->d = d;
    t->cfg = *cfg;
    int rc = setup(t, err);
    if (rc < 0) {
        trainer_destroy(t);
        return rc;
    }
    *out = t;
    return 0;
}

void trainer_destroy(trainer *t)
{
    if (t == NULL) return;
    grad_sync_destroy(t->gs);
    prefetch_destroy(t->pf);
    free(t->ckpt_buf);
    free(t->host_ps);
    model_destroy(t->m);
    free(t);
}

int trainer_train_batch(trainer *t, const prefetch_batch *b, st_error *err)
{
    return trainer_train_step(t, b, b->n, err);
}

int trainer_train_step(trainer *t, const prefetch_batch *b, int global_n,
                       st_error *err)
{
    int n = b ? b->n : 0, mb = t->pl.micro_batch, in = model_in_size(t->m);
    if (n < 0 || n > t->local_batch || global_n < 1 || global_n < n ||
        (n == 0 && t->cfg.world == 1))
        return st_seterr(err, ST_EINVAL, "train batch of %d (of %d) outside "
                         "1..%d", n, global_n, t->local_batch);
    float scale = 1.0f / (float)global_n;
    hook_ctx h = {t->gs, err, 0};
    int rc = 0;
    for (int off = 0; off < n && rc == 0; off += mb) {
        int rows = n - off < mb ? n - off : mb, last = off + rows >= n;
        if (model_forward(t->m, t->d, b->pixels + (size_t)off * in, rows) < 0)
            break;
        rc = model_backward_hook(t->m, t->d, b->labels + off, rows, scale,
                                 &t->stats[0], off > 0,
                                 last ? on_layer_done : NULL, &h);
    }
    if (h.failed) return rc;
    if (n == 0 && gpu_zero(t->d, model_grads(t->m),
                           model_param_count(t->m) * sizeof(float)) < 0)
        return gpu_device_check(t->d, err);
    ST_TRY(gpu_device_check(t->d, err));
    ST_TRY(grad_sync_all(t->gs, err));
    ST_TRY(grad_sync_finish(t->gs, err));
    float lr = sched_lr(&t->cfg.sched, t->step);
    optim_step(&t->cfg.optim, t->d, model_params(t->m), model_grads(t->m),
               t->state, model_param_count(t->m), model_weight_count(t->m), lr,
               t->step + 1);
    ST_TRY(gpu_device_check(t->d, err));
    t->step++;
    return 0;
}

int trainer_sync_state(trainer *t, st_error *err)
{
    return grad_sync_state(t->gs, model_state(t->m), model_state_count(t->m),
                           err);
}

uint64_t trainer_init_hash(const trainer *t) { return t->init_hash; }
int trainer_comm_buckets(const trainer *t) { return grad_sync_buckets(t->gs); }
double trainer_comm_seconds(const trainer *t)
{
    return grad_sync_seconds(t->gs);
}

int trainer_eval_batch(trainer *t, const prefetch_batch *b, st_error *err)
{
    int n = b->n, mb = t->pl.micro_batch, in = model_in_size(t->m);
    if (n < 1 || n > t->local_batch)
        return st_seterr(err, ST_EINVAL, "eval batch of %d outside 1..%d", n,
                         t->local_batch);
    for (int off = 0; off < n; off += mb) {
        int rows = n - off < mb ? n - off : mb;
        if (model_eval(t->m, t->d, b->pixels + (size_t)off * in,
                       b->labels + off, rows, &t->stats[1]) < 0)
            break;
    }
    return gpu_device_check(t->d, err);
}

int trainer_read_stats(trainer *t, int eval, int reset, gpu_loss_stats *out,
                       st_error *err)
{
    gpu_loss_stats *s = &t->stats[eval ? 1 : 0];
    ST_TRY(grad_sync_wait(t->gs, err)); /* a dead rank fails, not hangs */
    if (gpu_to_host(t->d, out, s, sizeof *out) < 0 ||
        (reset && gpu_zero(t->d, s, sizeof *s) < 0))
        return gpu_device_check(t->d, err);
    if (out->bad_labels)
        return st_seterr(err, ST_EFORMAT, "%lld label%s outside 0..%d in the "
                         "%s data", out->bad_labels,
                         out->bad_labels == 1 ? "" : "s",
                         model_classes(t->m) - 1, eval ? "eval" : "train");
    return 0;
}

int trainer_get_params(trainer *t, float *params, float *state, st_error *err)
{
    size_t np = model_param_count(t->m);
    ST_TRY(grad_sync_wait(t->gs, err));
    if ((params && gpu_to_host(t->d, params, model_params(t->m),
                               np * sizeof(float)) < 0) ||
        (state && gpu_to_host(t->d, state, t->state,
                              t->nstate * sizeof(float)) < 0))
        return gpu_device_check(t->d, err);
    return 0;
}

int trainer_get_model_state(trainer *t, float *mstate, st_error *err)
{
    size_t nr = model_state_count(t->m);
    if (nr && gpu_to_host(t->d, mstate, model_state(t->m),
                          nr * sizeof(float)) < 0)
        return gpu_device_check(t->d, err);
    return 0;
}

int trainer_save(trainer *t, const char *path, const trainer_stream *s,
                 st_error *err)
{
    size_t np = model_param_count(t->m);
    float *hr = t->host_ps + np + t->nstate;
    ckpt_meta meta;
    ckpt_meta_from_model(&meta, t->m, t->cfg.optim.kind, t->nstate);
    meta.step = t->step;
    meta.seed = s->seed;
    meta.epoch = s->epoch;
    meta.next_batch = s->next_batch;
    meta.batch = (uint64_t)t->cfg.batch;
    meta.samples = s->samples;
    ST_TRY(trainer_get_params(t, t->host_ps, t->host_ps + np, err));
    ST_TRY(trainer_get_model_state(t, hr, err));
    return ckpt_save(path, &meta, t->host_ps, t->host_ps + np, hr,
                     t->ckpt_buf, t->ckpt_cap, err);
}

int trainer_load(trainer *t, const char *path, ckpt_meta *got, st_error *err)
{
    size_t np = model_param_count(t->m), nr = model_state_count(t->m);
    float *hr = t->host_ps + np + t->nstate;
    ckpt_meta want;
    ckpt_meta_from_model(&want, t->m, t->cfg.optim.kind, t->nstate);
    ST_TRY(ckpt_load(path, &want, got, t->host_ps, t->host_ps + np, hr,
                     t->ckpt_buf, t->ckpt_cap, err));
    if (gpu_to_device(t->d, model_params(t->m), t->host_ps,
                      np * sizeof(float)) < 0 ||
        gpu_to_device(t->d, t->state, t->host_ps + np,
                      t->nstate * sizeof(float)) < 0 ||
        (nr && gpu_to_device(t->d, model_state(t->m), hr,
                             nr * sizeof(float)) < 0))
        return gpu_device_check(t->d, err);
    t->step = got->step;
    return 0;
}
