/* gpu/device.h — the device layer: one interface, two backends.
 *
 * defines: gpu_device, gpu_kind, gpu_device_config, gpu_device_create,
 *          gpu_device_destroy, gpu_cuda_probe, gpu_arena_alloc, gpu_gemm,
 *          gpu_normalize_u8, gpu_bias_act, gpu_act_bias_grad,
 *          gpu_softmax_xent, gpu_sgd_update, gpu_adamw_update, gpu_event_*,
 *          gpu_queue_wait, gpu_copy_async, gpu_host_alloc, gpu_host_free,
 *          gpu_host_free_sized,
 *          conv nets (NHWC): gpu_conv_geom, gpu_conv_geom_init, gpu_im2col,
 *          gpu_conv_thin, gpu_conv_thin_fwd, gpu_conv_thin_wgrad,
 *          gpu_col2im, gpu_maxpool_fwd, gpu_maxpool_bwd, gpu_avgpool_fwd,
 *          gpu_avgpool_bwd, gpu_bn_fwd_train, gpu_bn_fwd_eval, gpu_bn_bwd,
 *          gpu_act_kind, gpu_act_fwd, gpu_act_bwd, gpu_axpby,
 *          gpu_normalize_u8_ch, gpu_flip_w, gpu_softmax_xent_ls
 *
 * Backends:
 *   CPU   OpenBLAS cblas_sgemm + plain loops the compiler vectorizes.
 *         "Device" memory is ordinary host memory; every op runs to
 *         completion before it returns, events are always complete.
 *   CUDA  cudart + cuBLAS + our kernels (gpu/kernels.cu). Ops are queued on
 *         the compute stream and return at once; copies go on a copy stream.
 *         Compiled only when nvcc was found (ST_HAVE_CUDA=1); otherwise
 *         asking for it fails with "built without CUDA".
 *
 * No CUDA header is included here or by any caller: all CUDA lives in
 * the .cu files of gpu/, behind the internal table in gpu/backend.h.
 *
 * Memory: the caller computes its whole plan, calls gpu_arena_alloc once
 * before step 1 and points into the block. The device owns the block and
 * frees it in gpu_device_destroy. Nothing else is allocated on the device
 * by the trainer; cuBLAS gets its workspace from the arena too.
 *
 * Errors: every op returns 0 or a negative st_errcode. The first failure is
 * kept in the device (gpu_device_err) and is sticky: later ops return the
 * same code without doing anything, so a training step may check once at
 * its end. On CUDA an op's return covers its launch; faults inside a kernel
 * surface at the next synchronizing call (event_wait_host, copy, sync).
 *
 * Tensors are row-major float32 unless stated; shapes are in the comments
 * as (rows, cols). All tensor pointers are device pointers.
 */
#ifndef ST_GPU_DEVICE_H
#define ST_GPU_DEVICE_H

#include <stddef.h>
#include <stdint.h>

#include "datasets/error.h"

typedef struct gpu_device gpu_device;
typedef struct gpu_event gpu_event;

typedef enum gpu_kind {
    GPU_KIND_AUTO = 0, /* CUDA when a GPU is visible, else CPU */
    GPU_KIND_CUDA = 1,
    GPU_KIND_CPU = 2,
} gpu_kind;

/* The two queues ("streams"): copies go on COPY, math on COMPUTE. Work on
 * one queue runs in issue order; across queues only events order it. */
typedef enum gpu_queue { GPU_Q_COMPUTE = 0, GPU_Q_COPY = 1 } gpu_queue;

typedef struct gpu_device_config {
    gpu_kind kind;
    /* CPU backend: OpenBLAS threads (0 = default: all C online cores).
     * Core split: the GEMMs are ~90% of a CPU step and scale with cores,
     * while decoding a batch costs far less than training on it, so
     * OpenBLAS gets all C cores and the loader max(1, C/2) producers
     * (train/run.c), which sleep once the ring is full. On the 2-core
     * box, recipe MLP, best of 3 epochs: OpenBLAS 2 + loader 1: 1.2 s;
     * OpenBLAS 2 + loader 2: 1.8 s; OpenBLAS 1 + loader 1: 1.9 s. */
    int cpu_threads;
    int cuda_device;   /* CUDA ordinal, default 0 */
    /* CPU only: behave as a discrete device (gpu/cpu_staged.c). Batches
     * are copied into the plan's device batch buffers through copy_async
     * and events, and copies are deferred until something orders after
     * them, as on CUDA, so the prefetcher's copy path and the trainer's
     * release logic run (and are tested) on machines without a GPU.
     * Results equal the plain CPU backend's bit for bit. */
    int cpu_staged;
    /* CUDA only: cuBLAS's GEMMs may round their inputs to TF32 on tensor
     * cores (CUBLAS_TF32_TENSOR_OP_MATH; sm_80 and later, ~1e-3 relative
     * error). Off by default: fp32 everywhere, so that the backends agree
     * within 1e-4. Our own kernels are fp32 either way; the CPU backend
     * ignores it. */
    int tf32;
} gpu_device_config;

/* Loss statistics that gpu_softmax_xent accumulates in device memory. */
typedef struct gpu_loss_stats {
    double loss_sum;      /* sum of per-sample cross-entropy (nats) */
    long long correct;    /* argmax == label */
    long long count;      /* samples seen */
    long long bad_labels; /* labels outside [0, classes): a data error */
} gpu_loss_stats;

typedef struct gpu_mem_stats {
    size_t arena;        /* bytes of the one arena block (0 before alloc) */
    size_t used;         /* device memory in use: CUDA: total - free as the
                            driver reports it (context, cuBLAS included);
                            CPU: arena bytes */
    size_t peak;         /* max of `used` over all gpu_device_mem calls */
    size_t total;        /* device capacity (CPU: MemTotal) */
    size_t free;         /* CUDA: free; CPU: MemAvailable */
} gpu_mem_stats;

/* Fills cfg with defaults (AUTO, default threads, device 0). */
void gpu_device_config_init(gpu_device_config *cfg);

/* Default OpenBLAS thread count for the CPU backend: the online cores. */
int gpu_cpu_default_threads(void);

/* The kernel set the loaded OpenBLAS runs ("Haswell", "Cooperlake", ...). */
const char *gpu_cpu_blas_core(void);
/* When OpenBLAS runs kernels without AVX-512 on a CPU (and OS) that has
 * AVX-512 F/CD/BW/DQ/VL, writes a one-line note saying so and how to undo
 * it and returns 1; else returns 0. The usual cause is OPENBLAS_CORETYPE
 * in the environment (this project's VMs set Haswell): on a 2-core Zen 5
 * EPYC, SGEMM ran at 113 GFLOP/s a core with Haswell's kernels against
 * 215 with Cooperlake's, OpenBLAS's own choice (2026-12-02). OpenBLAS reads
 * the variable when it loads, so the note advises; it changes nothing. */
int gpu_cpu_blas_note(char *note, size_t len);

/* Is a CUDA GPU visible? @return 1 yes, 0 no (why says why: "built without
 * CUDA", "no CUDA device: ..."). why may be NULL. Never fails otherwise. */
int gpu_cuda_probe(char *why, size_t why_len);

/* Opens a device. kind AUTO picks CUDA when gpu_cuda_probe says yes and the
 * CPU otherwise; *note (if non-NULL) then receives a one-line sentence
 * saying so, or "" when nothing needs saying.
 * @return 0, or ST_EDEVICE (CUDA asked for but unavailable / init failed),
 *         ST_ENOMEM, ST_EINVAL. */
int gpu_device_create(gpu_device **out, const gpu_device_config *cfg,
                      char *note, size_t note_len, st_error *err);
/* Frees the arena, streams, handles. Accepts NULL. */
void gpu_device_destroy(gpu_device *d);

gpu_kind gpu_device_kind(const gpu_device *d);      /* CUDA or CPU */
const char *gpu_device_name(const gpu_device *d);   /* "cpu (2 OpenBLAS threads)" */
/* 1 when device code reads host memory directly (CPU): no copies needed. */
int gpu_device_unified(const gpu_device *d);

/* The sticky first failure (code 0 when none). */
const st_error *gpu_device_err(const gpu_device *d);
/* Copies the sticky failure into err. @return its code (0 when none). */
int gpu_device_check(const gpu_device *d, st_error *err);

/* Workspace the plan must include (0 on CPU): CUDA: cuBLAS's, then a
 * scratch for our kernels (batch norm's partial sums). */
size_t gpu_device_workspace_bytes(const gpu_device *d);

/* Memory figures; updates the peak. @return 0 or ST_EDEVICE. */
int gpu_device_mem(gpu_device *d, gpu_mem_stats *out);

/* Budget for --device-mem auto: free memory minus a margin (CUDA: free -
 * max(256 MiB, 5% of total), at least 1 byte so that the plan refuses
 * rather than reading 0 as "no budget"; CPU: MemAvailable / 2). free_b and
 * margin_b (may be NULL) receive the two terms, for messages. */
size_t gpu_device_auto_budget(gpu_device *d, size_t *free_b, size_t *margin_b);

/* Allocates the one arena block of `bytes` (256-byte aligned) and returns
 * it in *base. Only one arena per device; it lives until destroy.
 * @return 0, ST_ENOMEM (names the size), ST_EINVAL (second call). */
int gpu_arena_alloc(gpu_device *d, size_t bytes, void **base, st_error *err);

/* Hands the backend its workspace (a piece of the arena, of
 * gpu_device_workspace_bytes): cuBLAS's part, then the kernels' scratch;
 * without it, batch norm on CUDA takes a slower one-launch path. No-op
 * on CPU. */
int gpu_device_set_workspace(gpu_device *d, void *p, size_t bytes);

/* ---- host memory hook (the loader's ring uses it) ---------------------
 * ctx is the gpu_device (or NULL: plain aligned memory). CUDA: pinned
 * (cudaHostAlloc), so copies from it are truly asynchronous. CPU: 64-byte
 * aligned malloc. gpu_host_alloc returns NULL on failure. gpu_host_free
 * on CUDA first waits for both queues, so no copy still reads p. */
void *gpu_host_alloc(size_t bytes, void *ctx);
void gpu_host_free(void *p, void *ctx);
/* The same, in the shape of loader/ring.h's ring_allocator.free. */
void gpu_host_free_sized(void *p, size_t bytes, void *ctx);

/* ---- synchronous transfers (setup, checkpoints, stats; not per step) -- */
int gpu_to_device(gpu_device *d, void *dst, const void *src, size_t bytes);
int gpu_to_host(gpu_device *d, void *dst, const void *src, size_t bytes);
/* Waits until all queued work on both queues is done. */
int gpu_sync(gpu_device *d);

/* ---- queues and events ------------------------------------------------
 * Events are created once (outside the loop). CPU: every event is
 * complete; record/wait are no-ops. */
int gpu_event_create(gpu_device *d, gpu_event **out);
void gpu_event_destroy(gpu_device *d, gpu_event *e); /* accepts NULL */
int gpu_event_record(gpu_device *d, gpu_event *e, gpu_queue q);
/* @return 1 when done, 0 when pending, <0 on error. Never blocks. */
int gpu_event_query(gpu_device *d, gpu_event *e);
/* Blocks the host until e is done. */
int gpu_event_wait_host(gpu_device *d, gpu_event *e);
/* Work queued on q after this call waits for e; the host does not wait. */
int gpu_queue_wait(gpu_device *d, gpu_queue q, gpu_event *e);
/* Milliseconds between two completed events (CUDA); 0 on CPU. */
int gpu_event_elapsed(gpu_device *d, gpu_event *start, gpu_event *end,
                      float *ms);
/* Host (pinned) -> device copy queued on q. CPU: memcpy. */
int gpu_copy_async(gpu_device *d, gpu_queue q, void *dst, const void *src,
                   size_t bytes);

/* ---- math on the compute queue ---------------------------------------- */

/* C(M,N) = alpha * op(A)(M,K) . op(B)(K,N) + beta * C, row-major;
 * op(X) = X^T when tX. lda/ldb/ldc are row strides of A, B, C as stored. */
int gpu_gemm(gpu_device *d, int tA, int tB, int M, int N, int K, float alpha,
             const float *A, int lda, const float *B, int ldb, float beta,
             float *C, int ldc);

/* y[i] = x[i] * scale + shift for i < n.   x (n) uint8, y (n) float */
int gpu_normalize_u8(gpu_device *d, const uint8_t *x, size_t n, float scale,
                     float shift, float *y);

/* y(rows, cols) += b(cols) broadcast over rows, then ReLU when relu. */
int gpu_bias_act(gpu_device *d, float *y, const float *b, int rows, int cols,
                 int relu);

/* Backward of gpu_bias_act: when relu, dy(rows, cols) *= (y > 0) in place
 * (y is the post-ReLU output); then db(cols) = colsum(dy) (accumulate=0) or
 * db += colsum(dy) (accumulate=1). db may be NULL (no bias). */
int gpu_act_bias_grad(gpu_device *d, float *dy, const float *y, float *db,
                      int rows, int cols, int relu, int accumulate);

/* Softmax cross-entropy of logits(rows, classes) against labels(rows)
 * int32. Adds the loss sum, correct count and sample count into *stats
 * (device memory). When dlogits(rows, classes) is non-NULL it receives
 * (softmax - onehot) * grad_scale: grad_scale = 1/B makes micro-batches of
 * one batch of B add up to the full-batch mean gradient. Out-of-range
 * labels count in stats->bad_labels and get zero gradient. */
int gpu_softmax_xent(gpu_device *d, const float *logits,
                     const int32_t *labels, int rows, int classes,
                     float grad_scale, float *dlogits, gpu_loss_stats *stats);

/* SGD with momentum (PyTorch semantics), over n floats:
 *   g' = g + wd*w;  v = mu*v + g';  step = nesterov ? g' + mu*v : v;
 *   w -= lr * step.   w, g, v (n) */
int gpu_sgd_update(gpu_device *d, float *w, const float *g, float *v,
                   size_t n, float lr, float mu, int nesterov, float wd);

/* AdamW (decoupled weight decay), over n floats; bc1 = 1 - beta1^t,
 * bc2 = 1 - beta2^t computed by the caller for step t >= 1:
 *   w -= lr*wd*w;  m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
 *   w -= lr * (m/bc1) / (sqrt(v/bc2) + eps).   w, g, m, v (n) */
int gpu_adamw_update(gpu_device *d, float *w, const float *g, float *m,
                     float *v, size_t n, float lr, float b1, float b2,
                     float eps, float wd, float bc1, float bc2);

/* p[0..bytes) = 0 on the compute queue. */
int gpu_zero(gpu_device *d, void *p, size_t bytes);


/* ---- convolutional nets (NHWC) ----------------------------------------
 * Activations are NHWC: a batch (n, h, w, c) row-major, so a conv output
 * is the GEMM result (n*oh*ow, oc) with no transpose, a 1x1 conv is a
 * plain GEMM, bias/BN are per column, and the loader's (n, H, W, C) uint8
 * batches need no reordering. (Measured against NCHW in train/layer_conv.c's
 * header.) Conv weights are (kh*kw*c, oc) row-major, rows ordered (ky, kx,
 * ci). Every op below runs on the compute queue. */

/* Geometry of a conv or pooling window over an NHWC batch. */
typedef struct gpu_conv_geom {
    int n, h, w, c;       /* input batch */
    int kh, kw;           /* window */
    int sh, sw;           /* stride */
    int ph, pw;           /* zero padding, top/left = bottom/right */
    int oh, ow;           /* output: (h + 2ph - kh) / sh + 1, likewise w */
} gpu_conv_geom;

/* Fills *g and computes oh, ow. @return 0, or ST_EINVAL when a size or
 * stride is below 1, a padding is negative, or the window does not fit
 * the padded input (the output would be empty). Every op below checks its
 * geometry the same way (and that oh, ow match) and fails with ST_EINVAL,
 * naming the op, before the backend runs; max pool also needs
 * ph <= kh/2 and pw <= kw/2 (PyTorch's rule), so no window is all
 * padding. */
int gpu_conv_geom_init(gpu_conv_geom *g, int n, int h, int w, int c, int kh,
                       int kw, int sh, int sw, int ph, int pw);

/* Lowering (im2col) of the g->n images at x: col (n*oh*ow, kh*kw*c) from x
 * (n, h, w, c); padded taps are 0. The caller batches several images per
 * call (g->n of them) to size one GEMM. */
int gpu_im2col(gpu_device *d, const gpu_conv_geom *g, const float *x,
               float *col);

/* The adjoint of gpu_im2col: dx (n, h, w, c) = (accumulate ? dx : 0) +
 * the sum, over every window tap that reads a pixel, of col's entry for it
 * (overlapping windows add up). */
int gpu_col2im(gpu_device *d, const gpu_conv_geom *g, const float *col,
               float *dx, int accumulate);

/* The thin convolution: a conv whose lowering is thin (K = kh*kw*c <=
 * GPU_CONV_THIN_K and oc <= GPU_CONV_THIN_OC: a first layer over 1 to 3
 * channels) computed straight from x, with no lowering buffer. The CPU
 * backend has it (the lowering of a 28x28 gray image costs it more than
 * the multiplications); the CUDA backend does not, and keeps im2col and
 * cuBLAS. gpu_conv_thin says whether d takes this shape: 1 when its
 * backend has the ops and the shape qualifies. w (K, oc) as above; y
 * (n*oh*ow, oc) = im2col(x) . w. The sums run over the taps in K's order,
 * skipping padded taps, so they are bit for bit those of gpu_im2col and
 * the CPU's gpu_gemm (up to the sign of a zero). */
enum { GPU_CONV_THIN_K = 32, GPU_CONV_THIN_OC = 64 };
int gpu_conv_thin(gpu_device *d, const gpu_conv_geom *g, int oc);
int gpu_conv_thin_fwd(gpu_device *d, const gpu_conv_geom *g, const float *x,
                      const float *w, int oc, float *y);
/* The filter gradient: gw (K, oc) = beta * gw + im2col(x)^T . dy, dy
 * (n*oh*ow, oc); beta 0 overwrites gw without reading it. The sum over
 * the n*oh*ow rows adds partial sums of fixed row chunks in chunk order:
 * the result does not depend on the thread count. */
int gpu_conv_thin_wgrad(gpu_device *d, const gpu_conv_geom *g,
                        const float *x, const float *dy, int oc, float beta,
                        float *gw);

/* Max pool: y (n, oh, ow, c) and idx (n, oh, ow, c) int32, the flat index
 * within the input sample (h*w*c space) of each max (first max on ties;
 * padding never wins). */
int gpu_maxpool_fwd(gpu_device *d, const gpu_conv_geom *g, const float *x,
                    float *y, int32_t *idx);
/* dx (n, h, w, c) = 0, then dx[idx] += dy for every output element. */
int gpu_maxpool_bwd(gpu_device *d, const gpu_conv_geom *g, const float *dy,
                    const int32_t *idx, float *dx);

/* Global average pool: y (n, c) = mean over (h, w) of x (n, h*w, c). */
int gpu_avgpool_fwd(gpu_device *d, const float *x, int n, int hw, int c,
                    float *y);
/* dx (n, h*w, c) = dy (n, c) / hw broadcast. */
int gpu_avgpool_bwd(gpu_device *d, const float *dy, int n, int hw, int c,
                    float *dx);

/* Batch norm over x (rows, c), rows = n*h*w, PyTorch's conventions:
 * training: mean and biased variance of the batch normalize; saved
 * mean (c) and invstd (c) = 1/sqrt(var + eps) are kept for backward; the
 * running estimates become (1-momentum)*run + momentum*stat with the
 * UNBIASED variance (rows/(rows-1)). y = gamma * xhat + beta, then
 * max(y, 0) when relu (a fused ReLU: one pass fewer over y each way). y
 * may equal x (in place) unless relu: backward reads x. */
int gpu_bn_fwd_train(gpu_device *d, const float *x, int rows, int c,
                     const float *gamma, const float *beta, float eps,
                     float momentum, float *run_mean, float *run_var,
                     float *save_mean, float *save_invstd, int relu,
                     float *y);
/* evaluation: y = gamma * (x - run_mean) / sqrt(run_var + eps) + beta,
 * then max(y, 0) when relu. */
int gpu_bn_fwd_eval(gpu_device *d, const float *x, int rows, int c,
                    const float *gamma, const float *beta, float eps,
                    const float *run_mean, const float *run_var, int relu,
                    float *y);
/* Backward of gpu_bn_fwd_train given its input x and saved statistics:
 * dgamma/dbeta (c) are written (accumulate 0) or added to (accumulate 1);
 * dx (rows, c) = the batch-statistics gradient. dx may equal dy. relu_y:
 * NULL, or the fused ReLU's forward output y, and then dy (the gradient
 * of y) first takes y's mask (0 where y <= 0). The CPU backend recomputes
 * that mask from x, gamma, beta and the saved statistics exactly as its
 * forward computed y (one read stream fewer), the CUDA backend reads
 * relu_y; both give the same mask. */
int gpu_bn_bwd(gpu_device *d, const float *x, const float *dy, int rows,
               int c, const float *gamma, const float *beta,
               const float *save_mean, const float *save_invstd,
               const float *relu_y, float *dgamma, float *dbeta, float *dx,
               int accumulate);

typedef enum gpu_act_kind {
    GPU_ACT_RELU = 1,
    GPU_ACT_GELU = 2,     /* exact: x * Phi(x) with erf, as PyTorch's default */
} gpu_act_kind;

/* y (n) = act(x); y may equal x. */
int gpu_act_fwd(gpu_device *d, gpu_act_kind k, const float *x, float *y,
                size_t n);
/* dx (n) = dy * act'(x) from the pre-activation x; dx may equal dy. */
int gpu_act_bwd(gpu_device *d, gpu_act_kind k, const float *x,
                const float *dy, float *dx, size_t n);

/* y (n) = alpha * x + beta * y (residual adds, TTA logit averaging,
 * gradient fan-in). beta == 0 overwrites y without reading it (as BLAS
 * does), so y may hold garbage then; x may equal y. */
int gpu_axpby(gpu_device *d, size_t n, float alpha, const float *x,
              float beta, float *y);

/* Per-channel normalization in the uint8 -> float step: y[p*c + k] =
 * (x[p*c + k] * (1/255) - mean[k]) / std[k] for pixels p < npix, channels
 * k < c <= 4 (mean/std are host values in [0, 1] units, passed by value). */
int gpu_normalize_u8_ch(gpu_device *d, const uint8_t *x, size_t npix, int c,
                        const float mean[4], const float std[4], float *y);

/* y (n, h, w, c) = x mirrored left-right (TTA); y != x. */
int gpu_flip_w(gpu_device *d, const float *x, int n, int h, int w, int c,
               float *y);

/* Softmax cross-entropy with label smoothing eps in [0, 1): the target is
 * (1-eps)*onehot + eps/classes, PyTorch's CrossEntropyLoss
 * (label_smoothing=eps); otherwise as gpu_softmax_xent (which is this with
 * eps 0; loss_sum is the smoothed loss). */
int gpu_softmax_xent_ls(gpu_device *d, const float *logits,
                        const int32_t *labels, int rows, int classes,
                        float smoothing, float grad_scale, float *dlogits,
                        gpu_loss_stats *stats);

#endif
