/* train/layer_act.c — an activation on its own: ReLU or GELU (exact, with
 * erf, PyTorch's default), elementwise over any shape. Backward takes the
 * derivative at the layer's input x (the pre-activation), so no scratch.
 * Where ReLU follows a dense, conv or BN layer, their fused ReLU saves
 * this layer's output tensor and one pass.
 */
#include "train/layer.h"
#include "train/layer_impl.h"

static size_t act_none(const layer *l)
{
    (void)l;
    return 0;
}

static size_t act_scratch(const layer *l, int n)
{
    (void)l, (void)n;
    return 0;
}

static void act_init(const layer *l, float *w, float *b, uint64_t *rng)
{
    (void)l, (void)w, (void)b, (void)rng;
}

static int act_forward(const layer *l, gpu_device *d, const float *x,
                       float *y, int n, int train)
{
    (void)train;
    return gpu_act_fwd(d, l->act, x, y, (size_t)n * layer_in_size(l));
}

static int act_backward(const layer *l, gpu_device *d, const float *x,
                        const float *y, float *dy, float *dx, int n,
                        int accumulate)
{
    (void)y, (void)accumulate;
    if (dx == NULL) return 0;
    return gpu_act_bwd(d, l->act, x, dy, dx, (size_t)n * layer_in_size(l));
}

static const layer_ops act_ops = {
    .name = "act",
    .weight_count = act_none,
    .bias_count = act_none,
    .scratch_floats = act_scratch,
    .init = act_init,
    .forward = act_forward,
    .backward = act_backward,
};

int layer_act_init(layer *l, int c, int h, int w, gpu_act_kind act,
                   st_error *err)
{
    *l = (layer){.kind = LAYER_ACT, .ops = &act_ops};
    ST_TRY(layer__check_shape("activation input", c, h, w, err));
    if (act != GPU_ACT_RELU && act != GPU_ACT_GELU)
        return st_seterr(err, ST_EINVAL, "activation kind %d unknown",
                         (int)act);
    l->in_c = l->out_c = c;
    l->in_h = l->out_h = h;
    l->in_w = l->out_w = w;
    l->act = act;
    return 0;
}
