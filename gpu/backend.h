/* gpu/backend.h — internal: the table each backend fills in.
 *
 * defines: gpu_backend_ops, gpu__cpu_ops, gpu__cpu_staged_ops,
 *          gpu__cuda_ops (ST_HAVE_CUDA only), gpu__device_impl
 *
 * gpu/device.c owns the gpu_device handle and the sticky error and calls
 * through this table; gpu/cpu_backend.c and gpu/cuda_backend.cu implement
 * it. Included from C and from C++ (.cu), so it stays plain C with an
 * extern "C" guard. Every function taking `st_error *err` records its
 * failure there and returns the negative code.
 */
#ifndef ST_GPU_BACKEND_H
#define ST_GPU_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#include "datasets/error.h"
#include "gpu/device.h"

typedef struct gpu_backend_ops {
    const char *name;   /* "cpu" | "cuda" */
    int unified;        /* 1: device code reads host memory directly */

    int (*create)(void **impl, const gpu_device_config *cfg, char *name,
                  size_t name_len, st_error *err);
    void (*destroy)(void *impl);
    int (*mem_info)(void *impl, size_t *free_b, size_t *total_b,
                    st_error *err);
    size_t (*workspace_bytes)(void *impl);
    int (*dev_alloc)(void *impl, size_t bytes, void **p, st_error *err);
    void (*dev_free)(void *impl, void *p);
    int (*set_workspace)(void *impl, void *p, size_t bytes, st_error *err);
    void *(*host_alloc)(size_t bytes);
    void (*host_free)(void *p);

    int (*to_device)(void *impl, void *dst, const void *src, size_t bytes,
                     st_error *err);
    int (*to_host)(void *impl, void *dst, const void *src, size_t bytes,
                   st_error *err);
    int (*sync)(void *impl, st_error *err);

    int (*event_create)(void *impl, void **ev, st_error *err);
    void (*event_destroy)(void *impl, void *ev);
    int (*event_record)(void *impl, void *ev, int queue, st_error *err);
    int (*event_query)(void *impl, void *ev, st_error *err);
    int (*event_wait_host)(void *impl, void *ev, st_error *err);
    int (*queue_wait)(void *impl, int queue, void *ev, st_error *err);
    int (*event_elapsed)(void *impl, void *a, void *b, float *ms,
                         st_error *err);
    int (*copy_async)(void *impl, int queue, void *dst, const void *src,
                      size_t bytes, st_error *err);

    int (*gemm)(void *impl, int tA, int tB, int M, int N, int K, float alpha,
                const float *A, int lda, const float *B, int ldb, float beta,
                float *C, int ldc, st_error *err);
    int (*normalize_u8)(void *impl, const uint8_t *x, size_t n, float scale,
                        float shift, float *y, st_error *err);
    int (*bias_act)(void *impl, float *y, const float *b, int rows, int cols,
                    int relu, st_error *err);
    int (*act_bias_grad)(void *impl, float *dy, const float *y, float *db,
                         int rows, int cols, int relu, int accumulate,
                         st_error *err);
    int (*softmax_xent)(void *impl, const float *logits,
                        const int32_t *labels, int rows, int classes,
                        float grad_scale, float *dlogits,
                        gpu_loss_stats *stats, st_error *err);
    int (*sgd_update)(void *impl, float *w, const float *g, float *v,
                      size_t n, float lr, float mu, int nesterov, float wd,
                      st_error *err);
    int (*adamw_update)(void *impl, float *w, const float *g, float *m,
                        float *v, size_t n, float lr, float b1, float b2,
                        float eps, float wd, float bc1, float bc2,
                        st_error *err);
    int (*zero)(void *impl, void *p, size_t bytes, st_error *err);

    /* Conv-net ops (gpu/device.h's NHWC section). A backend may leave any
     * of them NULL: the device.c wrapper then fails with ST_EDEVICE "op X
     * not implemented on this backend". Geometry and sizes reach the
     * backend already validated by the wrappers. */
    int (*im2col)(void *impl, const gpu_conv_geom *g, const float *x,
                  float *col, st_error *err);
    int (*col2im)(void *impl, const gpu_conv_geom *g, const float *col,
                  float *dx, int accumulate, st_error *err);
    int (*conv_thin_fwd)(void *impl, const gpu_conv_geom *g, const float *x,
                         const float *w, int oc, float *y, st_error *err);
    int (*conv_thin_wgrad)(void *impl, const gpu_conv_geom *g,
                           const float *x, const float *dy, int oc,
                           float beta, float *gw, st_error *err);
    int (*maxpool_fwd)(void *impl, const gpu_conv_geom *g, const float *x,
                       float *y, int32_t *idx, st_error *err);
    int (*maxpool_bwd)(void *impl, const gpu_conv_geom *g, const float *dy,
                       const int32_t *idx, float *dx, st_error *err);
    int (*avgpool_fwd)(void *impl, const float *x, int n, int hw, int c,
                       float *y, st_error *err);
    int (*avgpool_bwd)(void *impl, const float *dy, int n, int hw, int c,
                       float *dx, st_error *err);
    int (*bn_fwd_train)(void *impl, const float *x, int rows, int c,
                        const float *gamma, const float *beta, float eps,
                        float momentum, float *run_mean, float *run_var,
                        float *save_mean, float *save_invstd, int relu,
                        float *y, st_error *err);
    int (*bn_fwd_eval)(void *impl, const float *x, int rows, int c,
                       const float *gamma, const float *beta, float eps,
                       const float *run_mean, const float *run_var, int relu,
                       float *y, st_error *err);
    int (*bn_bwd)(void *impl, const float *x, const float *dy, int rows,
                  int c, const float *gamma, const float *beta,
                  const float *save_mean, const float *save_invstd,
                  const float *relu_y, float *dgamma, float *dbeta,
                  float *dx, int accumulate, st_error *err);
    int (*act_fwd)(void *impl, int kind, const float *x, float *y, size_t n,
                   st_error *err);
    int (*act_bwd)(void *impl, int kind, const float *x, const float *dy,
                   float *dx, size_t n, st_error *err);
    int (*axpby)(void *impl, size_t n, float alpha, const float *x,
                 float beta, float *y, st_error *err);
    int (*normalize_u8_ch)(void *impl, const uint8_t *x, size_t npix, int c,
                           const float *mean, const float *std, float *y,
                           st_error *err);
    int (*flip_w)(void *impl, const float *x, int n, int h, int w, int c,
                  float *y, st_error *err);
    int (*softmax_xent_ls)(void *impl, const float *logits,
                           const int32_t *labels, int rows, int classes,
                           float smoothing, float grad_scale, float *dlogits,
                           gpu_loss_stats *stats, st_error *err);
} gpu_backend_ops;

extern const gpu_backend_ops gpu__cpu_ops;
/* The backend state behind d (gpu/device.c), for code beside a backend
 * that needs its handles: gpu/comm_nccl.cu takes the CUDA backend's
 * compute stream from it (gpu__cuda_stream in gpu/cuda_util.cuh). */
void *gpu__device_impl(gpu_device *d);
/* gpu/cpu_staged.c: the CPU's arithmetic behind a discrete GPU's ordering
 * rules (deferred copies, events), for gpu_device_config.cpu_staged. */
extern const gpu_backend_ops gpu__cpu_staged_ops;
#if defined(ST_HAVE_CUDA) && ST_HAVE_CUDA
extern const gpu_backend_ops gpu__cuda_ops;
/* Probe without creating a device: 1 when a GPU is visible. */
int gpu__cuda_probe(char *why, size_t why_len);
#endif

#ifdef __cplusplus
}
#endif

#endif
