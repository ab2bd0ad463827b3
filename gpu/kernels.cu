// gpu/kernels.cu — the CUDA backend's own kernels and their launchers.
//
// defines: kern_normalize_u8, kern_bias_act, kern_act_bias_grad,
//          kern_softmax_xent, kern_softmax_xent_ls, kern_sgd_update,
//          kern_adamw_update
//
// Semantics match gpu/cpu_backend.c line for line (see gpu/device.h); the
// GPU-vs-CPU tests in tests/test_gpu.c hold them to it. Elementwise kernels
// use grid-stride loops over at most kKernMaxBlocks blocks. The column sums of
// the bias gradient reduce in shared memory in a fixed order (no float
// atomics), so gradients are run-to-run deterministic; only the loss
// statistics use atomics.
#include "gpu/cuda_util.cuh"

namespace {

constexpr int kThreads = kKernThreads;

int blocks_for(size_t n) { return kern_blocks(n); }

// y (n) = x (n) uint8 * scale + shift; four bytes per thread when aligned.
__global__ void k_normalize_u8x4(const uchar4 *__restrict__ x, size_t n4,
                                 float scale, float shift,
                                 float4 *__restrict__ y)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n4;
         i += (size_t)gridDim.x * blockDim.x) {
        uchar4 v = x[i];
        y[i] = make_float4(v.x * scale + shift, v.y * scale + shift,
                           v.z * scale + shift, v.w * scale + shift);
    }
}

__global__ void k_normalize_u8(const uint8_t *__restrict__ x, size_t n,
                               float scale, float shift, float *__restrict__ y)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        y[i] = x[i] * scale + shift;
}

// y (rows, cols) += b (cols), then ReLU.
__global__ void k_bias_act(float *__restrict__ y, const float *__restrict__ b,
                           size_t n, int cols, int relu)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        float v = y[i] + b[i % cols];
        y[i] = relu ? fmaxf(v, 0.0f) : v;
    }
}

// Block (32, 16): threadIdx.x picks a column of a 32-column tile, the 16
// rows of threads stride over the rows; shared memory sums the 16 partials
// in a fixed order. dy (rows, cols) masked in place, db (cols).
__global__ void k_act_bias_grad(float *__restrict__ dy,
                                const float *__restrict__ y,
                                float *__restrict__ db, int rows, int cols,
                                int relu, int accumulate)
{
    __shared__ float part[16][33];
    int c = blockIdx.x * 32 + threadIdx.x;
    float sum = 0.0f;
    if (c < cols) {
        for (int r = threadIdx.y; r < rows; r += 16) {
            size_t i = (size_t)r * cols + c;
            float g = dy[i];
            if (relu && !(y[i] > 0.0f)) {
                g = 0.0f;
                dy[i] = 0.0f;
            }
            sum += g;
        }
    }
    part[threadIdx.y][threadIdx.x] = sum;
    __syncthreads();
    if (threadIdx.y == 0 && c < cols && db != nullptr) {
        float s = 0.0f;
        for (int k = 0; k < 16; k++) s += part[k][threadIdx.x];
        db[c] = accumulate ? db[c] + s : s;
    }
}

// One warp per row of logits (rows, classes). Label smoothing eps: the
// target is (1-eps)*onehot + eps/classes; eps == 0 takes exactly the
// arithmetic of the unsmoothed loss (the branch is uniform over the grid).
__global__ void k_softmax_xent(const float *__restrict__ logits,
                               const int32_t *__restrict__ labels, int rows,
                               int classes, float eps, float grad_scale,
                               float *__restrict__ dlogits,
                               gpu_loss_stats *stats)
{
    int warp = (blockIdx.x * blockDim.x + threadIdx.x) / 32;
    int lane = threadIdx.x % 32;
    if (warp >= rows) return;
    const float *x = logits + (size_t)warp * classes;
    // argmax, ties to the lowest index (as the CPU loop does)
    float mx = -INFINITY;
    int best = classes;
    for (int c = lane; c < classes; c += 32)
        if (best == classes || x[c] > mx) mx = x[c], best = c;
    for (int off = 16; off > 0; off /= 2) {
        float om = __shfl_xor_sync(0xffffffffu, mx, off);
        int ob = __shfl_xor_sync(0xffffffffu, best, off);
        if (ob < classes &&
            (best == classes || om > mx || (om == mx && ob < best)))
            mx = om, best = ob;
    }
    float sum = 0.0f;
    for (int c = lane; c < classes; c += 32) sum += expf(x[c] - mx);
    for (int off = 16; off > 0; off /= 2)
        sum += __shfl_xor_sync(0xffffffffu, sum, off);
    // smoothing: sum over classes of lse - (x_c - mx), in double
    double all = 0.0;
    if (eps != 0.0f) {
        float lse = logf(sum);
        for (int c = lane; c < classes; c += 32)
            all += (double)(lse - (x[c] - mx));
        for (int off = 16; off > 0; off /= 2)
            all += __shfl_xor_sync(0xffffffffu, all, off);
    }
    int32_t lab = labels[warp];
    bool ok = lab >= 0 && lab < classes;
    if (dlogits != nullptr) {
        float *g = dlogits + (size_t)warp * classes;
        float inv = ok ? grad_scale / sum : 0.0f;
        if (eps == 0.0f) {
            for (int c = lane; c < classes; c += 32)
                g[c] = expf(x[c] - mx) * inv -
                       (ok && c == lab ? grad_scale : 0.0f);
        } else {
            float goff = ok ? grad_scale * (eps / (float)classes) : 0.0f;
            float on = grad_scale * (1.0f - eps);
            for (int c = lane; c < classes; c += 32)
                g[c] = expf(x[c] - mx) * inv - goff -
                       (ok && c == lab ? on : 0.0f);
        }
    }
    if (lane == 0) {
        if (ok) {
            float nll = logf(sum) - (x[lab] - mx);
            double loss = (double)nll;
            if (eps != 0.0f)
                loss = (1.0 - (double)eps) * nll + (double)eps / classes * all;
            atomicAdd(&stats->loss_sum, loss);
            if (best == lab)
                atomicAdd((unsigned long long *)&stats->correct, 1ull);
        } else {
            atomicAdd((unsigned long long *)&stats->bad_labels, 1ull);
        }
        atomicAdd((unsigned long long *)&stats->count, 1ull);
    }
}

__global__ void k_sgd(float *__restrict__ w, const float *__restrict__ g,
                      float *__restrict__ v, size_t n, float lr, float mu,
                      int nesterov, float wd)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        float gi = g[i] + wd * w[i];
        float vi = mu * v[i] + gi;
        v[i] = vi;
        w[i] -= lr * (nesterov ? gi + mu * vi : vi);
    }
}

__global__ void k_adamw(float *__restrict__ w, const float *__restrict__ g,
                        float *__restrict__ m, float *__restrict__ v, size_t n,
                        float decay, float b1, float b2, float eps,
                        float step, float ibc2)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        float gi = g[i];
        float mi = b1 * m[i] + (1.0f - b1) * gi;
        float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        w[i] = w[i] * decay - step * mi / (sqrtf(vi * ibc2) + eps);
    }
}

} // namespace

int kern_normalize_u8(cudaStream_t s, const uint8_t *x, size_t n, float scale,
                      float shift, float *y, st_error *err)
{
    if (n == 0) return 0;
    bool aligned = ((uintptr_t)x % 4 == 0) && ((uintptr_t)y % 16 == 0);
    size_t n4 = aligned ? n / 4 : 0;
    if (n4 > 0) {
        k_normalize_u8x4<<<blocks_for(n4), kThreads, 0, s>>>(
            (const uchar4 *)x, n4, scale, shift, (float4 *)y);
        LAUNCH_TRY(err, "k_normalize_u8x4");
    }
    size_t done = n4 * 4;
    if (done < n) {
        k_normalize_u8<<<blocks_for(n - done), kThreads, 0, s>>>(
            x + done, n - done, scale, shift, y + done);
        LAUNCH_TRY(err, "k_normalize_u8");
    }
    return 0;
}

int kern_bias_act(cudaStream_t s, float *y, const float *b, int rows,
                  int cols, int relu, st_error *err)
{
    size_t n = (size_t)rows * cols;
    if (n == 0) return 0;
    k_bias_act<<<blocks_for(n), kThreads, 0, s>>>(y, b, n, cols, relu);
    LAUNCH_TRY(err, "k_bias_act");
    return 0;
}

int kern_act_bias_grad(cudaStream_t s, float *dy, const float *y, float *db,
                       int rows, int cols, int relu, int accumulate,
                       st_error *err)
{
    if (cols <= 0) return 0;
    if (db == nullptr && !relu) return 0;
    dim3 block(32, 16), grid((cols + 31) / 32);
    k_act_bias_grad<<<grid, block, 0, s>>>(dy, y, db, rows, cols, relu,
                                            accumulate);
    LAUNCH_TRY(err, "k_act_bias_grad");
    return 0;
}

int kern_softmax_xent_ls(cudaStream_t s, const float *logits,
                         const int32_t *labels, int rows, int classes,
                         float smoothing, float grad_scale, float *dlogits,
                         gpu_loss_stats *stats, st_error *err)
{
    if (rows <= 0) return 0;
    int rows_per_block = kThreads / 32;
    int grid = (rows + rows_per_block - 1) / rows_per_block;
    k_softmax_xent<<<grid, kThreads, 0, s>>>(logits, labels, rows, classes,
                                             smoothing, grad_scale, dlogits,
                                             stats);
    LAUNCH_TRY(err, "k_softmax_xent");
    return 0;
}

int kern_softmax_xent(cudaStream_t s, const float *logits,
                      const int32_t *labels, int rows, int classes,
                      float grad_scale, float *dlogits, gpu_loss_stats *stats,
                      st_error *err)
{
    return kern_softmax_xent_ls(s, logits, labels, rows, classes, 0.0f,
                                grad_scale, dlogits, stats, err);
}

int kern_sgd_update(cudaStream_t s, float *w, const float *g, float *v,
                    size_t n, float lr, float mu, int nesterov, float wd,
                    st_error *err)
{
    if (n == 0) return 0;
    k_sgd<<<blocks_for(n), kThreads, 0, s>>>(w, g, v, n, lr, mu, nesterov, wd);
    LAUNCH_TRY(err, "k_sgd");
    return 0;
}

int kern_adamw_update(cudaStream_t s, float *w, const float *g, float *m,
                      float *v, size_t n, float lr, float b1, float b2,
                      float eps, float wd, float bc1, float bc2,
                      st_error *err)
{
    if (n == 0) return 0;
    k_adamw<<<blocks_for(n), kThreads, 0, s>>>(w, g, m, v, n, 1.0f - lr * wd,
                                               b1, b2, eps, lr / bc1,
                                               1.0f / bc2);
    LAUNCH_TRY(err, "k_adamw");
    return 0;
}
