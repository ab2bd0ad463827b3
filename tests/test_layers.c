/* tests/test_layers.c — the conv-net layers (train/layer.h) on the CPU
 * backend: finite-difference gradient checks of dx and of every parameter
 * for conv (stride 1 and 2, padding, 1x1 direct and lowered, odd sizes,
 * several channels, overlapping windows, kh != kw, fused ReLU, grouped
 * lowering under a small workspace), max pool with overlapping padded
 * windows, global average pool, batch norm in training mode (plain and
 * with fused ReLU), ReLU and GELU, residual blocks with identity and
 * projection shortcuts, and a conv feeding a dense layer through the NHWC
 * flatten; accumulate=1 adds and dx is written, not added; batch norm's
 * evaluation mode and running statistics; parameter counts and layout;
 * the constructors' refusals.
 *
 * The loss is L = sum(r * y) for a fixed random r, in double over the
 * float forward. Central differences with eps 1e-2 on inputs of scale 1,
 * and |analytic - numeric| <= 2e-2 * max(|a|, |n|) + 2e-3 * max|gradient|.
 * Where a ReLU kink may sit inside the step, eps is 2e-3, 1e-3 or 5e-4,
 * any of which may match, and at most 2 (or 10%) of the coordinates may
 * match none (a kink crossed at every step); past that, a fresh input is
 * drawn, 3 times at most.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "train/layer.h"
#include "device_fixture.h"

static uint64_t rng_state = 4242;

static float frand(void) /* [-1, 1) */
{
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((rng_state >> 40) & 0xFFFFFF) / 8388608.0f - 1.0f;
}

static float *falloc(size_t n)
{
    float *p = calloc(n ? n : 1, sizeof *p);
    assert_non_null(p);
    return p;
}

enum { MAXL = 3 };

/* A chain of layers bound to plain host memory, as the model binds them
 * into the arena: params [w_0 | b_0 | w_1 | b_1 ...]. */
typedef struct chain {
    int nl, n;
    layer *ls[MAXL];
    gpu_device *d;
    size_t np;
    float *params, *grads, *state, *work;
    float *scratch[MAXL];
    float *x;            /* (n, in_0) */
    float *y[MAXL];      /* (n, out_i) */
    float *dbuf[MAXL];   /* (n, in_i): gradient into layer i (i > 0) */
    float *r, *dy;       /* (n, out_last) */
    float *dx;           /* (n, in_0) */
} chain;

static size_t in_n(const chain *c) { return (size_t)c->n * layer_in_size(c->ls[0]); }

static size_t out_n(const chain *c)
{
    return (size_t)c->n * layer_out_size(c->ls[c->nl - 1]);
}

/* work_floats 0: as much as the layers want for n; else that many, raised
 * to the layers' minimum. */
static void chain_open(chain *c, int nl, layer **ls, int n, size_t work_floats)
{
    memset(c, 0, sizeof *c);
    c->nl = nl, c->n = n;
    c->d = cpu_dev();
    size_t ns = 0, want = 0, least = 0;
    for (int i = 0; i < nl; i++) {
        c->ls[i] = ls[i];
        c->np += ls[i]->ops->weight_count(ls[i]) + ls[i]->ops->bias_count(ls[i]);
        ns += layer_state_count(ls[i]);
        size_t w = layer_workspace_floats(ls[i], n);
        size_t m = layer_workspace_floats(ls[i], 1);
        if (w > want) want = w;
        if (m > least) least = m;
        if (i > 0) assert_int_equal(layer_in_size(ls[i]), layer_out_size(ls[i - 1]));
    }
    size_t wf = work_floats ? work_floats : want;
    if (wf < least) wf = least;
    c->params = falloc(c->np), c->grads = falloc(c->np);
    c->state = falloc(ns), c->work = falloc(wf);
    size_t off = 0, so = 0;
    for (int i = 0; i < nl; i++) {
        layer *l = ls[i];
        size_t nw = l->ops->weight_count(l), nb = l->ops->bias_count(l);
        l->w = c->params + off, l->gw = c->grads + off;
        l->b = c->params + off + nw, l->gb = c->grads + off + nw;
        l->ops->init(l, l->w, l->b, &rng_state);
        off += nw + nb;
        l->state = c->state + so;
        layer_init_state(l, l->state);
        so += layer_state_count(l);
        c->scratch[i] = falloc(l->ops->scratch_floats(l, n));
        l->scratch = c->scratch[i];
        l->work = c->work, l->work_floats = wf;
        layer_bind(l, n);
        c->y[i] = falloc((size_t)n * layer_out_size(l));
        c->dbuf[i] = falloc((size_t)n * layer_in_size(l));
    }
    /* parameters off their initial values (BN gamma 1, beta 0, biases 0) */
    for (size_t i = 0; i < c->np; i++) c->params[i] += 0.3f * frand();
    c->x = falloc(in_n(c)), c->dx = falloc(in_n(c));
    c->r = falloc(out_n(c)), c->dy = falloc(out_n(c));
    for (size_t i = 0; i < in_n(c); i++) c->x[i] = frand();
    for (size_t i = 0; i < out_n(c); i++) c->r[i] = frand();
}

static void chain_close(chain *c)
{
    for (int i = 0; i < c->nl; i++) {
        free(c->scratch[i]), free(c->y[i]), free(c->dbuf[i]);
        layer_release(c->ls[i]);
    }
    free(c->params), free(c->grads), free(c->state), free(c->work);
    free(c->x), free(c->dx), free(c->r), free(c->dy);
    gpu_device_destroy(c->d);
}

static void chain_forward(chain *c, int train)
{
    const float *in = c->x;
    for (int i = 0; i < c->nl; i++) {
        layer *l = c->ls[i];
        assert_int_equal(l->ops->forward(l, c->d, in, c->y[i], c->n, train), 0);
        in = c->y[i];
    }
}

static double chain_loss(chain *c)
{
    chain_forward(c, 1);
    double s = 0;
    const float *y = c->y[c->nl - 1];
    for (size_t i = 0; i < out_n(c); i++) s += (double)c->r[i] * y[i];
    return s;
}

/* Forward, then backward of L into c->grads and dx (dx NULL: none). */
static void chain_grad(chain *c, float *dx, int accumulate)
{
    chain_forward(c, 1);
    memcpy(c->dy, c->r, out_n(c) * sizeof *c->dy);
    float *dy = c->dy;
    for (int i = c->nl - 1; i >= 0; i--) {
        layer *l = c->ls[i];
        float *d = i > 0 ? c->dbuf[i] : dx;
        for (size_t k = 0; d && k < (size_t)c->n * layer_in_size(l); k++)
            d[k] = NAN; /* dx is written, never added to */
        assert_int_equal(l->ops->backward(l, c->d, i > 0 ? c->y[i - 1] : c->x,
                                          c->y[i], dy, d, c->n, accumulate), 0);
        dy = d;
    }
}

/* The central difference of L in v[i] with step e. */
static double central(chain *c, float *v, size_t i, float e)
{
    float v0 = v[i], hi = v0 + e, lo = v0 - e;
    v[i] = hi;
    double lp = chain_loss(c);
    v[i] = lo;
    double lm = chain_loss(c);
    v[i] = v0;
    return (lp - lm) / ((double)hi - (double)lo);
}

/* Compares analytic a[0..m) with central differences of L in v[0..m).
 * kinks: steps 2e-3, 1e-3, 5e-4, any of which may match; a coordinate
 * that none matches counts as a crossed kink; @return -1 when more than
 * 2 (and 10%) did. Without kinks every coordinate must match. */
static int fd_check(chain *c, const char *what, float *v, const float *a,
                    size_t m, int kinks)
{
    double gmax = 0;
    for (size_t i = 0; i < m; i++) gmax = fmax(gmax, fabs((double)a[i]));
    const double atol = 2e-3 * gmax + 1e-4;
    size_t step = m > 240 ? m / 240 + 1 : 1, checked = 0, missed = 0;
    for (size_t i = 0; i < m; i += step) {
        double an = a[i], fd = 0;
        int ok = 0;
        for (int k = 0; k < (kinks ? 3 : 1) && !ok; k++) {
            fd = central(c, v, i, (kinks ? 2e-3f : 1e-2f) / (float)(1 << k));
            ok = fabs(an - fd) <= 2e-2 * fmax(fabs(an), fabs(fd)) + atol;
        }
        checked++;
        if (ok) continue;
        if (!kinks)
            fail_msg("%s[%zu]: analytic %.7g, numeric %.7g (max |g| %.3g)",
                     what, i, an, fd, gmax);
        missed++;
    }
    if (missed > 2 && missed * 10 > checked) {
        print_message("note: %s: %zu of %zu coordinates disagree at every "
                      "step\n", what, missed, checked);
        return -1;
    }
    return 0;
}

/* The full check of one chain: dx and every parameter by finite
 * differences; accumulate=1 adds; dx is the same with and without it; a
 * first layer (dx NULL) gets the same parameter gradients. */
static void check_chain(chain *c, int kinks)
{
    float *g0 = falloc(c->np), *dx0 = falloc(in_n(c));
    /* With batch norm before a ReLU, one unit within a step of its kink
     * moves with every input of the batch and spoils many coordinates at
     * once; a fresh input then has none there, while a wrong backward
     * fails every draw. */
    for (int attempt = 0;; attempt++) {
        chain_grad(c, c->dx, 0);
        memcpy(g0, c->grads, c->np * sizeof *g0);
        memcpy(dx0, c->dx, in_n(c) * sizeof *dx0);
        if (fd_check(c, "dx", c->x, dx0, in_n(c), kinks) == 0 &&
            fd_check(c, "dparam", c->params, g0, c->np, kinks) == 0)
            break;
        if (attempt == 2) fail_msg("3 inputs in a row failed the check");
        for (size_t i = 0; i < in_n(c); i++) c->x[i] = frand();
    }

    chain_grad(c, c->dx, 1);
    assert_memory_equal(c->dx, dx0, in_n(c) * sizeof *dx0);
    for (size_t i = 0; i < c->np; i++)
        if (!(fabsf(c->grads[i] - 2.0f * g0[i]) <= 1e-5f * fmaxf(1.0f, fabsf(g0[i]))))
            fail_msg("accumulate: grad[%zu] %.9g, want 2 x %.9g", i,
                     (double)c->grads[i], (double)g0[i]);
    chain_grad(c, NULL, 0);
    assert_memory_equal(c->grads, g0, c->np * sizeof *g0);
    free(dx0), free(g0);
}

static void check_one(layer *l, int n, size_t work_floats, int kinks)
{
    chain c;
    chain_open(&c, 1, &l, n, work_floats);
    check_chain(&c, kinks);
    chain_close(&c);
}

static layer_win win(int kh, int kw, int sh, int sw, int ph, int pw)
{
    return (layer_win){kh, kw, sh, sw, ph, pw};
}

static void test_conv_grads(void **state)
{
    (void)state;
    st_error err = {0};
    layer l;
    /* 3x3 stride 1 pad 1, bias, 3 -> 4 channels */
    assert_int_equal(layer_conv_init(&l, 3, 5, 5, 4, win(3, 3, 1, 1, 1, 1), 1, &err), 0);
    check_one(&l, 2, 0, 0);
    /* stride 2, odd sizes, one image per GEMM (the minimum workspace) */
    assert_int_equal(layer_conv_init(&l, 2, 7, 6, 3, win(3, 3, 2, 2, 1, 1), 1, &err), 0);
    check_one(&l, 3, 1, 0);
    /* 1x1 stride 1: the direct GEMM, no workspace */
    assert_int_equal(layer_conv_init(&l, 5, 4, 4, 3, win(1, 1, 1, 1, 0, 0), 0, &err), 0);
    assert_int_equal(layer_workspace_floats(&l, 8), 0);
    check_one(&l, 2, 0, 0);
    /* 1x1 stride 2: lowered */
    assert_int_equal(layer_conv_init(&l, 3, 5, 5, 2, win(1, 1, 2, 2, 0, 0), 1, &err), 0);
    check_one(&l, 2, 0, 0);
    /* 4x4 stride 2: overlapping windows; groups of 2 images over 3 */
    assert_int_equal(layer_conv_init(&l, 2, 6, 6, 3, win(4, 4, 2, 2, 1, 1), 1, &err), 0);
    check_one(&l, 3, 2 * layer_workspace_floats(&l, 1), 0);
    /* 3x5, strides 1x2, paddings 1x2, fused ReLU */
    assert_int_equal(layer_conv_init(&l, 2, 5, 7, 2, win(3, 5, 1, 2, 1, 2), 1, &err), 0);
    l.relu = 1;
    check_one(&l, 2, 0, 1);
}

/* Grouped lowering gives the full lowering's output. */
static void test_conv_groups_agree(void **state)
{
    (void)state;
    st_error err = {0};
    layer l;
    assert_int_equal(layer_conv_init(&l, 3, 6, 5, 4, win(3, 3, 1, 1, 1, 1), 1, &err), 0);
    chain a, b;
    uint64_t seed = rng_state;
    chain_open(&a, 1, (layer *[]){&l}, 5, 0);
    float *ya = falloc(out_n(&a));
    chain_forward(&a, 1);
    memcpy(ya, a.y[0], out_n(&a) * sizeof *ya);
    chain_close(&a);
    rng_state = seed;
    chain_open(&b, 1, (layer *[]){&l}, 5, 2 * layer_workspace_floats(&l, 1));
    chain_forward(&b, 1);
    for (size_t i = 0; i < out_n(&b); i++)
        assert_float_equal(b.y[0][i], ya[i], 1e-5);
    chain_close(&b);
    free(ya);
}

static void test_pool_grads(void **state)
{
    (void)state;
    st_error err = {0};
    layer l;
    chain c;
    /* 3x3 stride 2 pad 1: overlapping windows and padding; inputs spaced
     * 0.04 apart so that no step of the differences reorders a window */
    assert_int_equal(layer_maxpool_init(&l, 3, 7, 7, win(3, 3, 2, 2, 1, 1), &err), 0);
    assert_int_equal(l.out_h, 4);
    chain_open(&c, 1, (layer *[]){&l}, 2, 0);
    size_t m = in_n(&c);
    for (size_t i = 0; i < m; i++) c.x[i] = -1.0f + 0.04f * (float)((i * 37) % m);
    check_chain(&c, 0);
    chain_close(&c);
    /* 2x2 stride 2 on 5x5: the last row and column are dropped */
    assert_int_equal(layer_maxpool_init(&l, 2, 5, 5, win(2, 2, 2, 2, 0, 0), &err), 0);
    chain_open(&c, 1, (layer *[]){&l}, 2, 0);
    m = in_n(&c);
    for (size_t i = 0; i < m; i++) c.x[i] = -1.0f + 0.04f * (float)((i * 23) % m);
    check_chain(&c, 0);
    chain_close(&c);

    assert_int_equal(layer_avgpool_init(&l, 4, 3, 5, &err), 0);
    assert_int_equal(layer_out_size(&l), 4);
    check_one(&l, 3, 0, 0);
}

static void test_bn_act_grads(void **state)
{
    (void)state;
    st_error err = {0};
    layer l;
    assert_int_equal(layer_bn_init(&l, 4, 3, 3, 0, &err), 0);
    assert_int_equal(l.ops->weight_count(&l), 0);
    assert_int_equal(l.ops->bias_count(&l), 8);
    assert_int_equal(layer_state_count(&l), 8);
    check_one(&l, 3, 0, 0);
    assert_int_equal(layer_bn_init(&l, 3, 4, 2, 1, &err), 0);
    check_one(&l, 2, 0, 1);
    assert_int_equal(layer_act_init(&l, 3, 4, 5, GPU_ACT_GELU, &err), 0);
    check_one(&l, 2, 0, 0);
    assert_int_equal(layer_act_init(&l, 3, 4, 5, GPU_ACT_RELU, &err), 0);
    check_one(&l, 2, 0, 1);
}

/* Evaluation uses the running statistics, which training updated from
 * (0, 1) with momentum 0.1 and the unbiased variance; eval leaves them. */
static void test_bn_eval(void **state)
{
    (void)state;
    st_error err = {0};
    layer l;
    enum { N = 3, H = 2, W = 2, C = 3, R = N * H * W };
    assert_int_equal(layer_bn_init(&l, C, H, W, 0, &err), 0);
    chain c;
    chain_open(&c, 1, (layer *[]){&l}, N, 0);
    chain_forward(&c, 1);
    float st[2 * C];
    memcpy(st, l.state, sizeof st);
    for (int k = 0; k < C; k++) {
        double m = 0, v = 0;
        for (int r = 0; r < R; r++) m += c.x[r * C + k];
        m /= R;
        for (int r = 0; r < R; r++) v += (c.x[r * C + k] - m) * (c.x[r * C + k] - m);
        assert_float_equal(st[k], 0.1 * m, 1e-6);
        assert_float_equal(st[C + k], 0.9 + 0.1 * v / (R - 1), 1e-6);
    }
    chain_forward(&c, 0);
    assert_memory_equal(l.state, st, sizeof st);
    for (int r = 0; r < R; r++)
        for (int k = 0; k < C; k++) {
            double want = l.b[k] * (c.x[r * C + k] - st[k]) / sqrt(st[C + k] + 1e-5) +
                          l.b[C + k];
            assert_float_equal(c.y[0][r * C + k], want, 1e-5);
        }
    chain_close(&c);
}

static void res_case(int c, int h, int w, layer_res_config cfg, int n, int kinks)
{
    st_error err = {0};
    layer l;
    assert_int_equal(layer_res_init(&l, c, h, w, &cfg, &err), 0);
    /* BN parameters are biases (never decayed), convs have none */
    size_t want_w = 0, want_b = 0;
    for (int i = 0; i < l.nsub; i++) {
        want_w += l.sub[i].ops->weight_count(&l.sub[i]);
        if (l.sub[i].kind == LAYER_CONV) assert_int_equal(l.sub[i].ops->bias_count(&l.sub[i]), 0);
        if (l.sub[i].kind == LAYER_BN) want_b += 2 * (size_t)l.sub[i].in_c;
    }
    assert_int_equal(l.ops->weight_count(&l), want_w);
    assert_int_equal(l.ops->bias_count(&l), want_b);
    assert_int_equal(layer_state_count(&l), want_b);
    check_one(&l, n, 0, kinks);
}

static void test_res_grads(void **state)
{
    (void)state;
    /* He et al.'s basic block, identity shortcut, GELU (smooth) */
    res_case(3, 5, 5, (layer_res_config){.out_c = 3, .k = 3, .stride = 1,
             .act = GPU_ACT_GELU, .act_after_add = 1}, 2, 0);
    /* projection shortcut with stride 2 and more channels */
    res_case(2, 6, 6, (layer_res_config){.out_c = 4, .k = 3, .stride = 2,
             .proj = 1, .act = GPU_ACT_GELU, .act_after_add = 1}, 2, 0);
    /* Page's ResNet-9 residual: act inside both halves, none after add */
    res_case(3, 4, 4, (layer_res_config){.out_c = 3, .k = 3, .stride = 1,
             .act = GPU_ACT_GELU, .act_after_bn2 = 1}, 2, 0);
    /* ReLU, projection at stride 1 (3 -> 5 channels), fused into BN */
    res_case(3, 4, 5, (layer_res_config){.out_c = 5, .k = 3, .stride = 1,
             .proj = 1, .act = GPU_ACT_RELU, .act_after_add = 1}, 2, 1);
    res_case(2, 4, 4, (layer_res_config){.out_c = 2, .k = 1, .stride = 1,
             .act = GPU_ACT_RELU, .act_after_bn2 = 1}, 3, 1);
}

/* conv -> BN -> dense: the dense layer reads the conv output through the
 * NHWC flatten, and gradients flow through all three. */
static void test_conv_dense_chain(void **state)
{
    (void)state;
    st_error err = {0};
    layer cv, bn, dn;
    assert_int_equal(layer_conv_init(&cv, 2, 5, 4, 3, win(3, 3, 2, 1, 1, 1), 1, &err), 0);
    assert_int_equal(layer_bn_init(&bn, 3, cv.out_h, cv.out_w, 0, &err), 0);
    layer_dense_init(&dn, layer_out_size(&bn), 4, 0);
    chain c;
    chain_open(&c, 3, (layer *[]){&cv, &bn, &dn}, 3, 0);
    check_chain(&c, 0);
    /* flatten order: dense input k of sample b is y[b*(h*w*c) + k] */
    chain_forward(&c, 1);
    int in = layer_in_size(&dn);
    double s = dn.b[1];
    for (int k = 0; k < in; k++) s += (double)c.y[1][in + k] * dn.w[k * 4 + 1];
    assert_float_equal(c.y[2][4 + 1], s, 1e-5);
    chain_close(&c);
}

static void test_refusals(void **state)
{
    (void)state;
    st_error err = {0};
    layer l;
    assert_int_equal(layer_conv_init(&l, 3, 4, 4, 8, win(5, 5, 1, 1, 0, 0), 1, &err),
                     ST_EINVAL);
    assert_non_null(strstr(err.msg, "larger than"));
    st_clearerr(&err);
    assert_int_equal(layer_conv_init(&l, 3, 4, 4, 0, win(3, 3, 1, 1, 1, 1), 1, &err),
                     ST_EINVAL);
    st_clearerr(&err);
    assert_int_equal(layer_conv_init(&l, 0, 4, 4, 2, win(3, 3, 1, 1, 1, 1), 1, &err),
                     ST_EINVAL);
    st_clearerr(&err);
    assert_int_equal(layer_maxpool_init(&l, 3, 1, 1, win(2, 2, 2, 2, 0, 0), &err),
                     ST_EINVAL); /* the shape reaches zero */
    st_clearerr(&err);
    assert_int_equal(layer_maxpool_init(&l, 3, 8, 8, win(2, 2, 2, 2, 2, 0), &err),
                     ST_EINVAL);
    assert_non_null(strstr(err.msg, "half"));
    st_clearerr(&err);
    layer_res_config cfg = {.out_c = 4, .k = 3, .stride = 2, .act = GPU_ACT_RELU};
    assert_int_equal(layer_res_init(&l, 4, 8, 8, &cfg, &err), ST_EINVAL);
    assert_non_null(strstr(err.msg, "identity"));
    st_clearerr(&err);
    cfg.k = 2, cfg.proj = 1;
    assert_int_equal(layer_res_init(&l, 4, 8, 8, &cfg, &err), ST_EINVAL);
    st_clearerr(&err);
    assert_int_equal(layer_act_init(&l, 4, 8, 8, (gpu_act_kind)7, &err), ST_EINVAL);
    layer_release(&l);
    layer_release(&l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conv_grads),
        cmocka_unit_test(test_conv_groups_agree),
        cmocka_unit_test(test_pool_grads),
        cmocka_unit_test(test_bn_act_grads),
        cmocka_unit_test(test_bn_eval),
        cmocka_unit_test(test_res_grads),
        cmocka_unit_test(test_conv_dense_chain),
        cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
