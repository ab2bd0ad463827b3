/* gpu/cpu_gemm.c — the CPU backend's GEMM (gpu_gemm): OpenBLAS, run one
 * thread per call on the backend's own threads, and the backend's own
 * kernels for the thin shapes that OpenBLAS runs far below its peak.
 *
 * OpenBLAS's threads. OpenBLAS threads a GEMM itself, but its idle
 * threads spin in sched_yield while the pool's run the ops between the
 * GEMMs: 8-13% of a conv step's samples were in the scheduler (perf, the
 * 2-core AMD EPYC VM). Run on the pool instead, 200 steps of the
 * reference conv net went from 1,197 to 1,273 samples/s (medians of 3
 * alternating runs, with the 2x2 pool's own loops of gpu/cpu_conv.c;
 * the VM's noise is of the same order), the MLP's epochs from 30.0k to
 * 31.4k samples/s (2026-12-02). So OpenBLAS is held at 1 thread
 * (gpu/cpu_backend.c), and gpu__cpu_gemm splits C's rows into one block
 * per pool thread, each a single-threaded cblas_sgemm.
 * Blocks start at multiples of SPLIT_ROWS = 12 rows: OpenBLAS computes a
 * row-major C as the column-major C^T, in tiles of its kernel's N unroll
 * (12 for the Zen kernel), whose edge tiles add in another order, so only
 * a split on tile boundaries leaves every bit as one call would give it
 * (measured on the AMD VM: rows split at 2040 or 2064 of 4096 agree, at
 * 2048 they do not; tests/test_cpu_gemm.c's test_split would catch a
 * kernel whose unroll does not divide 12, whose results would still be
 * fixed at a fixed thread count). Splitting the columns changes bits
 * wherever it is made, so a C of fewer than 2 * SPLIT_ROWS rows stays on
 * one thread. A block does at least SPLIT_MIN_WORK multiply-adds, above
 * OpenBLAS's small-matrix path and the ~10 us of waking a worker.
 *
 * The thin shapes: a first conv layer's lowering, whose inner dimension
 * K = kh*kw*c is 9 for a gray image and 27 for RGB.
 *
 *   forward          C (M, N) = alpha A (M, K) . B (K, N) + beta C
 *                    with K <= THIN_MAX, N <= THIN_MAX_N, M large
 *   backward-filter  C (M, N) = alpha A^T . B + beta C, A (K, M), B (K, N)
 *                    with M <= THIN_MAX, N <= THIN_MAX_N, K large
 *
 * OpenBLAS packs A and B, zeroes C and runs a 16x2-register kernel whose
 * K loop is 9 long: 14 GFLOP/s on the 28x28 first layer of the reference
 * net on the Intel VM, where these loops keep one output row (or
 * the whole M x N filter gradient) in registers or L1 and stream the big
 * operand once. Rows go to the backend's threads; the backward-filter
 * reduction adds partial sums of fixed row chunks in chunk order, so the
 * result does not depend on the thread count.
 */
#include <cblas.h>
#include <stddef.h>

#include "gpu/cpu_ops.h"

enum { THIN_MAX = 32, THIN_MAX_N = 64, THIN_MIN_ROWS = 4096 };
_Static_assert((int)THIN_MAX == (int)GPU_CONV_THIN_K &&
                   (int)THIN_MAX_N == (int)GPU_CONV_THIN_OC,
               "the thin convolution's bounds are the thin GEMM's");

typedef struct thin_job {
    int M, N, K, lda, ldb, ldc, parts;
    float alpha, beta;
    const float *A, *B;
    float *C, *part;  /* part: (parts, M*N) partial sums */
} thin_job;

/* One output row of the forward case, its N outputs in registers when N
 * is a constant (always inlined into the per-N loops below). */
static inline __attribute__((always_inline)) void
nn_row(const float *restrict a, const float *restrict B, int ldb, int K,
       const int N, float alpha, float beta, float *restrict c)
{
    float acc[THIN_MAX_N];
    for (int n = 0; n < N; n++) acc[n] = 0.0f;
    for (int k = 0; k < K; k++) {
        const float av = a[k], *restrict b = B + (size_t)k * ldb;
        for (int n = 0; n < N; n++) acc[n] += av * b[n];
    }
    if (beta == 0.0f)
        for (int n = 0; n < N; n++) c[n] = alpha * acc[n];
    else
        for (int n = 0; n < N; n++) c[n] = alpha * acc[n] + beta * c[n];
}

#define NN_ROWS(NAME, NCONST)                                              \
    CPU_VEC static void NAME(const thin_job *j, size_t r0, size_t r1)      \
    {                                                                      \
        for (size_t i = r0; i < r1; i++)                                   \
            nn_row(j->A + i * j->lda, j->B, j->ldb, j->K, NCONST,          \
                   j->alpha, j->beta, j->C + i * j->ldc);                  \
    }
NN_ROWS(nn_rows16, 16)
NN_ROWS(nn_rows32, 32)
NN_ROWS(nn_rows64, 64)
NN_ROWS(nn_rows_any, j->N)

/* F16, F32, F64 or F_any (...): the loop compiled for output width N. */
#define BY_WIDTH(N, F, ...)                                                \
    ((N) == 16   ? F##16(__VA_ARGS__)                                      \
     : (N) == 32 ? F##32(__VA_ARGS__)                                      \
     : (N) == 64 ? F##64(__VA_ARGS__)                                      \
                 : F##_any(__VA_ARGS__))

static void nn_range(void *ctx, size_t r0, size_t r1)
{
    const thin_job *j = ctx;
    BY_WIDTH(j->N, nn_rows, j, r0, r1);
}

/* part (M, N) = sum over rows [r0, r1) of a_r^T b_r: A's row r holds the
 * M values, B's row r the N. */
CPU_VEC static void tn_chunk(const thin_job *j, size_t r0, size_t r1,
                             float *restrict part)
{
    const int M = j->M, N = j->N;
    for (int i = 0; i < M * N; i++) part[i] = 0.0f;
    for (size_t r = r0; r < r1; r++) {
        const float *restrict a = j->A + r * j->lda;
        const float *restrict b = j->B + r * j->ldb;
        for (int m = 0; m < M; m++) {
            const float av = a[m];
            float *restrict p = part + (size_t)m * N;
            for (int n = 0; n < N; n++) p[n] += av * b[n];
        }
    }
}

static void tn_parts(void *ctx, size_t p0, size_t p1)
{
    const thin_job *j = ctx;
    for (size_t p = p0; p < p1; p++)
        tn_chunk(j, (size_t)j->K * p / (size_t)j->parts,
                 (size_t)j->K * (p + 1) / (size_t)j->parts,
                 j->part + p * (size_t)(j->M * j->N));
}

/* The row chunks of a reduction over rows: as many as rows allow, at most
 * GPU__CPU_THIN_PARTS, a function of rows alone (the sums do not depend on
 * the thread count). */
static int thin_parts(size_t rows)
{
    size_t p = rows / 2048;
    return p < 1 ? 1 : p > GPU__CPU_THIN_PARTS ? GPU__CPU_THIN_PARTS : (int)p;
}

CPU_VEC static void tn_finish(const thin_job *j)
{
    const int M = j->M, N = j->N, mn = M * N;
    for (int m = 0; m < M; m++) {
        float *restrict c = j->C + (size_t)m * j->ldc;
        for (int n = 0; n < N; n++) {
            float s = j->part[(size_t)m * N + n];
            for (int p = 1; p < j->parts; p++)
                s += j->part[(size_t)p * mn + (size_t)m * N + n];
            c[n] = j->beta == 0.0f ? j->alpha * s
                                   : j->alpha * s + j->beta * c[n];
        }
    }
}

static int gemm_thin(void *impl, int tA, int tB, int M, int N, int K,
                       float alpha, const float *A, int lda, const float *B,
                       int ldb, float beta, float *C, int ldc, st_error *err)
{
    gpu__cpu_impl *c = impl;
    thin_job j = {.M = M, .N = N, .K = K, .lda = lda, .ldb = ldb,
                  .ldc = ldc, .alpha = alpha, .beta = beta, .A = A, .B = B,
                  .C = C, .part = c->thin_part};
    if (tB || N > THIN_MAX_N) return 0;
    if (!tA && K <= THIN_MAX && M >= THIN_MIN_ROWS) {
        ST_TRY(cpu_pool_for(c->pool, (size_t)M, 512, nn_range, &j, err));
        return 1;
    }
    if (tA && M <= THIN_MAX && K >= THIN_MIN_ROWS) {
        j.parts = thin_parts((size_t)K);
        ST_TRY(cpu_pool_for(c->pool, (size_t)j.parts, 1, tn_parts, &j, err));
        tn_finish(&j);
        return 1;
    }
    return 0;
}

/* ---- the thin convolution: the same loops, reading x through the taps --
 * gpu_conv_thin_fwd / _wgrad: a first conv layer's lowering (K = 9 for a
 * gray image) costs more to write and read back than the thin kernels
 * above take to multiply it, so these read each row of the lowering
 * straight from x. The taps come in K's order and padded taps are
 * skipped where the lowering would hold zeros, so the sums are the thin
 * GEMMs' bit for bit (up to a zero's sign); the filter gradient's row
 * chunks are gemm_thin's. */

typedef struct thin_conv_job {
    gpu_conv_geom g;
    int oc, parts;
    const float *x, *w, *dy;
    float *y, *part;  /* part: (parts, K*oc) partial sums */
} thin_conv_job;

/* Outputs [lo, hi] of a line whose tap kx lands inside the input row. */
static inline __attribute__((always_inline)) void
tap_span(const gpu_conv_geom *g, int kx, int *lo, int *hi)
{
    int first = g->pw - kx; /* ox*sw - pw + kx >= 0 */
    *lo = first <= 0 ? 0 : (first + g->sw - 1) / g->sw;
    int last = (g->w - 1 + g->pw - kx) / g->sw; /* ... <= w - 1 */
    *hi = g->w - 1 + g->pw - kx < 0 ? -1 : last < g->ow ? last : g->ow - 1;
}

/* One output line (image row oy) of N channels, y (ow, N): each tap in
 * K's order adds its product to every output it reaches, so each output
 * sums its taps in the order a lowered row would give them. */
static inline __attribute__((always_inline)) void
conv_line(const thin_conv_job *j, const float *restrict xi, int oy,
          const int N, float *restrict y)
{
    const gpu_conv_geom *g = &j->g;
    for (int i = 0; i < g->ow * N; i++) y[i] = 0.0f;
    for (int ky = 0; ky < g->kh; ky++) {
        int iy = oy * g->sh - g->ph + ky;
        if (iy < 0 || iy >= g->h) continue;
        const float *restrict xr = xi + (size_t)iy * g->w * g->c;
        for (int kx = 0; kx < g->kw; kx++) {
            int lo, hi;
            tap_span(g, kx, &lo, &hi);
            const float *restrict b =
                j->w + (size_t)(ky * g->kw + kx) * g->c * N;
            for (int ci = 0; ci < g->c; ci++, b += N)
                for (int ox = lo; ox <= hi; ox++) {
                    const float av =
                        xr[(size_t)(ox * g->sw - g->pw + kx) * g->c + ci];
                    float *restrict o = y + (size_t)ox * N;
                    for (int n = 0; n < N; n++) o[n] += av * b[n];
                }
        }
    }
}

/* Output lines [l0, l1): line l is image l / oh, output row l % oh. */
#define CONV_LINES(NAME, NCONST)                                           \
    CPU_VEC static void NAME(const thin_conv_job *j, size_t l0, size_t l1) \
    {                                                                      \
        const gpu_conv_geom *g = &j->g;                                    \
        const size_t img_in = (size_t)g->h * g->w * g->c;                  \
        for (size_t l = l0; l < l1; l++)                                   \
            conv_line(j, j->x + l / (size_t)g->oh * img_in,                \
                      (int)(l % (size_t)g->oh), NCONST,                    \
                      j->y + l * (size_t)g->ow * j->oc);                   \
    }
CONV_LINES(conv_lines16, 16)
CONV_LINES(conv_lines32, 32)
CONV_LINES(conv_lines64, 64)
CONV_LINES(conv_lines_any, j->oc)

static void conv_fwd_range(void *ctx, size_t l0, size_t l1)
{
    const thin_conv_job *j = ctx;
    BY_WIDTH(j->oc, conv_lines, j, l0, l1);
}

int gpu__cpu_conv_thin_fwd(void *impl, const gpu_conv_geom *g,
                           const float *x, const float *w, int oc, float *y,
                           st_error *err)
{
    gpu__cpu_impl *c = impl;
    thin_conv_job j = {.g = *g, .oc = oc, .x = x, .w = w, .y = y};
    size_t lines = (size_t)g->n * g->oh;
    size_t grain = 8192 / ((size_t)g->ow + 1) + 1; /* ~8k pixels a task */
    return cpu_pool_for(c->pool, lines, grain, conv_fwd_range, &j, err);
}

/* part (K, N) += the outputs [ox0, ox1) of line (image xi, row oy):
 * each part entry adds its rows in ascending order, as gemm_thin's. */
static inline __attribute__((always_inline)) void
wgrad_line(const thin_conv_job *j, const float *restrict xi, int oy, int ox0,
           int ox1, const float *restrict dy, const int N,
           float *restrict part)
{
    const gpu_conv_geom *g = &j->g;
    for (int ky = 0; ky < g->kh; ky++) {
        int iy = oy * g->sh - g->ph + ky;
        if (iy < 0 || iy >= g->h) continue;
        const float *restrict xr = xi + (size_t)iy * g->w * g->c;
        for (int kx = 0; kx < g->kw; kx++) {
            int lo, hi;
            tap_span(g, kx, &lo, &hi);
            lo = lo > ox0 ? lo : ox0, hi = hi < ox1 - 1 ? hi : ox1 - 1;
            float *restrict p = part + (size_t)(ky * g->kw + kx) * g->c * N;
            for (int ci = 0; ci < g->c; ci++, p += N) {
                float acc[THIN_MAX_N];
                for (int n = 0; n < N; n++) acc[n] = p[n];
                for (int ox = lo; ox <= hi; ox++) {
                    const float av =
                        xr[(size_t)(ox * g->sw - g->pw + kx) * g->c + ci];
                    const float *restrict b = dy + (size_t)ox * N;
                    for (int n = 0; n < N; n++) acc[n] += av * b[n];
                }
                for (int n = 0; n < N; n++) p[n] = acc[n];
            }
        }
    }
}

/* part (K, oc) = sum over output pixels [r0, r1) of col_r^T dy_r. */
#define WGRAD_CHUNK(NAME, NCONST)                                          \
    CPU_VEC static void NAME(const thin_conv_job *j, size_t r0, size_t r1, \
                             float *restrict part)                         \
    {                                                                      \
        const gpu_conv_geom *g = &j->g;                                    \
        const size_t ow = (size_t)g->ow;                                   \
        const size_t img_in = (size_t)g->h * g->w * g->c;                  \
        for (int i = 0; i < g->kh * g->kw * g->c * j->oc; i++)             \
            part[i] = 0.0f;                                                \
        for (size_t r = r0; r < r1;) {                                     \
            size_t line = r / ow, ox0 = r % ow;                            \
            size_t ox1 = r1 - line * ow < ow ? r1 - line * ow : ow;        \
            wgrad_line(j, j->x + line / (size_t)g->oh * img_in,            \
                       (int)(line % (size_t)g->oh), (int)ox0, (int)ox1,    \
                       j->dy + line * ow * (size_t)j->oc, NCONST, part);   \
            r = line * ow + ox1;                                           \
        }                                                                  \
    }
WGRAD_CHUNK(wgrad_chunk16, 16)
WGRAD_CHUNK(wgrad_chunk32, 32)
WGRAD_CHUNK(wgrad_chunk64, 64)
WGRAD_CHUNK(wgrad_chunk_any, j->oc)

static void wgrad_chunk(const thin_conv_job *j, size_t r0, size_t r1,
                        float *part)
{
    BY_WIDTH(j->oc, wgrad_chunk, j, r0, r1, part);
}

static void wgrad_parts(void *ctx, size_t p0, size_t p1)
{
    const thin_conv_job *j = ctx;
    const size_t rows = (size_t)j->g.n * j->g.oh * j->g.ow;
    const size_t kn = (size_t)j->g.kh * j->g.kw * j->g.c * j->oc;
    for (size_t p = p0; p < p1; p++)
        wgrad_chunk(j, rows * p / (size_t)j->parts,
                    rows * (p + 1) / (size_t)j->parts, j->part + p * kn);
}

int gpu__cpu_conv_thin_wgrad(void *impl, const gpu_conv_geom *g,
                             const float *x, const float *dy, int oc,
                             float beta, float *gw, st_error *err)
{
    gpu__cpu_impl *c = impl;
    thin_conv_job j = {.g = *g, .oc = oc, .x = x, .dy = dy,
                       .part = c->thin_part,
                       .parts = thin_parts((size_t)g->n * g->oh * g->ow)};
    ST_TRY(cpu_pool_for(c->pool, (size_t)j.parts, 1, wgrad_parts, &j, err));
    /* the partial sums' order and alpha/beta as the thin GEMM's own */
    thin_job f = {.M = g->kh * g->kw * g->c, .N = oc, .ldc = oc,
                  .parts = j.parts, .alpha = 1.0f, .beta = beta, .C = gw,
                  .part = c->thin_part};
    tn_finish(&f);
    return 0;
}

/* ---- OpenBLAS, one block of C per thread ------------------------------ */

enum { SPLIT_ROWS = 12, SPLIT_MIN_WORK = 1 << 22 };

typedef struct blas_job {
    int tA, tB, M, N, K, lda, ldb, ldc;
    float alpha, beta;
    const float *A, *B;
    float *C;
} blas_job;

/* Rows [u0 * SPLIT_ROWS, u1 * SPLIT_ROWS) of C: A's rows, or its columns
 * when transposed. */
static void blas_rows(void *ctx, size_t u0, size_t u1)
{
    const blas_job *j = ctx;
    size_t r0 = u0 * SPLIT_ROWS, r1 = u1 * SPLIT_ROWS;
    if (r1 > (size_t)j->M) r1 = (size_t)j->M;
    cblas_sgemm(CblasRowMajor, j->tA ? CblasTrans : CblasNoTrans,
                j->tB ? CblasTrans : CblasNoTrans, (int)(r1 - r0), j->N, j->K,
                j->alpha, j->tA ? j->A + r0 : j->A + r0 * (size_t)j->lda,
                j->lda, j->B, j->ldb, j->beta, j->C + r0 * (size_t)j->ldc,
                j->ldc);
}

int gpu__cpu_gemm(void *impl, int tA, int tB, int M, int N, int K,
                  float alpha, const float *A, int lda, const float *B,
                  int ldb, float beta, float *C, int ldc, st_error *err)
{
    gpu__cpu_impl *c = impl;
    int thin = gemm_thin(impl, tA, tB, M, N, K, alpha, A, lda, B, ldb, beta,
                         C, ldc, err);
    if (thin != 0) return thin < 0 ? thin : 0;
    blas_job j = {.tA = tA, .tB = tB, .M = M, .N = N, .K = K, .lda = lda,
                  .ldb = ldb, .ldc = ldc, .alpha = alpha, .beta = beta,
                  .A = A, .B = B, .C = C};
    size_t units = ((size_t)M + SPLIT_ROWS - 1) / SPLIT_ROWS;
    double work = (double)N * K * SPLIT_ROWS; /* per unit */
    size_t grain = (size_t)(SPLIT_MIN_WORK / (work > 1 ? work : 1)) + 1;
    return cpu_pool_for(c->pool, units, grain, blas_rows, &j, err);
}

size_t gpu__cpu_thin_part_floats(void)
{
    return (size_t)GPU__CPU_THIN_PARTS * THIN_MAX * THIN_MAX_N;
}
