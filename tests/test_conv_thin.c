/* tests/test_conv_thin.c — the thin convolution (gpu_conv_thin_fwd and
 * gpu_conv_thin_wgrad) on the CPU backend:
 *
 *   reference  forward and filter gradient against a direct double-
 *              precision convolution: strides 1 to 3, padding up to and
 *              past half the kernel, 1x1 to 5x5 and non-square windows,
 *              1 to 3 channels, every specialized width (16, 32, 64) and
 *              others, beta 0 over garbage and beta 1 adding
 *   bits       the same bits as gpu_im2col + gpu_gemm on shapes where the
 *              GEMM takes its thin kernels (4096 rows and more), which is
 *              what the conv layer ran before, and at 1 and 2 threads
 *   rule       gpu_conv_thin's bounds, and the ops refusing a shape that
 *              is not thin, naming the op
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "device_fixture.h"
#include "gpu/device.h"

static uint64_t rng_state = 4242;

static float frand(void) /* [-1, 1) */
{
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((rng_state >> 40) & 0xFFFFFF) / 8388608.0f - 1.0f;
}

static float *filled(size_t n)
{
    float *p = malloc((n ? n : 1) * sizeof *p);
    assert_non_null(p);
    for (size_t i = 0; i < n; i++) p[i] = frand();
    return p;
}

typedef struct geo {
    int n, h, w, c, kh, kw, sh, sw, ph, pw, oc;
} geo;

static gpu_conv_geom mkgeom(const geo *t)
{
    gpu_conv_geom g;
    assert_int_equal(gpu_conv_geom_init(&g, t->n, t->h, t->w, t->c, t->kh,
                                        t->kw, t->sh, t->sw, t->ph, t->pw), 0);
    return g;
}

static size_t in_floats(const gpu_conv_geom *g)
{
    return (size_t)g->n * g->h * g->w * g->c;
}

static size_t rows_of(const gpu_conv_geom *g)
{
    return (size_t)g->n * g->oh * g->ow;
}

/* The lowered entry (row r, column k) of x, 0 in the padding. */
static double col_at(const gpu_conv_geom *g, const float *x, size_t r, int k)
{
    int ci = k % g->c, t = k / g->c, kx = t % g->kw, ky = t / g->kw;
    int ox = (int)(r % (size_t)g->ow), oy = (int)(r / g->ow % (size_t)g->oh);
    size_t b = r / ((size_t)g->oh * g->ow);
    int iy = oy * g->sh - g->ph + ky, ix = ox * g->sw - g->pw + kx;
    if (iy < 0 || iy >= g->h || ix < 0 || ix >= g->w) return 0.0;
    return x[((b * g->h + (size_t)iy) * g->w + (size_t)ix) * g->c + ci];
}

static void expect_close(const char *what, size_t t, const float *a,
                         const double *b, size_t n, double tol)
{
    for (size_t i = 0; i < n; i++) {
        double scale = fmax(1.0, fabs(b[i]));
        if (!(fabs((double)a[i] - b[i]) <= tol * scale))
            fail_msg("case %zu %s[%zu]: %.9g vs %.9g", t, what, i,
                     (double)a[i], b[i]);
    }
}

static const geo REF_CASES[] = {
    {2, 5, 5, 3, 3, 3, 1, 1, 1, 1, 4},    /* RGB 3x3, padding */
    {3, 7, 6, 2, 3, 3, 2, 2, 1, 1, 5},    /* stride 2 < kernel: overlap */
    {2, 4, 4, 5, 1, 1, 1, 1, 0, 0, 16},   /* 1x1, width 16 */
    {1, 9, 8, 2, 5, 3, 2, 1, 2, 1, 32},   /* 5x3, mixed strides, K 30 */
    {2, 6, 6, 1, 4, 4, 3, 3, 0, 0, 64},   /* stride 3, width 64 */
    {1, 3, 3, 3, 3, 3, 1, 1, 2, 2, 7},    /* padding past half the kernel */
    {2, 11, 13, 1, 5, 5, 1, 2, 2, 3, 33}, /* K 25, padding > kernel/2 */
    {1, 4, 9, 2, 2, 4, 1, 3, 0, 2, 1},    /* one output channel */
};

static void test_thin_reference(void **state)
{
    (void)state;
    gpu_device *d = cpu_dev_threads(2);
    for (size_t t = 0; t < sizeof REF_CASES / sizeof *REF_CASES; t++) {
        gpu_conv_geom g = mkgeom(&REF_CASES[t]);
        int oc = REF_CASES[t].oc, K = g.kh * g.kw * g.c;
        size_t rows = rows_of(&g);
        assert_true(gpu_conv_thin(d, &g, oc));
        float *x = filled(in_floats(&g)), *w = filled((size_t)K * oc);
        float *dy = filled(rows * oc), *y = filled(rows * oc);
        float *gw = filled((size_t)K * oc), *gw0 = malloc(K * oc * 4);
        double *ry = calloc(rows * oc, sizeof *ry);
        double *rg = calloc((size_t)K * oc, sizeof *rg);
        assert_non_null(gw0), assert_non_null(ry), assert_non_null(rg);
        for (size_t r = 0; r < rows; r++)
            for (int k = 0; k < K; k++) {
                double a = col_at(&g, x, r, k);
                for (int o = 0; o < oc; o++) {
                    ry[r * oc + o] += a * w[(size_t)k * oc + o];
                    rg[(size_t)k * oc + o] += a * dy[r * oc + o];
                }
            }
        assert_int_equal(gpu_conv_thin_fwd(d, &g, x, w, oc, y), 0);
        expect_close("y", t, y, ry, rows * oc, 1e-5);
        /* beta 0 overwrites garbage; beta 1 adds on top of it */
        memcpy(gw0, gw, (size_t)K * oc * 4);
        assert_int_equal(gpu_conv_thin_wgrad(d, &g, x, dy, oc, 1.0f, gw), 0);
        for (int i = 0; i < K * oc; i++) rg[i] += gw0[i];
        expect_close("gw (beta 1)", t, gw, rg, (size_t)K * oc, 1e-5);
        for (int i = 0; i < K * oc; i++) rg[i] -= gw0[i];
        assert_int_equal(gpu_conv_thin_wgrad(d, &g, x, dy, oc, 0.0f, gw), 0);
        expect_close("gw", t, gw, rg, (size_t)K * oc, 1e-5);
        assert_int_equal(gpu_device_check(d, NULL), 0);
        free(x), free(w), free(dy), free(y), free(gw), free(gw0);
        free(ry), free(rg);
    }
    gpu_device_destroy(d);
}

/* Shapes where gpu_gemm takes its thin kernels (rows >= 4096): the layer's
 * old path, im2col + GEMM, and the thin ops agree bit for bit, at 1 and at
 * 2 threads. */
static const geo BIT_CASES[] = {
    {8, 28, 28, 1, 3, 3, 1, 1, 1, 1, 32},  /* the reference net's conv1 */
    {20, 32, 32, 3, 3, 3, 2, 2, 1, 1, 24}, /* RGB, stride 2, width 24 */
    {4, 40, 40, 2, 4, 4, 1, 1, 2, 2, 16},  /* K 32, even kernel */
    {3, 45, 41, 3, 3, 3, 1, 1, 0, 0, 64},  /* no padding, width 64 */
};

static void same_bits(const char *what, size_t t, const float *a,
                      const float *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!(a[i] == b[i]))
            fail_msg("case %zu %s[%zu]: %.9g vs %.9g", t, what, i,
                     (double)a[i], (double)b[i]);
}

static void test_thin_bits(void **state)
{
    (void)state;
    gpu_device *d1 = cpu_dev_threads(1), *d2 = cpu_dev_threads(2);
    for (size_t t = 0; t < sizeof BIT_CASES / sizeof *BIT_CASES; t++) {
        gpu_conv_geom g = mkgeom(&BIT_CASES[t]);
        int oc = BIT_CASES[t].oc, K = g.kh * g.kw * g.c;
        size_t rows = rows_of(&g), kn = (size_t)K * oc;
        assert_true(rows >= 4096);
        float *x = filled(in_floats(&g)), *w = filled(kn);
        float *dy = filled(rows * oc), *col = filled(rows * K);
        float *y0 = filled(rows * oc), *y1 = filled(rows * oc);
        float *y2 = filled(rows * oc);
        float *g0 = filled(kn), *g1 = filled(kn), *g2 = filled(kn);
        assert_int_equal(gpu_im2col(d1, &g, x, col), 0);
        assert_int_equal(gpu_gemm(d1, 0, 0, (int)rows, oc, K, 1.0f, col, K,
                                  w, oc, 0.0f, y0, oc), 0);
        assert_int_equal(gpu_gemm(d1, 1, 0, K, oc, (int)rows, 1.0f, col, K,
                                  dy, oc, 0.0f, g0, oc), 0);
        assert_int_equal(gpu_conv_thin_fwd(d1, &g, x, w, oc, y1), 0);
        assert_int_equal(gpu_conv_thin_fwd(d2, &g, x, w, oc, y2), 0);
        assert_int_equal(gpu_conv_thin_wgrad(d1, &g, x, dy, oc, 0.0f, g1), 0);
        assert_int_equal(gpu_conv_thin_wgrad(d2, &g, x, dy, oc, 0.0f, g2), 0);
        same_bits("y vs im2col+gemm", t, y1, y0, rows * oc);
        same_bits("y at 2 threads", t, y2, y1, rows * oc);
        same_bits("gw vs im2col+gemm", t, g1, g0, kn);
        same_bits("gw at 2 threads", t, g2, g1, kn);
        free(x), free(w), free(dy), free(col), free(y0), free(y1), free(y2);
        free(g0), free(g1), free(g2);
    }
    gpu_device_destroy(d1), gpu_device_destroy(d2);
}

static void test_thin_rule(void **state)
{
    (void)state;
    gpu_device *d = cpu_dev();
    gpu_conv_geom g;
    float x[4 * 4 * 4] = {0}, w[36 * 8] = {0}, y[16 * 8];
    /* 3x3 over 3 channels (K 27) qualifies; over 4 (K 36) does not */
    assert_int_equal(gpu_conv_geom_init(&g, 1, 4, 4, 3, 3, 3, 1, 1, 1, 1), 0);
    assert_true(gpu_conv_thin(d, &g, GPU_CONV_THIN_OC));
    assert_false(gpu_conv_thin(d, &g, GPU_CONV_THIN_OC + 1));
    assert_false(gpu_conv_thin(d, &g, 0));
    assert_int_equal(gpu_conv_geom_init(&g, 1, 4, 4, 4, 3, 3, 1, 1, 1, 1), 0);
    assert_false(gpu_conv_thin(d, &g, 8));
    assert_int_equal(gpu_conv_thin_fwd(d, &g, x, w, 8, y), ST_EINVAL);
    assert_non_null(strstr(gpu_device_err(d)->msg, "conv_thin_fwd"));
    assert_non_null(strstr(gpu_device_err(d)->msg, "not thin"));
    gpu_device_destroy(d);

    d = cpu_dev();
    assert_int_equal(gpu_conv_geom_init(&g, 1, 4, 4, 1, 3, 3, 1, 1, 1, 1), 0);
    g.ow = 3; /* inconsistent with the formula */
    assert_int_equal(gpu_conv_thin_wgrad(d, &g, x, y, 8, 0.0f, w), ST_EINVAL);
    assert_non_null(strstr(gpu_device_err(d)->msg, "conv_thin_wgrad"));
    gpu_device_destroy(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_thin_reference),
        cmocka_unit_test(test_thin_bits),
        cmocka_unit_test(test_thin_rule),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
