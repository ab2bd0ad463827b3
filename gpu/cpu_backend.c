/* gpu/cpu_backend.c — the CPU backend: OpenBLAS cblas_sgemm for the matrix
 * products (gpu/cpu_gemm.c), plain loops for everything else.
 *
 * "Device" memory is host memory, every op finishes before it returns and
 * every event is complete, so the prefetcher skips its copy and the trainer
 * reads the loader's ring slot directly.
 *
 * The loops are written so that GCC vectorizes them at -O2 with the
 * project's -march (restrict pointers, no calls, branches hoisted out of
 * the inner loop); they are fused so each tensor is walked once per step:
 * bias + ReLU in one pass, ReLU mask + bias gradient in one pass.
 * The conv-net ops live in gpu/cpu_conv.c.
 */
#include <cblas.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "gpu/cpu_ops.h"

typedef gpu__cpu_impl cpu_impl;

static void cpu_destroy(void *impl)
{
    cpu_impl *c = impl;
    if (c == NULL) return;
    cpu_pool_destroy(c->pool);
    free(c->bn_part);
    free(c->thin_part);
    free(c);
}

static int cpu_create(void **impl, const gpu_device_config *cfg, char *name,
                      size_t name_len, st_error *err)
{
    cpu_impl *c = calloc(1, sizeof *c);
    if (c == NULL) return st_seterr(err, ST_ENOMEM, "cpu backend: out of memory");
    c->threads = cfg->cpu_threads > 0 ? cfg->cpu_threads
                                      : gpu_cpu_default_threads();
    c->bn_part = malloc(2 * GPU__CPU_BN_PARTS * GPU__CPU_BN_CHUNK *
                        sizeof *c->bn_part);
    c->thin_part = malloc(gpu__cpu_thin_part_floats() * sizeof *c->thin_part);
    if (c->bn_part == NULL || c->thin_part == NULL) {
        cpu_destroy(c);
        return st_seterr(err, ST_ENOMEM, "cpu backend: out of memory");
    }
    int rc = cpu_pool_create(c->threads, &c->pool, err);
    if (rc < 0) {
        cpu_destroy(c);
        return rc;
    }
    /* Process-wide: OpenBLAS runs each call on its caller's thread, and
     * gpu/cpu_gemm.c splits a GEMM over c->pool's threads (see there). */
    openblas_set_num_threads(1);
    snprintf(name, name_len, "cpu (OpenBLAS %s, %d thread%s)",
             gpu_cpu_blas_core(), c->threads, c->threads == 1 ? "" : "s");
    *impl = c;
    return 0;
}

const char *gpu_cpu_blas_core(void)
{
    const char *core = openblas_get_corename();
    return core != NULL ? core : "unknown";
}

/* 1 when the CPU and the OS (XCR0's ZMM state: GCC checks it) have the
 * AVX-512 subsets OpenBLAS's SkylakeX kernels use. */
static int cpu_has_avx512(void)
{
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") &&
           __builtin_cpu_supports("avx512cd") &&
           __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("avx512vl");
#else
    return 0;
#endif
}

int gpu__cpu_blas_note(int has_avx512, const char *core, const char *env,
                       char *note, size_t len)
{
    /* OpenBLAS's x86-64 kernel sets with AVX-512 (0.3.21 .. 0.3.28) */
    static const char *const avx512[] = {"SkylakeX", "Cooperlake",
                                         "SapphireRapids"};
    if (!has_avx512) return 0;
    for (size_t i = 0; i < sizeof avx512 / sizeof avx512[0]; i++)
        if (strcasecmp(core, avx512[i]) == 0) return 0;
    if (env != NULL)
        snprintf(note, len, "note: OPENBLAS_CORETYPE=%s holds OpenBLAS to "
                 "its %s kernels on this AVX-512 CPU, about half its SGEMM "
                 "rate; unset it to let OpenBLAS choose", env, core);
    else
        snprintf(note, len, "note: OpenBLAS picked its %s kernels on this "
                 "AVX-512 CPU, about half its SGEMM rate; "
                 "OPENBLAS_CORETYPE=SKYLAKEX selects its AVX-512 ones", core);
    return 1;
}

int gpu_cpu_blas_note(char *note, size_t len)
{
    return gpu__cpu_blas_note(cpu_has_avx512(), gpu_cpu_blas_core(),
                              getenv("OPENBLAS_CORETYPE"), note, len);
}

/* The kB figure after `key` in /proc/meminfo's text, in bytes; 0 if none. */
static size_t meminfo_field(const char *text, const char *key)
{
    const char *p = strstr(text, key);
    unsigned long long kb;
    if (p == NULL || sscanf(p + strlen(key), " %llu", &kb) != 1) return 0;
    return (size_t)kb * 1024;
}

/* MemTotal / MemAvailable from /proc/meminfo. Read with open/read into a
 * stack buffer: this runs at every log line, inside the training loop,
 * where fopen's FILE and buffer would be allocations. */
static int cpu_mem_info(void *impl, size_t *free_b, size_t *total_b,
                        st_error *err)
{
    (void)impl, (void)err;
    *free_b = *total_b = 0;
    char text[4096];
    int fd = open("/proc/meminfo", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0; /* not fatal: figures stay 0 */
    ssize_t n = read(fd, text, sizeof text - 1);
    close(fd);
    if (n <= 0) return 0;
    text[n] = '\0';
    *total_b = meminfo_field(text, "MemTotal:");
    *free_b = meminfo_field(text, "MemAvailable:");
    return 0;
}

static size_t cpu_workspace_bytes(void *impl)
{
    (void)impl;
    return 0;
}

static void *cpu_host_alloc(size_t bytes)
{
    size_t n = (bytes + 63) & ~(size_t)63;
    return aligned_alloc(64, n ? n : 64);
}

static void cpu_host_free(void *p) { free(p); }

static int cpu_dev_alloc(void *impl, size_t bytes, void **p, st_error *err)
{
    (void)impl;
    *p = aligned_alloc(256, bytes);
    if (*p == NULL)
        return st_seterr(err, ST_ENOMEM, "cpu arena: cannot allocate %zu bytes",
                         bytes);
    memset(*p, 0, bytes); /* touch every page now, not in step 1 */
    return 0;
}

static void cpu_dev_free(void *impl, void *p)
{
    (void)impl;
    free(p);
}

static int cpu_set_workspace(void *impl, void *p, size_t bytes, st_error *err)
{
    (void)impl, (void)p, (void)bytes, (void)err;
    return 0;
}

static int cpu_copy(void *impl, void *dst, const void *src, size_t bytes,
                    st_error *err)
{
    (void)impl, (void)err;
    if (bytes) memmove(dst, src, bytes);
    return 0;
}

static int cpu_sync(void *impl, st_error *err)
{
    (void)impl, (void)err;
    return 0;
}

/* Events: everything is already complete. A non-NULL token keeps the
 * device layer's bookkeeping uniform. */
static int cpu_event_create(void *impl, void **ev, st_error *err)
{
    (void)impl, (void)err;
    static char token;
    *ev = &token;
    return 0;
}

static void cpu_event_destroy(void *impl, void *ev) { (void)impl, (void)ev; }

static int cpu_event_record(void *impl, void *ev, int q, st_error *err)
{
    (void)impl, (void)ev, (void)q, (void)err;
    return 0;
}

static int cpu_event_query(void *impl, void *ev, st_error *err)
{
    (void)impl, (void)ev, (void)err;
    return 1;
}

static int cpu_event_wait(void *impl, void *ev, st_error *err)
{
    (void)impl, (void)ev, (void)err;
    return 0;
}

static int cpu_queue_wait(void *impl, int q, void *ev, st_error *err)
{
    (void)impl, (void)q, (void)ev, (void)err;
    return 0;
}

static int cpu_event_elapsed(void *impl, void *a, void *b, float *ms,
                             st_error *err)
{
    (void)impl, (void)a, (void)b, (void)err;
    *ms = 0.0f;
    return 0;
}

static int cpu_copy_async(void *impl, int q, void *dst, const void *src,
                          size_t bytes, st_error *err)
{
    (void)q;
    return cpu_copy(impl, dst, src, bytes, err);
}

/* ---- math ------------------------------------------------------------ */

static int cpu_gemm(void *impl, int tA, int tB, int M, int N, int K,
                    float alpha, const float *A, int lda, const float *B,
                    int ldb, float beta, float *C, int ldc, st_error *err)
{
    if (M < 0 || N < 0 || K < 0)
        return st_seterr(err, ST_EINVAL, "gemm: negative size %dx%dx%d", M, N, K);
    if (M == 0 || N == 0) return 0;
    return gpu__cpu_gemm(impl, tA, tB, M, N, K, alpha, A, lda, B, ldb, beta,
                         C, ldc, err);
}

CPU_VEC static int cpu_normalize_u8(void *impl, const uint8_t *restrict x, size_t n,
                            float scale, float shift, float *restrict y,
                            st_error *err)
{
    (void)impl, (void)err;
    for (size_t i = 0; i < n; i++) y[i] = (float)x[i] * scale + shift;
    return 0;
}

CPU_VEC static int cpu_bias_act(void *impl, float *restrict y, const float *restrict b,
                        int rows, int cols, int relu, st_error *err)
{
    (void)impl, (void)err;
    for (int r = 0; r < rows; r++) {
        float *restrict yr = y + (size_t)r * cols;
        if (relu)
            for (int c = 0; c < cols; c++) {
                float v = yr[c] + b[c];
                yr[c] = v > 0.0f ? v : 0.0f;
            }
        else
            for (int c = 0; c < cols; c++) yr[c] += b[c];
    }
    return 0;
}

CPU_VEC static int cpu_act_bias_grad(void *impl, float *restrict dy,
                             const float *restrict y, float *restrict db,
                             int rows, int cols, int relu, int accumulate,
                             st_error *err)
{
    (void)impl, (void)err;
    if (db && !accumulate) memset(db, 0, (size_t)cols * sizeof *db);
    for (int r = 0; r < rows; r++) {
        float *restrict dr = dy + (size_t)r * cols;
        const float *restrict yr = y + (size_t)r * cols;
        if (relu && db)
            for (int c = 0; c < cols; c++) {
                float v = yr[c] > 0.0f ? dr[c] : 0.0f;
                dr[c] = v;
                db[c] += v;
            }
        else if (relu)
            for (int c = 0; c < cols; c++)
                dr[c] = yr[c] > 0.0f ? dr[c] : 0.0f;
        else if (db)
            for (int c = 0; c < cols; c++) db[c] += dr[c];
    }
    return 0;
}

int gpu__cpu_softmax_xent_ls(void *impl, const float *logits,
                             const int32_t *labels, int rows, int classes,
                             float smoothing, float grad_scale,
                             float *dlogits, gpu_loss_stats *stats,
                             st_error *err)
{
    (void)impl, (void)err;
    /* target = (1-eps)*onehot + eps/classes; with eps 0 every operation
     * below is the one plain softmax cross-entropy always did, so
     * gpu_softmax_xent's results stay bit for bit what they were */
    float eps = smoothing, off = smoothing / (float)classes;
    for (int r = 0; r < rows; r++) {
        const float *x = logits + (size_t)r * classes;
        int best = 0;
        for (int c = 1; c < classes; c++)
            if (x[c] > x[best]) best = c;
        float mx = x[best], sum = 0.0f;
        for (int c = 0; c < classes; c++) sum += expf(x[c] - mx);
        int32_t lab = labels[r];
        int ok = lab >= 0 && lab < classes;
        if (ok) {
            float lse = logf(sum);
            if (eps == 0.0f) {
                stats->loss_sum += (double)(lse - (x[lab] - mx));
            } else {
                /* sum_c target_c * (lse - (x_c - mx)) */
                double all = 0.0;
                for (int c = 0; c < classes; c++)
                    all += (double)(lse - (x[c] - mx));
                stats->loss_sum += (1.0 - (double)eps) *
                                       (double)(lse - (x[lab] - mx)) +
                                   (double)eps / classes * all;
            }
            stats->correct += best == lab;
        } else {
            stats->bad_labels++;
        }
        stats->count++;
        if (dlogits == NULL) continue;
        float *g = dlogits + (size_t)r * classes;
        float inv = ok ? grad_scale / sum : 0.0f;
        if (eps == 0.0f) {
            for (int c = 0; c < classes; c++) g[c] = expf(x[c] - mx) * inv;
            if (ok) g[lab] -= grad_scale;
        } else if (ok) {
            float goff = grad_scale * off;
            for (int c = 0; c < classes; c++)
                g[c] = expf(x[c] - mx) * inv - goff;
            g[lab] -= grad_scale * (1.0f - eps);
        } else {
            for (int c = 0; c < classes; c++) g[c] = 0.0f;
        }
    }
    return 0;
}

static int cpu_softmax_xent(void *impl, const float *logits,
                            const int32_t *labels, int rows, int classes,
                            float grad_scale, float *dlogits,
                            gpu_loss_stats *stats, st_error *err)
{
    return gpu__cpu_softmax_xent_ls(impl, logits, labels, rows, classes,
                                    0.0f, grad_scale, dlogits, stats, err);
}

/* The optimizer updates are element-wise: any split gives the same bits. */
typedef struct opt_job {
    float *w, *m, *v;
    const float *g;
    float lr, mu, wd, b1, b2, eps, bc1, bc2;
    int nesterov;
} opt_job;

CPU_VEC static void sgd_range(void *ctx, size_t lo, size_t hi)
{
    const opt_job *j = ctx;
    float *restrict w = j->w, *restrict v = j->v;
    const float *restrict g = j->g;
    const float lr = j->lr, mu = j->mu, wd = j->wd;
    if (j->nesterov)
        for (size_t i = lo; i < hi; i++) {
            float gi = g[i] + wd * w[i];
            float vi = mu * v[i] + gi;
            v[i] = vi;
            w[i] -= lr * (gi + mu * vi);
        }
    else
        for (size_t i = lo; i < hi; i++) {
            float gi = g[i] + wd * w[i];
            float vi = mu * v[i] + gi;
            v[i] = vi;
            w[i] -= lr * vi;
        }
}

static int cpu_sgd_update(void *impl, float *w, const float *g, float *v,
                          size_t n, float lr, float mu, int nesterov,
                          float wd, st_error *err)
{
    opt_job j = {.w = w, .g = g, .v = v, .lr = lr, .mu = mu, .wd = wd,
                 .nesterov = nesterov};
    return cpu_pool_for(((cpu_impl *)impl)->pool, n, 1 << 14, sgd_range, &j,
                        err);
}

CPU_VEC static void adamw_range(void *ctx, size_t lo, size_t hi)
{
    const opt_job *j = ctx;
    float *restrict w = j->w, *restrict m = j->m, *restrict v = j->v;
    const float *restrict g = j->g;
    const float b1 = j->b1, b2 = j->b2, eps = j->eps;
    float decay = 1.0f - j->lr * j->wd, step = j->lr / j->bc1,
          ibc2 = 1.0f / j->bc2;
    for (size_t i = lo; i < hi; i++) {
        float gi = g[i];
        float mi = b1 * m[i] + (1.0f - b1) * gi;
        float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        w[i] = w[i] * decay - step * mi / (sqrtf(vi * ibc2) + eps);
    }
}

static int cpu_adamw_update(void *impl, float *w, const float *g, float *m,
                            float *v, size_t n, float lr, float b1, float b2,
                            float eps, float wd, float bc1, float bc2,
                            st_error *err)
{
    opt_job j = {.w = w, .g = g, .m = m, .v = v, .lr = lr, .wd = wd,
                 .b1 = b1, .b2 = b2, .eps = eps, .bc1 = bc1, .bc2 = bc2};
    return cpu_pool_for(((cpu_impl *)impl)->pool, n, 1 << 14, adamw_range, &j,
                        err);
}

static int cpu_zero(void *impl, void *p, size_t bytes, st_error *err)
{
    (void)impl, (void)err;
    if (bytes) memset(p, 0, bytes);
    return 0;
}

const gpu_backend_ops gpu__cpu_ops = {
    .name = "cpu",
    .unified = 1,
    .create = cpu_create,
    .destroy = cpu_destroy,
    .mem_info = cpu_mem_info,
    .workspace_bytes = cpu_workspace_bytes,
    .dev_alloc = cpu_dev_alloc,
    .dev_free = cpu_dev_free,
    .set_workspace = cpu_set_workspace,
    .host_alloc = cpu_host_alloc,
    .host_free = cpu_host_free,
    .to_device = cpu_copy,
    .to_host = cpu_copy,
    .sync = cpu_sync,
    .event_create = cpu_event_create,
    .event_destroy = cpu_event_destroy,
    .event_record = cpu_event_record,
    .event_query = cpu_event_query,
    .event_wait_host = cpu_event_wait,
    .queue_wait = cpu_queue_wait,
    .event_elapsed = cpu_event_elapsed,
    .copy_async = cpu_copy_async,
    .gemm = cpu_gemm,
    .normalize_u8 = cpu_normalize_u8,
    .bias_act = cpu_bias_act,
    .act_bias_grad = cpu_act_bias_grad,
    .softmax_xent = cpu_softmax_xent,
    .sgd_update = cpu_sgd_update,
    .adamw_update = cpu_adamw_update,
    .zero = cpu_zero,
    GPU__CPU_CONV_OPS,
};
