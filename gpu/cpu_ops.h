/* gpu/cpu_ops.h — internal: shared by the CPU backend's files.
 *
 * defines: CPU_VEC, CPU_VEC_SELECT, gpu__cpu_impl, gpu__cpu_gemm,
 *          gpu__cpu_blas_note, gpu__cpu_softmax_xent_ls, GPU__CPU_CONV_OPS,
 *          gpu__cpu_* ops
 *
 * gpu/cpu_backend.c holds the device basics, the dense-net math and the
 * softmax; gpu/cpu_conv.c the conv-net ops (gpu/device.h's NHWC section)
 * but batch norm, which is gpu/cpu_bn.c's, all of them taken into
 * cpu_backend.c's table through GPU__CPU_CONV_OPS; gpu/cpu_gemm.c the
 * GEMM (OpenBLAS split over the threads, and the thin shapes' own
 * kernels) and the thin convolution;
 * gpu/cpu_pool.c the threads that all of them split their loops over.
 */
#ifndef ST_GPU_CPU_OPS_H
#define ST_GPU_CPU_OPS_H

#include "gpu/backend.h"
#include "gpu/cpu_pool.h"

/* The CPU backend's impl (the void *impl of its ops). */
enum { GPU__CPU_BN_CHUNK = 256, GPU__CPU_BN_PARTS = 16,
       GPU__CPU_THIN_PARTS = 16 };
typedef struct gpu__cpu_impl {
    int threads;      /* the pool's threads (OpenBLAS runs 1 per call) */
    cpu_pool *pool;   /* every op's threads, the GEMMs' included (NULL-safe:
                         1 thread) */
    double *bn_part;  /* (2, GPU__CPU_BN_PARTS, GPU__CPU_BN_CHUNK) batch-norm
                         partial sums, scratch of one op at a time */
    float *thin_part; /* (gpu__cpu_thin_part_floats()) the thin GEMMs'
                         partial sums, likewise */
} gpu__cpu_impl;

/* gpu_gemm (gpu/cpu_gemm.c): C = alpha op(A) op(B) + beta C, on the
 * pool's threads; sizes already checked (M, N > 0). */
int gpu__cpu_gemm(void *impl, int tA, int tB, int M, int N, int K,
                  float alpha, const float *A, int lda, const float *B,
                  int ldb, float beta, float *C, int ldc, st_error *err);
size_t gpu__cpu_thin_part_floats(void);

/* gpu_cpu_blas_note's rule (gpu/device.h), on its inputs: the CPU's
 * AVX-512, OpenBLAS's kernel set and OPENBLAS_CORETYPE (NULL: unset). */
int gpu__cpu_blas_note(int has_avx512, const char *core, const char *env,
                       char *note, size_t len);

/* GCC 12 at -O2 vectorizes loops only under the "very cheap" cost model,
 * which rejects any loop needing a scalar epilogue: all of ours. The hot
 * loops therefore ask for O3's vectorizer, and get an AVX2/FMA clone
 * chosen at load time (the project targets x86-64-v2). -std=c11 keeps
 * -ffp-contract=off, so every clone computes bitwise the same results. */
/* Not under sanitizers: an ifunc resolver runs before their runtime is
 * up (TSan crashes in it). */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && \
    !defined(__SANITIZE_THREAD__) && !defined(__SANITIZE_ADDRESS__)
#define CPU_VEC                                                    \
    __attribute__((optimize("O3", "vect-cost-model=dynamic"),      \
                   target_clones("arch=x86-64-v3", "default")))
/* CPU_VEC for loops around a comparison's select (a clamp, a ReLU's
 * mask inside a longer expression): with trapping math GCC keeps such a
 * comparison as a branch and vectorizes nothing (the fused ReLU's batch
 * norm backward ran 8x slower). no-trapping-math changes no value. */
#define CPU_VEC_SELECT                                                 \
    __attribute__((optimize("O3", "vect-cost-model=dynamic",           \
                            "no-trapping-math"),                        \
                   target_clones("arch=x86-64-v3", "default")))
#else
#define CPU_VEC
#define CPU_VEC_SELECT
#endif

/* Softmax cross-entropy with label smoothing (gpu_softmax_xent_ls); with
 * smoothing 0 it is gpu_softmax_xent bit for bit. */
int gpu__cpu_softmax_xent_ls(void *impl, const float *logits,
                             const int32_t *labels, int rows, int classes,
                             float smoothing, float grad_scale,
                             float *dlogits, gpu_loss_stats *stats,
                             st_error *err);

/* The conv-net entries of the CPU table, as an initializer list:
 * `.im2col = gpu__cpu_im2col, ...`. */
int gpu__cpu_im2col(void *impl, const gpu_conv_geom *g, const float *x,
                    float *col, st_error *err);
int gpu__cpu_col2im(void *impl, const gpu_conv_geom *g, const float *col,
                    float *dx, int accumulate, st_error *err);
int gpu__cpu_conv_thin_fwd(void *impl, const gpu_conv_geom *g,
                           const float *x, const float *w, int oc, float *y,
                           st_error *err);
int gpu__cpu_conv_thin_wgrad(void *impl, const gpu_conv_geom *g,
                             const float *x, const float *dy, int oc,
                             float beta, float *gw, st_error *err);
int gpu__cpu_maxpool_fwd(void *impl, const gpu_conv_geom *g, const float *x,
                         float *y, int32_t *idx, st_error *err);
int gpu__cpu_maxpool_bwd(void *impl, const gpu_conv_geom *g, const float *dy,
                         const int32_t *idx, float *dx, st_error *err);
int gpu__cpu_avgpool_fwd(void *impl, const float *x, int n, int hw, int c,
                         float *y, st_error *err);
int gpu__cpu_avgpool_bwd(void *impl, const float *dy, int n, int hw, int c,
                         float *dx, st_error *err);
int gpu__cpu_bn_fwd_train(void *impl, const float *x, int rows, int c,
                          const float *gamma, const float *beta, float eps,
                          float momentum, float *run_mean, float *run_var,
                          float *save_mean, float *save_invstd, int relu,
                          float *y, st_error *err);
int gpu__cpu_bn_fwd_eval(void *impl, const float *x, int rows, int c,
                         const float *gamma, const float *beta, float eps,
                         const float *run_mean, const float *run_var,
                         int relu, float *y, st_error *err);
int gpu__cpu_bn_bwd(void *impl, const float *x, const float *dy, int rows,
                    int c, const float *gamma, const float *beta,
                    const float *save_mean, const float *save_invstd,
                    const float *relu_y, float *dgamma, float *dbeta,
                    float *dx, int accumulate, st_error *err);
int gpu__cpu_act_fwd(void *impl, int kind, const float *x, float *y,
                     size_t n, st_error *err);
int gpu__cpu_act_bwd(void *impl, int kind, const float *x, const float *dy,
                     float *dx, size_t n, st_error *err);
int gpu__cpu_axpby(void *impl, size_t n, float alpha, const float *x,
                   float beta, float *y, st_error *err);
int gpu__cpu_normalize_u8_ch(void *impl, const uint8_t *x, size_t npix,
                             int c, const float *mean, const float *std,
                             float *y, st_error *err);
int gpu__cpu_flip_w(void *impl, const float *x, int n, int h, int w, int c,
                    float *y, st_error *err);

#define GPU__CPU_CONV_OPS                          \
    .im2col = gpu__cpu_im2col,                     \
    .col2im = gpu__cpu_col2im,                     \
    .conv_thin_fwd = gpu__cpu_conv_thin_fwd,       \
    .conv_thin_wgrad = gpu__cpu_conv_thin_wgrad,   \
    .maxpool_fwd = gpu__cpu_maxpool_fwd,           \
    .maxpool_bwd = gpu__cpu_maxpool_bwd,           \
    .avgpool_fwd = gpu__cpu_avgpool_fwd,           \
    .avgpool_bwd = gpu__cpu_avgpool_bwd,           \
    .bn_fwd_train = gpu__cpu_bn_fwd_train,         \
    .bn_fwd_eval = gpu__cpu_bn_fwd_eval,           \
    .bn_bwd = gpu__cpu_bn_bwd,                     \
    .act_fwd = gpu__cpu_act_fwd,                   \
    .act_bwd = gpu__cpu_act_bwd,                   \
    .axpby = gpu__cpu_axpby,                       \
    .normalize_u8_ch = gpu__cpu_normalize_u8_ch,   \
    .flip_w = gpu__cpu_flip_w,                     \
    .softmax_xent_ls = gpu__cpu_softmax_xent_ls

#endif
