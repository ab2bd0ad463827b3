/* gpu/device.c — the gpu_device handle: backend choice, the sticky error,
 * the one arena block, memory figures, and the thin wrappers that call the
 * backend table (gpu/backend.h).
 *
 * Without ST_HAVE_CUDA the CUDA backend is absent: asking for it reports
 * "built without CUDA" and AUTO falls back to the CPU.
 */
#include "gpu/device.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gpu/backend.h"

struct gpu_device {
    const gpu_backend_ops *ops;
    void *impl;          /* backend state, owned */
    gpu_kind kind;       /* CUDA or CPU, never AUTO */
    st_error err;        /* sticky first failure */
    void *arena;         /* the one block, owned; NULL before alloc */
    size_t arena_bytes;
    size_t peak;         /* max `used` seen by gpu_device_mem */
    char name[160];
};

struct gpu_event {
    void *impl;          /* backend event */
};

void gpu_device_config_init(gpu_device_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->kind = GPU_KIND_AUTO;
}

int gpu_cpu_default_threads(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : (int)n;
}

int gpu_cuda_probe(char *why, size_t why_len)
{
#if defined(ST_HAVE_CUDA) && ST_HAVE_CUDA
    return gpu__cuda_probe(why, why_len);
#else
    if (why && why_len)
        snprintf(why, why_len,
                 "built without CUDA (nvcc not found or make CUDA=0)");
    return 0;
#endif
}

static int pick_backend(const gpu_device_config *cfg, gpu_kind *kind,
                        const gpu_backend_ops **ops, char *note,
                        size_t note_len, st_error *err)
{
    char why[256] = "";
    if (note && note_len) note[0] = '\0';
    if (cfg->kind == GPU_KIND_CPU) {
        *kind = GPU_KIND_CPU;
        *ops = cfg->cpu_staged ? &gpu__cpu_staged_ops : &gpu__cpu_ops;
        return 0;
    }
    int have = gpu_cuda_probe(why, sizeof why);
    if (cfg->kind == GPU_KIND_CUDA && !have)
        return st_seterr(err, ST_EDEVICE, "--device cuda: %s", why);
    if (!have) {
        if (note && note_len)
            snprintf(note, note_len, "device auto: using the CPU; %s",
                     why);
        *kind = GPU_KIND_CPU;
        *ops = &gpu__cpu_ops;
        return 0;
    }
#if defined(ST_HAVE_CUDA) && ST_HAVE_CUDA
    *kind = GPU_KIND_CUDA;
    *ops = &gpu__cuda_ops;
    return 0;
#else
    return st_seterr(err, ST_EINTERNAL, "CUDA probe succeeded without CUDA");
#endif
}

int gpu_device_create(gpu_device **out, const gpu_device_config *cfg,
                      char *note, size_t note_len, st_error *err)
{
    gpu_device_config defcfg;
    *out = NULL;
    if (cfg == NULL) {
        gpu_device_config_init(&defcfg);
        cfg = &defcfg;
    }
    if (cfg->kind != GPU_KIND_AUTO && cfg->kind != GPU_KIND_CUDA &&
        cfg->kind != GPU_KIND_CPU)
        return st_seterr(err, ST_EINVAL, "device kind %d unknown", cfg->kind);
    if (cfg->cpu_threads < 0 || cfg->cuda_device < 0)
        return st_seterr(err, ST_EINVAL, "device threads/ordinal negative");

    gpu_device *d = calloc(1, sizeof *d);
    if (d == NULL) return st_seterr(err, ST_ENOMEM, "gpu_device: out of memory");
    int rc = pick_backend(cfg, &d->kind, &d->ops, note, note_len, err);
    if (rc < 0) goto fail_dev;
    rc = d->ops->create(&d->impl, cfg, d->name, sizeof d->name, err);
    if (rc < 0) goto fail_dev;
    *out = d;
    return 0;

fail_dev:
    free(d);
    return rc;
}

void gpu_device_destroy(gpu_device *d)
{
    if (d == NULL) return;
    if (d->arena) {
        d->ops->sync(d->impl, NULL);
        d->ops->dev_free(d->impl, d->arena);
    }
    d->ops->destroy(d->impl);
    free(d);
}

gpu_kind gpu_device_kind(const gpu_device *d) { return d->kind; }
void *gpu__device_impl(gpu_device *d) { return d->impl; }
const char *gpu_device_name(const gpu_device *d) { return d->name; }
int gpu_device_unified(const gpu_device *d) { return d->ops->unified; }
const st_error *gpu_device_err(const gpu_device *d) { return &d->err; }

int gpu_device_check(const gpu_device *d, st_error *err)
{
    if (d->err.code == 0) return 0;
    return st_seterr(err, d->err.code, "%s", d->err.msg);
}

size_t gpu_device_workspace_bytes(const gpu_device *d)
{
    return d->ops->workspace_bytes(d->impl);
}

int gpu_device_mem(gpu_device *d, gpu_mem_stats *out)
{
    memset(out, 0, sizeof *out);
    size_t fr = 0, tot = 0;
    int rc = d->ops->mem_info(d->impl, &fr, &tot, &d->err);
    if (rc < 0) return rc;
    out->arena = d->arena_bytes;
    out->total = tot;
    out->free = fr;
    out->used = d->kind == GPU_KIND_CPU ? d->arena_bytes
                                         : (tot > fr ? tot - fr : 0);
    if (out->used > d->peak) d->peak = out->used;
    out->peak = d->peak;
    return 0;
}

size_t gpu_device_auto_budget(gpu_device *d, size_t *free_b, size_t *margin_b)
{
    size_t fr = 0, tot = 0, margin = 0;
    if (d->ops->mem_info(d->impl, &fr, &tot, NULL) < 0) fr = 0;
    if (d->kind == GPU_KIND_CPU) {
        margin = fr - fr / 2;
    } else {
        margin = tot / 20;
        if (margin < ((size_t)256 << 20)) margin = (size_t)256 << 20;
    }
    if (free_b) *free_b = fr;
    if (margin_b) *margin_b = margin;
    /* 0 means "no budget" to the plan: with nothing to spare, a 1-byte
     * budget makes it refuse with the numbers instead of failing in
     * cudaMalloc */
    return fr > margin ? fr - margin : 1;
}

int gpu_arena_alloc(gpu_device *d, size_t bytes, void **base, st_error *err)
{
    *base = NULL;
    if (d->arena)
        return st_seterr(err, ST_EINVAL, "device arena already allocated "
                         "(%zu bytes); the plan allows one", d->arena_bytes);
    if (bytes == 0) bytes = 256;
    bytes = (bytes + 255) & ~(size_t)255;
    int rc = d->ops->dev_alloc(d->impl, bytes, &d->arena, err);
    if (rc < 0) return rc;
    d->arena_bytes = bytes;
    *base = d->arena;
    return 0;
}

int gpu_device_set_workspace(gpu_device *d, void *p, size_t bytes)
{
    if (d->err.code) return d->err.code;
    return d->ops->set_workspace(d->impl, p, bytes, &d->err);
}

/* ---- host memory hook ---------------------------------------------- */

void *gpu_host_alloc(size_t bytes, void *ctx)
{
    gpu_device *d = ctx;
    if (d == NULL) return gpu__cpu_ops.host_alloc(bytes);
    return d->ops->host_alloc(bytes);
}

void gpu_host_free(void *p, void *ctx)
{
    gpu_device *d = ctx;
    if (p == NULL) return;
    if (d == NULL) {
        gpu__cpu_ops.host_free(p);
        return;
    }
    /* A copy queued from p may still be in flight when a caller frees early
     * (an error or Ctrl-C stops the run before the prefetcher drained, and
     * run.c closes the loaders before the trainer). Rings are freed once,
     * at shutdown, so waiting for both queues here costs nothing. */
    if (!d->ops->unified) d->ops->sync(d->impl, NULL);
    d->ops->host_free(p);
}

void gpu_host_free_sized(void *p, size_t bytes, void *ctx)
{
    (void)bytes;
    gpu_host_free(p, ctx);
}

/* ---- wrappers: sticky error, then the backend ------------------------ */

#define STICKY(d) do { if ((d)->err.code) return (d)->err.code; } while (0)

int gpu_to_device(gpu_device *d, void *dst, const void *src, size_t bytes)
{
    STICKY(d);
    return d->ops->to_device(d->impl, dst, src, bytes, &d->err);
}

int gpu_to_host(gpu_device *d, void *dst, const void *src, size_t bytes)
{
    STICKY(d);
    return d->ops->to_host(d->impl, dst, src, bytes, &d->err);
}

int gpu_sync(gpu_device *d)
{
    STICKY(d);
    return d->ops->sync(d->impl, &d->err);
}

int gpu_event_create(gpu_device *d, gpu_event **out)
{
    *out = NULL;
    STICKY(d);
    gpu_event *e = calloc(1, sizeof *e);
    if (e == NULL) return st_seterr(&d->err, ST_ENOMEM, "gpu_event: out of memory");
    int rc = d->ops->event_create(d->impl, &e->impl, &d->err);
    if (rc < 0) {
        free(e);
        return rc;
    }
    *out = e;
    return 0;
}

void gpu_event_destroy(gpu_device *d, gpu_event *e)
{
    if (e == NULL) return;
    d->ops->event_destroy(d->impl, e->impl);
    free(e);
}

int gpu_event_record(gpu_device *d, gpu_event *e, gpu_queue q)
{
    STICKY(d);
    return d->ops->event_record(d->impl, e->impl, (int)q, &d->err);
}

int gpu_event_query(gpu_device *d, gpu_event *e)
{
    STICKY(d);
    return d->ops->event_query(d->impl, e->impl, &d->err);
}

int gpu_event_wait_host(gpu_device *d, gpu_event *e)
{
    STICKY(d);
    return d->ops->event_wait_host(d->impl, e->impl, &d->err);
}

int gpu_queue_wait(gpu_device *d, gpu_queue q, gpu_event *e)
{
    STICKY(d);
    return d->ops->queue_wait(d->impl, (int)q, e->impl, &d->err);
}

int gpu_event_elapsed(gpu_device *d, gpu_event *a, gpu_event *b, float *ms)
{
    *ms = 0.0f;
    STICKY(d);
    return d->ops->event_elapsed(d->impl, a->impl, b->impl, ms, &d->err);
}

int gpu_copy_async(gpu_device *d, gpu_queue q, void *dst, const void *src,
                   size_t bytes)
{
    STICKY(d);
    return d->ops->copy_async(d->impl, (int)q, dst, src, bytes, &d->err);
}

int gpu_gemm(gpu_device *d, int tA, int tB, int M, int N, int K, float alpha,
             const float *A, int lda, const float *B, int ldb, float beta,
             float *C, int ldc)
{
    STICKY(d);
    return d->ops->gemm(d->impl, tA, tB, M, N, K, alpha, A, lda, B, ldb, beta,
                        C, ldc, &d->err);
}

int gpu_normalize_u8(gpu_device *d, const uint8_t *x, size_t n, float scale,
                     float shift, float *y)
{
    STICKY(d);
    return d->ops->normalize_u8(d->impl, x, n, scale, shift, y, &d->err);
}

int gpu_bias_act(gpu_device *d, float *y, const float *b, int rows, int cols,
                 int relu)
{
    STICKY(d);
    return d->ops->bias_act(d->impl, y, b, rows, cols, relu, &d->err);
}

int gpu_act_bias_grad(gpu_device *d, float *dy, const float *y, float *db,
                      int rows, int cols, int relu, int accumulate)
{
    STICKY(d);
    return d->ops->act_bias_grad(d->impl, dy, y, db, rows, cols, relu,
                                 accumulate, &d->err);
}

int gpu_softmax_xent(gpu_device *d, const float *logits,
                     const int32_t *labels, int rows, int classes,
                     float grad_scale, float *dlogits, gpu_loss_stats *stats)
{
    STICKY(d);
    return d->ops->softmax_xent(d->impl, logits, labels, rows, classes,
                                grad_scale, dlogits, stats, &d->err);
}

int gpu_sgd_update(gpu_device *d, float *w, const float *g, float *v,
                   size_t n, float lr, float mu, int nesterov, float wd)
{
    STICKY(d);
    return d->ops->sgd_update(d->impl, w, g, v, n, lr, mu, nesterov, wd,
                              &d->err);
}

int gpu_adamw_update(gpu_device *d, float *w, const float *g, float *m,
                     float *v, size_t n, float lr, float b1, float b2,
                     float eps, float wd, float bc1, float bc2)
{
    STICKY(d);
    return d->ops->adamw_update(d->impl, w, g, m, v, n, lr, b1, b2, eps, wd,
                                bc1, bc2, &d->err);
}

int gpu_zero(gpu_device *d, void *p, size_t bytes)
{
    STICKY(d);
    return d->ops->zero(d->impl, p, bytes, &d->err);
}

/* ---- conv-net ops ------------------------------------------------------
 * Each checks the sticky error, then that the backend has the op, then its
 * arguments, so both backends see only valid geometry. */

#define NEED_OP(d, field, opname)                                          \
    do {                                                                   \
        STICKY(d);                                                         \
        if ((d)->ops->field == NULL)                                       \
            return st_seterr(&(d)->err, ST_EDEVICE,                        \
                             "op %s not implemented on this backend (%s)", \
                             opname, (d)->ops->name);                      \
    } while (0)

/* (h + 2p - k) / s + 1, or 0 when the window does not fit. */
static int out_extent(int h, int k, int s, int p)
{
    long long span = (long long)h + 2LL * p - k;
    return span < 0 ? 0 : (int)(span / s + 1);
}

int gpu_conv_geom_init(gpu_conv_geom *g, int n, int h, int w, int c, int kh,
                       int kw, int sh, int sw, int ph, int pw)
{
    *g = (gpu_conv_geom){.n = n, .h = h, .w = w, .c = c, .kh = kh, .kw = kw,
                         .sh = sh, .sw = sw, .ph = ph, .pw = pw};
    if (n < 1 || h < 1 || w < 1 || c < 1 || kh < 1 || kw < 1 || sh < 1 ||
        sw < 1 || ph < 0 || pw < 0)
        return ST_EINVAL;
    g->oh = out_extent(h, kh, sh, ph);
    g->ow = out_extent(w, kw, sw, pw);
    return g->oh > 0 && g->ow > 0 ? 0 : ST_EINVAL;
}

static int check_geom(gpu_device *d, const gpu_conv_geom *g, const char *op,
                      int pool)
{
    gpu_conv_geom t;
    int rc = gpu_conv_geom_init(&t, g->n, g->h, g->w, g->c, g->kh, g->kw,
                                g->sh, g->sw, g->ph, g->pw);
    if (rc == 0 && (t.oh != g->oh || t.ow != g->ow)) rc = ST_EINVAL;
    if (rc == 0 && pool && (2 * g->ph > g->kh || 2 * g->pw > g->kw))
        rc = ST_EINVAL;
    if (rc == 0) return 0;
    return st_seterr(&d->err, ST_EINVAL,
                     "%s: bad geometry: input %dx%dx%dx%d, window %dx%d, "
                     "stride %dx%d, padding %dx%d, output %dx%d", op, g->n,
                     g->h, g->w, g->c, g->kh, g->kw, g->sh, g->sw, g->ph,
                     g->pw, g->oh, g->ow);
}

static int check_dims(gpu_device *d, const char *op, long long a, long long b)
{
    if (a >= 1 && b >= 1) return 0;
    return st_seterr(&d->err, ST_EINVAL, "%s: sizes %lld x %lld (need >= 1)",
                     op, a, b);
}

int gpu_im2col(gpu_device *d, const gpu_conv_geom *g, const float *x,
               float *col)
{
    NEED_OP(d, im2col, "im2col");
    ST_TRY(check_geom(d, g, "im2col", 0));
    return d->ops->im2col(d->impl, g, x, col, &d->err);
}

int gpu_col2im(gpu_device *d, const gpu_conv_geom *g, const float *col,
               float *dx, int accumulate)
{
    NEED_OP(d, col2im, "col2im");
    ST_TRY(check_geom(d, g, "col2im", 0));
    return d->ops->col2im(d->impl, g, col, dx, accumulate, &d->err);
}

static int thin_shape(const gpu_conv_geom *g, int oc)
{
    return (long long)g->kh * g->kw * g->c <= GPU_CONV_THIN_K && oc >= 1 &&
           oc <= GPU_CONV_THIN_OC;
}

int gpu_conv_thin(gpu_device *d, const gpu_conv_geom *g, int oc)
{
    return d->ops->conv_thin_fwd != NULL &&
           d->ops->conv_thin_wgrad != NULL && thin_shape(g, oc);
}

static int check_thin(gpu_device *d, const gpu_conv_geom *g, int oc,
                      const char *op)
{
    ST_TRY(check_geom(d, g, op, 0));
    if (thin_shape(g, oc)) return 0;
    return st_seterr(&d->err, ST_EINVAL, "%s: a %dx%dx%d window into %d "
                     "channels is not thin (need kh*kw*c <= %d, oc <= %d)",
                     op, g->kh, g->kw, g->c, oc, GPU_CONV_THIN_K,
                     GPU_CONV_THIN_OC);
}

int gpu_conv_thin_fwd(gpu_device *d, const gpu_conv_geom *g, const float *x,
                      const float *w, int oc, float *y)
{
    NEED_OP(d, conv_thin_fwd, "conv_thin_fwd");
    ST_TRY(check_thin(d, g, oc, "conv_thin_fwd"));
    return d->ops->conv_thin_fwd(d->impl, g, x, w, oc, y, &d->err);
}

int gpu_conv_thin_wgrad(gpu_device *d, const gpu_conv_geom *g,
                        const float *x, const float *dy, int oc, float beta,
                        float *gw)
{
    NEED_OP(d, conv_thin_wgrad, "conv_thin_wgrad");
    ST_TRY(check_thin(d, g, oc, "conv_thin_wgrad"));
    return d->ops->conv_thin_wgrad(d->impl, g, x, dy, oc, beta, gw, &d->err);
}

int gpu_maxpool_fwd(gpu_device *d, const gpu_conv_geom *g, const float *x,
                    float *y, int32_t *idx)
{
    NEED_OP(d, maxpool_fwd, "maxpool_fwd");
    ST_TRY(check_geom(d, g, "maxpool_fwd", 1));
    return d->ops->maxpool_fwd(d->impl, g, x, y, idx, &d->err);
}

int gpu_maxpool_bwd(gpu_device *d, const gpu_conv_geom *g, const float *dy,
                    const int32_t *idx, float *dx)
{
    NEED_OP(d, maxpool_bwd, "maxpool_bwd");
    ST_TRY(check_geom(d, g, "maxpool_bwd", 1));
    return d->ops->maxpool_bwd(d->impl, g, dy, idx, dx, &d->err);
}

int gpu_avgpool_fwd(gpu_device *d, const float *x, int n, int hw, int c,
                    float *y)
{
    NEED_OP(d, avgpool_fwd, "avgpool_fwd");
    ST_TRY(check_dims(d, "avgpool_fwd", n, (long long)hw * (c >= 1 ? c : 0)));
    return d->ops->avgpool_fwd(d->impl, x, n, hw, c, y, &d->err);
}

int gpu_avgpool_bwd(gpu_device *d, const float *dy, int n, int hw, int c,
                    float *dx)
{
    NEED_OP(d, avgpool_bwd, "avgpool_bwd");
    ST_TRY(check_dims(d, "avgpool_bwd", n, (long long)hw * (c >= 1 ? c : 0)));
    return d->ops->avgpool_bwd(d->impl, dy, n, hw, c, dx, &d->err);
}

int gpu_bn_fwd_train(gpu_device *d, const float *x, int rows, int c,
                     const float *gamma, const float *beta, float eps,
                     float momentum, float *run_mean, float *run_var,
                     float *save_mean, float *save_invstd, int relu,
                     float *y)
{
    NEED_OP(d, bn_fwd_train, "bn_fwd_train");
    ST_TRY(check_dims(d, "bn_fwd_train", rows, c));
    if (rows < 2)
        return st_seterr(&d->err, ST_EINVAL, "bn_fwd_train: 1 value per "
                         "channel: batch statistics need at least 2");
    if (!(eps > 0.0f) || !(momentum >= 0.0f && momentum <= 1.0f))
        return st_seterr(&d->err, ST_EINVAL, "bn_fwd_train: eps %g, "
                         "momentum %g (need eps > 0, momentum in [0, 1])",
                         (double)eps, (double)momentum);
    return d->ops->bn_fwd_train(d->impl, x, rows, c, gamma, beta, eps,
                                momentum, run_mean, run_var, save_mean,
                                save_invstd, relu, y, &d->err);
}

int gpu_bn_fwd_eval(gpu_device *d, const float *x, int rows, int c,
                    const float *gamma, const float *beta, float eps,
                    const float *run_mean, const float *run_var, int relu,
                    float *y)
{
    NEED_OP(d, bn_fwd_eval, "bn_fwd_eval");
    ST_TRY(check_dims(d, "bn_fwd_eval", rows, c));
    return d->ops->bn_fwd_eval(d->impl, x, rows, c, gamma, beta, eps,
                               run_mean, run_var, relu, y, &d->err);
}

int gpu_bn_bwd(gpu_device *d, const float *x, const float *dy, int rows,
               int c, const float *gamma, const float *beta,
               const float *save_mean, const float *save_invstd,
               const float *relu_y, float *dgamma, float *dbeta, float *dx,
               int accumulate)
{
    NEED_OP(d, bn_bwd, "bn_bwd");
    ST_TRY(check_dims(d, "bn_bwd", rows, c));
    return d->ops->bn_bwd(d->impl, x, dy, rows, c, gamma, beta, save_mean,
                          save_invstd, relu_y, dgamma, dbeta, dx, accumulate,
                          &d->err);
}

static int check_act(gpu_device *d, gpu_act_kind k, const char *op)
{
    if (k == GPU_ACT_RELU || k == GPU_ACT_GELU) return 0;
    return st_seterr(&d->err, ST_EINVAL, "%s: activation kind %d unknown", op,
                     (int)k);
}

int gpu_act_fwd(gpu_device *d, gpu_act_kind k, const float *x, float *y,
                size_t n)
{
    NEED_OP(d, act_fwd, "act_fwd");
    ST_TRY(check_act(d, k, "act_fwd"));
    return d->ops->act_fwd(d->impl, (int)k, x, y, n, &d->err);
}

int gpu_act_bwd(gpu_device *d, gpu_act_kind k, const float *x,
                const float *dy, float *dx, size_t n)
{
    NEED_OP(d, act_bwd, "act_bwd");
    ST_TRY(check_act(d, k, "act_bwd"));
    return d->ops->act_bwd(d->impl, (int)k, x, dy, dx, n, &d->err);
}

int gpu_axpby(gpu_device *d, size_t n, float alpha, const float *x,
              float beta, float *y)
{
    NEED_OP(d, axpby, "axpby");
    return d->ops->axpby(d->impl, n, alpha, x, beta, y, &d->err);
}

int gpu_normalize_u8_ch(gpu_device *d, const uint8_t *x, size_t npix, int c,
                        const float mean[4], const float std[4], float *y)
{
    NEED_OP(d, normalize_u8_ch, "normalize_u8_ch");
    if (c < 1 || c > 4)
        return st_seterr(&d->err, ST_EINVAL, "normalize_u8_ch: %d channels "
                         "(1..4)", c);
    for (int k = 0; k < c; k++)
        if (!(std[k] > 0.0f))
            return st_seterr(&d->err, ST_EINVAL, "normalize_u8_ch: channel "
                             "%d has std %g (need > 0)", k, (double)std[k]);
    return d->ops->normalize_u8_ch(d->impl, x, npix, c, mean, std, y,
                                   &d->err);
}

int gpu_flip_w(gpu_device *d, const float *x, int n, int h, int w, int c,
               float *y)
{
    NEED_OP(d, flip_w, "flip_w");
    ST_TRY(check_dims(d, "flip_w", n, (long long)h * w * c));
    if (h < 1 || w < 1 || c < 1 || x == y)
        return st_seterr(&d->err, ST_EINVAL, "flip_w: %dx%dx%d, in place %d",
                         h, w, c, x == y);
    return d->ops->flip_w(d->impl, x, n, h, w, c, y, &d->err);
}

int gpu_softmax_xent_ls(gpu_device *d, const float *logits,
                        const int32_t *labels, int rows, int classes,
                        float smoothing, float grad_scale, float *dlogits,
                        gpu_loss_stats *stats)
{
    NEED_OP(d, softmax_xent_ls, "softmax_xent_ls");
    if (!(smoothing >= 0.0f && smoothing < 1.0f))
        return st_seterr(&d->err, ST_EINVAL, "softmax_xent_ls: label "
                         "smoothing %g outside [0, 1)", (double)smoothing);
    return d->ops->softmax_xent_ls(d->impl, logits, labels, rows, classes,
                                   smoothing, grad_scale, dlogits, stats,
                                   &d->err);
}
