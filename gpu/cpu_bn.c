/* gpu/cpu_bn.c — the CPU backend's batch norm (gpu/device.h's gpu_bn_*,
 * 2d over NHWC rows): training forward, evaluation forward and backward,
 * each with the optional fused ReLU.
 *
 * Plain loops on the backend's worker threads (gpu/cpu_pool.h). The sums
 * run over fixed row chunks (bn_parts(rows), a function of rows alone)
 * whose partial sums are added in chunk order, in column chunks of
 * BN_CHUNK, in double, into the impl's scratch: nothing is allocated
 * here, and every result is bit for bit the same at any thread count.
 *
 * Exact float formulas (the CUDA backend, gpu/bn_kernels.cu, matches
 * them within tolerance):
 *   train/eval   y = (x - mean)*scale + beta, scale = gamma*invstd (from
 *                the saved float invstd), invstd = 1/sqrt(var + eps),
 *                statistics in double; then max(y, 0) when relu
 *   backward     dx = a*g + b*(x - mean) + cc (a, b, cc per column, from
 *                double sums; see gpu__cpu_bn_bwd), g = dy, or dy masked
 *                where the pre-activation, recomputed from x with the
 *                forward's own expression, is not positive (fused ReLU)
 */
#include <math.h>

#include "gpu/cpu_ops.h"

enum { BN_CHUNK = GPU__CPU_BN_CHUNK, BN_PARTS = GPU__CPU_BN_PARTS };

/* Rows per block below which a pass stays on one thread: a block must
 * outweigh the ~10 us of waking a worker. */
enum { GRAIN_ROWS = 256 };

static cpu_pool *pool_of(void *impl) { return ((gpu__cpu_impl *)impl)->pool; }

/* The jobs' arguments. */
typedef struct bn_job {
    const float *x, *dy, *mean, *scale, *shift, *a, *b, *cc;
    float *y, *dx;
    int m, parts, relu;
    size_t rows, ld;
    double *s1, *s2;  /* (parts, BN_CHUNK) partial sums */
} bn_job;

/* s[k] and q[k] = sums over rows of x[r*ld + k] and of its square, for
 * k < m, in double. */
CPU_VEC static void col_moments(const float *restrict x, size_t rows,
                                size_t ld, int m, double *restrict s,
                                double *restrict q)
{
    for (int k = 0; k < m; k++) s[k] = 0.0, q[k] = 0.0;
    for (size_t r = 0; r < rows; r++)
        for (int k = 0; k < m; k++) {
            double v = (double)x[r * ld + k];
            s[k] += v;
            q[k] += v * v;
        }
}

/* The affine map of one value: forward writes it, the fused ReLU's
 * backward recomputes it for its mask; one expression, so the same bits. */
static inline __attribute__((always_inline)) float
bn_pre(float x, float mean, float scale, float shift)
{
    return (x - mean) * scale + shift;
}

/* y = (x - mean)*scale + shift per column (y may equal x), then the
 * fused ReLU when relu. */
CPU_VEC_SELECT static void col_affine(const float *x, size_t rows,
                                      size_t ld, int m,
                                      const float *restrict mean,
                                      const float *restrict scale,
                                      const float *restrict shift, int relu,
                                      float *y)
{
    if (relu)
        for (size_t r = 0; r < rows; r++)
            for (int k = 0; k < m; k++) {
                float v = bn_pre(x[r * ld + k], mean[k], scale[k], shift[k]);
                y[r * ld + k] = v > 0.0f ? v : 0.0f;
            }
    else
        for (size_t r = 0; r < rows; r++)
            for (int k = 0; k < m; k++)
                y[r * ld + k] = bn_pre(x[r * ld + k], mean[k], scale[k],
                                       shift[k]);
}

/* dy masked by the fused ReLU: 0 where the forward's pre-activation,
 * recomputed from x by bn_pre with the forward's coefficients (so bit
 * for bit the one the forward clipped), is not positive. A select, so
 * the loops around it stay vectorized; they take relu as a constant. */
static inline __attribute__((always_inline)) float
relu_masked(float x, float dy, float mean, float scale, float shift)
{
    return bn_pre(x, mean, scale, shift) > 0.0f ? dy : 0.0f;
}

/* sdy[k] = sum dy, sdx[k] = sum dy * (x - mean[k]), in double, dy
 * masked by the fused ReLU when relu. */
CPU_VEC_SELECT static void bn_grad_sums(const float *restrict x,
                                        const float *restrict dy, size_t rows,
                                        size_t ld, int m,
                                        const float *restrict mean,
                                        const float *restrict scale,
                                        const float *restrict shift, int relu,
                                        double *restrict sdy,
                                        double *restrict sdx)
{
    for (int k = 0; k < m; k++) sdy[k] = sdx[k] = 0.0;
    if (relu)
        for (size_t r = 0; r < rows; r++)
            for (int k = 0; k < m; k++) {
                double g = (double)relu_masked(x[r * ld + k], dy[r * ld + k],
                                               mean[k], scale[k], shift[k]);
                sdy[k] += g;
                sdx[k] += g * ((double)x[r * ld + k] - (double)mean[k]);
            }
    else
        for (size_t r = 0; r < rows; r++)
            for (int k = 0; k < m; k++) {
                double g = (double)dy[r * ld + k];
                sdy[k] += g;
                sdx[k] += g * ((double)x[r * ld + k] - (double)mean[k]);
            }
}

/* dx = a*dy + b*(x - mean) + cc per column (dx may equal dy), dy masked
 * by the fused ReLU when relu. */
CPU_VEC_SELECT static void bn_dx(const float *restrict x, const float *dy,
                                 size_t rows, size_t ld, int m,
                                 const float *restrict mean,
                                 const float *restrict scale,
                                 const float *restrict shift, int relu,
                                 const float *restrict a,
                                 const float *restrict b,
                                 const float *restrict cc, float *dx)
{
    if (relu)
        for (size_t r = 0; r < rows; r++)
            for (int k = 0; k < m; k++) {
                float g = relu_masked(x[r * ld + k], dy[r * ld + k], mean[k],
                                      scale[k], shift[k]);
                dx[r * ld + k] = a[k] * g +
                                 b[k] * (x[r * ld + k] - mean[k]) + cc[k];
            }
    else
        for (size_t r = 0; r < rows; r++)
            for (int k = 0; k < m; k++)
                dx[r * ld + k] = a[k] * dy[r * ld + k] +
                                 b[k] * (x[r * ld + k] - mean[k]) + cc[k];
}

/* The affine map's scale, gamma*invstd, from the saved float invstd: the
 * training forward and the fused ReLU's backward compute it alike. */
static float bn_scale(float gamma, float invstd)
{
    return (float)((double)gamma * (double)invstd);
}

/* Batch norm's row chunks: as many as rows allow, at most BN_PARTS, and
 * a function of rows alone, so that the sums do not depend on the thread
 * count. Chunk p is rows [p*rows/P, (p+1)*rows/P). */
static int bn_parts(size_t rows)
{
    size_t p = rows / 1024;
    return p < 1 ? 1 : p > BN_PARTS ? BN_PARTS : (int)p;
}

static void part_rows(const bn_job *j, size_t p, size_t *lo, size_t *hi)
{
    *lo = j->rows * p / (size_t)j->parts;
    *hi = j->rows * (p + 1) / (size_t)j->parts;
}

/* Each part's column sums of x (s1) and of x^2 (s2). */
static void moment_parts(void *ctx, size_t p0, size_t p1)
{
    const bn_job *j = ctx;
    for (size_t p = p0; p < p1; p++) {
        size_t lo, hi;
        part_rows(j, p, &lo, &hi);
        col_moments(j->x + lo * j->ld, hi - lo, j->ld, j->m,
                    j->s1 + p * BN_CHUNK, j->s2 + p * BN_CHUNK);
    }
}

static void grad_parts(void *ctx, size_t p0, size_t p1)
{
    const bn_job *j = ctx;
    for (size_t p = p0; p < p1; p++) {
        size_t lo, hi;
        part_rows(j, p, &lo, &hi);
        bn_grad_sums(j->x + lo * j->ld, j->dy + lo * j->ld, hi - lo, j->ld,
                     j->m, j->mean, j->scale, j->shift, j->relu,
                     j->s1 + p * BN_CHUNK, j->s2 + p * BN_CHUNK);
    }
}

static void affine_rows(void *ctx, size_t r0, size_t r1)
{
    const bn_job *j = ctx;
    col_affine(j->x + r0 * j->ld, r1 - r0, j->ld, j->m, j->mean, j->scale,
               j->shift, j->relu, j->y + r0 * j->ld);
}

static void dx_rows(void *ctx, size_t r0, size_t r1)
{
    const bn_job *j = ctx;
    bn_dx(j->x + r0 * j->ld, j->dy + r0 * j->ld, r1 - r0, j->ld, j->m,
          j->mean, j->scale, j->shift, j->relu, j->a, j->b, j->cc,
          j->dx + r0 * j->ld);
}

/* out[k] = sum over the job's parts of part[p][k], in part order. */
static void add_parts(const bn_job *j, const double *part, double *out)
{
    for (int k = 0; k < j->m; k++) out[k] = 0.0;
    for (int p = 0; p < j->parts; p++)
        for (int k = 0; k < j->m; k++) out[k] += part[(size_t)p * BN_CHUNK + k];
}

int gpu__cpu_bn_fwd_train(void *impl, const float *x, int rows, int c,
                          const float *gamma, const float *beta, float eps,
                          float momentum, float *run_mean, float *run_var,
                          float *save_mean, float *save_invstd, int relu,
                          float *y, st_error *err)
{
    cpu_pool *pool = pool_of(impl);
    double mean[BN_CHUNK], ss[BN_CHUNK];
    float scale[BN_CHUNK];
    const double unbias = (double)rows / (double)(rows - 1);
    double *part = ((gpu__cpu_impl *)impl)->bn_part;
    bn_job j = {.rows = (size_t)rows, .ld = (size_t)c,
                .parts = bn_parts((size_t)rows), .s1 = part,
                .s2 = part + BN_PARTS * BN_CHUNK, .relu = relu};
    for (int k0 = 0; k0 < c; k0 += BN_CHUNK) {
        j.m = c - k0 < BN_CHUNK ? c - k0 : BN_CHUNK;
        j.x = x + k0;
        ST_TRY(cpu_pool_for(pool, (size_t)j.parts, 1, moment_parts, &j, err));
        add_parts(&j, j.s1, mean);
        add_parts(&j, j.s2, ss);
        for (int k = 0; k < j.m; k++) {
            int i = k0 + k;
            mean[k] /= (double)rows;
            /* E[x^2] - mean^2 in double: float data's squares are exact
             * in double, so the cancellation costs at most a few of its
             * 53 bits unless |mean| is ~1e6 standard deviations */
            double var = ss[k] / (double)rows - mean[k] * mean[k];
            if (var < 0.0) var = 0.0;
            double inv = 1.0 / sqrt(var + (double)eps);
            save_mean[i] = (float)mean[k];
            save_invstd[i] = (float)inv;
            run_mean[i] = (float)((1.0 - momentum) * run_mean[i] +
                                  (double)momentum * mean[k]);
            run_var[i] = (float)((1.0 - momentum) * run_var[i] +
                                 (double)momentum * var * unbias);
            /* from the saved (float) invstd, as backward recomputes it */
            scale[k] = bn_scale(gamma[i], save_invstd[i]);
        }
        j.mean = save_mean + k0, j.scale = scale, j.shift = beta + k0;
        j.y = y + k0;
        ST_TRY(cpu_pool_for(pool, (size_t)rows, GRAIN_ROWS, affine_rows, &j,
                            err));
    }
    return 0;
}

int gpu__cpu_bn_fwd_eval(void *impl, const float *x, int rows, int c,
                         const float *gamma, const float *beta, float eps,
                         const float *run_mean, const float *run_var,
                         int relu, float *y, st_error *err)
{
    float scale[BN_CHUNK];
    bn_job j = {.rows = (size_t)rows, .ld = (size_t)c, .scale = scale,
                .relu = relu};
    for (int k0 = 0; k0 < c; k0 += BN_CHUNK) {
        j.m = c - k0 < BN_CHUNK ? c - k0 : BN_CHUNK;
        for (int k = 0; k < j.m; k++) {
            int i = k0 + k;
            double inv = 1.0 / sqrt((double)run_var[i] + (double)eps);
            scale[k] = (float)((double)gamma[i] * inv);
        }
        j.x = x + k0, j.y = y + k0;
        j.mean = run_mean + k0, j.shift = beta + k0;
        ST_TRY(cpu_pool_for(pool_of(impl), (size_t)rows, GRAIN_ROWS,
                            affine_rows, &j, err));
    }
    return 0;
}
/* With xhat = (x - mean)*invstd, N = rows:
 *   dbeta = sum dy,  dgamma = sum dy*xhat,
 *   dx = gamma*invstd * (dy - dbeta/N - xhat*dgamma/N),
 * folded per column into dx = a*dy + b*(x - mean) + cc. */
int gpu__cpu_bn_bwd(void *impl, const float *x, const float *dy, int rows,
                    int c, const float *gamma, const float *beta,
                    const float *save_mean, const float *save_invstd,
                    const float *relu_y, float *dgamma, float *dbeta,
                    float *dx, int accumulate, st_error *err)
{
    cpu_pool *pool = pool_of(impl);
    double sdy[BN_CHUNK], sdx[BN_CHUNK];
    float a[BN_CHUNK], b[BN_CHUNK], cc[BN_CHUNK], scale[BN_CHUNK];
    double *part = ((gpu__cpu_impl *)impl)->bn_part;
    /* the fused ReLU's mask comes from x, not relu_y: one stream fewer */
    bn_job j = {.rows = (size_t)rows, .ld = (size_t)c,
                .parts = bn_parts((size_t)rows), .s1 = part,
                .s2 = part + BN_PARTS * BN_CHUNK, .a = a, .b = b, .cc = cc,
                .scale = scale, .relu = relu_y != NULL};
    for (int k0 = 0; k0 < c; k0 += BN_CHUNK) {
        j.m = c - k0 < BN_CHUNK ? c - k0 : BN_CHUNK;
        j.x = x + k0, j.dy = dy + k0, j.mean = save_mean + k0;
        j.shift = beta + k0;
        for (int k = 0; k < j.m; k++)
            scale[k] = bn_scale(gamma[k0 + k], save_invstd[k0 + k]);
        ST_TRY(cpu_pool_for(pool, (size_t)j.parts, 1, grad_parts, &j, err));
        add_parts(&j, j.s1, sdy);
        add_parts(&j, j.s2, sdx);
        for (int k = 0; k < j.m; k++) {
            int i = k0 + k;
            double inv = save_invstd[i];
            double dg = sdx[k] * inv, db = sdy[k];
            dgamma[i] = (float)(accumulate ? dgamma[i] + dg : dg);
            dbeta[i] = (float)(accumulate ? dbeta[i] + db : db);
            double gi = (double)gamma[i] * inv;
            a[k] = (float)gi;
            b[k] = (float)(-gi * inv * dg / (double)rows);
            cc[k] = (float)(-gi * db / (double)rows);
        }
        j.dx = dx + k0;
        ST_TRY(cpu_pool_for(pool, (size_t)rows, GRAIN_ROWS, dx_rows, &j, err));
    }
    return 0;
}

