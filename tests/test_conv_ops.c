/* tests/test_conv_ops.c — the conv-net device ops (gpu/device.h's NHWC
 * section) on the CPU backend, each against a plain direct reference
 * written here: direct convolution vs im2col + GEMM, col2im as the adjoint
 * of im2col, max pool with overlapping padded windows, global average
 * pool, batch norm in training and evaluation (unbiased running variance,
 * momentum) and its fused ReLU, ReLU/GELU, axpby, label-smoothed cross-entropy, per-channel
 * normalization and the mirror; argument checks; the staged device.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gpu/device.h"
#include "device_fixture.h"

static uint64_t rng_state = 777;

static float frand(void) /* [-1, 1) */
{
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((rng_state >> 40) & 0xFFFFFF) / 8388608.0f - 1.0f;
}

static void fill(float *p, size_t n)
{
    for (size_t i = 0; i < n; i++) p[i] = frand();
}

static float *falloc(size_t n)
{
    float *p = calloc(n ? n : 1, sizeof *p);
    assert_non_null(p);
    return p;
}

static void assert_close(const float *a, const double *b, size_t n, double tol)
{
    for (size_t i = 0; i < n; i++) {
        double scale = fmax(1.0, fmax(fabs((double)a[i]), fabs(b[i])));
        if (!(fabs((double)a[i] - b[i]) <= tol * scale))
            fail_msg("element %zu: %.9g vs %.9g (tol %g)", i, (double)a[i],
                     b[i], tol);
    }
}

typedef struct geo {
    int n, h, w, c, kh, kw, sh, sw, ph, pw, oc;
} geo;

/* stride 1 and 2, padding, 1x1, odd sizes, stride < kernel, kh != kw */
static const geo CONV_CASES[] = {
    {2, 5, 5, 3, 3, 3, 1, 1, 1, 1, 4},
    {3, 7, 6, 2, 3, 3, 2, 2, 1, 1, 5},
    {2, 4, 4, 5, 1, 1, 1, 1, 0, 0, 3},
    {2, 5, 7, 3, 1, 1, 2, 2, 0, 0, 2},
    {1, 9, 8, 2, 5, 3, 2, 1, 2, 1, 3},
    {2, 6, 6, 1, 4, 4, 3, 3, 0, 0, 2},
    {1, 3, 3, 4, 3, 3, 1, 1, 2, 2, 2}, /* padding >= half the kernel */
};

static gpu_conv_geom mkgeom(const geo *t)
{
    gpu_conv_geom g;
    assert_int_equal(gpu_conv_geom_init(&g, t->n, t->h, t->w, t->c, t->kh,
                                        t->kw, t->sh, t->sw, t->ph, t->pw), 0);
    return g;
}

/* x (n, h, w, c) at (b, y, x, k), 0 outside (padding). */
static double px(const gpu_conv_geom *g, const float *x, int b, int y, int xx,
                 int k)
{
    if (y < 0 || y >= g->h || xx < 0 || xx >= g->w) return 0.0;
    return x[(((size_t)b * g->h + y) * g->w + xx) * g->c + k];
}

/* Direct convolution: y (n, oh, ow, oc) with W (kh*kw*c, oc). */
static void ref_conv(const gpu_conv_geom *g, const float *x, const float *W,
                     int oc, double *y)
{
    for (int b = 0; b < g->n; b++)
        for (int oy = 0; oy < g->oh; oy++)
            for (int ox = 0; ox < g->ow; ox++)
                for (int o = 0; o < oc; o++) {
                    double s = 0;
                    for (int ky = 0; ky < g->kh; ky++)
                        for (int kx = 0; kx < g->kw; kx++)
                            for (int k = 0; k < g->c; k++)
                                s += px(g, x, b, oy * g->sh - g->ph + ky,
                                        ox * g->sw - g->pw + kx, k) *
                                     W[((size_t)(ky * g->kw + kx) * g->c + k) *
                                           oc + o];
                    *y++ = s;
                }
}

static void test_conv_im2col_gemm(void **state)
{
    (void)state;
    gpu_device *d = cpu_dev();
    for (size_t t = 0; t < sizeof CONV_CASES / sizeof *CONV_CASES; t++) {
        const geo *c = &CONV_CASES[t];
        gpu_conv_geom g = mkgeom(c);
        int K = g.kh * g.kw * g.c, rows = g.n * g.oh * g.ow;
        float *x = falloc((size_t)g.n * g.h * g.w * g.c);
        float *W = falloc((size_t)K * c->oc), *col = falloc((size_t)rows * K);
        float *y = falloc((size_t)rows * c->oc);
        double *ref = calloc((size_t)rows * c->oc, sizeof *ref);
        fill(x, (size_t)g.n * g.h * g.w * g.c);
        fill(W, (size_t)K * c->oc);
        fill(col, (size_t)rows * K); /* garbage: im2col must overwrite it */
        assert_int_equal(gpu_im2col(d, &g, x, col), 0);
        assert_int_equal(gpu_gemm(d, 0, 0, rows, c->oc, K, 1.0f, col, K, W,
                                  c->oc, 0.0f, y, c->oc), 0);
        ref_conv(&g, x, W, c->oc, ref);
        assert_close(y, ref, (size_t)rows * c->oc, 1e-5);
        free(ref), free(y), free(col), free(W), free(x);
    }
    gpu_device_destroy(d);
}

/* <col, im2col(x)> == <col2im(col), x>, and accumulate=1 adds. */
static void test_col2im_adjoint(void **state)
{
    (void)state;
    gpu_device *d = cpu_dev();
    for (size_t t = 0; t < sizeof CONV_CASES / sizeof *CONV_CASES; t++) {
        gpu_conv_geom g = mkgeom(&CONV_CASES[t]);
        size_t nx = (size_t)g.n * g.h * g.w * g.c;
        size_t nc = (size_t)g.n * g.oh * g.ow * g.kh * g.kw * g.c;
        float *x = falloc(nx), *dx = falloc(nx), *dx2 = falloc(nx);
        float *col = falloc(nc), *lx = falloc(nc);
        fill(x, nx);
        fill(col, nc);
        fill(dx, nx); /* garbage: accumulate=0 overwrites */
        assert_int_equal(gpu_im2col(d, &g, x, lx), 0);
        assert_int_equal(gpu_col2im(d, &g, col, dx, 0), 0);
        double a = 0, b = 0, mag = 0;
        for (size_t i = 0; i < nc; i++) a += (double)col[i] * lx[i];
        for (size_t i = 0; i < nx; i++) {
            b += (double)dx[i] * x[i];
            mag += fabs((double)dx[i] * x[i]);
        }
        if (!(fabs(a - b) <= 1e-6 * fmax(1.0, mag)))
            fail_msg("case %zu: <col, im2col x> %.9g vs <col2im col, x> %.9g",
                     t, a, b);
        /* accumulate: dx2 = dx + col2im(col) */
        memcpy(dx2, dx, nx * sizeof *dx2);
        assert_int_equal(gpu_col2im(d, &g, col, dx2, 1), 0);
        for (size_t i = 0; i < nx; i++)
            assert_float_equal(dx2[i], 2.0f * dx[i], 1e-5);
        free(lx), free(col), free(dx2), free(dx), free(x);
    }
    gpu_device_destroy(d);
}

/* Overlapping windows (stride < kernel) and padding; ties resolved to the
 * first tap in (ky, kx) order; padding never wins even where every real
 * value is negative. */
static void test_maxpool(void **state)
{
    (void)state;
    gpu_device *d = cpu_dev();
    const geo cases[] = {
        {2, 7, 6, 3, 3, 3, 2, 2, 1, 1, 0},
        {1, 5, 5, 2, 2, 2, 2, 2, 0, 0, 0},
        {2, 6, 5, 4, 3, 2, 1, 1, 1, 1, 0},
        {2, 8, 6, 16, 2, 2, 2, 2, 0, 0, 0}, /* the 2x2 path, even */
        {3, 7, 9, 5, 2, 2, 2, 2, 0, 0, 0},  /* and odd: an edge unpooled */
    };
    for (size_t t = 0; t < sizeof cases / sizeof *cases; t++) {
        gpu_conv_geom g = mkgeom(&cases[t]);
        size_t nx = (size_t)g.n * g.h * g.w * g.c;
        size_t ny = (size_t)g.n * g.oh * g.ow * g.c;
        float *x = falloc(nx), *y = falloc(ny), *dy = falloc(ny);
        float *dx = falloc(nx);
        int32_t *idx = calloc(ny, sizeof *idx);
        double *rdx = calloc(nx, sizeof *rdx);
        fill(x, nx);
        for (size_t i = 0; i < nx; i++) /* all negative, with ties */
            x[i] = -1.0f - (float)((int)(4.0f * (x[i] + 1.0f))) * 0.25f;
        fill(dy, ny);
        fill(dx, nx);
        assert_int_equal(gpu_maxpool_fwd(d, &g, x, y, idx), 0);
        size_t o = 0;
        for (int b = 0; b < g.n; b++)
            for (int oy = 0; oy < g.oh; oy++)
                for (int ox = 0; ox < g.ow; ox++)
                    for (int k = 0; k < g.c; k++, o++) {
                        float best = 0;
                        int bi = -1;
                        for (int ky = 0; ky < g.kh; ky++)
                            for (int kx = 0; kx < g.kw; kx++) {
                                int iy = oy * g.sh - g.ph + ky;
                                int ix = ox * g.sw - g.pw + kx;
                                if (iy < 0 || iy >= g.h || ix < 0 || ix >= g.w)
                                    continue;
                                int fi = (iy * g.w + ix) * g.c + k;
                                float v = x[(size_t)b * g.h * g.w * g.c + fi];
                                if (bi < 0 || v > best) best = v, bi = fi;
                            }
                        assert_int_equal(idx[o], bi);
                        assert_true(y[o] == best);
                        rdx[(size_t)b * g.h * g.w * g.c + bi] += dy[o];
                    }
        assert_int_equal(gpu_maxpool_bwd(d, &g, dy, idx, dx), 0);
        assert_close(dx, rdx, nx, 1e-6);
        free(rdx), free(idx), free(dx), free(dy), free(y), free(x);
    }
    gpu_device_destroy(d);
}

static void test_avgpool(void **state)
{
    (void)state;
    gpu_device *d = cpu_dev();
    enum { N = 3, HW = 10, C = 7 };
    float x[N * HW * C], y[N * C], dy[N * C], dx[N * HW * C];
    double ry[N * C], rdx[N * HW * C];
    fill(x, N * HW * C);
    fill(dy, N * C);
    assert_int_equal(gpu_avgpool_fwd(d, x, N, HW, C, y), 0);
    for (int b = 0; b < N; b++)
        for (int k = 0; k < C; k++) {
            double s = 0;
            for (int p = 0; p < HW; p++) s += x[(b * HW + p) * C + k];
            ry[b * C + k] = s / HW;
            for (int p = 0; p < HW; p++)
                rdx[(b * HW + p) * C + k] = dy[b * C + k] / (double)HW;
        }
    assert_close(y, ry, N * C, 1e-6);
    assert_int_equal(gpu_avgpool_bwd(d, dy, N, HW, C, dx), 0);
    assert_close(dx, rdx, N * HW * C, 1e-6);
    gpu_device_destroy(d);
}

/* Batch norm, PyTorch's conventions: biased variance normalizes, the
 * running variance takes the unbiased one, momentum 0.1, eps inside the
 * square root. Columns are offset far from 0 (accuracy of the two-pass
 * statistics) and c > the CPU's column chunk. */
static void test_bn_forward(void **state)
{
    (void)state;
    gpu_device *d = cpu_dev();
    enum { R = 37, C = 300 };
    const float eps = 1e-5f, mom = 0.1f;
    float *x = falloc(R * C), *y = falloc(R * C), *y2 = falloc(R * C);
    float g[C], be[C], rm[C], rv[C], sm[C], si[C];
    double *ref = calloc(R * C, sizeof *ref), rrm[C], rrv[C];
    fill(x, R * C);
    for (int i = 0; i < R * C; i++) x[i] = x[i] * (1 + i % 5) + 40.0f * (i % C % 3);
    fill(g, C), fill(be, C), fill(rm, C), fill(rv, C);
    for (int k = 0; k < C; k++) rv[k] = 1.0f + rv[k] * 0.5f;
    for (int k = 0; k < C; k++) {
        double m = 0, v = 0;
        for (int r = 0; r < R; r++) m += x[r * C + k];
        m /= R;
        for (int r = 0; r < R; r++) v += (x[r * C + k] - m) * (x[r * C + k] - m);
        v /= R;
        for (int r = 0; r < R; r++)
            ref[r * C + k] = g[k] * (x[r * C + k] - m) / sqrt(v + eps) + be[k];
        rrm[k] = 0.9 * rm[k] + 0.1 * m;
        rrv[k] = 0.9 * rv[k] + 0.1 * v * R / (R - 1);
        sm[k] = (float)m, si[k] = (float)(1 / sqrt(v + eps));
    }
    double esm[C], esi[C];
    for (int k = 0; k < C; k++) esm[k] = sm[k], esi[k] = si[k];
    float rm2[C], rv2[C];
    memcpy(rm2, rm, sizeof rm), memcpy(rv2, rv, sizeof rv);
    assert_int_equal(gpu_bn_fwd_train(d, x, R, C, g, be, eps, mom, rm, rv, sm,
                                      si, 0, y), 0);
    assert_close(y, ref, R * C, 1e-5);
    assert_close(rm, rrm, C, 1e-6);
    assert_close(rv, rrv, C, 1e-6);
    assert_close(sm, esm, C, 1e-6);
    assert_close(si, esi, C, 1e-6);
    /* in place gives the same bits */
    memcpy(y2, x, R * C * sizeof *y2);
    assert_int_equal(gpu_bn_fwd_train(d, y2, R, C, g, be, eps, mom, rm2, rv2,
                                      sm, si, 0, y2), 0);
    assert_memory_equal(y, y2, R * C * sizeof *y);

    /* evaluation with the running estimates */
    for (int k = 0; k < C; k++)
        for (int r = 0; r < R; r++)
            ref[r * C + k] = g[k] * (x[r * C + k] - rm[k]) / sqrt(rv[k] + eps) +
                             be[k];
    assert_int_equal(gpu_bn_fwd_eval(d, x, R, C, g, be, eps, rm, rv, 0, y), 0);
    assert_close(y, ref, R * C, 1e-5);
    free(ref), free(y2), free(y), free(x);
    gpu_device_destroy(d);
}

/* Backward against the textbook formula in double, accumulate, in place. */
static void test_bn_backward(void **state)
{
    (void)state;
    gpu_device *d = cpu_dev();
    enum { R = 29, C = 270 };
    const float eps = 1e-5f;
    float *x = falloc(R * C), *dy = falloc(R * C), *dx = falloc(R * C);
    float *dx2 = falloc(R * C);
    float g[C], be[C], rm[C] = {0}, rv[C], sm[C], si[C], dg[C], db[C];
    double *rdx = calloc(R * C, sizeof *rdx), rdg[C], rdb[C];
    fill(x, R * C), fill(dy, R * C), fill(g, C), fill(be, C);
    for (int i = 0; i < R * C; i++) x[i] = 3.0f * x[i] + 10.0f;
    for (int k = 0; k < C; k++) rv[k] = 1.0f;
    assert_int_equal(gpu_bn_fwd_train(d, x, R, C, g, be, eps, 0.1f, rm, rv, sm,
                                      si, 0, dx), 0);
    for (int k = 0; k < C; k++) {
        double m = 0, v = 0, sdy = 0, sdyx = 0;
        for (int r = 0; r < R; r++) m += x[r * C + k];
        m /= R;
        for (int r = 0; r < R; r++) v += (x[r * C + k] - m) * (x[r * C + k] - m);
        v /= R;
        double inv = 1 / sqrt(v + eps);
        for (int r = 0; r < R; r++) {
            sdy += dy[r * C + k];
            sdyx += dy[r * C + k] * (x[r * C + k] - m) * inv;
        }
        rdg[k] = sdyx, rdb[k] = sdy;
        for (int r = 0; r < R; r++) {
            double xh = (x[r * C + k] - m) * inv;
            rdx[r * C + k] = g[k] * inv * (dy[r * C + k] - sdy / R - xh * sdyx / R);
        }
    }
    fill(dg, C), fill(db, C); /* garbage: accumulate=0 overwrites */
    assert_int_equal(gpu_bn_bwd(d, x, dy, R, C, g, be, sm, si, NULL, dg, db, dx,
                                0), 0);
    assert_close(dx, rdx, R * C, 1e-5);
    assert_close(dg, rdg, C, 1e-5);
    assert_close(db, rdb, C, 1e-5);
    /* accumulate=1 adds to dgamma/dbeta; dx == dy in place */
    memcpy(dx2, dy, R * C * sizeof *dx2);
    assert_int_equal(gpu_bn_bwd(d, x, dx2, R, C, g, be, sm, si, NULL, dg, db,
                                dx2, 1), 0);
    assert_memory_equal(dx, dx2, R * C * sizeof *dx);
    for (int k = 0; k < C; k++) rdg[k] *= 2, rdb[k] *= 2;
    assert_close(dg, rdg, C, 1e-5);
    assert_close(db, rdb, C, 1e-5);
    /* one row has no batch statistics */
    assert_int_equal(gpu_bn_fwd_train(d, x, 1, C, g, be, eps, 0.1f, rm, rv, sm,
                                      si, 0, dx), ST_EINVAL);
    free(rdx), free(dx2), free(dx), free(dy), free(x);
    gpu_device_destroy(d);
}

/* The fused ReLU (relu 1 / relu_y) is bit for bit batch norm then a
 * separate ReLU, both ways: the CPU's backward recomputes the mask from x
 * and must never disagree with the forward's y. Enough rows for several
 * row chunks, more channels than one column chunk, 2 threads. */
static void test_bn_relu_fused(void **state)
{
    (void)state;
    gpu_device *d = cpu_dev_threads(2);
    enum { R = 2111, C = 300 };
    size_t n = (size_t)R * C;
    float *x = falloc(n), *dy = falloc(n), *y = falloc(n), *yf = falloc(n);
    float *dm = falloc(n), *dx = falloc(n), *dxf = falloc(n);
    float g[C], be[C], rm[C] = {0}, rv[C], sm[C], si[C], dg[C], db[C];
    float dgf[C], dbf[C];
    fill(x, n), fill(dy, n), fill(g, C), fill(be, C);
    for (int k = 0; k < C; k++) rv[k] = 1.0f;
    for (size_t i = 0; i < n; i++) x[i] = 2.0f * x[i] + 0.5f * (float)(i % 7);
    assert_int_equal(gpu_bn_fwd_train(d, x, R, C, g, be, 1e-5f, 0.1f, rm, rv,
                                      sm, si, 0, y), 0);
    assert_int_equal(gpu_act_fwd(d, GPU_ACT_RELU, y, y, n), 0);
    for (int k = 0; k < C; k++) rm[k] = 0.0f, rv[k] = 1.0f;
    assert_int_equal(gpu_bn_fwd_train(d, x, R, C, g, be, 1e-5f, 0.1f, rm, rv,
                                      sm, si, 1, yf), 0);
    assert_memory_equal(y, yf, n * sizeof *y);
    size_t zeros = 0;
    for (size_t i = 0; i < n; i++) zeros += yf[i] == 0.0f;
    assert_true(zeros > n / 4 && zeros < 3 * n / 4); /* the mask matters */
    /* backward: relu_bwd then bn_bwd, against the fused op */
    assert_int_equal(gpu_act_bwd(d, GPU_ACT_RELU, y, dy, dm, n), 0);
    assert_int_equal(gpu_bn_bwd(d, x, dm, R, C, g, be, sm, si, NULL, dg, db,
                                dx, 0), 0);
    assert_int_equal(gpu_bn_bwd(d, x, dy, R, C, g, be, sm, si, yf, dgf, dbf,
                                dxf, 0), 0);
    assert_memory_equal(dx, dxf, n * sizeof *dx);
    assert_memory_equal(dg, dgf, sizeof dg);
    assert_memory_equal(db, dbf, sizeof db);
    /* in place over dy */
    memcpy(dxf, dy, n * sizeof *dy);
    assert_int_equal(gpu_bn_bwd(d, x, dxf, R, C, g, be, sm, si, yf, dgf, dbf,
                                dxf, 0), 0);
    assert_memory_equal(dx, dxf, n * sizeof *dx);
    /* evaluation */
    assert_int_equal(gpu_bn_fwd_eval(d, x, R, C, g, be, 1e-5f, rm, rv, 0, y),
                     0);
    assert_int_equal(gpu_act_fwd(d, GPU_ACT_RELU, y, y, n), 0);
    assert_int_equal(gpu_bn_fwd_eval(d, x, R, C, g, be, 1e-5f, rm, rv, 1, yf),
                     0);
    assert_memory_equal(y, yf, n * sizeof *y);
    free(x), free(dy), free(y), free(yf), free(dm), free(dx), free(dxf);
    gpu_device_destroy(d);
}

static void test_activations(void **state)
{
    (void)state;
    gpu_device *d = cpu_dev();
    enum { N = 203 };
    float x[N], y[N], dy[N], dx[N];
    double ry[N], rdx[N];
    fill(x, N), fill(dy, N);
    for (int i = 0; i < N; i++) x[i] *= 4.0f;
    x[0] = 0.0f;
    assert_int_equal(gpu_act_fwd(d, GPU_ACT_GELU, x, y, N), 0);
    for (int i = 0; i < N; i++)
        ry[i] = 0.5 * x[i] * (1 + erf(x[i] / sqrt(2.0)));
    assert_close(y, ry, N, 2e-6);
    assert_int_equal(gpu_act_bwd(d, GPU_ACT_GELU, x, dy, dx, N), 0);
    for (int i = 0; i < N; i++) {
        /* derivative by central differences of the double formula */
        double h = 1e-5, a = x[i] + h, b = x[i] - h;
        double fa = 0.5 * a * (1 + erf(a / sqrt(2.0)));
        double fb = 0.5 * b * (1 + erf(b / sqrt(2.0)));
        rdx[i] = dy[i] * (fa - fb) / (2 * h);
    }
    assert_close(dx, rdx, N, 1e-5);
    /* in place */
    memcpy(dx, dy, sizeof dx);
    assert_int_equal(gpu_act_bwd(d, GPU_ACT_GELU, x, dx, dx, N), 0);
    assert_close(dx, rdx, N, 1e-5);
    memcpy(y, x, sizeof y);
    assert_int_equal(gpu_act_fwd(d, GPU_ACT_RELU, y, y, N), 0);
    for (int i = 0; i < N; i++) assert_true(y[i] == (x[i] > 0 ? x[i] : 0.0f));
    assert_int_equal(gpu_act_bwd(d, GPU_ACT_RELU, x, dy, dx, N), 0);
    for (int i = 0; i < N; i++) assert_true(dx[i] == (x[i] > 0 ? dy[i] : 0.0f));
    assert_int_equal(gpu_act_fwd(d, (gpu_act_kind)9, x, y, N), ST_EINVAL);
    gpu_device_destroy(d);
}

/* GELU and its derivative against erf in double over [-16, 16] in steps
 * of 1/64 and at extremes: the CPU evaluates Phi by a polynomial (no libm
 * calls, so that it vectorizes), within 5e-7 * max(1, |value|). */
static void test_gelu_sweep(void **state)
{
    (void)state;
    gpu_device *d = cpu_dev();
    enum { N = 2 * 16 * 64 + 1 + 6 };
    static float x[N], y[N], one[N], dx[N];
    for (int i = 0; i < N - 6; i++) x[i] = (float)(i - 16 * 64) / 64.0f;
    const float ext[6] = {-1e4f, -90.0f, -40.0f, 40.0f, 90.0f, 1e4f};
    memcpy(x + N - 6, ext, sizeof ext);
    for (int i = 0; i < N; i++) one[i] = 1.0f;
    assert_int_equal(gpu_act_fwd(d, GPU_ACT_GELU, x, y, N), 0);
    assert_int_equal(gpu_act_bwd(d, GPU_ACT_GELU, x, one, dx, N), 0);
    double worst_y = 0, worst_d = 0;
    for (int i = 0; i < N; i++) {
        double v = x[i], phi = 0.5 * erfc(-v / sqrt(2.0));
        double ry = v * phi, rd = phi + v * exp(-0.5 * v * v) / sqrt(2 * M_PI);
        double ey = fabs(y[i] - ry) / fmax(1.0, fabs(ry));
        double ed = fabs(dx[i] - rd) / fmax(1.0, fabs(rd));
        worst_y = fmax(worst_y, ey), worst_d = fmax(worst_d, ed);
        if (!(ey <= 5e-7 && ed <= 5e-7))
            fail_msg("GELU at %.9g: %.9g vs %.9g, slope %.9g vs %.9g",
                     (double)x[i], (double)y[i], ry, (double)dx[i], rd);
    }
    print_message("GELU: worst error %.3g, slope %.3g\n", worst_y, worst_d);
    gpu_device_destroy(d);
}

static void test_axpby(void **state)
{
    (void)state;
    gpu_device *d = cpu_dev();
    enum { N = 77 };
    float x[N], y[N], y0[N];
    fill(x, N), fill(y0, N);
    memcpy(y, y0, sizeof y);
    assert_int_equal(gpu_axpby(d, N, 0.5f, x, -2.0f, y), 0);
    for (int i = 0; i < N; i++)
        assert_float_equal(y[i], 0.5f * x[i] - 2.0f * y0[i], 1e-6);
    for (int i = 0; i < N; i++) y[i] = NAN; /* beta 0 never reads y */
    assert_int_equal(gpu_axpby(d, N, 3.0f, x, 0.0f, y), 0);
    for (int i = 0; i < N; i++) assert_float_equal(y[i], 3.0f * x[i], 1e-6);
    gpu_device_destroy(d);
}

/* Label smoothing against a direct formula; eps 0 is gpu_softmax_xent bit
 * for bit; bad labels get zero gradient and no loss. */
static void test_softmax_xent_ls(void **state)
{
    (void)state;
    gpu_device *d = cpu_dev();
    enum { R = 6, K = 7 };
    float lg[R * K], g[R * K], g0[R * K];
    int32_t lab[R] = {0, 3, 6, 2, -1, 7};
    fill(lg, R * K);
    for (int i = 0; i < R * K; i++) lg[i] *= 5.0f;
    const float eps = 0.1f, scale = 0.25f;
    gpu_loss_stats st = {0}, st0 = {0}, st1 = {0};
    assert_int_equal(gpu_softmax_xent_ls(d, lg, lab, R, K, eps, scale, g, &st), 0);
    double loss = 0, rg[R * K];
    for (int r = 0; r < R; r++) {
        const float *x = lg + r * K;
        double mx = x[0], s = 0;
        for (int c = 1; c < K; c++) mx = fmax(mx, x[c]);
        for (int c = 0; c < K; c++) s += exp(x[c] - mx);
        int ok = lab[r] >= 0 && lab[r] < K;
        for (int c = 0; c < K; c++) {
            double p = exp(x[c] - mx) / s;
            double tgt = (ok && c == lab[r] ? 1 - eps : 0) + eps / K;
            if (ok) loss -= tgt * log(p);
            rg[r * K + c] = ok ? (p - tgt) * scale : 0.0;
        }
    }
    assert_true(fabs(st.loss_sum - loss) <= 1e-5 * fabs(loss));
    assert_int_equal(st.count, R);
    assert_int_equal(st.bad_labels, 2);
    assert_close(g, rg, R * K, 1e-6);

    assert_int_equal(gpu_softmax_xent_ls(d, lg, lab, R, K, 0.0f, scale, g, &st1), 0);
    assert_int_equal(gpu_softmax_xent(d, lg, lab, R, K, scale, g0, &st0), 0);
    assert_memory_equal(g, g0, sizeof g);
    assert_memory_equal(&st0, &st1, sizeof st0);
    assert_int_equal(st0.correct, st.correct);
    assert_int_equal(gpu_softmax_xent_ls(d, lg, lab, R, K, 1.0f, scale, g, &st),
                     ST_EINVAL);
    gpu_device_destroy(d);
}

static void test_normalize_ch(void **state)
{
    (void)state;
    gpu_device *d = cpu_dev();
    enum { NP = 37 };
    const float mean[4] = {0.5f, 0.25f, 0.75f, 0.1f};
    const float sd[4] = {0.2f, 0.5f, 0.3f, 1.5f};
    uint8_t x[NP * 4];
    float y[NP * 4];
    double ref[NP * 4];
    for (int i = 0; i < NP * 4; i++) x[i] = (uint8_t)(i * 53 + 7);
    for (int c = 1; c <= 4; c++) {
        assert_int_equal(gpu_normalize_u8_ch(d, x, NP, c, mean, sd, y), 0);
        for (int i = 0; i < NP * c; i++)
            ref[i] = (x[i] / 255.0 - mean[i % c]) / sd[i % c];
        assert_close(y, ref, (size_t)NP * c, 1e-6);
    }
    assert_int_equal(gpu_normalize_u8_ch(d, x, NP, 5, mean, sd, y), ST_EINVAL);
    gpu_device_destroy(d);
}

static void test_flip(void **state)
{
    (void)state;
    gpu_device *d = cpu_dev();
    enum { N = 2, H = 3, W = 5, C = 3 };
    float x[N * H * W * C], y[N * H * W * C];
    fill(x, N * H * W * C);
    assert_int_equal(gpu_flip_w(d, x, N, H, W, C, y), 0);
    for (int b = 0; b < N; b++)
        for (int i = 0; i < H; i++)
            for (int j = 0; j < W; j++)
                for (int k = 0; k < C; k++)
                    assert_true(y[((b * H + i) * W + j) * C + k] ==
                                x[((b * H + i) * W + (W - 1 - j)) * C + k]);
    assert_int_equal(gpu_flip_w(d, x, N, H, W, C, x), ST_EINVAL);
    gpu_device_destroy(d);
}

/* Bad geometry is refused by the wrapper, names the op, and is sticky. */
static void test_geometry_checks(void **state)
{
    (void)state;
    gpu_conv_geom g;
    assert_int_equal(gpu_conv_geom_init(&g, 1, 3, 3, 1, 5, 5, 1, 1, 0, 0),
                     ST_EINVAL); /* kernel larger than input */
    assert_int_equal(gpu_conv_geom_init(&g, 1, 3, 3, 1, 5, 5, 1, 1, 1, 1), 0);
    assert_int_equal(g.oh, 1);
    assert_int_equal(gpu_conv_geom_init(&g, 1, 8, 8, 1, 3, 3, 0, 1, 0, 0),
                     ST_EINVAL); /* stride 0 */
    assert_int_equal(gpu_conv_geom_init(&g, 2, 7, 6, 3, 3, 2, 2, 3, 1, 0), 0);
    assert_int_equal(g.oh, 4);
    assert_int_equal(g.ow, 2);

    gpu_device *d = cpu_dev();
    float x[64] = {0}, y[64];
    int32_t idx[64];
    assert_int_equal(gpu_conv_geom_init(&g, 1, 4, 4, 1, 2, 2, 2, 2, 1, 1), 0);
    /* max pool: padding 1 > kernel 2 / 2 is fine (== 1); 2 is not */
    assert_int_equal(gpu_maxpool_fwd(d, &g, x, y, idx), 0);
    g.ph = 2;
    g.oh = 4;
    assert_int_equal(gpu_im2col(d, &g, x, y), 0); /* conv allows it */
    assert_int_equal(gpu_maxpool_fwd(d, &g, x, y, idx), ST_EINVAL);
    assert_non_null(strstr(gpu_device_err(d)->msg, "maxpool_fwd"));
    /* sticky: the next valid op returns the same error */
    assert_int_equal(gpu_axpby(d, 4, 1.0f, x, 0.0f, y), ST_EINVAL);
    gpu_device_destroy(d);

    d = cpu_dev();
    g.oh = 3; /* inconsistent with the formula */
    assert_int_equal(gpu_col2im(d, &g, x, y, 0), ST_EINVAL);
    assert_non_null(strstr(gpu_device_err(d)->msg, "col2im"));
    gpu_device_destroy(d);
}

/* The staged CPU device runs the same arithmetic: one conv lowering and a
 * batch norm give the same bits. */
static void test_staged_same_bits(void **state)
{
    (void)state;
    gpu_device_config cfg;
    gpu_device_config_init(&cfg);
    cfg.kind = GPU_KIND_CPU;
    cfg.cpu_threads = 1;
    cfg.cpu_staged = 1;
    gpu_device *s = NULL, *d = cpu_dev();
    st_error err = {0};
    assert_int_equal(gpu_device_create(&s, &cfg, NULL, 0, &err), 0);
    gpu_conv_geom g = mkgeom(&CONV_CASES[1]);
    size_t nx = (size_t)g.n * g.h * g.w * g.c;
    size_t nc = (size_t)g.n * g.oh * g.ow * g.kh * g.kw * g.c;
    float *x = falloc(nx), *c1 = falloc(nc), *c2 = falloc(nc);
    float *y1 = falloc(nx), *y2 = falloc(nx);
    float gm[2] = {1.5f, -0.5f}, bt[2] = {0.1f, 0.2f}, rm[2] = {0}, rv[2] = {1, 1};
    float sm[2], si[2];
    fill(x, nx);
    assert_int_equal(gpu_im2col(d, &g, x, c1), 0);
    assert_int_equal(gpu_im2col(s, &g, x, c2), 0);
    assert_memory_equal(c1, c2, nc * sizeof *c1);
    assert_int_equal(gpu_bn_fwd_train(d, x, (int)(nx / 2), 2, gm, bt, 1e-5f,
                                      0.1f, rm, rv, sm, si, 0, y1), 0);
    rm[0] = rm[1] = 0, rv[0] = rv[1] = 1;
    assert_int_equal(gpu_bn_fwd_train(s, x, (int)(nx / 2), 2, gm, bt, 1e-5f,
                                      0.1f, rm, rv, sm, si, 0, y2), 0);
    assert_memory_equal(y1, y2, nx * sizeof *y1);
    free(y2), free(y1), free(c2), free(c1), free(x);
    gpu_device_destroy(s);
    gpu_device_destroy(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conv_im2col_gemm),
        cmocka_unit_test(test_col2im_adjoint),
        cmocka_unit_test(test_maxpool),
        cmocka_unit_test(test_avgpool),
        cmocka_unit_test(test_bn_forward),
        cmocka_unit_test(test_bn_backward),
        cmocka_unit_test(test_bn_relu_fused),
        cmocka_unit_test(test_activations),
        cmocka_unit_test(test_gelu_sweep),
        cmocka_unit_test(test_axpby),
        cmocka_unit_test(test_softmax_xent_ls),
        cmocka_unit_test(test_normalize_ch),
        cmocka_unit_test(test_flip),
        cmocka_unit_test(test_geometry_checks),
        cmocka_unit_test(test_staged_same_bits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
