/* train/layer_res.c — the residual block (layer.h's layer_res_config): a
 * layer that owns a short list of sub-layers,
 *   main     sub[0..nmain):    conv k (stride) - BN [ReLU fused | GELU]
 *                              - conv k (1) - BN [act when act_after_bn2]
 *   shortcut sub[nmain..nsub): identity, or conv 1x1 (stride) - BN
 *   y = act?(main(x) + shortcut(x))            (act when act_after_add)
 *
 * Memory. Parameters, gradients and state are the concatenation of the
 * sub-layers' in sub-layer order (weights with weights, biases with
 * biases, so BN parameters stay in the model's non-decayed part). The
 * block's scratch (n = the bound micro-batch) holds, 64-float aligned:
 *   act_i  (n, out_i)   every sub-layer's output, which its backward reads
 *   sum    (n, out)     main + shortcut before a post-add GELU (a ReLU
 *                       needs only y's sign, so none then)
 *   g1, g2, g3 (n, maxsz)  gradient buffers: ping-pong along a branch,
 *                       g3 for the branch fan-in
 *   the sub-layers' own scratch (BN statistics)
 * The workspace is the block's, shared with its convs.
 *
 * Backward: the gradient at the add fans out to both branches. The
 * shortcut goes first (a projection starts from a copy in g3, since
 * sub-layers may overwrite their dy) and writes dx; the main branch then
 * ends in g3, which is added to dx.
 */
#include "train/layer.h"
#include "train/layer_impl.h"

#include <stdlib.h>

/* What l->sub points at: sub[] first, so that free(l->sub) frees it. */
typedef struct res_priv {
    layer sub[LAYER_RES_MAX_SUB];
    float *act[LAYER_RES_MAX_SUB]; /* (mb, out_i) */
    float *sum;                    /* (mb, out) or NULL */
    float *g1, *g2, *g3;           /* (mb, maxsz) */
} res_priv;

static res_priv *priv(const layer *l) { return (res_priv *)(void *)l->sub; }

static int res_needs_sum(const layer *l)
{
    return l->res.act_after_add && l->res.act == GPU_ACT_GELU;
}

static size_t res_maxsz(const layer *l)
{
    size_t m = (size_t)layer_in_size(l);
    for (int i = 0; i < l->nsub; i++)
        if ((size_t)layer_out_size(&l->sub[i]) > m)
            m = (size_t)layer_out_size(&l->sub[i]);
    return m;
}

/* Walks the scratch layout for n samples; binds it when base != NULL. */
static size_t res_layout(const layer *l, int n, float *base)
{
    res_priv *p = priv(l);
    size_t off = 0, nn = (size_t)n, g = layer__align(nn * res_maxsz(l));
    for (int i = 0; i < l->nsub; i++) {
        if (base) p->act[i] = base + off;
        off += layer__align(nn * (size_t)layer_out_size(&l->sub[i]));
    }
    if (base) p->sum = res_needs_sum(l) ? base + off : NULL;
    if (res_needs_sum(l)) off += layer__align(nn * (size_t)layer_out_size(l));
    if (base) p->g1 = base + off, p->g2 = base + off + g,
              p->g3 = base + off + 2 * g;
    off += 3 * g;
    for (int i = 0; i < l->nsub; i++) {
        layer *s = &l->sub[i];
        size_t k = layer__align(s->ops->scratch_floats(s, n));
        if (base) s->scratch = k ? base + off : NULL;
        off += k;
    }
    return off;
}

static size_t res_scratch(const layer *l, int n) { return res_layout(l, n, NULL); }

static size_t res_weights(const layer *l)
{
    size_t t = 0;
    for (int i = 0; i < l->nsub; i++) t += l->sub[i].ops->weight_count(&l->sub[i]);
    return t;
}

static size_t res_biases(const layer *l)
{
    size_t t = 0;
    for (int i = 0; i < l->nsub; i++) t += l->sub[i].ops->bias_count(&l->sub[i]);
    return t;
}

static size_t res_state(const layer *l)
{
    size_t t = 0;
    for (int i = 0; i < l->nsub; i++) t += layer_state_count(&l->sub[i]);
    return t;
}

static size_t res_workspace(const layer *l, int n)
{
    size_t m = 0;
    for (int i = 0; i < l->nsub; i++) {
        size_t k = layer_workspace_floats(&l->sub[i], n);
        if (k > m) m = k;
    }
    return m;
}

static void res_init(const layer *l, float *w, float *b, uint64_t *rng)
{
    for (int i = 0; i < l->nsub; i++) {
        const layer *s = &l->sub[i];
        s->ops->init(s, w, b, rng);
        w += s->ops->weight_count(s);
        b += s->ops->bias_count(s);
    }
}

static void res_init_state(const layer *l, float *state)
{
    for (int i = 0; i < l->nsub; i++) {
        layer_init_state(&l->sub[i], state);
        state += layer_state_count(&l->sub[i]);
    }
}

static void res_bind(layer *l, int micro_batch)
{
    float *w = l->w, *gw = l->gw, *b = l->b, *gb = l->gb, *st = l->state;
    for (int i = 0; i < l->nsub; i++) {
        layer *s = &l->sub[i];
        size_t nw = s->ops->weight_count(s), nb = s->ops->bias_count(s);
        size_t ns = layer_state_count(s);
        s->w = nw ? w : NULL, s->gw = nw ? gw : NULL;
        s->b = nb ? b : NULL, s->gb = nb ? gb : NULL;
        s->state = ns ? st : NULL;
        w += nw, gw += nw, b += nb, gb += nb;
        if (ns) st += ns;
        s->work = l->work;
        s->work_floats = l->work_floats;
    }
    res_layout(l, micro_batch, l->scratch);
    for (int i = 0; i < l->nsub; i++) layer_bind(&l->sub[i], micro_batch);
}

static void res_release(layer *l)
{
    free(l->sub);
    l->sub = NULL;
    l->nsub = l->nmain = 0;
}

/* sub[i0..i1) forward from x; @return the last output. */
static int chain_forward(const layer *l, gpu_device *d, int i0, int i1,
                         const float *x, int n, int train)
{
    res_priv *p = priv(l);
    for (int i = i0; i < i1; i++) {
        const layer *s = &l->sub[i];
        ST_TRY(s->ops->forward(s, d, i == i0 ? x : p->act[i - 1], p->act[i],
                               n, train));
    }
    return 0;
}

static int res_forward(const layer *l, gpu_device *d, const float *x,
                       float *y, int n, int train)
{
    res_priv *p = priv(l);
    const size_t tot = (size_t)n * layer_out_size(l);
    ST_TRY(chain_forward(l, d, 0, l->nmain, x, n, train));
    const float *sc = x;
    if (l->nsub > l->nmain) {
        ST_TRY(chain_forward(l, d, l->nmain, l->nsub, x, n, train));
        sc = p->act[l->nsub - 1];
    }
    float *s = res_needs_sum(l) ? p->sum : y;
    ST_TRY(gpu_axpby(d, tot, 1.0f, sc, 0.0f, s));
    ST_TRY(gpu_axpby(d, tot, 1.0f, p->act[l->nmain - 1], 1.0f, s));
    if (l->res.act_after_add) return gpu_act_fwd(d, l->res.act, s, y, tot);
    return 0;
}

/* sub[i0..i1) backward from cur (the gradient at the last output, may be
 * overwritten), ping-ponging g1/g2, ending in dst (NULL: not needed). */
static int chain_backward(const layer *l, gpu_device *d, int i0, int i1,
                          const float *x, float *cur, float *dst, int n,
                          int accumulate)
{
    res_priv *p = priv(l);
    for (int i = i1 - 1; i >= i0; i--) {
        const layer *s = &l->sub[i];
        float *out = i == i0 ? dst : cur == p->g1 ? p->g2 : p->g1;
        ST_TRY(s->ops->backward(s, d, i == i0 ? x : p->act[i - 1], p->act[i],
                                cur, out, n, accumulate));
        cur = out;
    }
    return 0;
}

static int res_backward(const layer *l, gpu_device *d, const float *x,
                        const float *y, float *dy, float *dx, int n,
                        int accumulate)
{
    res_priv *p = priv(l);
    const size_t tot = (size_t)n * layer_out_size(l);
    if (l->res.act_after_add) /* ReLU: y > 0 exactly where the sum is */
        ST_TRY(gpu_act_bwd(d, l->res.act, res_needs_sum(l) ? p->sum : y, dy,
                           dy, tot));
    if (l->nsub > l->nmain) {
        ST_TRY(gpu_axpby(d, tot, 1.0f, dy, 0.0f, p->g3));
        ST_TRY(chain_backward(l, d, l->nmain, l->nsub, x, p->g3, dx, n,
                              accumulate));
    } else if (dx) {
        ST_TRY(gpu_axpby(d, tot, 1.0f, dy, 0.0f, dx));
    }
    ST_TRY(chain_backward(l, d, 0, l->nmain, x, dy, dx ? p->g3 : NULL, n,
                          accumulate));
    if (dx == NULL) return 0;
    return gpu_axpby(d, (size_t)n * layer_in_size(l), 1.0f, p->g3, 1.0f, dx);
}

static const layer_ops res_ops = {
    .name = "res",
    .weight_count = res_weights,
    .bias_count = res_biases,
    .scratch_floats = res_scratch,
    .init = res_init,
    .forward = res_forward,
    .backward = res_backward,
    .state_count = res_state,
    .init_state = res_init_state,
    .workspace_floats = res_workspace,
    .bind = res_bind,
    .release = res_release,
};

/* conv - BN [- act]: appends 2 or 3 sub-layers at sub[*k]. */
static int add_conv_bn(layer *l, int *k, int c, int h, int w, int oc,
                       int ks, int stride, gpu_act_kind act, int with_act,
                       st_error *err)
{
    layer *s = l->sub;
    layer_win win = {ks, ks, stride, stride, ks / 2, ks / 2};
    ST_TRY(layer_conv_init(&s[*k], c, h, w, oc, win, 0, err));
    int oh = s[*k].out_h, ow = s[*k].out_w;
    (*k)++;
    ST_TRY(layer_bn_init(&s[*k], oc, oh, ow, with_act && act == GPU_ACT_RELU,
                         err));
    (*k)++;
    if (with_act && act == GPU_ACT_GELU) {
        ST_TRY(layer_act_init(&s[*k], oc, oh, ow, act, err));
        (*k)++;
    }
    return 0;
}

static int res_build(layer *l, int c, int h, int w,
                     const layer_res_config *cfg, st_error *err)
{
    int k = 0, oc = cfg->out_c;
    ST_TRY(add_conv_bn(l, &k, c, h, w, oc, cfg->k, cfg->stride, cfg->act, 1,
                       err));
    int oh = l->sub[0].out_h, ow = l->sub[0].out_w;
    ST_TRY(add_conv_bn(l, &k, oc, oh, ow, oc, cfg->k, 1, cfg->act,
                       cfg->act_after_bn2, err));
    l->nmain = k;
    if (cfg->proj)
        ST_TRY(add_conv_bn(l, &k, c, h, w, oc, 1, cfg->stride, cfg->act, 0,
                           err));
    l->nsub = k;
    l->out_c = oc, l->out_h = oh, l->out_w = ow;
    return 0;
}

int layer_res_init(layer *l, int c, int h, int w,
                   const layer_res_config *cfg, st_error *err)
{
    *l = (layer){.kind = LAYER_RES, .ops = &res_ops};
    ST_TRY(layer__check_shape("residual block input", c, h, w, err));
    if (cfg->out_c < 1 || cfg->k < 1 || cfg->k % 2 == 0 || cfg->stride < 1)
        return st_seterr(err, ST_EINVAL, "residual block: %d channels, "
                         "kernel %d, stride %d (need >= 1, an odd kernel)",
                         cfg->out_c, cfg->k, cfg->stride);
    if (cfg->act != GPU_ACT_RELU && cfg->act != GPU_ACT_GELU)
        return st_seterr(err, ST_EINVAL, "residual block: activation kind "
                         "%d unknown", (int)cfg->act);
    if (!cfg->proj && (cfg->stride != 1 || cfg->out_c != c))
        return st_seterr(err, ST_EINVAL, "residual block %d -> %d channels, "
                         "stride %d: an identity shortcut needs stride 1 and "
                         "the same channels (use a projection)", c,
                         cfg->out_c, cfg->stride);
    res_priv *p = calloc(1, sizeof *p);
    if (p == NULL)
        return st_seterr(err, ST_ENOMEM, "residual block: out of memory");
    l->sub = p->sub;
    l->in_c = c, l->in_h = h, l->in_w = w;
    l->res = *cfg;
    int rc = res_build(l, c, h, w, cfg, err);
    if (rc < 0) res_release(l);
    return rc;
}
