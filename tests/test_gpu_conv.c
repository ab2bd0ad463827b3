/* tests/test_gpu_conv.c — the CUDA backend's conv-net ops and the train/
 * layers against the CPU backend. (The MLP ops, the trainer, the
 * prefetcher and device memory: tests/test_gpu.c.) Compiled always; each
 * test skips, printing why, when no GPU is visible (or the build has no
 * CUDA); ST_REQUIRE_GPU=1 makes that a failure.
 *
 *   conv ops   lowering and its adjoint, max and average pooling, batch
 *              norm (one-launch and chunked), activations, axpby, flip,
 *              per-channel normalization, label smoothing: odd sizes,
 *              strides, padding, overlapping windows, several blocks'
 *              worth of elements
 *   layers     conv, max pool, batch norm, average pool and residual
 *              blocks bound on each device: forward (training), backward,
 *              forward (evaluation)
 *
 * Shared pieces: tests/gpu_fixture.h.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpu/device.h"
#include "gpu_fixture.h"
#include "train/layer.h"

/* ---- conv-net ops (NHWC) ------------------------------------------------
 * Each op on both devices from the same inputs. Tolerances: 0 (bitwise)
 * where both backends do the same float operations in the same order:
 * copies, maxima, and the gathers of col2im / max pool backward, which add
 * each pixel's taps in ascending output order as the CPU's scatter does;
 * avg pool (sums in position order, times 1/hw). Otherwise the difference
 * is the GPU's fused multiply-add and its erff/expf (a few ulps) or
 * batch norm's summation order (in double): 1e-5 to 1e-6 as stated. */

static float *fbuf(size_t n)
{
    float *b = malloc(n * sizeof *b);
    assert_non_null(b);
    return b;
}

/* A fresh device copy of h (n floats); n floats back from the device. */
static float *dput(pair *p, const float *h, size_t n)
{
    float *d = take(&p->a, n * sizeof *d);
    gpu_to_device(p->g, d, h, n * sizeof *d);
    return d;
}
#define dget(p, h, d, n) gpu_to_host((p)->g, (h), (d), (n) * sizeof(float))

typedef struct geo { int n, h, w, c, kh, kw, sh, sw, ph, pw; } geo;

static gpu_conv_geom mk(geo q)
{
    gpu_conv_geom g;
    assert_int_equal(gpu_conv_geom_init(&g, q.n, q.h, q.w, q.c, q.kh, q.kw,
                                        q.sh, q.sw, q.ph, q.pw), 0);
    return g;
}

static void test_lowering_agrees(void **state)
{
    (void)state;
    pair p;
    if (!pair_open(&p)) { skip(); return; }
    const geo gs[] = {
        {3, 7, 5, 3, 3, 3, 1, 1, 1, 1}, /* odd sizes, padding */
        {2, 9, 8, 4, 3, 2, 2, 2, 1, 1}, /* stride 2 < kernel: overlap */
        {2, 6, 7, 5, 1, 1, 2, 2, 0, 0}, /* 1x1, stride 2 skips pixels */
        {1, 5, 6, 2, 5, 4, 1, 3, 2, 0}, /* large window, mixed strides */
    };
    for (size_t t = 0; t < sizeof gs / sizeof gs[0]; t++) {
        gpu_conv_geom g = mk(gs[t]);
        size_t nx = (size_t)g.n * g.h * g.w * g.c;
        size_t nc = (size_t)g.n * g.oh * g.ow * g.kh * g.kw * g.c;
        float *x = fbuf(nx), *col = fbuf(nc), *cc = fbuf(nc), *cg = fbuf(nc);
        float *dx = fbuf(nx), *dxg = fbuf(nx);
        for (size_t i = 0; i < nx; i++) x[i] = frand();
        for (size_t i = 0; i < nc; i++) col[i] = frand();
        p.a.off = 0;
        float *d_x = dput(&p, x, nx), *d_col = take(&p.a, nc * 4);
        gpu_im2col(p.c, &g, x, cc);
        gpu_im2col(p.g, &g, d_x, d_col);
        dget(&p, cg, d_col, nc);
        close_enough("im2col", cg, cc, nc, 0.0f);
        /* col2im into garbage (accumulate 0), then on top (accumulate 1) */
        d_col = dput(&p, col, nc);
        gpu_col2im(p.c, &g, col, dx, 0);
        gpu_col2im(p.g, &g, d_col, d_x, 0);
        dget(&p, dxg, d_x, nx);
        close_enough("col2im", dxg, dx, nx, 0.0f);
        gpu_col2im(p.c, &g, col, dx, 1);
        gpu_col2im(p.g, &g, d_col, d_x, 1);
        dget(&p, dxg, d_x, nx);
        close_enough("col2im accumulate", dxg, dx, nx, 0.0f);
        free(x), free(col), free(cc), free(cg), free(dx), free(dxg);
    }
    pair_close(&p);
}

static void test_pool_agrees(void **state)
{
    (void)state;
    pair p;
    if (!pair_open(&p)) { skip(); return; }
    const geo gs[] = {
        {3, 9, 7, 5, 3, 3, 2, 2, 1, 1}, /* overlapping windows, padding */
        {2, 7, 9, 3, 2, 2, 2, 2, 0, 0}, /* odd sizes: last row dropped */
        {2, 6, 5, 4, 3, 2, 1, 2, 1, 1}, /* stride 1 < kernel */
    };
    for (size_t t = 0; t < sizeof gs / sizeof gs[0]; t++) {
        gpu_conv_geom g = mk(gs[t]);
        size_t nx = (size_t)g.n * g.h * g.w * g.c;
        size_t ny = (size_t)g.n * g.oh * g.ow * g.c;
        float *x = fbuf(nx), *y = fbuf(ny), *yg = fbuf(ny), *dy = fbuf(ny);
        float *dx = fbuf(nx), *dxg = fbuf(nx);
        int32_t *idx = malloc(ny * 4), *idxg = malloc(ny * 4);
        /* few distinct values: ties, where the first max must win */
        for (size_t i = 0; i < nx; i++) x[i] = (float)(int)(frand() * 3);
        for (size_t i = 0; i < ny; i++) dy[i] = frand();
        p.a.off = 0;
        float *d_x = dput(&p, x, nx), *d_y = take(&p.a, ny * 4);
        int32_t *d_idx = take(&p.a, ny * 4);
        gpu_maxpool_fwd(p.c, &g, x, y, idx);
        gpu_maxpool_fwd(p.g, &g, d_x, d_y, d_idx);
        dget(&p, yg, d_y, ny);
        gpu_to_host(p.g, idxg, d_idx, ny * 4);
        close_enough("maxpool y", yg, y, ny, 0.0f);
        for (size_t i = 0; i < ny; i++)
            if (idxg[i] != idx[i])
                fail_msg("maxpool idx[%zu]: cuda %d vs cpu %d", i, idxg[i],
                         idx[i]);
        float *d_dy = dput(&p, dy, ny);
        gpu_maxpool_bwd(p.c, &g, dy, idx, dx);
        gpu_maxpool_bwd(p.g, &g, d_dy, d_idx, d_x);
        dget(&p, dxg, d_x, nx);
        close_enough("maxpool dx", dxg, dx, nx, 0.0f);
        free(x), free(y), free(yg), free(dy), free(dx), free(dxg);
        free(idx), free(idxg);
    }
    /* global average pool: (5, 7x7, 6) -> (5, 6) and back */
    enum { PN = 5, HW = 49, PC = 6 };
    float *x = fbuf(PN * HW * PC), *y = fbuf(PN * PC), *yg = fbuf(PN * PC);
    float *dx = fbuf(PN * HW * PC), *dxg = fbuf(PN * HW * PC);
    for (int i = 0; i < PN * HW * PC; i++) x[i] = frand();
    p.a.off = 0;
    float *d_x = dput(&p, x, PN * HW * PC), *d_y = take(&p.a, PN * PC * 4);
    gpu_avgpool_fwd(p.c, x, PN, HW, PC, y);
    gpu_avgpool_fwd(p.g, d_x, PN, HW, PC, d_y);
    dget(&p, yg, d_y, PN * PC);
    close_enough("avgpool y", yg, y, PN * PC, 0.0f);
    gpu_avgpool_bwd(p.c, y, PN, HW, PC, dx);
    gpu_avgpool_bwd(p.g, d_y, PN, HW, PC, d_x);
    dget(&p, dxg, d_x, PN * HW * PC);
    close_enough("avgpool dx", dxg, dx, PN * HW * PC, 0.0f);
    free(x), free(y), free(yg), free(dx), free(dxg);
    pair_close(&p);
}

/* Batch norm over (BR, BC), inputs around 5 (a naive one-pass variance
 * would lose digits there). split 0: no workspace, the one-launch
 * kernels; split 1: with the plan's workspace, the chunked path. */
static void bn_case(int split, int BR, int BC)
{
    pair p; /* room for the workspace, cuBLAS's and the kernels': 34 MiB */
    if (!pair_open_mib(&p, split ? 48 : 16)) { skip(); return; }
    if (split) {
        size_t ws = gpu_device_workspace_bytes(p.g);
        assert_int_equal(gpu_device_set_workspace(p.g, take(&p.a, ws), ws), 0);
    }
    const int BN_ = BR * BC;
    float *x = fbuf(BN_), *y = fbuf(BN_), *yg = fbuf(BN_), *dy = fbuf(BN_);
    float ch[8][32] = {{0}}, chg[32]; /* gamma beta rm rv sm si dg db */
    assert_true(BC <= 32);
    for (int i = 0; i < BN_; i++) x[i] = 5.0f + frand(), dy[i] = frand();
    for (int k = 0; k < BC; k++) {
        ch[0][k] = 1.0f + 0.5f * frand(), ch[1][k] = 0.3f * frand();
        ch[2][k] = 0.1f * frand(), ch[3][k] = 1.0f + 0.5f * frand();
        ch[6][k] = frand(), ch[7][k] = frand();
    }
    float *d_x = dput(&p, x, BN_), *d_dy = dput(&p, dy, BN_), *d[8];
    for (int j = 0; j < 8; j++) d[j] = dput(&p, ch[j], BC);
    /* train, in place on the GPU: y == x */
    gpu_bn_fwd_train(p.c, x, BR, BC, ch[0], ch[1], 1e-5f, 0.1f, ch[2], ch[3],
                     ch[4], ch[5], 0, y);
    gpu_bn_fwd_train(p.g, d_x, BR, BC, d[0], d[1], 1e-5f, 0.1f, d[2], d[3],
                     d[4], d[5], 0, d_x);
    dget(&p, yg, d_x, BN_);
    close_enough("bn train y", yg, y, BN_, 1e-5f);
    const char *names[] = {"run_mean", "run_var", "save_mean", "save_invstd"};
    for (int j = 2; j < 6; j++) {
        dget(&p, chg, d[j], BC);
        close_enough(names[j - 2], chg, ch[j], BC, 1e-6f);
    }
    /* backward from the original x (re-sent), accumulating into dgamma and
     * dbeta, dx in place over dy on the GPU */
    gpu_to_device(p.g, d_x, x, BN_ * 4);
    gpu_bn_bwd(p.c, x, dy, BR, BC, ch[0], ch[1], ch[4], ch[5], NULL, ch[6],
               ch[7], y, 1);
    gpu_bn_bwd(p.g, d_x, d_dy, BR, BC, d[0], d[1], d[4], d[5], NULL, d[6],
               d[7], d_dy, 1);
    dget(&p, yg, d_dy, BN_);
    close_rel("bn dx", yg, y, BN_, 1e-5f);
    for (int j = 6; j < 8; j++) {
        dget(&p, chg, d[j], BC);
        close_rel(j == 6 ? "bn dgamma" : "bn dbeta", chg, ch[j], BC, 1e-5f);
    }
    /* evaluation with the running estimates */
    gpu_bn_fwd_eval(p.c, x, BR, BC, ch[0], ch[1], 1e-5f, ch[2], ch[3], 0, y);
    gpu_bn_fwd_eval(p.g, d_x, BR, BC, d[0], d[1], 1e-5f, d[2], d[3], 0, d_dy);
    dget(&p, yg, d_dy, BN_);
    close_enough("bn eval y", yg, y, BN_, 1e-5f);
    free(x), free(y), free(yg), free(dy);
    pair_close(&p);
}

/* 105 rows (several per row-thread; 3 chunks when split), 19 channels
 * (blocks of 8 or 32, the last partial); 4100 rows: 128 chunks (the cap)
 * of uneven size. */
static void test_bn_agrees(void **s) { (void)s, bn_case(0, 105, 19); }
static void test_bn_split_agrees(void **s)
{
    (void)s, bn_case(1, 105, 19), bn_case(1, 4100, 5);
}

static void test_elementwise_conv_agrees(void **state)
{
    (void)state;
    pair p;
    if (!pair_open(&p)) { skip(); return; }
    enum { EN = 3001 };
    float *x = fbuf(EN), *dy = fbuf(EN), *y = fbuf(EN), *yg = fbuf(EN);
    for (int i = 0; i < EN; i++) x[i] = 4 * frand(), dy[i] = frand();
    x[0] = 0.0f;
    p.a.off = 0;
    float *d_x = dput(&p, x, EN), *d_dy = dput(&p, dy, EN),
          *d_y = take(&p.a, EN * 4);
    /* ReLU exactly, GELU within its erff/expf ulps */
    for (int k = GPU_ACT_RELU; k <= GPU_ACT_GELU; k++) {
        float tol = k == GPU_ACT_RELU ? 0.0f : 1e-6f;
        gpu_act_fwd(p.c, k, x, y, EN);
        gpu_act_fwd(p.g, k, d_x, d_y, EN);
        dget(&p, yg, d_y, EN);
        close_enough(k == GPU_ACT_RELU ? "relu" : "gelu", yg, y, EN, tol);
        gpu_to_device(p.g, d_y, dy, EN * 4); /* dx in place over dy */
        gpu_act_bwd(p.c, k, x, dy, y, EN);
        gpu_act_bwd(p.g, k, d_x, d_y, d_y, EN);
        dget(&p, yg, d_y, EN);
        close_enough(k == GPU_ACT_RELU ? "relu'" : "gelu'", yg, y, EN, tol);
    }
    /* axpby: beta 0 over NaNs (never read), then y += y (x == y) */
    for (int i = 0; i < EN; i++) yg[i] = NAN;
    gpu_to_device(p.g, d_y, yg, EN * 4);
    gpu_axpby(p.c, EN, 0.5f, x, 0.0f, y);
    gpu_axpby(p.g, EN, 0.5f, d_x, 0.0f, d_y);
    gpu_axpby(p.c, EN, -1.5f, dy, 2.0f, y);
    gpu_axpby(p.g, EN, -1.5f, d_dy, 2.0f, d_y);
    gpu_axpby(p.c, EN, 1.0f, y, 1.0f, y);
    gpu_axpby(p.g, EN, 1.0f, d_y, 1.0f, d_y);
    dget(&p, yg, d_y, EN);
    close_enough("axpby", yg, y, EN, 1e-6f);
    /* mirror: (3, 5, 7, 4) */
    gpu_flip_w(p.c, x, 3, 5, 7, 4, y);
    gpu_flip_w(p.g, d_x, 3, 5, 7, 4, d_y);
    dget(&p, yg, d_y, 3 * 5 * 7 * 4);
    close_enough("flip_w", yg, y, 3 * 5 * 7 * 4, 0.0f);
    /* per-channel normalization, 3 channels, from an odd offset */
    static uint8_t px[EN];
    for (int i = 0; i < EN; i++) px[i] = (uint8_t)(i * 37 + 11);
    uint8_t *d_px = take(&p.a, EN);
    gpu_to_device(p.g, d_px, px, EN);
    const float mean[4] = {0.49f, 0.48f, 0.45f}, sd[4] = {0.25f, 0.24f, 0.26f};
    gpu_normalize_u8_ch(p.c, px + 1, 1000, 3, mean, sd, y);
    gpu_normalize_u8_ch(p.g, d_px + 1, 1000, 3, mean, sd, d_y);
    dget(&p, yg, d_y, 3000);
    close_enough("normalize_u8_ch", yg, y, 3000, 1e-6f);
    free(x), free(dy), free(y), free(yg);
    pair_close(&p);
}

/* Label smoothing 0.1 against the CPU; smoothing 0 must be exactly
 * gpu_softmax_xent on the same device. */
static void test_softmax_ls_agrees(void **state)
{
    (void)state;
    pair p;
    if (!pair_open(&p)) { skip(); return; }
    enum { LR = 70, LC = 37 }; /* 37 classes: lanes with 2 and with 1 */
    int32_t lab[LR];
    for (int i = 0; i < LR; i++) lab[i] = (i * 11) % LC;
    lab[3] = LC; /* a bad label */
    float *lg = fbuf(LR * LC), *gc = fbuf(LR * LC), *gg = fbuf(LR * LC);
    for (int i = 0; i < LR * LC; i++) lg[i] = 3 * frand();
    p.a.off = 0;
    float *d_lg = dput(&p, lg, LR * LC), *d_g = take(&p.a, LR * LC * 4),
          *d_g0 = take(&p.a, LR * LC * 4);
    int32_t *d_lab = take(&p.a, sizeof lab);
    gpu_loss_stats *d_st = take(&p.a, 2 * sizeof *d_st), sc = {0}, sg[2];
    gpu_to_device(p.g, d_lab, lab, sizeof lab);
    gpu_zero(p.g, d_st, 2 * sizeof *d_st);
    gpu_softmax_xent_ls(p.c, lg, lab, LR, LC, 0.1f, 0.5f, gc, &sc);
    gpu_softmax_xent_ls(p.g, d_lg, d_lab, LR, LC, 0.1f, 0.5f, d_g, d_st);
    dget(&p, gg, d_g, LR * LC);
    gpu_to_host(p.g, sg, d_st, sizeof sg[0]);
    close_enough("smoothed dlogits", gg, gc, LR * LC, 1e-6f);
    assert_float_equal(sg[0].loss_sum, sc.loss_sum, 1e-3);
    assert_int_equal(sg[0].correct, sc.correct);
    assert_int_equal(sg[0].bad_labels, 1);
    gpu_zero(p.g, d_st, 2 * sizeof *d_st);
    gpu_softmax_xent_ls(p.g, d_lg, d_lab, LR, LC, 0.0f, 0.5f, d_g, d_st);
    gpu_softmax_xent(p.g, d_lg, d_lab, LR, LC, 0.5f, d_g0, d_st + 1);
    dget(&p, gg, d_g, LR * LC);
    dget(&p, gc, d_g0, LR * LC);
    gpu_to_host(p.g, sg, d_st, sizeof sg);
    assert_memory_equal(gg, gc, LR * LC * 4);
    /* the same terms; on a GPU the atomics may add them in another order */
    assert_float_equal(sg[0].loss_sum, sg[1].loss_sum, 1e-9 * sg[1].loss_sum);
    assert_int_equal(sg[0].correct, sg[1].correct);
    assert_int_equal(sg[0].bad_labels, sg[1].bad_labels);
    free(lg), free(gc), free(gg);
    pair_close(&p);
}

/* ---- train/ layers on both backends -------------------------------------
 * Each layer bound on each device, the same parameters, input and dy:
 * forward (training), backward, forward (evaluation). Composites of the
 * ops above; cuBLAS and OpenBLAS add the GEMMs' terms in other orders:
 * 1e-4 of the largest entry. */

static void layer_agrees(const char *name, layer L[2], int n)
{
    pair p;
    if (!pair_open(&p)) { skip(); return; }
    gpu_device *dv[2] = {p.g, p.c};
    st_error err = {0};
    bump cb = {0};
    assert_int_equal(gpu_arena_alloc(p.c, 8u << 20, (void **)&cb.base, &err), 0);
    bump *b[2] = {&p.a, &cb};
    size_t wc = L[0].ops->weight_count(&L[0]), bc = L[0].ops->bias_count(&L[0]);
    size_t st = layer_state_count(&L[0]), wk = layer_workspace_floats(&L[0], n);
    size_t sc = L[0].ops->scratch_floats(&L[0], n);
    size_t in = (size_t)n * layer_in_size(&L[0]);
    size_t out = (size_t)n * layer_out_size(&L[0]);
    size_t nh = in + 2 * out + wc + bc + st;
    float *h = fbuf(nh), *back = fbuf(nh), *t[2][5];
    uint64_t rng = 42; /* h: x, dy, w, b, state */
    for (size_t i = 0; i < in + out; i++) h[i] = frand();
    L[0].ops->init(&L[0], h + in + out, h + in + out + wc, &rng);
    for (size_t i = 0; i < bc; i++) h[in + out + wc + i] += 0.1f * frand();
    layer_init_state(&L[0], h + in + out + wc + bc);
    for (int k = 0; k < 2; k++) {
        layer *l = &L[k];
        float **f[] = {&l->w, &l->gw, &l->b, &l->gb, &l->state, &l->scratch,
                       &l->work};
        size_t sz[] = {wc, wc, bc, bc, st, sc, wk};
        for (int j = 0; j < 7; j++) *f[j] = take(b[k], sz[j] * 4 + 4);
        l->work_floats = wk;
        layer_bind(l, n);
        size_t tz[] = {in, out, out, in, out}; /* x y dy dx y_eval */
        for (int j = 0; j < 5; j++) t[k][j] = take(b[k], tz[j] * 4);
        gpu_to_device(dv[k], t[k][0], h, in * 4);
        gpu_to_device(dv[k], t[k][2], h + in, out * 4);
        gpu_to_device(dv[k], l->w, h + in + out, wc * 4);
        gpu_to_device(dv[k], l->b, h + in + out + wc, bc * 4);
        gpu_to_device(dv[k], l->state, h + in + out + wc + bc, st * 4);
        if (l->ops->forward(l, dv[k], t[k][0], t[k][1], n, 1) ||
            l->ops->backward(l, dv[k], t[k][0], t[k][1], t[k][2], t[k][3], n,
                             0) ||
            l->ops->forward(l, dv[k], t[k][0], t[k][4], n, 0) ||
            gpu_device_check(dv[k], &err))
            fail_msg("%s on %s: %s", name, k ? "cpu" : "cuda", err.msg);
    }
    const char *what[] = {"y", "dx", "gw", "gb", "state", "y eval"};
    const float *pg[] = {t[0][1], t[0][3], L[0].gw, L[0].gb, L[0].state, t[0][4]},
                *pc[] = {t[1][1], t[1][3], L[1].gw, L[1].gb, L[1].state, t[1][4]};
    size_t nn[] = {out, in, wc, bc, st, out};
    for (int j = 0; j < 6; j++) {
        if (nn[j] == 0) continue;
        char msg[96];
        snprintf(msg, sizeof msg, "%s %s", name, what[j]);
        gpu_to_host(p.g, back, pg[j], nn[j] * 4);
        close_rel(msg, back, pc[j], nn[j], 1e-4f);
    }
    free(h), free(back);
    layer_release(&L[0]), layer_release(&L[1]);
    pair_close(&p);
}

static void test_layers_agree(void **state)
{
    (void)state;
    if (!need_gpu()) { skip(); return; }
    st_error e = {0};
    layer L[2];
    const layer_win k3s2 = {3, 3, 2, 2, 1, 1};
    for (int k = 0; k < 2; k++) {
        assert_int_equal(layer_conv_init(&L[k], 3, 9, 7, 8, k3s2, 1, &e), 0);
        L[k].relu = 1;
    }
    layer_agrees("conv k3 s2 bias relu", L, 5);
    for (int k = 0; k < 2; k++)
        assert_int_equal(layer_maxpool_init(&L[k], 6, 9, 7, k3s2, &e), 0);
    layer_agrees("maxpool k3 s2", L, 4);
    for (int k = 0; k < 2; k++)
        assert_int_equal(layer_bn_init(&L[k], 6, 5, 7, 1, &e), 0);
    layer_agrees("bn relu", L, 4);
    for (int k = 0; k < 2; k++)
        assert_int_equal(layer_avgpool_init(&L[k], 6, 5, 7, &e), 0);
    layer_agrees("avgpool", L, 4);
    layer_res_config rp = {.out_c = 8, .k = 3, .stride = 2, .proj = 1,
                           .act = GPU_ACT_RELU, .act_after_add = 1};
    for (int k = 0; k < 2; k++)
        assert_int_equal(layer_res_init(&L[k], 4, 9, 8, &rp, &e), 0);
    layer_agrees("res proj s2", L, 3);
    layer_res_config ri = {.out_c = 6, .k = 3, .stride = 1, .act = GPU_ACT_GELU,
                           .act_after_bn2 = 1, .act_after_add = 1};
    for (int k = 0; k < 2; k++)
        assert_int_equal(layer_res_init(&L[k], 6, 7, 5, &ri, &e), 0);
    layer_agrees("res identity gelu", L, 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lowering_agrees),
        cmocka_unit_test(test_pool_agrees),
        cmocka_unit_test(test_bn_agrees),
        cmocka_unit_test(test_bn_split_agrees),
        cmocka_unit_test(test_elementwise_conv_agrees),
        cmocka_unit_test(test_softmax_ls_agrees),
        cmocka_unit_test(test_layers_agree),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
