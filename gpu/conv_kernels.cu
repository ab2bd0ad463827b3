// gpu/conv_kernels.cu — the CUDA backend's conv-net kernels (NHWC) and their
// launchers: lowering (im2col) and its adjoint, max and global average
// pooling, ReLU/GELU, axpby, per-channel input normalization, the
// left-right flip. Batch norm is in gpu/bn_kernels.cu.
//
// defines: kern_im2col, kern_col2im, kern_maxpool_fwd, kern_maxpool_bwd,
//          kern_avgpool_fwd, kern_avgpool_bwd, kern_act_fwd, kern_act_bwd,
//          kern_axpby, kern_normalize_u8_ch, kern_flip_w
//
// Semantics are gpu/device.h's, with the CPU backend's exact formulas
// (gpu/cpu_conv.c); tests/test_gpu_conv.c holds them to the CPU's results.
// Determinism: nothing here uses float atomics, so every result is the
// same from run to run. col2im and max pool backward are gathers: one
// thread per input element sums, in ascending output order, the window
// taps that read it. That is the order the CPU's serial scatter over the
// outputs adds them in, so the sums are bit for bit the CPU's, and
// overlapping windows need no atomics.
// Indices: the lowering and pooling kernels use 32-bit index arithmetic
// when every tensor they touch has fewer than 2^31 elements, size_t
// otherwise; the others use size_t. Grid-stride loops over at most
// kKernMaxBlocks blocks, so no grid limit is ever reached.
#include "gpu/conv_kernels.cuh"

#include <limits.h>

namespace {

// Output positions o in [lo, hi] whose window (start o*s, length k) covers
// the padded coordinate p >= 0, clipped to [0, o_n). Empty when lo > hi.
__device__ inline void covering(int p, int k, int s, int o_n, int *lo,
                                int *hi)
{
    int first = p - k + 1;
    *lo = first <= 0 ? 0 : (first + s - 1) / s;
    int last = p / s;
    *hi = last < o_n - 1 ? last : o_n - 1;
}

// col (n*oh*ow, kh*kw*c) from x (n, h, w, c); a thread per col entry.
template <typename I>
__global__ void k_im2col(const float *__restrict__ x, float *__restrict__ col,
                         gpu_conv_geom g, I total)
{
    I K = (I)g.kh * g.kw * g.c;
    for (I i = blockIdx.x * (I)blockDim.x + threadIdx.x; i < total;
         i += (I)gridDim.x * blockDim.x) {
        I row = i / K;
        int k = (int)(i - row * K);
        int ci = k % g.c, t = k / g.c, kx = t % g.kw, ky = t / g.kw;
        int ox = (int)(row % (I)g.ow);
        I r2 = row / (I)g.ow;
        int oy = (int)(r2 % (I)g.oh);
        I img = r2 / (I)g.oh;
        int iy = oy * g.sh - g.ph + ky, ix = ox * g.sw - g.pw + kx;
        float v = 0.0f;
        if (iy >= 0 && iy < g.h && ix >= 0 && ix < g.w)
            v = x[((img * (I)g.h + (I)iy) * (I)g.w + (I)ix) * (I)g.c + (I)ci];
        col[i] = v;
    }
}

// dx (n, h, w, c) = (accumulate ? dx : 0) + the col entries of every tap
// that reads the pixel; a thread per dx entry.
template <typename I>
__global__ void k_col2im(const float *__restrict__ col, float *__restrict__ dx,
                         gpu_conv_geom g, I total, int accumulate)
{
    I K = (I)g.kh * g.kw * g.c;
    for (I i = blockIdx.x * (I)blockDim.x + threadIdx.x; i < total;
         i += (I)gridDim.x * blockDim.x) {
        int ci = (int)(i % (I)g.c);
        I t = i / (I)g.c;
        int ix = (int)(t % (I)g.w);
        t /= (I)g.w;
        int iy = (int)(t % (I)g.h);
        I img = t / (I)g.h;
        int ylo, yhi, xlo, xhi;
        covering(iy + g.ph, g.kh, g.sh, g.oh, &ylo, &yhi);
        covering(ix + g.pw, g.kw, g.sw, g.ow, &xlo, &xhi);
        float sum = accumulate ? dx[i] : 0.0f;
        for (int oy = ylo; oy <= yhi; oy++) {
            int ky = iy + g.ph - oy * g.sh;
            I rbase = (img * (I)g.oh + (I)oy) * (I)g.ow;
            for (int ox = xlo; ox <= xhi; ox++) {
                int kx = ix + g.pw - ox * g.sw;
                sum += col[(rbase + (I)ox) * K +
                           (I)((ky * g.kw + kx) * g.c + ci)];
            }
        }
        dx[i] = sum;
    }
}

// y, idx (n, oh, ow, c): the first max over the window's in-image taps, in
// (ky, kx) order; idx is its flat index in the sample's (h, w, c).
template <typename I>
__global__ void k_maxpool_fwd(const float *__restrict__ x,
                              float *__restrict__ y, int32_t *__restrict__ idx,
                              gpu_conv_geom g, I total)
{
    I sample = (I)g.h * g.w * g.c;
    for (I i = blockIdx.x * (I)blockDim.x + threadIdx.x; i < total;
         i += (I)gridDim.x * blockDim.x) {
        int ci = (int)(i % (I)g.c);
        I t = i / (I)g.c;
        int ox = (int)(t % (I)g.ow);
        t /= (I)g.ow;
        int oy = (int)(t % (I)g.oh);
        const float *xs = x + (t / (I)g.oh) * sample;
        float best = -INFINITY;
        int32_t at = -1;
        for (int ky = 0; ky < g.kh; ky++) {
            int iy = oy * g.sh - g.ph + ky;
            if (iy < 0 || iy >= g.h) continue;
            for (int kx = 0; kx < g.kw; kx++) {
                int ix = ox * g.sw - g.pw + kx;
                if (ix < 0 || ix >= g.w) continue;
                int32_t f = (iy * g.w + ix) * g.c + ci;
                float v = xs[f];
                if (at < 0 || v > best) best = v, at = f;
            }
        }
        y[i] = best;
        idx[i] = at;
    }
}

// dx (n, h, w, c): the sum of dy over the outputs whose argmax is this
// element, in ascending output order; a thread per dx entry.
template <typename I>
__global__ void k_maxpool_bwd(const float *__restrict__ dy,
                              const int32_t *__restrict__ idx,
                              float *__restrict__ dx, gpu_conv_geom g, I total)
{
    for (I i = blockIdx.x * (I)blockDim.x + threadIdx.x; i < total;
         i += (I)gridDim.x * blockDim.x) {
        int ci = (int)(i % (I)g.c);
        I t = i / (I)g.c;
        int ix = (int)(t % (I)g.w);
        t /= (I)g.w;
        int iy = (int)(t % (I)g.h);
        I img = t / (I)g.h;
        int32_t f = (iy * g.w + ix) * g.c + ci;
        int ylo, yhi, xlo, xhi;
        covering(iy + g.ph, g.kh, g.sh, g.oh, &ylo, &yhi);
        covering(ix + g.pw, g.kw, g.sw, g.ow, &xlo, &xhi);
        float sum = 0.0f;
        for (int oy = ylo; oy <= yhi; oy++)
            for (int ox = xlo; ox <= xhi; ox++) {
                I o = ((img * (I)g.oh + (I)oy) * (I)g.ow + (I)ox) * (I)g.c +
                      (I)ci;
                if (idx[o] == f) sum += dy[o];
            }
        dx[i] = sum;
    }
}

// y (n, c) = (sum over hw of x (n, hw, c), in order of position) * 1/hw.
__global__ void k_avgpool_fwd(const float *__restrict__ x,
                              float *__restrict__ y, size_t nc, int hw, int c)
{
    float inv = 1.0f / (float)hw;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < nc;
         i += (size_t)gridDim.x * blockDim.x) {
        const float *p = x + (i / c) * hw * c + i % c;
        float sum = 0.0f;
        for (int k = 0; k < hw; k++) sum += p[(size_t)k * c];
        y[i] = sum * inv;
    }
}

// dx (n, hw, c) = dy (n, c) * 1/hw.
__global__ void k_avgpool_bwd(const float *__restrict__ dy,
                              float *__restrict__ dx, size_t total, int hw,
                              int c)
{
    float inv = 1.0f / (float)hw;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x) {
        size_t img = i / ((size_t)hw * c);
        dx[i] = dy[img * c + i % c] * inv;
    }
}

constexpr float kSqrtHalf = 0.70710678118654752f;   // 1/sqrt(2)
constexpr float kInvSqrt2Pi = 0.39894228040143268f; // 1/sqrt(2 pi)

__global__ void k_act_fwd(int kind, const float *x, float *y, size_t n)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        float v = x[i];
        if (kind == GPU_ACT_RELU)
            y[i] = v > 0.0f ? v : 0.0f;
        else
            y[i] = 0.5f * v * (1.0f + erff(v * kSqrtHalf));
    }
}

// d/dx x Phi(x) = Phi(x) + x phi(x).
__global__ void k_act_bwd(int kind, const float *x, const float *dy,
                          float *dx, size_t n)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        float v = x[i];
        if (kind == GPU_ACT_RELU) {
            dx[i] = v > 0.0f ? dy[i] : 0.0f;
        } else {
            float cdf = 0.5f * (1.0f + erff(v * kSqrtHalf));
            float pdf = kInvSqrt2Pi * expf(-0.5f * v * v);
            dx[i] = dy[i] * (cdf + v * pdf);
        }
    }
}

// beta == 0 does not read y (it may hold garbage, NaN included); x may
// equal y.
__global__ void k_axpby(size_t n, float alpha, const float *x, float beta,
                        float *y)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        y[i] = beta == 0.0f ? alpha * x[i] : alpha * x[i] + beta * y[i];
}

// y = x*a + b per channel: a = (1/255)/std, b = -mean/std
struct chan4 {
    float a[4], b[4];
};

__global__ void k_normalize_u8_ch(const uint8_t *__restrict__ x, size_t n,
                                  int c, chan4 p, float *__restrict__ y)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        int k = (int)(i % c);
        y[i] = (float)x[i] * p.a[k] + p.b[k];
    }
}

__global__ void k_flip_w(const float *__restrict__ x, float *__restrict__ y,
                         size_t total, int w, int c)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x) {
        size_t ci = i % c, t = i / c;
        size_t col = t % w, line = t / w;
        y[i] = x[(line * w + (w - 1 - col)) * c + ci];
    }
}

// ---- launch helpers -----------------------------------------------------

size_t in_elems(const gpu_conv_geom *g)
{
    return (size_t)g->n * g->h * g->w * g->c;
}

bool fits32(size_t a, size_t b) { return a < INT_MAX && b < INT_MAX; }

// Each launch through a named pointer: the build's <<<>>> rewrite for
// cuemu needs a plain name before the chevrons, and cuemu reports it.
template <typename I>
int launch_im2col(cudaStream_t s, const gpu_conv_geom *g, const float *x,
                  float *col, size_t total, st_error *err)
{
    void (*k_im2col_t)(const float *, float *, gpu_conv_geom, I) = k_im2col<I>;
    k_im2col_t<<<kern_blocks(total), kKernThreads, 0, s>>>(x, col, *g,
                                                           (I)total);
    LAUNCH_TRY(err, "k_im2col");
    return 0;
}

template <typename I>
int launch_col2im(cudaStream_t s, const gpu_conv_geom *g, const float *col,
                  float *dx, int accumulate, size_t total, st_error *err)
{
    void (*k_col2im_t)(const float *, float *, gpu_conv_geom, I, int) =
        k_col2im<I>;
    k_col2im_t<<<kern_blocks(total), kKernThreads, 0, s>>>(col, dx, *g,
                                                           (I)total,
                                                           accumulate);
    LAUNCH_TRY(err, "k_col2im");
    return 0;
}

template <typename I>
int launch_maxpool_fwd(cudaStream_t s, const gpu_conv_geom *g, const float *x,
                       float *y, int32_t *idx, size_t total, st_error *err)
{
    void (*k_maxpool_fwd_t)(const float *, float *, int32_t *, gpu_conv_geom,
                            I) = k_maxpool_fwd<I>;
    k_maxpool_fwd_t<<<kern_blocks(total), kKernThreads, 0, s>>>(x, y, idx, *g,
                                                                (I)total);
    LAUNCH_TRY(err, "k_maxpool_fwd");
    return 0;
}

template <typename I>
int launch_maxpool_bwd(cudaStream_t s, const gpu_conv_geom *g,
                       const float *dy, const int32_t *idx, float *dx,
                       size_t total, st_error *err)
{
    void (*k_maxpool_bwd_t)(const float *, const int32_t *, float *,
                            gpu_conv_geom, I) = k_maxpool_bwd<I>;
    k_maxpool_bwd_t<<<kern_blocks(total), kKernThreads, 0, s>>>(dy, idx, dx,
                                                                *g, (I)total);
    LAUNCH_TRY(err, "k_maxpool_bwd");
    return 0;
}

} // namespace

int kern_im2col(cudaStream_t s, const gpu_conv_geom *g, const float *x,
                float *col, st_error *err)
{
    size_t total = (size_t)g->n * g->oh * g->ow * g->kh * g->kw * g->c;
    if (total == 0) return 0;
    return fits32(total, in_elems(g))
               ? launch_im2col<uint32_t>(s, g, x, col, total, err)
               : launch_im2col<size_t>(s, g, x, col, total, err);
}

int kern_col2im(cudaStream_t s, const gpu_conv_geom *g, const float *col,
                float *dx, int accumulate, st_error *err)
{
    size_t total = in_elems(g);
    size_t cols = (size_t)g->n * g->oh * g->ow * g->kh * g->kw * g->c;
    if (total == 0) return 0;
    return fits32(total, cols)
               ? launch_col2im<uint32_t>(s, g, col, dx, accumulate, total, err)
               : launch_col2im<size_t>(s, g, col, dx, accumulate, total, err);
}

int kern_maxpool_fwd(cudaStream_t s, const gpu_conv_geom *g, const float *x,
                     float *y, int32_t *idx, st_error *err)
{
    size_t total = (size_t)g->n * g->oh * g->ow * g->c;
    if (total == 0) return 0;
    return fits32(total, in_elems(g))
               ? launch_maxpool_fwd<uint32_t>(s, g, x, y, idx, total, err)
               : launch_maxpool_fwd<size_t>(s, g, x, y, idx, total, err);
}

int kern_maxpool_bwd(cudaStream_t s, const gpu_conv_geom *g, const float *dy,
                     const int32_t *idx, float *dx, st_error *err)
{
    size_t total = in_elems(g);
    size_t outs = (size_t)g->n * g->oh * g->ow * g->c;
    if (total == 0) return 0;
    return fits32(total, outs)
               ? launch_maxpool_bwd<uint32_t>(s, g, dy, idx, dx, total, err)
               : launch_maxpool_bwd<size_t>(s, g, dy, idx, dx, total, err);
}

int kern_avgpool_fwd(cudaStream_t s, const float *x, int n, int hw, int c,
                     float *y, st_error *err)
{
    size_t nc = (size_t)n * c;
    if (nc == 0 || hw <= 0) return 0;
    k_avgpool_fwd<<<kern_blocks(nc), kKernThreads, 0, s>>>(x, y, nc, hw, c);
    LAUNCH_TRY(err, "k_avgpool_fwd");
    return 0;
}

int kern_avgpool_bwd(cudaStream_t s, const float *dy, int n, int hw, int c,
                     float *dx, st_error *err)
{
    size_t total = (size_t)n * hw * c;
    if (total == 0) return 0;
    k_avgpool_bwd<<<kern_blocks(total), kKernThreads, 0, s>>>(dy, dx, total,
                                                              hw, c);
    LAUNCH_TRY(err, "k_avgpool_bwd");
    return 0;
}

int kern_act_fwd(cudaStream_t s, int kind, const float *x, float *y, size_t n,
                 st_error *err)
{
    if (kind != GPU_ACT_RELU && kind != GPU_ACT_GELU)
        return st_seterr(err, ST_EINVAL, "activation: unknown kind %d", kind);
    if (n == 0) return 0;
    k_act_fwd<<<kern_blocks(n), kKernThreads, 0, s>>>(kind, x, y, n);
    LAUNCH_TRY(err, "k_act_fwd");
    return 0;
}

int kern_act_bwd(cudaStream_t s, int kind, const float *x, const float *dy,
                 float *dx, size_t n, st_error *err)
{
    if (kind != GPU_ACT_RELU && kind != GPU_ACT_GELU)
        return st_seterr(err, ST_EINVAL, "activation: unknown kind %d", kind);
    if (n == 0) return 0;
    k_act_bwd<<<kern_blocks(n), kKernThreads, 0, s>>>(kind, x, dy, dx, n);
    LAUNCH_TRY(err, "k_act_bwd");
    return 0;
}

int kern_axpby(cudaStream_t s, size_t n, float alpha, const float *x,
               float beta, float *y, st_error *err)
{
    if (n == 0) return 0;
    k_axpby<<<kern_blocks(n), kKernThreads, 0, s>>>(n, alpha, x, beta, y);
    LAUNCH_TRY(err, "k_axpby");
    return 0;
}

int kern_normalize_u8_ch(cudaStream_t s, const uint8_t *x, size_t npix, int c,
                         const float mean[4], const float std[4], float *y,
                         st_error *err)
{
    if (c < 1 || c > 4)
        return st_seterr(err, ST_EINVAL, "normalize: %d channels (1 to 4)", c);
    chan4 p = {};
    for (int k = 0; k < c; k++) {
        p.a[k] = (1.0f / 255.0f) / std[k];
        p.b[k] = -mean[k] / std[k];
    }
    size_t n = npix * c;
    if (n == 0) return 0;
    k_normalize_u8_ch<<<kern_blocks(n), kKernThreads, 0, s>>>(x, n, c, p, y);
    LAUNCH_TRY(err, "k_normalize_u8_ch");
    return 0;
}

int kern_flip_w(cudaStream_t s, const float *x, int n, int h, int w, int c,
                float *y, st_error *err)
{
    size_t total = (size_t)n * h * w * c;
    if (total == 0) return 0;
    k_flip_w<<<kern_blocks(total), kKernThreads, 0, s>>>(x, y, total, w, c);
    LAUNCH_TRY(err, "k_flip_w");
    return 0;
}
