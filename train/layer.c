/* train/layer.c — the dense layer (affine map + optional fused ReLU), the
 * deterministic initializer's random numbers, the optional table entries'
 * defaults and the helpers of train/layer_impl.h. The other layers live in
 * layer_conv.c, layer_pool.c, layer_bn.c (with the activation layer) and
 * layer_res.c.
 *
 * Weights are stored (in, out) row-major, so that the forward product is
 * x (n, in) . W (in, out) with no transposes and the weight gradient is
 * x^T . dy: both are plain GEMMs for OpenBLAS and cuBLAS.
 */
#include "train/layer.h"
#include "train/layer_impl.h"

#include <math.h>

uint64_t layer_rng_next(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

float layer_rng_uniform(uint64_t *state)
{
    /* 24 random bits -> [0, 1) exactly representable, then [-1, 1) */
    float u = (float)(layer_rng_next(state) >> 40) * (1.0f / 16777216.0f);
    return 2.0f * u - 1.0f;
}

static size_t dense_weights(const layer *l)
{
    return (size_t)layer_in_size(l) * (size_t)layer_out_size(l);
}

static size_t dense_biases(const layer *l)
{
    return (size_t)layer_out_size(l);
}

static size_t dense_scratch(const layer *l, int n)
{
    (void)l, (void)n;
    return 0;
}

/* He (Kaiming) uniform: U(-sqrt(6/fan_in), sqrt(6/fan_in)), variance
 * 2/fan_in, the right scale in front of a ReLU; biases start at zero. */
static void dense_init(const layer *l, float *w, float *b, uint64_t *rng)
{
    size_t nb = dense_biases(l);
    layer__he_uniform(w, dense_weights(l), (int)layer_in_size(l), rng);
    for (size_t i = 0; i < nb; i++) b[i] = 0.0f;
}

static int dense_forward(const layer *l, gpu_device *d, const float *x,
                         float *y, int n, int train)
{
    (void)train;
    int in = layer_in_size(l), out = layer_out_size(l);
    ST_TRY(gpu_gemm(d, 0, 0, n, out, in, 1.0f, x, in, l->w, out, 0.0f, y, out));
    return gpu_bias_act(d, y, l->b, n, out, l->relu);
}

static int dense_backward(const layer *l, gpu_device *d, const float *x,
                          const float *y, float *dy, float *dx, int n,
                          int accumulate)
{
    int in = layer_in_size(l), out = layer_out_size(l);
    ST_TRY(gpu_act_bias_grad(d, dy, y, l->gb, n, out, l->relu, accumulate));
    /* gw (in, out) (+)= x^T (in, n) . dy (n, out) */
    ST_TRY(gpu_gemm(d, 1, 0, in, out, n, 1.0f, x, in, dy, out,
                    accumulate ? 1.0f : 0.0f, l->gw, out));
    if (dx == NULL) return 0;
    /* dx (n, in) = dy (n, out) . W^T (out, in) */
    return gpu_gemm(d, 0, 1, n, in, out, 1.0f, dy, out, l->w, out, 0.0f, dx,
                    in);
}

static const layer_ops dense_ops = {
    .name = "dense",
    .weight_count = dense_weights,
    .bias_count = dense_biases,
    .scratch_floats = dense_scratch,
    .init = dense_init,
    .forward = dense_forward,
    .backward = dense_backward,
};

void layer_dense_init(layer *l, int in, int out, int relu)
{
    *l = (layer){
        .kind = LAYER_DENSE,
        .ops = &dense_ops,
        .in_c = in, .in_h = 1, .in_w = 1,
        .out_c = out, .out_h = 1, .out_w = 1,
        .relu = relu,
    };
}

size_t layer_state_count(const layer *l)
{
    return l->ops->state_count ? l->ops->state_count(l) : 0;
}

size_t layer_workspace_floats(const layer *l, int n)
{
    return l->ops->workspace_floats ? l->ops->workspace_floats(l, n) : 0;
}

void layer_init_state(const layer *l, float *state)
{
    if (l->ops->init_state) l->ops->init_state(l, state);
}

void layer_bind(layer *l, int micro_batch)
{
    if (l->ops->bind) l->ops->bind(l, micro_batch);
}

void layer_release(layer *l)
{
    if (l->ops && l->ops->release) l->ops->release(l);
}

int layer__check_shape(const char *what, int c, int h, int w, st_error *err)
{
    if (c >= 1 && h >= 1 && w >= 1 &&
        (long long)c * h * w <= (long long)LAYER_MAX_FLOATS)
        return 0;
    return st_seterr(err, ST_EINVAL, "%s: shape %dx%dx%d (c x h x w) is "
                     "empty or above %d floats per sample", what, c, h, w,
                     LAYER_MAX_FLOATS);
}

void layer__he_uniform(float *w, size_t n, int fan_in, uint64_t *rng)
{
    float bound = sqrtf(6.0f / (float)fan_in);
    for (size_t i = 0; i < n; i++) w[i] = bound * layer_rng_uniform(rng);
}
