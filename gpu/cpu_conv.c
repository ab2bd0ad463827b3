/* gpu/cpu_conv.c — the CPU backend's conv-net ops (gpu/device.h, NHWC):
 * lowering and its adjoint, pooling, activations, axpby, per-channel
 * input normalization and the mirror for TTA. Batch norm is in
 * gpu/cpu_bn.c, the thin convolution in gpu/cpu_gemm.c.
 *
 * Plain loops, run on the backend's worker threads (gpu/cpu_pool.h, as
 * many as OpenBLAS's; no OpenMP): lowering and pooling split by image,
 * element-wise ops by range, so that every result is bit for bit the
 * same at any thread count.
 * NHWC makes the lowering copy-shaped: for one output pixel and one kernel
 * row, the taps are kw*c contiguous floats of x, so im2col is a memcpy per
 * (pixel, ky) and col2im a vectorized add per (pixel, ky).
 *
 * Exact float formulas (the CUDA backend matches them within tolerance):
 *   avg pool        y = sum(x) * (1/hw), sum in float in row order
 *   normalize       y = x*a + b, a = (1/255)/std, b = -mean/std
 *   GELU            y = x*Phi(x), dy/dx = Phi(x) + x*exp(-x^2/2)/sqrt(2 pi),
 *                   Phi(x) = (1 + erf(x/sqrt(2)))/2 by a polynomial
 *                   approximation (see phi_fast): within 2e-7 of erff's
 */
#include <math.h>
#include <string.h>

#include "gpu/cpu_ops.h"

/* Items per block below which an op stays on one thread: a block must
 * outweigh the ~10 us of waking a worker. */
enum { GRAIN_ELEMS = 1 << 15 };

static cpu_pool *pool_of(void *impl) { return ((gpu__cpu_impl *)impl)->pool; }

/* The jobs' arguments, one struct for the ops of this file. */
typedef struct conv_job {
    const gpu_conv_geom *g;
    const float *x, *dy, *scale; /* scale: axpby's alpha, beta */
    const int32_t *cidx;
    float *y, *dx;
    int32_t *idx;
    int accumulate, kind, c;
    size_t rows;
} conv_job;

/* ---- lowering ----------------------------------------------------------- */

/* The kernel columns kx in [*k0, *k1) whose input column ix0 + kx lies in
 * [0, w). */
static void valid_taps(int ix0, int k, int w, int *k0, int *k1)
{
    *k0 = ix0 < 0 ? -ix0 : 0;
    *k1 = w - ix0 < k ? w - ix0 : k;
    if (*k1 < *k0) *k1 = *k0;
}

/* im2col of images [b0, b1). A run of taps is kw*c contiguous floats;
 * short runs (the first layer's c = 1) are copied inline, since a memcpy
 * call per 3 floats costs more than the copy. */
static void im2col_images(void *ctx, size_t b0, size_t b1)
{
    const conv_job *j = ctx;
    const gpu_conv_geom *g = j->g;
    const int c = g->c, kw = g->kw;
    const size_t run = (size_t)kw * c, K = (size_t)g->kh * run;
    const size_t img = (size_t)g->h * g->w * c;
    float *out = j->y + b0 * (size_t)g->oh * g->ow * K;
    for (size_t b = b0; b < b1; b++) {
        const float *xb = j->x + b * img;
        for (int oy = 0; oy < g->oh; oy++) {
            int iy0 = oy * g->sh - g->ph;
            for (int ox = 0; ox < g->ow; ox++, out += K) {
                int ix0 = ox * g->sw - g->pw, k0, k1;
                valid_taps(ix0, kw, g->w, &k0, &k1);
                for (int ky = 0; ky < g->kh; ky++) {
                    float *o = out + (size_t)ky * run;
                    int iy = iy0 + ky;
                    if (iy < 0 || iy >= g->h || k0 == k1) {
                        memset(o, 0, run * sizeof *o);
                        continue;
                    }
                    const float *src = xb + ((size_t)iy * g->w + ix0) * c;
                    if (run <= 16 && k0 == 0 && k1 == kw) {
                        for (size_t i = 0; i < run; i++) o[i] = src[i];
                        continue;
                    }
                    if (k0) memset(o, 0, (size_t)k0 * c * sizeof *o);
                    memcpy(o + (size_t)k0 * c, src + (size_t)k0 * c,
                           (size_t)(k1 - k0) * c * sizeof *o);
                    if (k1 < kw)
                        memset(o + (size_t)k1 * c, 0,
                               (size_t)(kw - k1) * c * sizeof *o);
                }
            }
        }
    }
}

int gpu__cpu_im2col(void *impl, const gpu_conv_geom *g, const float *x,
                    float *col, st_error *err)
{
    conv_job j = {.g = g, .x = x, .y = col};
    return cpu_pool_for(pool_of(impl), (size_t)g->n, 1, im2col_images, &j,
                        err);
}

CPU_VEC static void add_run(float *restrict dst, const float *restrict src,
                            size_t n)
{
    for (size_t i = 0; i < n; i++) dst[i] += src[i];
}

/* col2im of images [b0, b1): each image's windows add into its own dx. */
static void col2im_images(void *ctx, size_t b0, size_t b1)
{
    const conv_job *j = ctx;
    const gpu_conv_geom *g = j->g;
    const int c = g->c, kw = g->kw;
    const size_t run = (size_t)kw * c, K = (size_t)g->kh * run;
    const size_t img = (size_t)g->h * g->w * c;
    if (!j->accumulate)
        memset(j->dx + b0 * img, 0, (b1 - b0) * img * sizeof *j->dx);
    const float *in = j->x + b0 * (size_t)g->oh * g->ow * K;
    for (size_t b = b0; b < b1; b++) {
        float *db = j->dx + b * img;
        for (int oy = 0; oy < g->oh; oy++) {
            int iy0 = oy * g->sh - g->ph;
            for (int ox = 0; ox < g->ow; ox++, in += K) {
                int ix0 = ox * g->sw - g->pw, k0, k1;
                valid_taps(ix0, kw, g->w, &k0, &k1);
                if (k0 == k1) continue;
                for (int ky = 0; ky < g->kh; ky++) {
                    int iy = iy0 + ky;
                    if (iy < 0 || iy >= g->h) continue;
                    add_run(db + ((size_t)iy * g->w + ix0 + k0) * c,
                            in + (size_t)ky * run + (size_t)k0 * c,
                            (size_t)(k1 - k0) * c);
                }
            }
        }
    }
}

int gpu__cpu_col2im(void *impl, const gpu_conv_geom *g, const float *col,
                    float *dx, int accumulate, st_error *err)
{
    conv_job j = {.g = g, .x = col, .dx = dx, .accumulate = accumulate};
    return cpu_pool_for(pool_of(impl), (size_t)g->n, 1, col2im_images, &j,
                        err);
}

/* ---- pooling ------------------------------------------------------------ */

/* The running max of one output pixel's c channels against one tap. */
CPU_VEC static void max_tap(float *restrict y, int32_t *restrict idx,
                            const float *restrict x, int32_t base, int c)
{
    for (int k = 0; k < c; k++)
        if (x[k] > y[k]) {
            y[k] = x[k];
            idx[k] = base + k;
        }
}

/* The 2x2 stride-2 unpadded pool (every window whole): one output pixel's
 * c channels from its four taps, a at (0, 0), then +dx, +dy, +dy+dx, the
 * first of equal maxima winning as in max_tap's scan. */
CPU_VEC static void max4(float *restrict y, int32_t *restrict idx,
                         const float *restrict x, int32_t base, int32_t dx,
                         int32_t dy, int c)
{
    const float *b = x + dx, *cc = x + dy, *e = x + dy + dx;
    for (int k = 0; k < c; k++) {
        float m = x[k];
        int32_t i = base + k;
        if (b[k] > m) m = b[k], i = base + dx + k;
        if (cc[k] > m) m = cc[k], i = base + dy + k;
        if (e[k] > m) m = e[k], i = base + dy + dx + k;
        y[k] = m;
        idx[k] = i;
    }
}

static int pool_2x2(const gpu_conv_geom *g)
{
    return g->kh == 2 && g->kw == 2 && g->sh == 2 && g->sw == 2 &&
           g->ph == 0 && g->pw == 0;
}

static void maxpool2_fwd_images(const conv_job *j, size_t b0, size_t b1)
{
    const gpu_conv_geom *g = j->g;
    const int c = g->c;
    const int32_t dx = c, dy = g->w * c;
    const size_t img = (size_t)g->h * g->w * c;
    const size_t per = (size_t)g->oh * g->ow * c;
    for (size_t b = b0; b < b1; b++) {
        const float *xb = j->x + b * img;
        float *y = j->y + b * per;
        int32_t *idx = j->idx + b * per;
        for (int oy = 0; oy < g->oh; oy++)
            for (int ox = 0; ox < g->ow; ox++, y += c, idx += c) {
                int32_t base = (2 * oy * g->w + 2 * ox) * c;
                max4(y, idx, xb + base, base, dx, dy, c);
            }
    }
}

static void maxpool_fwd_images(void *ctx, size_t b0, size_t b1)
{
    const conv_job *j = ctx;
    const gpu_conv_geom *g = j->g;
    if (pool_2x2(g)) {
        maxpool2_fwd_images(j, b0, b1);
        return;
    }
    const int c = g->c;
    const size_t img = (size_t)g->h * g->w * c;
    const size_t per = (size_t)g->oh * g->ow * c;
    float *y = j->y + b0 * per;
    int32_t *idx = j->idx + b0 * per;
    for (size_t b = b0; b < b1; b++) {
        const float *xb = j->x + b * img;
        for (int oy = 0; oy < g->oh; oy++) {
            int iy0 = oy * g->sh - g->ph, ky0, ky1;
            valid_taps(iy0, g->kh, g->h, &ky0, &ky1);
            for (int ox = 0; ox < g->ow; ox++) {
                int ix0 = ox * g->sw - g->pw, kx0, kx1;
                valid_taps(ix0, g->kw, g->w, &kx0, &kx1);
                /* ph <= kh/2 (checked by the wrapper): a tap is valid */
                int32_t first = (int32_t)(((size_t)(iy0 + ky0) * g->w +
                                           ix0 + kx0) * c);
                memcpy(y, xb + first, (size_t)c * sizeof *y);
                for (int k = 0; k < c; k++) idx[k] = first + k;
                for (int ky = ky0; ky < ky1; ky++)
                    for (int kx = kx0; kx < kx1; kx++) {
                        int32_t base = (int32_t)(((size_t)(iy0 + ky) * g->w +
                                                  ix0 + kx) * c);
                        if (base != first) max_tap(y, idx, xb + base, base, c);
                    }
                y += c;
                idx += c;
            }
        }
    }
}

int gpu__cpu_maxpool_fwd(void *impl, const gpu_conv_geom *g, const float *x,
                         float *y, int32_t *idx, st_error *err)
{
    conv_job j = {.g = g, .x = x, .y = y, .idx = idx};
    return cpu_pool_for(pool_of(impl), (size_t)g->n, 1, maxpool_fwd_images,
                        &j, err);
}

/* dx of one 2x2 window's taps: dy where the tap was the max, else 0. */
CPU_VEC static void unpool4(float *restrict dx, const float *restrict dy,
                            const int32_t *restrict idx, int32_t base,
                            int32_t sx, int32_t sy, int c)
{
    float *b = dx + sx, *cc = dx + sy, *e = dx + sy + sx;
    for (int k = 0; k < c; k++) {
        int32_t i = idx[k] - base - k;
        float v = dy[k];
        dx[k] = i == 0 ? v : 0.0f;
        b[k] = i == sx ? v : 0.0f;
        cc[k] = i == sy ? v : 0.0f;
        e[k] = i == sy + sx ? v : 0.0f;
    }
}

/* The 2x2 stride-2 pool's windows do not overlap: each tap is written
 * once, in order, without the scatter; only an odd last row or column,
 * in no window, is zeroed apart. */
static void maxpool2_bwd_images(const conv_job *j, size_t b0, size_t b1)
{
    const gpu_conv_geom *g = j->g;
    const int c = g->c;
    const size_t img = (size_t)g->h * g->w * c;
    const size_t per = (size_t)g->oh * g->ow * c;
    for (size_t b = b0; b < b1; b++) {
        float *db = j->dx + b * img;
        const float *dyb = j->dy + b * per;
        const int32_t *ib = j->cidx + b * per;
        if (g->h != 2 * g->oh || g->w != 2 * g->ow)
            memset(db, 0, img * sizeof *db);
        for (int oy = 0; oy < g->oh; oy++)
            for (int ox = 0; ox < g->ow; ox++, dyb += c, ib += c) {
                int32_t base = (2 * oy * g->w + 2 * ox) * c;
                unpool4(db + base, dyb, ib, base, c, g->w * c, c);
            }
    }
}

static void maxpool_bwd_images(void *ctx, size_t b0, size_t b1)
{
    const conv_job *j = ctx;
    const gpu_conv_geom *g = j->g;
    const size_t img = (size_t)g->h * g->w * g->c;
    const size_t per = (size_t)g->oh * g->ow * g->c;
    if (pool_2x2(g)) {
        maxpool2_bwd_images(j, b0, b1);
        return;
    }
    memset(j->dx + b0 * img, 0, (b1 - b0) * img * sizeof *j->dx);
    for (size_t b = b0; b < b1; b++) {
        float *db = j->dx + b * img;
        const float *dyb = j->dy + b * per;
        const int32_t *ib = j->cidx + b * per;
        for (size_t i = 0; i < per; i++) db[ib[i]] += dyb[i];
    }
}

int gpu__cpu_maxpool_bwd(void *impl, const gpu_conv_geom *g, const float *dy,
                         const int32_t *idx, float *dx, st_error *err)
{
    conv_job j = {.g = g, .dy = dy, .cidx = idx, .dx = dx};
    return cpu_pool_for(pool_of(impl), (size_t)g->n, 1, maxpool_bwd_images,
                        &j, err);
}

CPU_VEC static void avgpool_fwd_images(void *ctx, size_t b0, size_t b1)
{
    const conv_job *j = ctx;
    const int hw = (int)j->rows, c = j->c;
    float inv = 1.0f / (float)hw;
    for (size_t b = b0; b < b1; b++) {
        float *restrict yb = j->y + b * c;
        const float *restrict xb = j->x + b * hw * c;
        for (int k = 0; k < c; k++) yb[k] = 0.0f;
        for (int p = 0; p < hw; p++)
            for (int k = 0; k < c; k++) yb[k] += xb[(size_t)p * c + k];
        for (int k = 0; k < c; k++) yb[k] *= inv;
    }
}

int gpu__cpu_avgpool_fwd(void *impl, const float *x, int n, int hw, int c,
                         float *y, st_error *err)
{
    conv_job j = {.x = x, .y = y, .rows = (size_t)hw, .c = c};
    return cpu_pool_for(pool_of(impl), (size_t)n, 8, avgpool_fwd_images, &j,
                        err);
}

CPU_VEC static void avgpool_bwd_images(void *ctx, size_t b0, size_t b1)
{
    const conv_job *j = ctx;
    const int hw = (int)j->rows, c = j->c;
    float inv = 1.0f / (float)hw;
    for (size_t b = b0; b < b1; b++) {
        const float *restrict db = j->dy + b * c;
        float *restrict xb = j->dx + b * hw * c;
        for (int p = 0; p < hw; p++)
            for (int k = 0; k < c; k++) xb[(size_t)p * c + k] = db[k] * inv;
    }
}

int gpu__cpu_avgpool_bwd(void *impl, const float *dy, int n, int hw, int c,
                         float *dx, st_error *err)
{
    conv_job j = {.dy = dy, .dx = dx, .rows = (size_t)hw, .c = c};
    return cpu_pool_for(pool_of(impl), (size_t)n, 8, avgpool_bwd_images, &j,
                        err);
}

/* ---- activations and elementwise ----------------------------------------- */

CPU_VEC static void relu_fwd(const float *x, float *y, size_t n)
{
    for (size_t i = 0; i < n; i++) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

CPU_VEC static void relu_bwd(const float *restrict x, const float *dy,
                             float *dx, size_t n)
{
    for (size_t i = 0; i < n; i++) dx[i] = x[i] > 0.0f ? dy[i] : 0.0f;
}

/* GELU without libm calls, so that the loops vectorize (erff and expf do
 * not, and cost 10-20 ns an element: as much as the convolution around
 * them). e^x: x = n ln2 + r, |r| <= ln2/2, 2^n built in the exponent bits,
 * e^r by its Taylor series to r^7 (truncation < 1e-9 relative). Phi via
 * erfc(z) ~ t (a1 + t (a2 + ... + t a5)) e^(-z^2), t = 1/(1 + p z), the
 * approximation 7.1.26 of Abramowitz and Stegun (absolute error <= 1.5e-7
 * on erf), used on |x| so that Phi(x) for x < 0 has no cancellation.
 * The helpers are always inlined (a function with other optimize options
 * would not be), and the loops are CPU_VEC_SELECT's (the clamp). */

static inline __attribute__((always_inline)) float exp_fast(float x)
{
    x = x < -87.0f ? -87.0f : x > 88.0f ? 88.0f : x;
    /* n = round(x / ln2) by the 1.5 * 2^23 trick (no fast-math here) */
    float t = x * 1.44269504088896341f + 12582912.0f;
    float n = t - 12582912.0f;
    float r = x - n * 0.693145751953125f;      /* ln2, high part, exact */
    r = r - n * 1.42860682030941723e-6f;       /* ln2, low part */
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    int32_t bits;
    memcpy(&bits, &t, sizeof bits);
    bits = (bits - 0x4B400000 + 127) << 23;    /* 2^n, n in [-126, 127] */
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

/* Phi(x) = (1 + erf(x / sqrt 2)) / 2. */
static inline __attribute__((always_inline)) float phi_fast(float x)
{
    float z = (x < 0.0f ? -x : x) * 0.70710678118654752f;
    float t = 1.0f / (1.0f + 0.3275911f * z);
    float q = 1.061405429f;
    q = q * t - 1.453152027f;
    q = q * t + 1.421413741f;
    q = q * t - 0.284496736f;
    q = q * t + 0.254829592f;
    float half_erfc = 0.5f * q * t * exp_fast(-z * z);
    return x < 0.0f ? half_erfc : 1.0f - half_erfc;
}

CPU_VEC_SELECT static void gelu_fwd(const float *x, float *y, size_t n)
{
    for (size_t i = 0; i < n; i++) y[i] = x[i] * phi_fast(x[i]);
}

/* d/dx x Phi(x) = Phi(x) + x phi(x), phi(x) = e^(-x^2/2) / sqrt(2 pi). */
CPU_VEC_SELECT static void gelu_bwd(const float *restrict x, const float *dy,
                             float *dx, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        float v = x[i];
        float pdf = exp_fast(-0.5f * v * v) * 0.39894228040143268f;
        dx[i] = dy[i] * (phi_fast(v) + v * pdf);
    }
}

static void act_fwd_range(void *ctx, size_t lo, size_t hi)
{
    const conv_job *j = ctx;
    if (j->kind == GPU_ACT_RELU) relu_fwd(j->x + lo, j->y + lo, hi - lo);
    else gelu_fwd(j->x + lo, j->y + lo, hi - lo);
}

static void act_bwd_range(void *ctx, size_t lo, size_t hi)
{
    const conv_job *j = ctx;
    if (j->kind == GPU_ACT_RELU)
        relu_bwd(j->x + lo, j->dy + lo, j->dx + lo, hi - lo);
    else
        gelu_bwd(j->x + lo, j->dy + lo, j->dx + lo, hi - lo);
}

int gpu__cpu_act_fwd(void *impl, int kind, const float *x, float *y,
                     size_t n, st_error *err)
{
    if (kind != GPU_ACT_RELU && kind != GPU_ACT_GELU)
        return st_seterr(err, ST_EINVAL, "act_fwd: kind %d", kind);
    conv_job j = {.kind = kind, .x = x, .y = y};
    return cpu_pool_for(pool_of(impl), n, GRAIN_ELEMS, act_fwd_range, &j,
                        err);
}

int gpu__cpu_act_bwd(void *impl, int kind, const float *x, const float *dy,
                     float *dx, size_t n, st_error *err)
{
    if (kind != GPU_ACT_RELU && kind != GPU_ACT_GELU)
        return st_seterr(err, ST_EINVAL, "act_bwd: kind %d", kind);
    conv_job j = {.kind = kind, .x = x, .dy = dy, .dx = dx};
    return cpu_pool_for(pool_of(impl), n, GRAIN_ELEMS, act_bwd_range, &j,
                        err);
}

CPU_VEC static void axpby_range(void *ctx, size_t lo, size_t hi)
{
    const conv_job *j = ctx;
    const float alpha = j->scale[0], beta = j->scale[1];
    const float *restrict x = j->x;
    float *restrict y = j->y;
    if (beta == 0.0f)
        for (size_t i = lo; i < hi; i++) y[i] = alpha * x[i];
    else
        for (size_t i = lo; i < hi; i++) y[i] = alpha * x[i] + beta * y[i];
}

int gpu__cpu_axpby(void *impl, size_t n, float alpha, const float *x,
                   float beta, float *y, st_error *err)
{
    const float ab[2] = {alpha, beta};
    conv_job j = {.x = x, .y = y, .scale = ab};
    return cpu_pool_for(pool_of(impl), n, GRAIN_ELEMS, axpby_range, &j, err);
}

/* Pixels go in blocks of NORM_PIX so that the channel pattern repeats in
 * a flat, vectorizable loop of NORM_PIX*c elements. */
enum { NORM_PIX = 16 };

CPU_VEC static void norm_block(const uint8_t *restrict x, size_t m,
                               const float *restrict a,
                               const float *restrict b, float *restrict y)
{
    for (size_t j = 0; j < m; j++) y[j] = (float)x[j] * a[j] + b[j];
}

int gpu__cpu_normalize_u8_ch(void *impl, const uint8_t *x, size_t npix,
                             int c, const float *mean, const float *std,
                             float *y, st_error *err)
{
    (void)impl, (void)err;
    float a[NORM_PIX * 4], b[NORM_PIX * 4];
    for (int p = 0; p < NORM_PIX; p++)
        for (int k = 0; k < c; k++) {
            a[p * c + k] = (1.0f / 255.0f) / std[k];
            b[p * c + k] = -mean[k] / std[k];
        }
    const size_t blk = (size_t)NORM_PIX * c, total = npix * (size_t)c;
    size_t i = 0;
    for (; i + blk <= total; i += blk) norm_block(x + i, blk, a, b, y + i);
    norm_block(x + i, total - i, a, b, y + i);
    return 0;
}

int gpu__cpu_flip_w(void *impl, const float *x, int n, int h, int w, int c,
                    float *y, st_error *err)
{
    (void)impl, (void)err;
    const size_t row = (size_t)w * c;
    for (size_t r = 0; r < (size_t)n * h; r++) {
        const float *xr = x + r * row;
        float *yr = y + r * row;
        for (int ix = 0; ix < w; ix++)
            memcpy(yr + (size_t)(w - 1 - ix) * c, xr + (size_t)ix * c,
                   (size_t)c * sizeof *yr);
    }
    return 0;
}
