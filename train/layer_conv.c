/* train/layer_conv.c — conv2d over NHWC batches: any kernel, stride and
 * zero padding, optional bias, optional fused ReLU.
 *
 * Lowering. The input (n, h, w, c) is lowered a GROUP of G images at a
 * time into the shared workspace, col (G*oh*ow, kh*kw*c), and one GEMM per
 * group gives y (G*oh*ow, oc) = col . W with W (kh*kw*c, oc): the output
 * is NHWC as it comes out of the GEMM, no transpose. G is as many images
 * as the bound workspace holds (at least one), so the GEMMs are not tiny
 * per-image products; the plan sizes the workspace at the max over layers
 * and directions (workspace_floats). Backward re-lowers each group:
 *   gw (+)= col^T . dy_g                       (backward-filter)
 *   dcol = dy_g . W^T, dx_g = col2im(dcol)     (backward-data; col2im adds
 *                                               where windows overlap)
 * reusing the same workspace for col and dcol. A 1x1 conv with stride 1
 * and no padding skips the lowering: in NHWC the input IS the col matrix.
 * A thin one (kh*kw*c <= 32, oc <= 64: a first layer over gray or RGB
 * pixels) on a backend that has gpu_conv_thin's ops (the CPU) skips it
 * too, forward and backward-filter, reading the taps straight from x: on
 * the reference net's 28x28x1 -> 32 layer that is the lowering's 3.6 MB
 * written and read back twice a batch. Its backward-data, when it has
 * one, still goes through dcol and col2im. The plan's workspace is sized
 * as for any conv, so the plan does not depend on the backend.
 *
 * Layout: NHWC, chosen by measuring (bench/conv_layout.c, built and run
 * by hand on this 2-core machine on 2026-12-01, while 6 other sessions
 * were compiling: load ~6, so best of 7 interleaved runs): one conv
 * layer's forward + backward-data + backward-filter, batch 128, 3x3 pad 1,
 * NCHW lowered per image (col_i (c*9, oh*ow), y_i = W (oc, c*9) . col_i,
 * 3 GEMMs per image) against NHWC lowered as above, the whole batch in
 * one group or in groups of 16 images. ms (GFLOP/s):
 *
 *   OpenBLAS threads       1                                 2
 *   layer          NCHW      NHWC all  NHWC G=16   NCHW      NHWC all  NHWC G=16
 *   1->32 28x28    2.6 (67)  11.2 (15)  6.8 (25)   2.9 (59)  25.4 (7)  21.3 (8)
 *   32->64 14x14  49.0 (57)  58.0 (48) 44.0 (63)  63.8 (44)  94.8 (29) 56.5 (49)
 *   64->128 7x7   58.6 (47)  53.3 (52) 37.3 (74)  30.5 (91)  23.3 (119) 18.5 (150)
 *
 * Grouped NHWC is the fastest on the layers that carry 94% of this net's
 * FLOPs (by 10-60%; a group of 16 images keeps the lowering, 2-4 MB, in
 * cache, where the whole batch's 15-30 MB does not, so the plan should
 * cap the workspace near 1M floats rather than give it the whole batch),
 * and it needs no transposes anywhere else: bias, batch norm and the
 * per-channel input normalization are per-column ops on (rows, c), and
 * the loader's uint8 batches are NHWC already. It loses on the 1-channel
 * first layer (K = 9: thin GEMMs and 12-byte copies), by ~4 ms a batch,
 * of which the first layer skips backward-data (dx NULL). The CPU backend
 * now runs that layer's thin GEMMs (K <= 32) with its own kernels
 * (gpu/cpu_gemm.c) rather than OpenBLAS's. The 2-thread figures
 * swing by 2-10x between runs under this load (a 2-thread GEMM waits for
 * its slower thread); the 1-thread ones are the steadier comparison.
 */
#include "train/layer.h"
#include "train/layer_impl.h"

static size_t conv_k(const layer *l)
{
    return (size_t)l->win.kh * l->win.kw * l->in_c;
}

static size_t conv_weights(const layer *l) { return conv_k(l) * l->out_c; }

static size_t conv_biases(const layer *l)
{
    return l->has_bias ? (size_t)l->out_c : 0;
}

static size_t conv_scratch(const layer *l, int n)
{
    (void)l, (void)n;
    return 0;
}

static int conv_direct(const layer *l)
{
    const layer_win *w = &l->win;
    return w->kh == 1 && w->kw == 1 && w->sh == 1 && w->sw == 1 &&
           w->ph == 0 && w->pw == 0;
}

/* One image's lowering (oh*ow, kh*kw*c). */
static size_t conv_col_floats(const layer *l)
{
    return (size_t)l->out_h * l->out_w * conv_k(l);
}

static size_t conv_workspace(const layer *l, int n)
{
    return conv_direct(l) ? 0 : conv_col_floats(l) * (size_t)n;
}

static void conv_init(const layer *l, float *w, float *b, uint64_t *rng)
{
    layer__he_uniform(w, conv_weights(l), (int)conv_k(l), rng);
    for (size_t i = 0; i < conv_biases(l); i++) b[i] = 0.0f;
}

/* Images per group that the bound workspace holds (0: not even one). */
static int conv_group(const layer *l, int n)
{
    size_t g = l->work ? l->work_floats / conv_col_floats(l) : 0;
    return g >= (size_t)n ? n : (int)g;
}

static gpu_conv_geom conv_geom(const layer *l, int n)
{
    const layer_win *w = &l->win;
    return (gpu_conv_geom){
        .n = n, .h = l->in_h, .w = l->in_w, .c = l->in_c,
        .kh = w->kh, .kw = w->kw, .sh = w->sh, .sw = w->sw,
        .ph = w->ph, .pw = w->pw, .oh = l->out_h, .ow = l->out_w,
    };
}

static int conv_forward(const layer *l, gpu_device *d, const float *x,
                        float *y, int n, int train)
{
    (void)train;
    const int K = (int)conv_k(l), oc = l->out_c, pix = l->out_h * l->out_w;
    const size_t in = (size_t)layer_in_size(l), out = (size_t)layer_out_size(l);
    gpu_conv_geom all = conv_geom(l, n);
    if (conv_direct(l)) {
        ST_TRY(gpu_gemm(d, 0, 0, n * pix, oc, K, 1.0f, x, K, l->w, oc, 0.0f,
                        y, oc));
    } else if (gpu_conv_thin(d, &all, oc)) {
        ST_TRY(gpu_conv_thin_fwd(d, &all, x, l->w, oc, y));
    } else {
        int G = conv_group(l, n);
        if (G < 1) return ST_EINTERNAL; /* the model bound too little */
        for (int b0 = 0; b0 < n; b0 += G) {
            int g = n - b0 < G ? n - b0 : G;
            gpu_conv_geom geo = conv_geom(l, g);
            ST_TRY(gpu_im2col(d, &geo, x + (size_t)b0 * in, l->work));
            ST_TRY(gpu_gemm(d, 0, 0, g * pix, oc, K, 1.0f, l->work, K, l->w,
                            oc, 0.0f, y + (size_t)b0 * out, oc));
        }
    }
    if (l->has_bias) return gpu_bias_act(d, y, l->b, n * pix, oc, l->relu);
    if (l->relu)
        return gpu_act_fwd(d, GPU_ACT_RELU, y, y, (size_t)n * out);
    return 0;
}

static int conv_backward(const layer *l, gpu_device *d, const float *x,
                         const float *y, float *dy, float *dx, int n,
                         int accumulate)
{
    const int K = (int)conv_k(l), oc = l->out_c, pix = l->out_h * l->out_w;
    const size_t in = (size_t)layer_in_size(l), out = (size_t)layer_out_size(l);
    if (l->has_bias || l->relu)
        ST_TRY(gpu_act_bias_grad(d, dy, y, l->has_bias ? l->gb : NULL,
                                 n * pix, oc, l->relu, accumulate));
    if (conv_direct(l)) {
        /* gw (K, oc) (+)= x^T (K, n*pix) . dy (n*pix, oc) */
        ST_TRY(gpu_gemm(d, 1, 0, K, oc, n * pix, 1.0f, x, K, dy, oc,
                        accumulate ? 1.0f : 0.0f, l->gw, oc));
        if (dx == NULL) return 0;
        return gpu_gemm(d, 0, 1, n * pix, K, oc, 1.0f, dy, oc, l->w, oc, 0.0f,
                        dx, K);
    }
    gpu_conv_geom all = conv_geom(l, n);
    int thin = gpu_conv_thin(d, &all, oc);
    if (thin) {
        ST_TRY(gpu_conv_thin_wgrad(d, &all, x, dy, oc,
                                   accumulate ? 1.0f : 0.0f, l->gw));
        if (dx == NULL) return 0;
    }
    int G = conv_group(l, n);
    if (G < 1) return ST_EINTERNAL;
    for (int b0 = 0; b0 < n; b0 += G) {
        int g = n - b0 < G ? n - b0 : G;
        gpu_conv_geom geo = conv_geom(l, g);
        const float *dyg = dy + (size_t)b0 * out;
        if (!thin) {
            ST_TRY(gpu_im2col(d, &geo, x + (size_t)b0 * in, l->work));
            float beta = accumulate || b0 > 0 ? 1.0f : 0.0f;
            ST_TRY(gpu_gemm(d, 1, 0, K, oc, g * pix, 1.0f, l->work, K, dyg,
                            oc, beta, l->gw, oc));
        }
        if (dx == NULL) continue;
        /* dcol (g*pix, K) = dy_g (g*pix, oc) . W^T (oc, K) */
        ST_TRY(gpu_gemm(d, 0, 1, g * pix, K, oc, 1.0f, dyg, oc, l->w, oc,
                        0.0f, l->work, K));
        ST_TRY(gpu_col2im(d, &geo, l->work, dx + (size_t)b0 * in, 0));
    }
    return 0;
}

static const layer_ops conv_ops = {
    .name = "conv",
    .weight_count = conv_weights,
    .bias_count = conv_biases,
    .scratch_floats = conv_scratch,
    .init = conv_init,
    .forward = conv_forward,
    .backward = conv_backward,
    .workspace_floats = conv_workspace,
};

int layer_conv_init(layer *l, int c, int h, int w, int out_c, layer_win win,
                    int has_bias, st_error *err)
{
    gpu_conv_geom g;
    *l = (layer){.kind = LAYER_CONV, .ops = &conv_ops};
    ST_TRY(layer__check_shape("conv input", c, h, w, err));
    if (out_c < 1 || out_c > LAYER_MAX_FLOATS)
        return st_seterr(err, ST_EINVAL, "conv: %d output channels", out_c);
    if (gpu_conv_geom_init(&g, 1, h, w, c, win.kh, win.kw, win.sh, win.sw,
                           win.ph, win.pw) < 0)
        return st_seterr(err, ST_EINVAL, "conv %dx%d stride %dx%d padding "
                         "%dx%d on a %dx%dx%d input: %s", win.kh, win.kw,
                         win.sh, win.sw, win.ph, win.pw, h, w, c,
                         win.kh < 1 || win.kw < 1 || win.sh < 1 ||
                                 win.sw < 1 || win.ph < 0 || win.pw < 0
                             ? "bad window"
                             : "the kernel is larger than the padded input");
    ST_TRY(layer__check_shape("conv output", out_c, g.oh, g.ow, err));
    if ((long long)win.kh * win.kw * c > LAYER_MAX_FLOATS)
        return st_seterr(err, ST_EINVAL, "conv %dx%d over %d channels: "
                         "too large", win.kh, win.kw, c);
    l->in_c = c, l->in_h = h, l->in_w = w;
    l->out_c = out_c, l->out_h = g.oh, l->out_w = g.ow;
    l->win = win;
    l->has_bias = has_bias != 0;
    return 0;
}
