// gpu/cuda_backend.cu — the CUDA backend: context, two streams (compute,
// copy), events, memory, cuBLAS, and the table gpu/device.c calls.
//
// defines: gpu__cuda_ops, gpu__cuda_probe, gpu__cuda_stream, gpu__cuda_ordinal
//
// Both streams are non-blocking, so the legacy default stream never orders
// them; the synchronous transfers (setup, checkpoints, stats) go on the
// compute stream and wait for it. cuBLAS runs on the compute stream with a
// workspace carved from the arena (cublasSetWorkspace), so no library
// allocates behind the memory plan's back during the run; the same
// workspace's tail is our kernels' scratch (gpu/conv_kernels.cuh).
#include "gpu/conv_kernels.cuh"
#include "gpu/cuda_util.cuh"

#include <stdio.h>
#include <stdlib.h>

namespace {

struct cuda_impl {
    int dev;
    cudaStream_t compute;
    cudaStream_t copy;
    cublasHandle_t blas;
    int sm_major;
    kern_scratch scratch; // the workspace's tail past cuBLAS's part
};

cudaStream_t stream_of(cuda_impl *c, int q)
{
    return q == GPU_Q_COPY ? c->copy : c->compute;
}

int cu_init(cuda_impl *c, const gpu_device_config *cfg, char *name,
            size_t name_len, st_error *err)
{
    cudaDeviceProp prop;
    int count = 0;
    c->dev = cfg->cuda_device;
    CUDA_TRY(err, cudaGetDeviceCount(&count));
    if (c->dev >= count) // under mpirun, more ranks on a host than GPUs
        return st_seterr(err, ST_EINVAL, "CUDA device %d asked for, but %d "
                         "%s visible: streamtrain runs one process per GPU "
                         "(under mpirun, GPU local_rank: at most %d ranks on "
                         "a host), or use --device cpu", c->dev, count,
                         count == 1 ? "is" : "are", count);
    CUDA_TRY(err, cudaSetDevice(c->dev));
    CUDA_TRY(err, cudaFree(0)); // create the context now, not in step 1
    CUDA_TRY(err, cudaGetDeviceProperties(&prop, c->dev));
    c->sm_major = prop.major;
    CUDA_TRY(err, cudaStreamCreateWithFlags(&c->compute, cudaStreamNonBlocking));
    CUDA_TRY(err, cudaStreamCreateWithFlags(&c->copy, cudaStreamNonBlocking));
    CUBLAS_TRY(err, cublasCreate(&c->blas));
    CUBLAS_TRY(err, cublasSetStream(c->blas, c->compute));
    CUBLAS_TRY(err, cublasSetPointerMode(c->blas, CUBLAS_POINTER_MODE_HOST));
    // FP32 products unless --tf32: the CPU backend is the reference (1e-4)
    CUBLAS_TRY(err, cublasSetMathMode(c->blas, cfg->tf32
                                                   ? CUBLAS_TF32_TENSOR_OP_MATH
                                                   : CUBLAS_DEFAULT_MATH));
    cublasMath_t math = CUBLAS_DEFAULT_MATH; // the name says what cuBLAS has
    CUBLAS_TRY(err, cublasGetMathMode(c->blas, &math));
    snprintf(name, name_len, "cuda:%d %s (sm_%d%d, %.1f GiB%s)", c->dev,
             prop.name, prop.major, prop.minor,
             prop.totalGlobalMem / (1024.0 * 1024.0 * 1024.0),
             math == CUBLAS_TF32_TENSOR_OP_MATH ? ", TF32 GEMMs" : "");
    return 0;
}

void cu_destroy(void *impl)
{
    cuda_impl *c = (cuda_impl *)impl;
    if (c == nullptr) return;
    if (c->compute) cudaStreamSynchronize(c->compute);
    if (c->copy) cudaStreamSynchronize(c->copy);
    if (c->blas) cublasDestroy(c->blas);
    if (c->copy) cudaStreamDestroy(c->copy);
    if (c->compute) cudaStreamDestroy(c->compute);
    free(c);
}

int cu_create(void **impl, const gpu_device_config *cfg, char *name,
              size_t name_len, st_error *err)
{
    cuda_impl *c = (cuda_impl *)calloc(1, sizeof *c);
    if (c == nullptr) return st_seterr(err, ST_ENOMEM, "cuda backend: out of memory");
    int rc = cu_init(c, cfg, name, name_len, err);
    if (rc < 0) {
        cu_destroy(c);
        return rc;
    }
    *impl = c;
    return 0;
}

int cu_mem_info(void *impl, size_t *free_b, size_t *total_b, st_error *err)
{
    (void)impl;
    CUDA_TRY(err, cudaMemGetInfo(free_b, total_b));
    return 0;
}

// cuBLAS's documented recommendation: 32 MiB on Hopper, 4 MiB before.
size_t cublas_ws_bytes(const cuda_impl *c)
{
    return c->sm_major >= 9 ? ((size_t)32 << 20) : ((size_t)4 << 20);
}

// The plan's workspace: cuBLAS's, then the kernels' scratch (batch norm's
// partial sums).
size_t cu_workspace_bytes(void *impl)
{
    return cublas_ws_bytes((cuda_impl *)impl) + kKernScratchBytes;
}

int cu_dev_alloc(void *impl, size_t bytes, void **p, st_error *err)
{
    cuda_impl *c = (cuda_impl *)impl;
    *p = nullptr;
    cudaError_t e = cudaMalloc(p, bytes);
    if (e != cudaSuccess) {
        cudaGetLastError(); // an OOM is not sticky; clear it
        *p = nullptr;
        return st_seterr(err, ST_ENOMEM, "%s:%d: cudaMalloc(%zu bytes): %s",
                         __FILE__, __LINE__, bytes, cudaGetErrorString(e));
    }
    // on the compute stream and waited for: a plain cudaMemset runs on the
    // legacy stream, which our non-blocking streams do not wait for
    CUDA_TRY(err, cudaMemsetAsync(*p, 0, bytes, c->compute));
    CUDA_TRY(err, cudaStreamSynchronize(c->compute));
    return 0;
}

void cu_dev_free(void *impl, void *p)
{
    (void)impl;
    cudaFree(p);
}

// cuBLAS gets the first cublas_ws_bytes, the kernels the rest (256-byte
// aligned); a workspace too small for both goes to cuBLAS alone.
int cu_set_workspace(void *impl, void *p, size_t bytes, st_error *err)
{
    cuda_impl *c = (cuda_impl *)impl;
    size_t blas = cublas_ws_bytes(c);
    c->scratch = kern_scratch{nullptr, 0};
    if (p == nullptr || bytes < blas + 256) {
        CUBLAS_TRY(err, cublasSetWorkspace(c->blas, p, bytes));
        return 0;
    }
    CUBLAS_TRY(err, cublasSetWorkspace(c->blas, p, blas));
    uintptr_t tail = ((uintptr_t)p + blas + 255) & ~(uintptr_t)255;
    size_t skip = tail - (uintptr_t)p;
    if (skip < bytes) c->scratch = kern_scratch{(void *)tail, bytes - skip};
    return 0;
}

void *cu_host_alloc(size_t bytes)
{
    void *p = nullptr;
    if (cudaHostAlloc(&p, bytes ? bytes : 1, cudaHostAllocPortable) !=
        cudaSuccess) {
        cudaGetLastError();
        return nullptr;
    }
    return p;
}

void cu_host_free(void *p) { cudaFreeHost(p); }

int cu_to_device(void *impl, void *dst, const void *src, size_t bytes,
                 st_error *err)
{
    cuda_impl *c = (cuda_impl *)impl;
    CUDA_TRY(err, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice,
                                  c->compute));
    CUDA_TRY(err, cudaStreamSynchronize(c->compute));
    return 0;
}

int cu_to_host(void *impl, void *dst, const void *src, size_t bytes,
               st_error *err)
{
    cuda_impl *c = (cuda_impl *)impl;
    CUDA_TRY(err, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost,
                                  c->compute));
    CUDA_TRY(err, cudaStreamSynchronize(c->compute));
    return 0;
}

int cu_sync(void *impl, st_error *err)
{
    cuda_impl *c = (cuda_impl *)impl;
    CUDA_TRY(err, cudaStreamSynchronize(c->copy));
    CUDA_TRY(err, cudaStreamSynchronize(c->compute));
    return 0;
}

int cu_event_create(void *impl, void **ev, st_error *err)
{
    (void)impl;
    cudaEvent_t e;
    CUDA_TRY(err, cudaEventCreate(&e)); // timing on: H2D GB/s uses it
    *ev = (void *)e;
    return 0;
}

void cu_event_destroy(void *impl, void *ev)
{
    (void)impl;
    if (ev) cudaEventDestroy((cudaEvent_t)ev);
}

int cu_event_record(void *impl, void *ev, int q, st_error *err)
{
    cuda_impl *c = (cuda_impl *)impl;
    CUDA_TRY(err, cudaEventRecord((cudaEvent_t)ev, stream_of(c, q)));
    return 0;
}

int cu_event_query(void *impl, void *ev, st_error *err)
{
    (void)impl;
    cudaError_t e = cudaEventQuery((cudaEvent_t)ev);
    if (e == cudaSuccess) return 1;
    if (e == cudaErrorNotReady) {
        // "not ready" is an answer, not a failure: keep it out of the
        // last-error slot that LAUNCH_TRY reads
        if (cudaPeekAtLastError() == cudaErrorNotReady) cudaGetLastError();
        return 0;
    }
    return st_seterr(err, ST_EDEVICE, "%s:%d: cudaEventQuery: %s", __FILE__,
                     __LINE__, cudaGetErrorString(e));
}

int cu_event_wait_host(void *impl, void *ev, st_error *err)
{
    (void)impl;
    CUDA_TRY(err, cudaEventSynchronize((cudaEvent_t)ev));
    return 0;
}

int cu_queue_wait(void *impl, int q, void *ev, st_error *err)
{
    cuda_impl *c = (cuda_impl *)impl;
    CUDA_TRY(err, cudaStreamWaitEvent(stream_of(c, q), (cudaEvent_t)ev, 0));
    return 0;
}

int cu_event_elapsed(void *impl, void *a, void *b, float *ms, st_error *err)
{
    (void)impl;
    CUDA_TRY(err, cudaEventElapsedTime(ms, (cudaEvent_t)a, (cudaEvent_t)b));
    return 0;
}

int cu_copy_async(void *impl, int q, void *dst, const void *src, size_t bytes,
                  st_error *err)
{
    cuda_impl *c = (cuda_impl *)impl;
    if (bytes == 0) return 0;
    CUDA_TRY(err, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice,
                                  stream_of(c, q)));
    return 0;
}

// Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: swap
// the operands, keep the leading dimensions.
int cu_gemm(void *impl, int tA, int tB, int M, int N, int K, float alpha,
            const float *A, int lda, const float *B, int ldb, float beta,
            float *C, int ldc, st_error *err)
{
    cuda_impl *c = (cuda_impl *)impl;
    if (M < 0 || N < 0 || K < 0)
        return st_seterr(err, ST_EINVAL, "gemm: negative size %dx%dx%d", M, N, K);
    if (M == 0 || N == 0) return 0;
    CUBLAS_TRY(err, cublasSgemm(c->blas, tB ? CUBLAS_OP_T : CUBLAS_OP_N,
                                tA ? CUBLAS_OP_T : CUBLAS_OP_N, N, M, K,
                                &alpha, B, ldb, A, lda, &beta, C, ldc));
    return 0;
}

int cu_normalize_u8(void *impl, const uint8_t *x, size_t n, float scale,
                    float shift, float *y, st_error *err)
{
    return kern_normalize_u8(((cuda_impl *)impl)->compute, x, n, scale, shift,
                             y, err);
}

int cu_bias_act(void *impl, float *y, const float *b, int rows, int cols,
                int relu, st_error *err)
{
    return kern_bias_act(((cuda_impl *)impl)->compute, y, b, rows, cols, relu,
                         err);
}

int cu_act_bias_grad(void *impl, float *dy, const float *y, float *db,
                     int rows, int cols, int relu, int accumulate,
                     st_error *err)
{
    return kern_act_bias_grad(((cuda_impl *)impl)->compute, dy, y, db, rows,
                              cols, relu, accumulate, err);
}

int cu_softmax_xent(void *impl, const float *logits, const int32_t *labels,
                    int rows, int classes, float grad_scale, float *dlogits,
                    gpu_loss_stats *stats, st_error *err)
{
    return kern_softmax_xent(((cuda_impl *)impl)->compute, logits, labels,
                             rows, classes, grad_scale, dlogits, stats, err);
}

int cu_sgd_update(void *impl, float *w, const float *g, float *v, size_t n,
                  float lr, float mu, int nesterov, float wd, st_error *err)
{
    return kern_sgd_update(((cuda_impl *)impl)->compute, w, g, v, n, lr, mu,
                           nesterov, wd, err);
}

int cu_adamw_update(void *impl, float *w, const float *g, float *m, float *v,
                    size_t n, float lr, float b1, float b2, float eps,
                    float wd, float bc1, float bc2, st_error *err)
{
    return kern_adamw_update(((cuda_impl *)impl)->compute, w, g, m, v, n, lr,
                             b1, b2, eps, wd, bc1, bc2, err);
}

int cu_zero(void *impl, void *p, size_t bytes, st_error *err)
{
    cuda_impl *c = (cuda_impl *)impl;
    if (bytes == 0) return 0;
    CUDA_TRY(err, cudaMemsetAsync(p, 0, bytes, c->compute));
    return 0;
}

// ---- conv-net ops (gpu/conv_kernels.cu), on the compute stream ----------

cudaStream_t cs(void *impl) { return ((cuda_impl *)impl)->compute; }

int cu_im2col(void *impl, const gpu_conv_geom *g, const float *x, float *col,
              st_error *err)
{
    return kern_im2col(cs(impl), g, x, col, err);
}

int cu_col2im(void *impl, const gpu_conv_geom *g, const float *col,
              float *dx, int accumulate, st_error *err)
{
    return kern_col2im(cs(impl), g, col, dx, accumulate, err);
}

int cu_maxpool_fwd(void *impl, const gpu_conv_geom *g, const float *x,
                   float *y, int32_t *idx, st_error *err)
{
    return kern_maxpool_fwd(cs(impl), g, x, y, idx, err);
}

int cu_maxpool_bwd(void *impl, const gpu_conv_geom *g, const float *dy,
                   const int32_t *idx, float *dx, st_error *err)
{
    return kern_maxpool_bwd(cs(impl), g, dy, idx, dx, err);
}

int cu_avgpool_fwd(void *impl, const float *x, int n, int hw, int c,
                   float *y, st_error *err)
{
    return kern_avgpool_fwd(cs(impl), x, n, hw, c, y, err);
}

int cu_avgpool_bwd(void *impl, const float *dy, int n, int hw, int c,
                   float *dx, st_error *err)
{
    return kern_avgpool_bwd(cs(impl), dy, n, hw, c, dx, err);
}

int cu_bn_fwd_train(void *impl, const float *x, int rows, int c,
                    const float *gamma, const float *beta, float eps,
                    float momentum, float *run_mean, float *run_var,
                    float *save_mean, float *save_invstd, int relu,
                    float *y, st_error *err)
{
    cuda_impl *cu = (cuda_impl *)impl;
    return kern_bn_fwd_train(cu->compute, &cu->scratch, x, rows, c, gamma,
                             beta, eps, momentum, run_mean, run_var,
                             save_mean, save_invstd, relu, y, err);
}

int cu_bn_fwd_eval(void *impl, const float *x, int rows, int c,
                   const float *gamma, const float *beta, float eps,
                   const float *run_mean, const float *run_var, int relu,
                   float *y, st_error *err)
{
    cuda_impl *cu = (cuda_impl *)impl;
    return kern_bn_fwd_eval(cu->compute, &cu->scratch, x, rows, c, gamma,
                            beta, eps, run_mean, run_var, relu, y, err);
}

int cu_bn_bwd(void *impl, const float *x, const float *dy, int rows, int c,
              const float *gamma, const float *beta, const float *save_mean,
              const float *save_invstd, const float *relu_y, float *dgamma,
              float *dbeta, float *dx, int accumulate, st_error *err)
{
    (void)beta; /* the mask comes from relu_y */
    cuda_impl *cu = (cuda_impl *)impl;
    return kern_bn_bwd(cu->compute, &cu->scratch, x, dy, rows, c, gamma,
                       save_mean, save_invstd, relu_y, dgamma, dbeta, dx,
                       accumulate, err);
}

int cu_act_fwd(void *impl, int kind, const float *x, float *y, size_t n,
               st_error *err)
{
    return kern_act_fwd(cs(impl), kind, x, y, n, err);
}

int cu_act_bwd(void *impl, int kind, const float *x, const float *dy,
               float *dx, size_t n, st_error *err)
{
    return kern_act_bwd(cs(impl), kind, x, dy, dx, n, err);
}

int cu_axpby(void *impl, size_t n, float alpha, const float *x, float beta,
             float *y, st_error *err)
{
    return kern_axpby(cs(impl), n, alpha, x, beta, y, err);
}

int cu_normalize_u8_ch(void *impl, const uint8_t *x, size_t npix, int c,
                       const float *mean, const float *std, float *y,
                       st_error *err)
{
    return kern_normalize_u8_ch(cs(impl), x, npix, c, mean, std, y, err);
}

int cu_flip_w(void *impl, const float *x, int n, int h, int w, int c,
              float *y, st_error *err)
{
    return kern_flip_w(cs(impl), x, n, h, w, c, y, err);
}

int cu_softmax_xent_ls(void *impl, const float *logits, const int32_t *labels,
                       int rows, int classes, float smoothing,
                       float grad_scale, float *dlogits, gpu_loss_stats *stats,
                       st_error *err)
{
    return kern_softmax_xent_ls(cs(impl), logits, labels, rows, classes,
                                smoothing, grad_scale, dlogits, stats, err);
}

gpu_backend_ops make_ops()
{
    gpu_backend_ops o = {};
    o.name = "cuda";
    o.unified = 0;
    o.create = cu_create;
    o.destroy = cu_destroy;
    o.mem_info = cu_mem_info;
    o.workspace_bytes = cu_workspace_bytes;
    o.dev_alloc = cu_dev_alloc;
    o.dev_free = cu_dev_free;
    o.set_workspace = cu_set_workspace;
    o.host_alloc = cu_host_alloc;
    o.host_free = cu_host_free;
    o.to_device = cu_to_device;
    o.to_host = cu_to_host;
    o.sync = cu_sync;
    o.event_create = cu_event_create;
    o.event_destroy = cu_event_destroy;
    o.event_record = cu_event_record;
    o.event_query = cu_event_query;
    o.event_wait_host = cu_event_wait_host;
    o.queue_wait = cu_queue_wait;
    o.event_elapsed = cu_event_elapsed;
    o.copy_async = cu_copy_async;
    o.gemm = cu_gemm;
    o.normalize_u8 = cu_normalize_u8;
    o.bias_act = cu_bias_act;
    o.act_bias_grad = cu_act_bias_grad;
    o.softmax_xent = cu_softmax_xent;
    o.sgd_update = cu_sgd_update;
    o.adamw_update = cu_adamw_update;
    o.zero = cu_zero;
    o.im2col = cu_im2col;
    o.col2im = cu_col2im;
    o.maxpool_fwd = cu_maxpool_fwd;
    o.maxpool_bwd = cu_maxpool_bwd;
    o.avgpool_fwd = cu_avgpool_fwd;
    o.avgpool_bwd = cu_avgpool_bwd;
    o.bn_fwd_train = cu_bn_fwd_train;
    o.bn_fwd_eval = cu_bn_fwd_eval;
    o.bn_bwd = cu_bn_bwd;
    o.act_fwd = cu_act_fwd;
    o.act_bwd = cu_act_bwd;
    o.axpby = cu_axpby;
    o.normalize_u8_ch = cu_normalize_u8_ch;
    o.flip_w = cu_flip_w;
    o.softmax_xent_ls = cu_softmax_xent_ls;
    return o;
}

} // namespace

extern "C" const gpu_backend_ops gpu__cuda_ops = make_ops();

cudaStream_t gpu__cuda_stream(void *impl, int q)
{
    return stream_of((cuda_impl *)impl, q);
}

int gpu__cuda_ordinal(void *impl) { return ((cuda_impl *)impl)->dev; }

extern "C" int gpu__cuda_probe(char *why, size_t why_len)
{
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        cudaGetLastError();
        // the static runtime answers "insufficient driver" also when no
        // driver (libcuda.so.1) is installed at all: say both
        const char *hint = e == cudaErrorInsufficientDriver
                               ? ": no NVIDIA driver, or one older than "
                                 "this build's CUDA runtime"
                               : "";
        if (why && why_len)
            snprintf(why, why_len, "no CUDA device (cudaGetDeviceCount: "
                     "\"%s\")%s", cudaGetErrorString(e), hint);
        return 0;
    }
    if (n == 0) {
        if (why && why_len) snprintf(why, why_len, "no CUDA device visible");
        return 0;
    }
    if (why && why_len) snprintf(why, why_len, "%d CUDA device%s", n, n == 1 ? "" : "s");
    return 1;
}
