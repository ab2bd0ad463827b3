/* gpu/cpu_staged.c — the staged CPU device: a model of a discrete GPU's
 * ordering rules on top of the CPU backend, so that the prefetcher and the
 * trainer's use of queues and events are tested without a GPU.
 *
 * The arithmetic is the CPU backend's (results are bitwise the same), but
 * the device is not unified, and copies on the copy queue are deferred as
 * on a GPU: a copy happens only when something orders after it.
 *   - copy_async on the copy queue appends to a FIFO and returns;
 *   - an event recorded on the copy queue marks the FIFO position;
 *   - queue_wait(compute, e) makes every later compute op run the copies
 *     before e first (cudaStreamWaitEvent);
 *   - event_wait_host(e) runs them at once (cudaEventSynchronize);
 *   - event_query(e) answers "not ready" while copies before e are pending
 *     and runs them, so the next query says ready (the host polling path);
 *   - sync and to_host/to_device run what compute waits for, or all.
 * A caller that reads a device batch buffer without making compute wait for
 * its copy reads stale bytes, and its results differ from the plain CPU's.
 * Copy-queue events time the copies themselves (H2D GB/s is memcpy's).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gpu/backend.h"

enum { STAGED_MAX = 64, STAGED_CLOCK = 256 };

typedef struct staged_copy {
    void *dst;
    const void *src;
    size_t bytes;
} staged_copy;

/* Used by the thread that drives the device (the trainer's), as CUDA
 * streams are: no field is shared with another thread, so no lock. */
typedef struct staged {
    void *cpu;                        /* the CPU backend's impl, owned */
    staged_copy fifo[STAGED_MAX];     /* copies queued and not yet run */
    uint64_t queued, done;            /* copies queued / run, in all */
    uint64_t compute_dep;             /* compute ops run copies below this */
    double copy_s;                    /* seconds spent running copies */
    double clock[STAGED_CLOCK];       /* copy_s after copy k - 1, at k % N */
} staged;

typedef struct staged_event {
    int copyq;          /* recorded on the copy queue */
    uint64_t seq;       /* copy queue: copies before it */
    double t;           /* compute queue: when recorded */
} staged_event;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Runs the queued copies below seq, in order. */
static void run_copies(staged *s, uint64_t seq)
{
    while (s->done < seq) {
        staged_copy *c = &s->fifo[s->done % STAGED_MAX];
        double t0 = now_s();
        if (c->bytes) memmove(c->dst, c->src, c->bytes);
        s->copy_s += now_s() - t0;
        s->done++;
        s->clock[s->done % STAGED_CLOCK] = s->copy_s;
    }
}

/* Before any compute op: the copies compute was told to wait for. */
static void *compute(void *impl)
{
    staged *s = impl;
    run_copies(s, s->compute_dep);
    return s->cpu;
}

static int st_create(void **impl, const gpu_device_config *cfg, char *name,
                     size_t name_len, st_error *err)
{
    staged *s = calloc(1, sizeof *s);
    if (s == NULL)
        return st_seterr(err, ST_ENOMEM, "staged backend: out of memory");
    int rc = gpu__cpu_ops.create(&s->cpu, cfg, name, name_len, err);
    if (rc < 0) {
        free(s);
        return rc;
    }
    size_t len = strlen(name);
    snprintf(name + len, name_len - len,
             ", staged: batches copied as on a GPU");
    *impl = s;
    return 0;
}

static void st_destroy(void *impl)
{
    staged *s = impl;
    gpu__cpu_ops.destroy(s->cpu);
    free(s);
}

static int st_mem_info(void *impl, size_t *free_b, size_t *total_b,
                       st_error *err)
{
    return gpu__cpu_ops.mem_info(((staged *)impl)->cpu, free_b, total_b, err);
}

static size_t st_workspace_bytes(void *impl)
{
    return gpu__cpu_ops.workspace_bytes(((staged *)impl)->cpu);
}

static int st_dev_alloc(void *impl, size_t bytes, void **p, st_error *err)
{
    return gpu__cpu_ops.dev_alloc(compute(impl), bytes, p, err);
}

static void st_dev_free(void *impl, void *p)
{
    staged *s = impl;
    run_copies(s, s->queued);
    gpu__cpu_ops.dev_free(s->cpu, p);
}

static int st_set_workspace(void *impl, void *p, size_t bytes, st_error *err)
{
    return gpu__cpu_ops.set_workspace(((staged *)impl)->cpu, p, bytes, err);
}

static int st_copy(void *impl, void *dst, const void *src, size_t bytes,
                   st_error *err)
{
    return gpu__cpu_ops.to_device(compute(impl), dst, src, bytes, err);
}

static int st_sync(void *impl, st_error *err)
{
    staged *s = impl;
    run_copies(s, s->queued);
    return gpu__cpu_ops.sync(s->cpu, err);
}

static int st_event_create(void *impl, void **ev, st_error *err)
{
    (void)impl;
    staged_event *e = calloc(1, sizeof *e);
    if (e == NULL)
        return st_seterr(err, ST_ENOMEM, "staged event: out of memory");
    *ev = e;
    return 0;
}

static void st_event_destroy(void *impl, void *ev)
{
    (void)impl;
    free(ev);
}

static int st_event_record(void *impl, void *ev, int q, st_error *err)
{
    (void)err;
    staged *s = impl;
    staged_event *e = ev;
    e->copyq = q == GPU_Q_COPY;
    e->seq = e->copyq ? s->queued : 0;
    e->t = now_s();
    return 0;
}

/* 1 when complete; 0 ("not ready") while copies before it are pending,
 * which it then runs. */
static int st_event_query(void *impl, void *ev, st_error *err)
{
    (void)err;
    staged *s = impl;
    staged_event *e = ev;
    if (!e->copyq || s->done >= e->seq) return 1;
    run_copies(s, e->seq);
    return 0;
}

static int st_event_wait_host(void *impl, void *ev, st_error *err)
{
    (void)err;
    staged_event *e = ev;
    if (e->copyq) run_copies(impl, e->seq);
    return 0;
}

static int st_queue_wait(void *impl, int q, void *ev, st_error *err)
{
    (void)err;
    staged *s = impl;
    staged_event *e = ev;
    /* the copy queue runs in order and never waits on compute here: the
     * compute queue's events are complete when recorded */
    if (q == GPU_Q_COMPUTE && e->copyq && e->seq > s->compute_dep)
        s->compute_dep = e->seq;
    return 0;
}

static int st_event_elapsed(void *impl, void *a, void *b, float *ms,
                            st_error *err)
{
    staged *s = impl;
    staged_event *ea = a, *eb = b;
    *ms = 0.0f;
    if (ea->copyq != eb->copyq)
        return st_seterr(err, ST_EINVAL, "staged: events on two queues");
    if (!ea->copyq) {
        *ms = (float)((eb->t - ea->t) * 1e3);
        return 0;
    }
    if (s->done < eb->seq || eb->seq < ea->seq)
        return st_seterr(err, ST_EINVAL, "staged: event not complete");
    if (s->done - ea->seq >= STAGED_CLOCK) return 0; /* too old to time */
    *ms = (float)((s->clock[eb->seq % STAGED_CLOCK] -
                   s->clock[ea->seq % STAGED_CLOCK]) * 1e3);
    return 0;
}

static int st_copy_async(void *impl, int q, void *dst, const void *src,
                         size_t bytes, st_error *err)
{
    staged *s = impl;
    if (q != GPU_Q_COPY) return st_copy(impl, dst, src, bytes, err);
    if (s->queued - s->done == STAGED_MAX) run_copies(s, s->done + 1);
    s->fifo[s->queued % STAGED_MAX] =
        (staged_copy){.dst = dst, .src = src, .bytes = bytes};
    s->queued++;
    return 0;
}

static int st_gemm(void *impl, int tA, int tB, int M, int N, int K,
                   float alpha, const float *A, int lda, const float *B,
                   int ldb, float beta, float *C, int ldc, st_error *err)
{
    return gpu__cpu_ops.gemm(compute(impl), tA, tB, M, N, K, alpha, A, lda, B,
                             ldb, beta, C, ldc, err);
}

static int st_normalize_u8(void *impl, const uint8_t *x, size_t n,
                           float scale, float shift, float *y, st_error *err)
{
    return gpu__cpu_ops.normalize_u8(compute(impl), x, n, scale, shift, y,
                                     err);
}

static int st_bias_act(void *impl, float *y, const float *b, int rows,
                       int cols, int relu, st_error *err)
{
    return gpu__cpu_ops.bias_act(compute(impl), y, b, rows, cols, relu, err);
}

static int st_act_bias_grad(void *impl, float *dy, const float *y, float *db,
                            int rows, int cols, int relu, int accumulate,
                            st_error *err)
{
    return gpu__cpu_ops.act_bias_grad(compute(impl), dy, y, db, rows, cols,
                                      relu, accumulate, err);
}

static int st_softmax_xent(void *impl, const float *logits,
                           const int32_t *labels, int rows, int classes,
                           float grad_scale, float *dlogits,
                           gpu_loss_stats *stats, st_error *err)
{
    return gpu__cpu_ops.softmax_xent(compute(impl), logits, labels, rows,
                                     classes, grad_scale, dlogits, stats, err);
}

static int st_sgd_update(void *impl, float *w, const float *g, float *v,
                         size_t n, float lr, float mu, int nesterov, float wd,
                         st_error *err)
{
    return gpu__cpu_ops.sgd_update(compute(impl), w, g, v, n, lr, mu,
                                   nesterov, wd, err);
}

static int st_adamw_update(void *impl, float *w, const float *g, float *m,
                           float *v, size_t n, float lr, float b1, float b2,
                           float eps, float wd, float bc1, float bc2,
                           st_error *err)
{
    return gpu__cpu_ops.adamw_update(compute(impl), w, g, m, v, n, lr, b1, b2,
                                     eps, wd, bc1, bc2, err);
}

static int st_zero(void *impl, void *p, size_t bytes, st_error *err)
{
    return gpu__cpu_ops.zero(compute(impl), p, bytes, err);
}

/* ---- conv-net ops: the CPU's, after the copies compute waits for ------ */

static int st_im2col(void *impl, const gpu_conv_geom *g, const float *x,
                     float *col, st_error *err)
{
    return gpu__cpu_ops.im2col(compute(impl), g, x, col, err);
}

static int st_conv_thin_fwd(void *impl, const gpu_conv_geom *g,
                            const float *x, const float *w, int oc, float *y,
                            st_error *err)
{
    return gpu__cpu_ops.conv_thin_fwd(compute(impl), g, x, w, oc, y, err);
}

static int st_conv_thin_wgrad(void *impl, const gpu_conv_geom *g,
                              const float *x, const float *dy, int oc,
                              float beta, float *gw, st_error *err)
{
    return gpu__cpu_ops.conv_thin_wgrad(compute(impl), g, x, dy, oc, beta,
                                        gw, err);
}

static int st_col2im(void *impl, const gpu_conv_geom *g, const float *col,
                     float *dx, int accumulate, st_error *err)
{
    return gpu__cpu_ops.col2im(compute(impl), g, col, dx, accumulate, err);
}

static int st_maxpool_fwd(void *impl, const gpu_conv_geom *g, const float *x,
                          float *y, int32_t *idx, st_error *err)
{
    return gpu__cpu_ops.maxpool_fwd(compute(impl), g, x, y, idx, err);
}

static int st_maxpool_bwd(void *impl, const gpu_conv_geom *g,
                          const float *dy, const int32_t *idx, float *dx,
                          st_error *err)
{
    return gpu__cpu_ops.maxpool_bwd(compute(impl), g, dy, idx, dx, err);
}

static int st_avgpool_fwd(void *impl, const float *x, int n, int hw, int c,
                          float *y, st_error *err)
{
    return gpu__cpu_ops.avgpool_fwd(compute(impl), x, n, hw, c, y, err);
}

static int st_avgpool_bwd(void *impl, const float *dy, int n, int hw, int c,
                          float *dx, st_error *err)
{
    return gpu__cpu_ops.avgpool_bwd(compute(impl), dy, n, hw, c, dx, err);
}

static int st_bn_fwd_train(void *impl, const float *x, int rows, int c,
                           const float *gamma, const float *beta, float eps,
                           float momentum, float *run_mean, float *run_var,
                           float *save_mean, float *save_invstd, int relu,
                           float *y, st_error *err)
{
    return gpu__cpu_ops.bn_fwd_train(compute(impl), x, rows, c, gamma, beta,
                                     eps, momentum, run_mean, run_var,
                                     save_mean, save_invstd, relu, y, err);
}

static int st_bn_fwd_eval(void *impl, const float *x, int rows, int c,
                          const float *gamma, const float *beta, float eps,
                          const float *run_mean, const float *run_var,
                          int relu, float *y, st_error *err)
{
    return gpu__cpu_ops.bn_fwd_eval(compute(impl), x, rows, c, gamma, beta,
                                    eps, run_mean, run_var, relu, y, err);
}

static int st_bn_bwd(void *impl, const float *x, const float *dy, int rows,
                     int c, const float *gamma, const float *beta,
                     const float *save_mean, const float *save_invstd,
                     const float *relu_y, float *dgamma, float *dbeta,
                     float *dx, int accumulate, st_error *err)
{
    return gpu__cpu_ops.bn_bwd(compute(impl), x, dy, rows, c, gamma, beta,
                               save_mean, save_invstd, relu_y, dgamma, dbeta,
                               dx, accumulate, err);
}

static int st_act_fwd(void *impl, int kind, const float *x, float *y,
                      size_t n, st_error *err)
{
    return gpu__cpu_ops.act_fwd(compute(impl), kind, x, y, n, err);
}

static int st_act_bwd(void *impl, int kind, const float *x, const float *dy,
                      float *dx, size_t n, st_error *err)
{
    return gpu__cpu_ops.act_bwd(compute(impl), kind, x, dy, dx, n, err);
}

static int st_axpby(void *impl, size_t n, float alpha, const float *x,
                    float beta, float *y, st_error *err)
{
    return gpu__cpu_ops.axpby(compute(impl), n, alpha, x, beta, y, err);
}

static int st_normalize_u8_ch(void *impl, const uint8_t *x, size_t npix,
                              int c, const float *mean, const float *std,
                              float *y, st_error *err)
{
    return gpu__cpu_ops.normalize_u8_ch(compute(impl), x, npix, c, mean, std,
                                        y, err);
}

static int st_flip_w(void *impl, const float *x, int n, int h, int w, int c,
                     float *y, st_error *err)
{
    return gpu__cpu_ops.flip_w(compute(impl), x, n, h, w, c, y, err);
}

static int st_softmax_xent_ls(void *impl, const float *logits,
                              const int32_t *labels, int rows, int classes,
                              float smoothing, float grad_scale,
                              float *dlogits, gpu_loss_stats *stats,
                              st_error *err)
{
    return gpu__cpu_ops.softmax_xent_ls(compute(impl), logits, labels, rows,
                                        classes, smoothing, grad_scale,
                                        dlogits, stats, err);
}

static void *st_host_alloc(size_t bytes)
{
    return gpu__cpu_ops.host_alloc(bytes);
}

static void st_host_free(void *p) { gpu__cpu_ops.host_free(p); }

const gpu_backend_ops gpu__cpu_staged_ops = {
    .name = "cpu-staged",
    .unified = 0,
    .create = st_create,
    .destroy = st_destroy,
    .mem_info = st_mem_info,
    .workspace_bytes = st_workspace_bytes,
    .dev_alloc = st_dev_alloc,
    .dev_free = st_dev_free,
    .set_workspace = st_set_workspace,
    .host_alloc = st_host_alloc,
    .host_free = st_host_free,
    .to_device = st_copy,
    .to_host = st_copy,
    .sync = st_sync,
    .event_create = st_event_create,
    .event_destroy = st_event_destroy,
    .event_record = st_event_record,
    .event_query = st_event_query,
    .event_wait_host = st_event_wait_host,
    .queue_wait = st_queue_wait,
    .event_elapsed = st_event_elapsed,
    .copy_async = st_copy_async,
    .gemm = st_gemm,
    .normalize_u8 = st_normalize_u8,
    .bias_act = st_bias_act,
    .act_bias_grad = st_act_bias_grad,
    .softmax_xent = st_softmax_xent,
    .sgd_update = st_sgd_update,
    .adamw_update = st_adamw_update,
    .zero = st_zero,
    .im2col = st_im2col,
    .col2im = st_col2im,
    .conv_thin_fwd = st_conv_thin_fwd,
    .conv_thin_wgrad = st_conv_thin_wgrad,
    .maxpool_fwd = st_maxpool_fwd,
    .maxpool_bwd = st_maxpool_bwd,
    .avgpool_fwd = st_avgpool_fwd,
    .avgpool_bwd = st_avgpool_bwd,
    .bn_fwd_train = st_bn_fwd_train,
    .bn_fwd_eval = st_bn_fwd_eval,
    .bn_bwd = st_bn_bwd,
    .act_fwd = st_act_fwd,
    .act_bwd = st_act_bwd,
    .axpby = st_axpby,
    .normalize_u8_ch = st_normalize_u8_ch,
    .flip_w = st_flip_w,
    .softmax_xent_ls = st_softmax_xent_ls,
};
