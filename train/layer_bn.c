/* train/layer_bn.c — batch norm 2d over NHWC activations, with PyTorch's
 * conventions (gpu/device.h's gpu_bn_*): batch statistics in training,
 * running mean and variance in evaluation, momentum 0.1, the unbiased
 * variance in the running estimate, eps 1e-5 inside the square root.
 *
 * Per channel c: gamma and beta are parameters that are never decayed
 * (bias_count = 2c: b = [gamma (c) | beta (c)]); the running mean and
 * variance are the layer's state (state = [mean (c) | var (c)], initial
 * 0 and 1); the batch mean and 1/sqrt(var + eps) of the last training
 * forward are its scratch (scratch = [mean (c) | invstd (c)]), which
 * backward reads together with the layer's input x.
 *
 * Under gradient accumulation each micro-batch normalizes with its own
 * statistics and updates the running estimates once, as PyTorch does.
 * An optional fused ReLU (l->relu) follows the affine map inside the
 * device's batch-norm ops (gpu_bn_*'s relu), so neither direction makes a
 * pass of its own over y; backward masks dy with y > 0, which is the
 * pre-activation's sign.
 */
#include "train/layer.h"
#include "train/layer_impl.h"

static size_t bn_weights(const layer *l)
{
    (void)l;
    return 0;
}

static size_t bn_two_c(const layer *l) { return 2 * (size_t)l->in_c; }

static size_t bn_scratch(const layer *l, int n)
{
    (void)n;
    return bn_two_c(l);
}

static void bn_init(const layer *l, float *w, float *b, uint64_t *rng)
{
    (void)w, (void)rng;
    for (int k = 0; k < l->in_c; k++) {
        b[k] = 1.0f;              /* gamma */
        b[l->in_c + k] = 0.0f;    /* beta */
    }
}

static void bn_init_state(const layer *l, float *state)
{
    for (int k = 0; k < l->in_c; k++) {
        state[k] = 0.0f;          /* running mean */
        state[l->in_c + k] = 1.0f; /* running variance */
    }
}

static int bn_forward(const layer *l, gpu_device *d, const float *x,
                      float *y, int n, int train)
{
    const int c = l->in_c, rows = n * l->in_h * l->in_w;
    if (train)
        return gpu_bn_fwd_train(d, x, rows, c, l->b, l->b + c, l->bn_eps,
                                l->bn_momentum, l->state, l->state + c,
                                l->scratch, l->scratch + c, l->relu, y);
    return gpu_bn_fwd_eval(d, x, rows, c, l->b, l->b + c, l->bn_eps,
                           l->state, l->state + c, l->relu, y);
}

static int bn_backward(const layer *l, gpu_device *d, const float *x,
                       const float *y, float *dy, float *dx, int n,
                       int accumulate)
{
    const int c = l->in_c, rows = n * l->in_h * l->in_w;
    /* gamma/beta gradients are needed even for a first layer: dx NULL
     * then lets the input gradient overwrite dy */
    return gpu_bn_bwd(d, x, dy, rows, c, l->b, l->b + c, l->scratch,
                      l->scratch + c, l->relu ? y : NULL, l->gb, l->gb + c,
                      dx ? dx : dy, accumulate);
}

static const layer_ops bn_ops = {
    .name = "bn",
    .weight_count = bn_weights,
    .bias_count = bn_two_c,
    .scratch_floats = bn_scratch,
    .init = bn_init,
    .forward = bn_forward,
    .backward = bn_backward,
    .state_count = bn_two_c,
    .init_state = bn_init_state,
};

int layer_bn_init(layer *l, int c, int h, int w, int relu, st_error *err)
{
    *l = (layer){.kind = LAYER_BN, .ops = &bn_ops};
    ST_TRY(layer__check_shape("batch norm input", c, h, w, err));
    l->in_c = l->out_c = c;
    l->in_h = l->out_h = h;
    l->in_w = l->out_w = w;
    l->relu = relu != 0;
    l->bn_eps = 1e-5f;
    l->bn_momentum = 0.1f;
    return 0;
}
