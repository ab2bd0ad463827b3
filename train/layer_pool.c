/* train/layer_pool.c — max pool (kernel, stride, padding; the argmax
 * indices are kept in the layer's scratch for backward) and global average
 * pool ((c, h, w) -> (c, 1, 1), the usual head before the last dense).
 * Neither has parameters.
 */
#include "train/layer.h"
#include "train/layer_impl.h"

static size_t no_params(const layer *l)
{
    (void)l;
    return 0;
}

static void no_init(const layer *l, float *w, float *b, uint64_t *rng)
{
    (void)l, (void)w, (void)b, (void)rng;
}

static gpu_conv_geom pool_geom(const layer *l, int n)
{
    const layer_win *w = &l->win;
    return (gpu_conv_geom){
        .n = n, .h = l->in_h, .w = l->in_w, .c = l->in_c,
        .kh = w->kh, .kw = w->kw, .sh = w->sh, .sw = w->sw,
        .ph = w->ph, .pw = w->pw, .oh = l->out_h, .ow = l->out_w,
    };
}

/* (n, oh, ow, c) int32 argmax indices, stored in float-sized slots. */
static size_t maxpool_scratch(const layer *l, int n)
{
    return (size_t)n * (size_t)layer_out_size(l);
}

static int maxpool_forward(const layer *l, gpu_device *d, const float *x,
                           float *y, int n, int train)
{
    (void)train;
    gpu_conv_geom g = pool_geom(l, n);
    return gpu_maxpool_fwd(d, &g, x, y, (int32_t *)(void *)l->scratch);
}

static int maxpool_backward(const layer *l, gpu_device *d, const float *x,
                            const float *y, float *dy, float *dx, int n,
                            int accumulate)
{
    (void)x, (void)y, (void)accumulate;
    if (dx == NULL) return 0;
    gpu_conv_geom g = pool_geom(l, n);
    return gpu_maxpool_bwd(d, &g, dy, (const int32_t *)(const void *)l->scratch,
                           dx);
}

static const layer_ops maxpool_ops = {
    .name = "maxpool",
    .weight_count = no_params,
    .bias_count = no_params,
    .scratch_floats = maxpool_scratch,
    .init = no_init,
    .forward = maxpool_forward,
    .backward = maxpool_backward,
};

int layer_maxpool_init(layer *l, int c, int h, int w, layer_win win,
                       st_error *err)
{
    gpu_conv_geom g;
    *l = (layer){.kind = LAYER_MAXPOOL, .ops = &maxpool_ops};
    ST_TRY(layer__check_shape("max pool input", c, h, w, err));
    if (gpu_conv_geom_init(&g, 1, h, w, c, win.kh, win.kw, win.sh, win.sw,
                           win.ph, win.pw) < 0 ||
        2 * win.ph > win.kh || 2 * win.pw > win.kw)
        return st_seterr(err, ST_EINVAL, "max pool %dx%d stride %dx%d "
                         "padding %dx%d on a %dx%dx%d input: %s", win.kh,
                         win.kw, win.sh, win.sw, win.ph, win.pw, h, w, c,
                         2 * win.ph > win.kh || 2 * win.pw > win.kw
                             ? "padding above half the window"
                             : "the window does not fit the input");
    l->in_c = c, l->in_h = h, l->in_w = w;
    l->out_c = c, l->out_h = g.oh, l->out_w = g.ow;
    l->win = win;
    return 0;
}

/* ---- global average pool ------------------------------------------------ */

static size_t avgpool_scratch(const layer *l, int n)
{
    (void)l, (void)n;
    return 0;
}

static int avgpool_forward(const layer *l, gpu_device *d, const float *x,
                           float *y, int n, int train)
{
    (void)train;
    return gpu_avgpool_fwd(d, x, n, l->in_h * l->in_w, l->in_c, y);
}

static int avgpool_backward(const layer *l, gpu_device *d, const float *x,
                            const float *y, float *dy, float *dx, int n,
                            int accumulate)
{
    (void)x, (void)y, (void)accumulate;
    if (dx == NULL) return 0;
    return gpu_avgpool_bwd(d, dy, n, l->in_h * l->in_w, l->in_c, dx);
}

static const layer_ops avgpool_ops = {
    .name = "avgpool",
    .weight_count = no_params,
    .bias_count = no_params,
    .scratch_floats = avgpool_scratch,
    .init = no_init,
    .forward = avgpool_forward,
    .backward = avgpool_backward,
};

int layer_avgpool_init(layer *l, int c, int h, int w, st_error *err)
{
    *l = (layer){.kind = LAYER_AVGPOOL, .ops = &avgpool_ops};
    ST_TRY(layer__check_shape("average pool input", c, h, w, err));
    l->in_c = c, l->in_h = h, l->in_w = w;
    l->out_c = c, l->out_h = 1, l->out_w = 1;
    return 0;
}
