/* gpu/cuda_util.cuh — internal to the CUDA backend (.cu files only).
 *
 * defines: CUDA_TRY, CUBLAS_TRY, LAUNCH_TRY, kern_blocks, kern_* launchers,
 *          gpu__cuda_stream, gpu__cuda_ordinal
 *
 * Every CUDA runtime and cuBLAS call goes through CUDA_TRY / CUBLAS_TRY,
 * which record file:line, the expression and the library's own message in
 * the st_error and return ST_EDEVICE. LAUNCH_TRY follows every kernel
 * launch with cudaGetLastError.
 */
#ifndef ST_GPU_CUDA_UTIL_CUH
#define ST_GPU_CUDA_UTIL_CUH

#ifndef ST_HAVE_CUDA
#define ST_HAVE_CUDA 1
#endif

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include "gpu/backend.h"

#define CUDA_TRY(err, expr)                                                  \
    do {                                                                     \
        cudaError_t cu__e = (expr);                                          \
        if (cu__e != cudaSuccess)                                            \
            return st_seterr((err), ST_EDEVICE, "%s:%d: %s: %s", __FILE__,   \
                             __LINE__, #expr, cudaGetErrorString(cu__e));    \
    } while (0)

#define CUBLAS_TRY(err, expr)                                                \
    do {                                                                     \
        cublasStatus_t cb__s = (expr);                                       \
        if (cb__s != CUBLAS_STATUS_SUCCESS)                                  \
            return st_seterr((err), ST_EDEVICE, "%s:%d: %s: %s", __FILE__,   \
                             __LINE__, #expr, cublasGetStatusString(cb__s)); \
    } while (0)

/* After a <<<...>>> launch: name says which kernel. */
#define LAUNCH_TRY(err, name)                                                \
    do {                                                                     \
        cudaError_t cu__e = cudaGetLastError();                              \
        if (cu__e != cudaSuccess)                                            \
            return st_seterr((err), ST_EDEVICE, "%s:%d: launch %s: %s",      \
                             __FILE__, __LINE__, name,                       \
                             cudaGetErrorString(cu__e));                     \
    } while (0)

/* The CUDA backend's handles, from gpu__device_impl of a CUDA device
 * (gpu/cuda_backend.cu): the stream of queue q (GPU_Q_COMPUTE, GPU_Q_COPY)
 * and the device's CUDA ordinal. */
cudaStream_t gpu__cuda_stream(void *impl, int q);
int gpu__cuda_ordinal(void *impl);

/* Elementwise kernels run kKernThreads threads a block in grid-stride
 * loops over at most kKernMaxBlocks blocks: kern_blocks(n) for n items. */
constexpr int kKernThreads = 256;
constexpr int kKernMaxBlocks = 4096;
static inline int kern_blocks(size_t n)
{
    size_t b = (n + kKernThreads - 1) / kKernThreads;
    if (b < 1) b = 1;
    return b > (size_t)kKernMaxBlocks ? kKernMaxBlocks : (int)b;
}

/* Launchers (gpu/kernels.cu): queue one kernel on s, check the launch.
 * Arguments as in gpu/device.h. @return 0 or ST_EDEVICE. */
int kern_normalize_u8(cudaStream_t s, const uint8_t *x, size_t n, float scale,
                      float shift, float *y, st_error *err);
int kern_bias_act(cudaStream_t s, float *y, const float *b, int rows,
                  int cols, int relu, st_error *err);
int kern_act_bias_grad(cudaStream_t s, float *dy, const float *y, float *db,
                       int rows, int cols, int relu, int accumulate,
                       st_error *err);
int kern_softmax_xent(cudaStream_t s, const float *logits,
                      const int32_t *labels, int rows, int classes,
                      float grad_scale, float *dlogits, gpu_loss_stats *stats,
                      st_error *err);
int kern_softmax_xent_ls(cudaStream_t s, const float *logits,
                         const int32_t *labels, int rows, int classes,
                         float smoothing, float grad_scale, float *dlogits,
                         gpu_loss_stats *stats, st_error *err);
int kern_sgd_update(cudaStream_t s, float *w, const float *g, float *v,
                    size_t n, float lr, float mu, int nesterov, float wd,
                    st_error *err);
int kern_adamw_update(cudaStream_t s, float *w, const float *g, float *m,
                      float *v, size_t n, float lr, float b1, float b2,
                      float eps, float wd, float bc1, float bc2,
                      st_error *err);

#endif
