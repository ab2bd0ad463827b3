// gpu/bn_kernels.cu — the CUDA backend's batch norm (2d, over NHWC rows):
// training forward, evaluation forward, backward, and their launchers.
//
// defines: kern_bn_fwd_train, kern_bn_fwd_eval, kern_bn_bwd
//
// PyTorch's conventions and the CPU backend's exact formulas (gpu/device.h,
// gpu/cpu_bn.c); tests/test_gpu_conv.c holds the two together. No float
// atomics: every reduction has a fixed order, so results repeat run to run.
// Statistics are two-pass (mean, then squared deviations from it) in
// double. Two paths, chosen per call:
//   one launch   a block owns 8 channels and its 32 rows of threads stride
//                over all the rows; only c/8 blocks, so slow on a big GPU
//                for few channels, but it needs no memory at all. Used when
//                the backend has no scratch (no gpu_device_set_workspace)
//                or rows are few.
//   split        the rows in G chunks (G <= 128, >= 32 rows each): partials
//                per (chunk, channel) into the backend's scratch (a piece
//                of the arena, see kern_scratch), combined per channel in
//                chunk order (Chan's update for the variance), then applied
//                by an elementwise pass over the whole grid. Evaluation
//                with scratch computes its per-channel coefficients once,
//                then applies them the same way.
// y may equal x and dx may equal dy in both paths. The fused ReLU: relu
// clips y at 0 (the CPU's test, v > 0, so NaN gives 0); backward masks dy
// where relu_y, the forward's output, is not positive.
#include "gpu/conv_kernels.cuh"

namespace {

__device__ inline float relu_if(float v, int relu)
{
    return relu && !(v > 0.0f) ? 0.0f : v;
}

// dy[i] masked by the fused ReLU's output (relu_y NULL: no ReLU).
__device__ inline float masked_dy(const float *dy, const float *relu_y,
                                  size_t i)
{
    return relu_y != nullptr && !(relu_y[i] > 0.0f) ? 0.0f : dy[i];
}

// ---- batch norm ----------------------------------------------------------
// Per-channel arithmetic shared by both paths (the CPU backend's formulas).
// Training: statistics in double; y = x*scale + shift with scale =
// gamma*invstd, shift = beta - mean*scale. Backward, with xhat = (x -
// mean)*invstd, N = rows and the sums in double: dbeta = sum dy, dgamma =
// sum dy*xhat, dx = gamma*invstd*(dy - dbeta/N - xhat*dgamma/N) = a*dy +
// b*x + cc, from the batch's own sums (not the accumulated dgamma).

struct bn_args {
    const float *gamma, *beta;
    float eps, momentum;
    float *run_mean, *run_var, *save_mean, *save_invstd; // train
    const float *mean_in, *invstd_in;                    // backward
    float *dgamma, *dbeta;
    int accumulate;
};

// Writes channel ch's statistics (write = 1) and returns scale, shift.
__device__ inline void bn_train_finish(const bn_args &p, int ch, int rows,
                                       double mean, double var, int write,
                                       float *scale, float *shift)
{
    double inv = 1.0 / sqrt(var + (double)p.eps);
    *scale = (float)((double)p.gamma[ch] * inv);
    *shift = (float)((double)p.beta[ch] - mean * *scale);
    if (!write) return;
    // rows == 1: no unbiased estimate; the biased one (0) stands in
    double unbias = rows > 1 ? (double)rows / (double)(rows - 1) : 1.0;
    double m = p.momentum;
    p.save_mean[ch] = (float)mean;
    p.save_invstd[ch] = (float)inv;
    p.run_mean[ch] = (float)((1.0 - m) * p.run_mean[ch] + m * mean);
    p.run_var[ch] = (float)((1.0 - m) * p.run_var[ch] + m * var * unbias);
}

// From sdy = sum dy and sdx = sum dy*(x - mean): writes dgamma, dbeta
// (write = 1) and returns dx's coefficients a, b, cc.
__device__ inline void bn_bwd_finish(const bn_args &p, int ch, int rows,
                                     double sdy, double sdx, int write,
                                     float *a, float *b, float *cc)
{
    double inv = (double)p.invstd_in[ch], mu = (double)p.mean_in[ch];
    double dg = sdx * inv, db = sdy;
    if (write) {
        p.dgamma[ch] = (float)(p.accumulate ? p.dgamma[ch] + dg : dg);
        p.dbeta[ch] = (float)(p.accumulate ? p.dbeta[ch] + db : db);
    }
    double gi = (double)p.gamma[ch] * inv;
    double bx = -gi * inv * dg / (double)rows;
    *a = (float)gi;
    *b = (float)bx;
    *cc = (float)(-gi * db / (double)rows - bx * mu);
}

// The TR partials of each of a (TC, TR) block's TC channels, added in row
// order. Every thread of the block calls it (it holds two barriers).
template <int TC, int TR>
__device__ inline double block_sum(double (*part)[TC], double mine)
{
    part[threadIdx.y][threadIdx.x] = mine;
    __syncthreads();
    double t = 0.0;
    for (int k = 0; k < TR; k++) t += part[k][threadIdx.x];
    __syncthreads(); // part is reused by the next call
    return t;
}

// Path 1, one launch: a block of (kBnC, kBnR) threads owns kBnC channels
// and strides over all the rows (y may equal x: each block reads its
// channels fully before it writes them). Used when there is no scratch.
constexpr int kBnC = 8;
constexpr int kBnR = 32;

__global__ void k_bn_train(const float *x, int rows, int c, bn_args p,
                           int relu, float *y)
{
    __shared__ double part[kBnR][kBnC];
    int ch = blockIdx.x * kBnC + threadIdx.x;
    bool on = ch < c;
    double acc = 0.0;
    if (on)
        for (int r = threadIdx.y; r < rows; r += kBnR)
            acc += (double)x[(size_t)r * c + ch];
    double mean = block_sum<kBnC, kBnR>(part, acc) / rows;
    acc = 0.0;
    if (on)
        for (int r = threadIdx.y; r < rows; r += kBnR) {
            double d = (double)x[(size_t)r * c + ch] - mean;
            acc += d * d;
        }
    double var = block_sum<kBnC, kBnR>(part, acc) / rows; // biased
    if (!on) return; // no barrier follows
    float scale, shift;
    bn_train_finish(p, ch, rows, mean, var, threadIdx.y == 0, &scale, &shift);
    for (int r = threadIdx.y; r < rows; r += kBnR) {
        size_t i = (size_t)r * c + ch;
        y[i] = relu_if(x[i] * scale + shift, relu);
    }
}

__global__ void k_bn_bwd(const float *x, const float *dy,
                         const float *relu_y, int rows, int c, bn_args p,
                         float *dx)
{
    __shared__ double part[kBnR][kBnC];
    int ch = blockIdx.x * kBnC + threadIdx.x;
    bool on = ch < c;
    double mu = on ? (double)p.mean_in[ch] : 0.0;
    double sdy = 0.0, sdx = 0.0;
    if (on)
        for (int r = threadIdx.y; r < rows; r += kBnR) {
            size_t i = (size_t)r * c + ch;
            double g = (double)masked_dy(dy, relu_y, i);
            sdy += g;
            sdx += g * ((double)x[i] - mu);
        }
    sdy = block_sum<kBnC, kBnR>(part, sdy);
    sdx = block_sum<kBnC, kBnR>(part, sdx);
    if (!on) return; // no barrier follows
    float a, b, cc;
    bn_bwd_finish(p, ch, rows, sdy, sdx, threadIdx.y == 0, &a, &b, &cc);
    for (int r = threadIdx.y; r < rows; r += kBnR) {
        size_t i = (size_t)r * c + ch;
        dx[i] = a * masked_dy(dy, relu_y, i) + b * x[i] + cc;
    }
}

// Path 2, three launches over a scratch (the backend's, from the arena):
// the rows split into G contiguous chunks; a (kSpC, kSpR) block reduces
// one chunk of kSpC channels into partials (G, c, 2) doubles; a thread per
// channel combines the G partials in chunk order and writes the channel's
// coefficients (coef (k, c) floats); an elementwise pass over the whole
// grid applies them. Deterministic: the chunking depends on rows only.
constexpr int kSpC = 32;
constexpr int kSpR = 8;
constexpr int kBnChunkRows = 32;  // at least this many rows a chunk
constexpr int kBnMaxChunks = 128;

__device__ inline void chunk_rows(int rows, int G, int g, int *r0, int *r1)
{
    *r0 = (int)((long long)rows * g / G);
    *r1 = (int)((long long)rows * (g + 1) / G);
}

// part[g][ch] = (chunk mean, sum of squared deviations from it): two-pass
// inside the chunk, so the combination below never subtracts large sums.
__global__ void k_bn_part_train(const float *__restrict__ x, int rows, int c,
                                int G, double *__restrict__ part)
{
    __shared__ double red[kSpR][kSpC];
    int ch = blockIdx.x * kSpC + threadIdx.x, g = blockIdx.y, r0, r1;
    chunk_rows(rows, G, g, &r0, &r1);
    bool on = ch < c;
    double acc = 0.0;
    if (on)
        for (int r = r0 + threadIdx.y; r < r1; r += kSpR)
            acc += (double)x[(size_t)r * c + ch];
    double mean = block_sum<kSpC, kSpR>(red, acc) / (r1 - r0);
    acc = 0.0;
    if (on)
        for (int r = r0 + threadIdx.y; r < r1; r += kSpR) {
            double d = (double)x[(size_t)r * c + ch] - mean;
            acc += d * d;
        }
    double m2 = block_sum<kSpC, kSpR>(red, acc);
    if (on && threadIdx.y == 0) {
        part[((size_t)g * c + ch) * 2] = mean;
        part[((size_t)g * c + ch) * 2 + 1] = m2;
    }
}

// Chan et al.'s pairwise update, chunk by chunk in order.
__global__ void k_bn_fin_train(const double *__restrict__ part, int rows,
                               int c, int G, bn_args p, float *__restrict__ coef)
{
    int ch = blockIdx.x * blockDim.x + threadIdx.x;
    if (ch >= c) return;
    double n = 0.0, mean = 0.0, m2 = 0.0;
    for (int g = 0; g < G; g++) {
        int r0, r1;
        chunk_rows(rows, G, g, &r0, &r1);
        double nb = r1 - r0, mb = part[((size_t)g * c + ch) * 2];
        double delta = mb - mean, tot = n + nb;
        mean += delta * (nb / tot);
        m2 += part[((size_t)g * c + ch) * 2 + 1] + delta * delta * (n * nb / tot);
        n = tot;
    }
    bn_train_finish(p, ch, rows, mean, m2 / rows, 1, &coef[ch],
                    &coef[c + ch]);
}

// part[g][ch] = (sum dy, sum dy*(x - save_mean)) over the chunk.
__global__ void k_bn_part_bwd(const float *__restrict__ x,
                              const float *__restrict__ dy,
                              const float *__restrict__ relu_y, int rows,
                              int c, int G,
                              const float *__restrict__ save_mean,
                              double *__restrict__ part)
{
    __shared__ double red[kSpR][kSpC];
    int ch = blockIdx.x * kSpC + threadIdx.x, g = blockIdx.y, r0, r1;
    chunk_rows(rows, G, g, &r0, &r1);
    bool on = ch < c;
    double mu = on ? (double)save_mean[ch] : 0.0, sdy = 0.0, sdx = 0.0;
    if (on)
        for (int r = r0 + threadIdx.y; r < r1; r += kSpR) {
            size_t i = (size_t)r * c + ch;
            double d = (double)masked_dy(dy, relu_y, i);
            sdy += d;
            sdx += d * ((double)x[i] - mu);
        }
    sdy = block_sum<kSpC, kSpR>(red, sdy);
    sdx = block_sum<kSpC, kSpR>(red, sdx);
    if (on && threadIdx.y == 0) {
        part[((size_t)g * c + ch) * 2] = sdy;
        part[((size_t)g * c + ch) * 2 + 1] = sdx;
    }
}

__global__ void k_bn_fin_bwd(const double *__restrict__ part, int rows, int c,
                             int G, bn_args p, float *__restrict__ coef)
{
    int ch = blockIdx.x * blockDim.x + threadIdx.x;
    if (ch >= c) return;
    double sdy = 0.0, sdx = 0.0;
    for (int g = 0; g < G; g++) {
        sdy += part[((size_t)g * c + ch) * 2];
        sdx += part[((size_t)g * c + ch) * 2 + 1];
    }
    bn_bwd_finish(p, ch, rows, sdy, sdx, 1, &coef[ch], &coef[c + ch],
                  &coef[2 * c + ch]);
}

// y = x*coef[0][ch] + coef[1][ch] over (rows, c), clipped when relu; y
// may equal x.
__global__ void k_bn_apply(const float *x, size_t total, int c,
                           const float *__restrict__ coef, int relu, float *y)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x) {
        int ch = (int)(i % c);
        y[i] = relu_if(x[i] * coef[ch] + coef[c + ch], relu);
    }
}

// dx = a*dy + b*x + cc from coef (3, c); dx may equal dy.
__global__ void k_bn_apply_bwd(const float *__restrict__ x, const float *dy,
                               const float *__restrict__ relu_y, size_t total,
                               int c, const float *__restrict__ coef,
                               float *dx)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x) {
        int ch = (int)(i % c);
        dx[i] = coef[ch] * masked_dy(dy, relu_y, i) + coef[c + ch] * x[i] +
                coef[2 * c + ch];
    }
}

// Evaluation: y = x*scale + shift from the running estimates.
// Evaluation's per-channel arithmetic, from the running estimates.
struct bn_eval_args {
    const float *gamma, *beta, *run_mean, *run_var;
    float eps;
};

__device__ inline void bn_eval_coef(const bn_eval_args &p, int ch,
                                    float *scale, float *shift)
{
    double inv = 1.0 / sqrt((double)p.run_var[ch] + (double)p.eps);
    *scale = (float)((double)p.gamma[ch] * inv);
    *shift = (float)((double)p.beta[ch] - (double)p.run_mean[ch] * *scale);
}

// Without scratch: the coefficients per element (a double sqrt each).
__global__ void k_bn_eval(const float *x, size_t total, int c,
                          bn_eval_args p, int relu, float *y)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x) {
        int ch = (int)(i % c);
        float scale, shift;
        bn_eval_coef(p, ch, &scale, &shift);
        y[i] = relu_if(x[i] * scale + shift, relu);
    }
}

// With scratch: once per channel into coef (2, c), then k_bn_apply.
__global__ void k_bn_fin_eval(int c, bn_eval_args p,
                              float *__restrict__ coef)
{
    int ch = blockIdx.x * blockDim.x + threadIdx.x;
    if (ch < c) bn_eval_coef(p, ch, &coef[ch], &coef[c + ch]);
}

// Chunks for the split path: 0 when it does not apply (no scratch, too
// few rows, or a scratch too small for 2 chunks of this c).
int bn_chunks(const kern_scratch *sc, int rows, int c, size_t coef_floats,
              float **coef, double **part)
{
    if (sc == nullptr || sc->p == nullptr) return 0;
    size_t head = (coef_floats * c * sizeof(float) + 255) & ~(size_t)255;
    if (sc->bytes <= head) return 0;
    size_t fit = (sc->bytes - head) / ((size_t)c * 2 * sizeof(double));
    int G = rows / kBnChunkRows;
    if (G > kBnMaxChunks) G = kBnMaxChunks;
    if ((size_t)G > fit) G = (int)fit;
    if (G < 2) return 0;
    *coef = (float *)sc->p;
    *part = (double *)((char *)sc->p + head);
    return G;
}

} // namespace

int kern_bn_fwd_train(cudaStream_t s, const kern_scratch *sc, const float *x,
                      int rows, int c, const float *gamma, const float *beta,
                      float eps, float momentum, float *run_mean,
                      float *run_var, float *save_mean, float *save_invstd,
                      int relu, float *y, st_error *err)
{
    if (rows <= 0 || c <= 0) return 0;
    bn_args p = {};
    p.gamma = gamma, p.beta = beta, p.eps = eps, p.momentum = momentum;
    p.run_mean = run_mean, p.run_var = run_var;
    p.save_mean = save_mean, p.save_invstd = save_invstd;
    float *coef;
    double *part;
    int G = bn_chunks(sc, rows, c, 2, &coef, &part);
    if (G == 0) {
        dim3 block(kBnC, kBnR), grid((c + kBnC - 1) / kBnC);
        k_bn_train<<<grid, block, 0, s>>>(x, rows, c, p, relu, y);
        LAUNCH_TRY(err, "k_bn_train");
        return 0;
    }
    dim3 block(kSpC, kSpR), grid((c + kSpC - 1) / kSpC, G);
    k_bn_part_train<<<grid, block, 0, s>>>(x, rows, c, G, part);
    LAUNCH_TRY(err, "k_bn_part_train");
    int cb = (c + kKernThreads - 1) / kKernThreads;
    k_bn_fin_train<<<cb, kKernThreads, 0, s>>>(part, rows, c, G, p, coef);
    LAUNCH_TRY(err, "k_bn_fin_train");
    size_t total = (size_t)rows * c;
    k_bn_apply<<<kern_blocks(total), kKernThreads, 0, s>>>(x, total, c, coef,
                                                           relu, y);
    LAUNCH_TRY(err, "k_bn_apply");
    return 0;
}

int kern_bn_fwd_eval(cudaStream_t s, const kern_scratch *sc, const float *x,
                     int rows, int c, const float *gamma, const float *beta,
                     float eps, const float *run_mean, const float *run_var,
                     int relu, float *y, st_error *err)
{
    size_t total = (size_t)rows * c;
    if (rows <= 0 || c <= 0) return 0;
    bn_eval_args p = {gamma, beta, run_mean, run_var, eps};
    if (sc == nullptr || sc->p == nullptr ||
        sc->bytes < 2 * (size_t)c * sizeof(float)) {
        k_bn_eval<<<kern_blocks(total), kKernThreads, 0, s>>>(x, total, c, p,
                                                              relu, y);
        LAUNCH_TRY(err, "k_bn_eval");
        return 0;
    }
    float *coef = (float *)sc->p;
    int cb = (c + kKernThreads - 1) / kKernThreads;
    k_bn_fin_eval<<<cb, kKernThreads, 0, s>>>(c, p, coef);
    LAUNCH_TRY(err, "k_bn_fin_eval");
    k_bn_apply<<<kern_blocks(total), kKernThreads, 0, s>>>(x, total, c, coef,
                                                           relu, y);
    LAUNCH_TRY(err, "k_bn_apply");
    return 0;
}

int kern_bn_bwd(cudaStream_t s, const kern_scratch *sc, const float *x,
                const float *dy, int rows, int c, const float *gamma,
                const float *save_mean, const float *save_invstd,
                const float *relu_y, float *dgamma, float *dbeta, float *dx,
                int accumulate, st_error *err)
{
    if (rows <= 0 || c <= 0) return 0;
    bn_args p = {};
    p.gamma = gamma, p.mean_in = save_mean, p.invstd_in = save_invstd;
    p.dgamma = dgamma, p.dbeta = dbeta, p.accumulate = accumulate;
    float *coef;
    double *part;
    int G = bn_chunks(sc, rows, c, 3, &coef, &part);
    if (G == 0) {
        dim3 block(kBnC, kBnR), grid((c + kBnC - 1) / kBnC);
        k_bn_bwd<<<grid, block, 0, s>>>(x, dy, relu_y, rows, c, p, dx);
        LAUNCH_TRY(err, "k_bn_bwd");
        return 0;
    }
    dim3 block(kSpC, kSpR), grid((c + kSpC - 1) / kSpC, G);
    k_bn_part_bwd<<<grid, block, 0, s>>>(x, dy, relu_y, rows, c, G, save_mean,
                                         part);
    LAUNCH_TRY(err, "k_bn_part_bwd");
    int cb = (c + kKernThreads - 1) / kKernThreads;
    k_bn_fin_bwd<<<cb, kKernThreads, 0, s>>>(part, rows, c, G, p, coef);
    LAUNCH_TRY(err, "k_bn_fin_bwd");
    size_t total = (size_t)rows * c;
    k_bn_apply_bwd<<<kern_blocks(total), kKernThreads, 0, s>>>(
        x, dy, relu_y, total, c, coef, dx);
    LAUNCH_TRY(err, "k_bn_apply_bwd");
    return 0;
}

