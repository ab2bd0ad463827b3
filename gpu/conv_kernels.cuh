/* gpu/conv_kernels.cuh — internal to the CUDA backend: the launchers of the
 * conv-net kernels in gpu/conv_kernels.cu and gpu/bn_kernels.cu.
 *
 * defines: kern_scratch, kKernScratchBytes, kern_im2col, kern_col2im, kern_maxpool_fwd, kern_maxpool_bwd,
 *          kern_avgpool_fwd, kern_avgpool_bwd, kern_bn_fwd_train,
 *          kern_bn_fwd_eval, kern_bn_bwd, kern_act_fwd, kern_act_bwd,
 *          kern_axpby, kern_normalize_u8_ch, kern_flip_w
 *
 * Each queues its kernel(s) on s and checks every launch; arguments and
 * semantics are gpu/device.h's (NHWC); geometry and sizes arrive checked
 * by gpu/device.c's wrappers. @return 0 or ST_EDEVICE (ST_EINVAL for an
 * activation kind or channel count the kernels do not know). Empty work (a
 * zero size) queues nothing.
 */
#ifndef ST_GPU_CONV_KERNELS_CUH
#define ST_GPU_CONV_KERNELS_CUH

#include "gpu/cuda_util.cuh"

/* Device scratch that kernels may use between launches on the compute
 * stream: the tail of the workspace the plan gives the backend
 * (gpu_device_set_workspace), past cuBLAS's part. p == NULL: none (then
 * batch norm takes its one-launch path). Only compute-stream work touches
 * it, so consecutive ops never overlap in it. */
typedef struct kern_scratch {
    void *p;
    size_t bytes;
} kern_scratch;
constexpr size_t kKernScratchBytes = (size_t)2 << 20;

int kern_im2col(cudaStream_t s, const gpu_conv_geom *g, const float *x,
                float *col, st_error *err);
int kern_col2im(cudaStream_t s, const gpu_conv_geom *g, const float *col,
                float *dx, int accumulate, st_error *err);
int kern_maxpool_fwd(cudaStream_t s, const gpu_conv_geom *g, const float *x,
                     float *y, int32_t *idx, st_error *err);
int kern_maxpool_bwd(cudaStream_t s, const gpu_conv_geom *g, const float *dy,
                     const int32_t *idx, float *dx, st_error *err);
int kern_avgpool_fwd(cudaStream_t s, const float *x, int n, int hw, int c,
                     float *y, st_error *err);
int kern_avgpool_bwd(cudaStream_t s, const float *dy, int n, int hw, int c,
                     float *dx, st_error *err);
int kern_bn_fwd_train(cudaStream_t s, const kern_scratch *sc, const float *x,
                      int rows, int c, const float *gamma, const float *beta,
                      float eps, float momentum, float *run_mean,
                      float *run_var, float *save_mean, float *save_invstd,
                      int relu, float *y, st_error *err);
int kern_bn_fwd_eval(cudaStream_t s, const kern_scratch *sc, const float *x,
                     int rows, int c, const float *gamma, const float *beta,
                     float eps, const float *run_mean, const float *run_var,
                     int relu, float *y, st_error *err);
int kern_bn_bwd(cudaStream_t s, const kern_scratch *sc, const float *x,
                const float *dy, int rows, int c, const float *gamma,
                const float *save_mean, const float *save_invstd,
                const float *relu_y, float *dgamma, float *dbeta, float *dx,
                int accumulate, st_error *err);
int kern_act_fwd(cudaStream_t s, int kind, const float *x, float *y, size_t n,
                 st_error *err);
int kern_act_bwd(cudaStream_t s, int kind, const float *x, const float *dy,
                 float *dx, size_t n, st_error *err);
int kern_axpby(cudaStream_t s, size_t n, float alpha, const float *x,
               float beta, float *y, st_error *err);
int kern_normalize_u8_ch(cudaStream_t s, const uint8_t *x, size_t npix, int c,
                         const float mean[4], const float std[4], float *y,
                         st_error *err);
int kern_flip_w(cudaStream_t s, const float *x, int n, int h, int w, int c,
                float *y, st_error *err);

#endif
