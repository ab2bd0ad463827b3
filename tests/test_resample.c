/* tests/test_resample.c — datasets/resample: identity boxes are copies,
 * flip mirrors, every path (both passes, one pass, none) against a plain
 * double-precision evaluation of the same separable filters (upscale,
 * downscale, fractional boxes, 1..4 channels, odd sizes, 1-pixel outputs,
 * RESAMPLE_CROP), against PIL's Image.resize(size, f, box) when python3-pil
 * is present, the rows it reads (guard pages) and resample_footprint's
 * region, bad arguments, several threads at once, and the AVX2, AVX-512
 * and AVX-512 VNNI kernels byte for byte against the scalar path on random
 * images, boxes, sizes, filters and flags.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "datasets/resample.h"
#include "pil_fixture.h"

static uint32_t rng_state = 12345;
static uint32_t rnd(void)
{
    rng_state = rng_state * 1664525u + 1013904223u;
    return rng_state >> 8;
}

static uint8_t *random_image(uint32_t w, uint32_t h, int c)
{
    uint8_t *p = malloc((size_t)w * h * c);
    for (size_t i = 0; i < (size_t)w * h * c; i++) p[i] = (uint8_t)rnd();
    return p;
}

/* ---- the float reference ------------------------------------------------- */

static double ref_filter(resample_filter f, double x)
{
    if (f == RESAMPLE_AREA) return (x > -0.5 && x <= 0.5) ? 1.0 : 0.0;
    x = fabs(x);
    return x < 1.0 ? 1.0 - x : 0.0;
}

/* Weights of output o over source samples [lim0, lim1), written to w
 * (indexed by source position); the filter is evaluated at every sample
 * within its support plus a margin, and normalised. */
static void ref_weights(resample_filter f, double b0, double b1, uint32_t n,
                        uint32_t o, int lim0, int lim1, double *w)
{
    double scale = (b1 - b0) / n, fs = scale < 1 ? 1 : scale;
    double sup = (f == RESAMPLE_AREA ? 0.5 : 1.0) * fs;
    double centre = b0 + (o + 0.5) * scale, sum = 0;
    for (int x = lim0; x < lim1; x++) w[x] = 0;
    for (int x = (int)floor(centre - sup) - 2; x <= (int)ceil(centre + sup) + 2;
         x++) {
        if (x < lim0 || x >= lim1) continue;
        w[x] = ref_filter(f, (x + 0.5 - centre) / fs);
        sum += w[x];
    }
    for (int x = lim0; x < lim1; x++) w[x] /= sum;
}

/* (oh, ow, c) doubles: the separable filter evaluated in double, flipped. */
static double *ref_resample(const uint8_t *src, uint32_t sw, uint32_t sh,
                            int c, double x0, double y0, double x1, double y1,
                            uint32_t ow, uint32_t oh, resample_filter f,
                            int flags)
{
    int crop = (flags & RESAMPLE_CROP) != 0;
    int lx0 = crop ? (int)floor(x0) : 0, lx1 = crop ? (int)ceil(x1) : (int)sw;
    int ly0 = crop ? (int)floor(y0) : 0, ly1 = crop ? (int)ceil(y1) : (int)sh;
    double *tmp = calloc((size_t)sh * ow * c, sizeof(double));
    double *out = calloc((size_t)oh * ow * c, sizeof(double));
    double *w = malloc(sizeof(double) * (sw > sh ? sw : sh));
    for (uint32_t o = 0; o < ow; o++) {
        ref_weights(f, x0, x1, ow, o, lx0, lx1, w);
        for (uint32_t y = 0; y < sh; y++)
            for (int x = lx0; x < lx1; x++)
                if (w[x] != 0)
                    for (int ch = 0; ch < c; ch++)
                        tmp[((size_t)y * ow + o) * c + ch] +=
                            w[x] * src[((size_t)y * sw + x) * c + ch];
    }
    for (uint32_t o = 0; o < oh; o++) {
        ref_weights(f, y0, y1, oh, o, ly0, ly1, w);
        for (int y = ly0; y < ly1; y++)
            if (w[y] != 0)
                for (uint32_t x = 0; x < ow; x++) {
                    uint32_t xo = (flags & RESAMPLE_FLIP) ? ow - 1 - x : x;
                    for (int ch = 0; ch < c; ch++)
                        out[((size_t)o * ow + xo) * c + ch] +=
                            w[y] * tmp[((size_t)y * ow + x) * c + ch];
                }
    }
    free(w);
    free(tmp);
    return out;
}

/* ---- helpers ------------------------------------------------------------- */

static uint8_t *run_ours(const uint8_t *src, uint32_t sw, uint32_t sh, int c,
                         resample_filter f, double x0, double y0, double x1,
                         double y1, uint32_t ow, uint32_t oh, int flags)
{
    resample *r = NULL;
    st_error err = {0, ""};
    uint32_t bw = (uint32_t)ceil(x1 - x0), bh = (uint32_t)ceil(y1 - y0);
    assert_int_equal(resample_create(bw, bh, ow, oh, c, &r, &err), 0);
    uint8_t *dst = malloc((size_t)ow * oh * c);
    int rc = resample_run(r, f, src, sw, sh, (size_t)sw * c, x0, y0, x1, y1,
                          dst, ow, oh, flags, &err);
    if (rc != 0) fail_msg("resample_run: %s", err.msg);
    resample_destroy(r);
    return dst;
}

typedef struct rcase {
    uint32_t sw, sh;
    double x0, y0, x1, y1;
    uint32_t ow, oh;
} rcase;

static const rcase cases[] = {
    {37, 29, 0, 0, 37, 29, 37, 29},         /* identity */
    {37, 29, 0, 0, 37, 29, 17, 11},         /* downscale */
    {37, 29, 0, 0, 37, 29, 71, 53},         /* upscale */
    {37, 29, 3.25, 2.5, 30.75, 21.125, 13, 9}, /* fractional box, down */
    {37, 29, 5.5, 7.3, 12.9, 11.1, 23, 19},    /* fractional box, up */
    {37, 29, 0, 0, 37, 29, 1, 1},           /* 1-pixel output */
    {37, 29, 0, 0, 37, 29, 1, 29},          /* horizontal only */
    {37, 29, 0, 0, 37, 29, 37, 7},          /* vertical only */
    {37, 29, 4, 3, 21, 20, 17, 17},         /* integer crop, copy */
    {37, 29, 4, 3, 21, 20, 9, 17},          /* integer crop, h only */
    {37, 29, 0.5, 0.5, 36.5, 28.5, 36, 28}, /* half-pixel shift, scale 1 */
    {1, 1, 0, 0, 1, 1, 5, 3},               /* 1-pixel source */
    {300, 7, 1.5, 0, 299, 7, 3, 2},         /* large horizontal downscale */
    {5, 211, 0, 10.5, 5, 200.25, 4, 3},     /* large vertical downscale */
};

static void check_vs_ref(const uint8_t *src, const rcase *k, int c,
                         resample_filter f, int flags)
{
    uint8_t *got = run_ours(src, k->sw, k->sh, c, f, k->x0, k->y0, k->x1,
                            k->y1, k->ow, k->oh, flags);
    double *want = ref_resample(src, k->sw, k->sh, c, k->x0, k->y0, k->x1,
                                k->y1, k->ow, k->oh, f, flags);
    size_t n = (size_t)k->ow * k->oh * c;
    double sum = 0, mx = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs(got[i] - floor(want[i] + 0.5));
        sum += d;
        if (d > mx) mx = d;
    }
    if (sum / n > 0.5 || mx > 1)
        fail_msg("%ux%u box (%g,%g)-(%g,%g) to %ux%u c=%d f=%d flags=%d: "
                 "mean abs diff %.3f (<= 0.5), max %.3f (<= 1)",
                 k->sw, k->sh, k->x0, k->y0, k->x1, k->y1, k->ow, k->oh, c,
                 (int)f, flags, sum / n, mx);
    free(got);
    free(want);
}

/* ---- tests --------------------------------------------------------------- */

static void test_vs_float_reference(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        for (int c = 1; c <= 4; c++) {
            uint8_t *src = random_image(cases[i].sw, cases[i].sh, c);
            for (int f = 0; f < 2; f++)
                for (int flags = 0; flags < 4; flags++)
                    check_vs_ref(src, &cases[i], c, (resample_filter)f, flags);
            free(src);
        }
}

static void test_identity_is_copy(void **state)
{
    (void)state;
    for (int c = 1; c <= 4; c++) {
        uint8_t *src = random_image(41, 23, c);
        for (int f = 0; f < 2; f++) {
            uint8_t *got = run_ours(src, 41, 23, c, (resample_filter)f, 0, 0,
                                    41, 23, 41, 23, 0);
            assert_memory_equal(got, src, (size_t)41 * 23 * c);
            free(got);
            /* an integer sub-box of the output's size: the crop itself */
            got = run_ours(src, 41, 23, c, (resample_filter)f, 5, 4, 25, 21,
                           20, 17, 0);
            for (uint32_t y = 0; y < 17; y++)
                assert_memory_equal(got + (size_t)y * 20 * c,
                                    src + ((size_t)(y + 4) * 41 + 5) * c,
                                    (size_t)20 * c);
            free(got);
        }
        free(src);
    }
}

static void test_flip_mirrors(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        for (int c = 1; c <= 4; c += 1) {
            const rcase *k = &cases[i];
            uint8_t *src = random_image(k->sw, k->sh, c);
            for (int f = 0; f < 2; f++) {
                uint8_t *a = run_ours(src, k->sw, k->sh, c, (resample_filter)f,
                                      k->x0, k->y0, k->x1, k->y1, k->ow, k->oh,
                                      0);
                uint8_t *b = run_ours(src, k->sw, k->sh, c, (resample_filter)f,
                                      k->x0, k->y0, k->x1, k->y1, k->ow, k->oh,
                                      RESAMPLE_FLIP);
                for (uint32_t y = 0; y < k->oh; y++)
                    for (uint32_t x = 0; x < k->ow; x++)
                        assert_memory_equal(
                            a + ((size_t)y * k->ow + x) * c,
                            b + ((size_t)y * k->ow + (k->ow - 1 - x)) * c,
                            (size_t)c);
                free(a);
                free(b);
            }
            free(src);
        }
}

/* One page per source row (stride 4096); the rows the vertical filter
 * does not need are PROT_NONE, so reading one of them crashes the test. */
static void test_reads_only_needed_rows(void **state)
{
    (void)state;
    const uint32_t sw = 300, sh = 220, c = 3, ow = 64, oh = 40;
    const size_t page = 4096;
    uint8_t *m = mmap(NULL, page * sh, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(m != MAP_FAILED);
    for (size_t i = 0; i < page * sh; i++) m[i] = (uint8_t)rnd();
    /* box rows 50.5 .. 170.5 to 40 rows: scale 3, bilinear support 3, so
     * output 0 (centre 52) reads from floor(52 - 3 + 0.5) = 49 and output
     * 39 (centre 169) up to floor(169 + 3 + 0.5) = 172, exclusive */
    double y0 = 50.5, y1 = 170.5;
    uint32_t lo = 49, hi = 172;
    assert_int_equal(mprotect(m, page * lo, PROT_NONE), 0);
    assert_int_equal(mprotect(m + page * hi, page * (sh - hi), PROT_NONE), 0);
    resample *r = NULL;
    st_error err = {0, ""};
    assert_int_equal(resample_create(sw, sh, ow, oh, c, &r, &err), 0);
    uint8_t *dst = malloc((size_t)ow * oh * c);
    for (int flags = 0; flags < 4; flags++)
        assert_int_equal(resample_run(r, RESAMPLE_BILINEAR, m, sw, sh, page,
                                      10, y0, 290, y1, dst, ow, oh, flags,
                                      &err),
                         0);
    /* RESAMPLE_CROP keeps to the box's rows [50, 171) even with support */
    assert_int_equal(mprotect(m, page * sh, PROT_READ), 0);
    assert_int_equal(mprotect(m, page * 50, PROT_NONE), 0);
    assert_int_equal(mprotect(m + page * 171, page * (sh - 171), PROT_NONE), 0);
    assert_int_equal(resample_run(r, RESAMPLE_BILINEAR, m, sw, sh, page, 10,
                                  y0, 290, y1, dst, ow, oh, RESAMPLE_CROP,
                                  &err),
                     0);
    free(dst);
    resample_destroy(r);
    munmap(m, page * sh);
}

/* resample_footprint: the region it names is all resample_run reads (the
 * rest scrambled gives the same bytes), and resample_run_at on that
 * region alone gives the same bytes too. */
static void test_footprint(void **state)
{
    (void)state;
    static const rcase more[] = {
        {320, 300, 0, 0, 320, 300, 224, 224},
        {500, 375, 17.3, 9.75, 431.6, 340.2, 224, 224},
        {500, 375, 37, 20, 437, 333, 224, 224},
        {120, 90, 10.5, 4.25, 70.5, 50.75, 224, 224},
        {1100, 760, 40, 30, 1040, 730, 224, 224},
    };
    const int c = 3;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0] + 5; i++) {
        const rcase *k = i < sizeof cases / sizeof cases[0]
                             ? &cases[i] : &more[i - sizeof cases / sizeof cases[0]];
        uint8_t *src = random_image(k->sw, k->sh, c);
        uint8_t *scr = malloc((size_t)k->sw * k->sh * c);
        for (int f = 0; f < 2; f++)
            for (int flags = 0; flags < 4; flags++) {
                uint32_t ix0, iy0, ix1, iy1;
                resample_footprint((resample_filter)f, k->sw, k->sh, k->x0,
                                   k->y0, k->x1, k->y1, k->ow, k->oh, flags,
                                   &ix0, &iy0, &ix1, &iy1);
                assert_true(ix0 == (uint32_t)floor(k->x0) || ix0 < k->x0);
                assert_true(iy0 == (uint32_t)floor(k->y0) || iy0 < k->y0);
                assert_true(ix1 >= k->x1 && iy1 >= k->y1);
                if (flags & RESAMPLE_CROP)
                    assert_true(ix0 == (uint32_t)floor(k->x0) &&
                                ix1 == (uint32_t)ceil(k->x1) &&
                                iy0 == (uint32_t)floor(k->y0) &&
                                iy1 == (uint32_t)ceil(k->y1));
                assert_true(ix1 <= k->sw && iy1 <= k->sh);
                for (uint32_t y = 0; y < k->sh; y++)
                    for (uint32_t x = 0; x < k->sw; x++)
                        for (int ch = 0; ch < c; ch++) {
                            size_t at = ((size_t)y * k->sw + x) * c + ch;
                            int in = x >= ix0 && x < ix1 && y >= iy0 && y < iy1;
                            scr[at] = in ? src[at] : (uint8_t)rnd();
                        }
                uint8_t *a = run_ours(src, k->sw, k->sh, c, (resample_filter)f,
                                      k->x0, k->y0, k->x1, k->y1, k->ow, k->oh,
                                      flags);
                uint8_t *b = run_ours(scr, k->sw, k->sh, c, (resample_filter)f,
                                      k->x0, k->y0, k->x1, k->y1, k->ow, k->oh,
                                      flags);
                assert_memory_equal(a, b, (size_t)k->ow * k->oh * c);
                /* resample_run_at on the region alone: the same bytes */
                uint32_t rw = ix1 - ix0, rh = iy1 - iy0;
                resample *r = NULL;
                st_error err = {0, ""};
                assert_int_equal(resample_create(rw, rh, k->ow, k->oh, c, &r,
                                                 &err), 0);
                int rc = resample_run_at(r, (resample_filter)f,
                                         src + ((size_t)iy0 * k->sw + ix0) * c,
                                         ix0, iy0, rw, rh, (size_t)k->sw * c,
                                         k->x0, k->y0, k->x1, k->y1, b, k->ow,
                                         k->oh, flags, &err);
                if (rc != 0) fail_msg("region run: %s", err.msg);
                assert_memory_equal(a, b, (size_t)k->ow * k->oh * c);
                resample_destroy(r);
                free(a);
                free(b);
            }
        free(scr);
        free(src);
    }
}

static void test_bad_arguments(void **state)
{
    (void)state;
    resample *r = NULL;
    st_error err = {0, ""};
    assert_int_equal(resample_create(10, 10, 8, 8, 0, &r, &err), ST_EINVAL);
    assert_non_null(strstr(err.msg, "0 channels"));
    assert_null(r);
    st_clearerr(&err);
    assert_int_equal(resample_create(10, 10, 8, 8, 5, &r, &err), ST_EINVAL);
    st_clearerr(&err);
    assert_int_equal(resample_create(0, 10, 8, 8, 3, &r, &err), ST_EINVAL);
    st_clearerr(&err);
    assert_int_equal(resample_create(10, 10, 8, 8, 3, &r, &err), 0);
    uint8_t src[20 * 20 * 3] = {0}, dst[8 * 8 * 3];
    struct {
        double x0, y0, x1, y1;
        uint32_t ow, oh;
        const char *word;
    } bad[] = {
        {-1, 0, 5, 5, 4, 4, "inside"},   {0, 0, 21, 5, 4, 4, "inside"},
        {5, 0, 5, 5, 4, 4, "inside"},    {0, 3, 5, 2, 4, 4, "inside"},
        {0, 0, 11, 5, 4, 4, "limit"},    {0, 0, 5, 10.5, 4, 4, "limit"},
        {0, 0, 5, 5, 9, 4, "limit"},     {0, 0, 5, 5, 0, 4, "expected"},
        {0, 0, NAN, 5, 4, 4, "inside"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        st_clearerr(&err);
        assert_int_equal(resample_run(r, RESAMPLE_BILINEAR, src, 20, 20, 60,
                                      bad[i].x0, bad[i].y0, bad[i].x1,
                                      bad[i].y1, dst, bad[i].ow, bad[i].oh, 0,
                                      &err),
                         ST_EINVAL);
        if (strstr(err.msg, bad[i].word) == NULL)
            fail_msg("case %zu: '%s' lacks '%s'", i, err.msg, bad[i].word);
    }
    st_clearerr(&err);
    assert_int_equal(resample_run(r, (resample_filter)7, src, 20, 20, 60, 0,
                                  0, 5, 5, dst, 4, 4, 0, &err),
                     ST_EINVAL);
    st_clearerr(&err);
    assert_int_equal(resample_run(r, RESAMPLE_AREA, src, 20, 20, 59, 0, 0, 5,
                                  5, dst, 4, 4, 0, &err),
                     ST_EINVAL);
    /* resample_run_at: the box must lie inside the region */
    st_clearerr(&err);
    assert_int_equal(resample_run_at(r, RESAMPLE_BILINEAR, src, 5, 3, 10, 10,
                                     60, 4.5, 4, 9, 8, dst, 4, 4, 0, &err),
                     ST_EINVAL);
    assert_non_null(strstr(err.msg, "at (5, 3)"));
    st_clearerr(&err);
    assert_int_equal(resample_run_at(r, RESAMPLE_BILINEAR, src, 5, 3, 10, 10,
                                     60, 5, 3, 15.5, 8, dst, 4, 4, 0, &err),
                     ST_EINVAL);
    st_clearerr(&err);
    assert_int_equal(resample_run_at(r, RESAMPLE_BILINEAR, src, 5, 3, 10, 10,
                                     60, 5, 3, 15, 13, dst, 4, 4, 0, &err), 0);
    assert_true(resample_scratch_bytes(10, 10, 8, 8, 3) >=
                resample_scratch_bytes(10, 10, 8, 8, 1));
    resample_destroy(r);
    resample_destroy(NULL);
}

/* ---- PIL ----------------------------------------------------------------- */

typedef struct pcase {
    uint32_t sw, sh;
    double x0, y0, x1, y1;
    uint32_t ow, oh;
} pcase;

static const pcase pil_cases[] = {
    {320, 300, 0, 0, 320, 300, 224, 224},
    {1100, 760, 40, 30, 1040, 730, 224, 224}, /* 1000x700 box -> 224 */
    {1100, 760, 0, 0, 1100, 760, 97, 61},
    {500, 375, 17.3, 9.75, 431.6, 340.2, 224, 224},
    {120, 90, 10.5, 4.25, 70.5, 50.75, 224, 224}, /* upscale */
    {333, 257, 0, 0, 333, 257, 1, 1},
    {333, 257, 12, 7, 200, 250, 188, 31},
    {64, 48, 0.25, 0.75, 63.5, 47.5, 63, 47},
};

/* PIL's 8-bit path runs the same construction in the same 22-bit fixed
 * point, so the bytes agree but for rare coefficients one ulp apart: the
 * contract's 1 level is asserted here at 0.25 to catch regressions. */
static void pil_compare(const uint8_t *src, const pcase *k, int c,
                        resample_filter f, int flags, const char *ops,
                        const char *what)
{
    uint32_t pw = 0, ph = 0;
    uint8_t *want = pil_apply(src, k->sw, k->sh, c, ops, &pw, &ph);
    if (want == NULL) fail_msg("%s: PIL failed (see above)", what);
    assert_int_equal(pw, k->ow);
    assert_int_equal(ph, k->oh);
    uint8_t *got = run_ours(src, k->sw, k->sh, c, f, k->x0, k->y0, k->x1,
                            k->y1, k->ow, k->oh, flags);
    size_t n = (size_t)k->ow * k->oh * c, same = 0;
    double sum = 0;
    int mx = 0;
    for (size_t i = 0; i < n; i++) {
        int d = abs((int)got[i] - (int)want[i]);
        sum += d;
        same += d == 0;
        if (d > mx) mx = d;
    }
    if (getenv("ST_VERBOSE")) print_message("%s: mad %.4f max %d\n", what, sum / n, mx);
    if (sum / n > 0.25 || mx > 2)
        fail_msg("%s: mean abs diff %.4f (<= 0.25), max %d (<= 2), %zu of %zu "
                 "equal", what, sum / n, mx, same, n);
    free(got);
    free(want);
}

static void test_vs_pil(void **state)
{
    (void)state;
    char why[128];
    if (pil_python(why, sizeof why) == NULL) {
        print_message("skipped: %s\n", why);
        skip();
        return;
    }
    for (size_t i = 0; i < sizeof pil_cases / sizeof pil_cases[0]; i++) {
        const pcase *k = &pil_cases[i];
        for (int c = 1; c <= 3; c += 2)
            for (int smooth = 0; smooth < 2; smooth++) {
                uint8_t *src = malloc((size_t)k->sw * k->sh * c);
                if (smooth) pil_smooth_image(src, k->sw, k->sh, c, (uint32_t)i);
                else
                    for (size_t j = 0; j < (size_t)k->sw * k->sh * c; j++)
                        src[j] = (uint8_t)rnd();
                for (int f = 0; f < 2; f++) {
                    const char *fn = f ? "area" : "bilinear";
                    char ops[512], what[600];
                    snprintf(ops, sizeof ops,
                             "resize %u %u %s %.17g %.17g %.17g %.17g", k->ow,
                             k->oh, fn, k->x0, k->y0, k->x1, k->y1);
                    snprintf(what, sizeof what, "c=%d %s %ux%u: %s", c,
                             smooth ? "smooth" : "random", k->sw, k->sh, ops);
                    pil_compare(src, k, c, (resample_filter)f, 0, ops, what);
                }
                free(src);
            }
    }
}

/* RESAMPLE_CROP on an integer box is PIL's img.crop(box).resize(size). */
static void test_crop_flag_vs_pil(void **state)
{
    (void)state;
    char why[128];
    if (pil_python(why, sizeof why) == NULL) {
        print_message("skipped: %s\n", why);
        skip();
        return;
    }
    static const pcase k[] = {
        {500, 375, 37, 20, 437, 333, 224, 224},
        {500, 375, 0, 0, 131, 97, 224, 224},
        {375, 500, 3, 101, 370, 360, 160, 160},
    };
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++)
        for (int f = 0; f < 2; f++) {
            int c = 3;
            uint8_t *src = malloc((size_t)k[i].sw * k[i].sh * c);
            pil_smooth_image(src, k[i].sw, k[i].sh, c, 7 + (uint32_t)i);
            char ops[512], what[600];
            int w = (int)(k[i].x1 - k[i].x0), h = (int)(k[i].y1 - k[i].y0);
            snprintf(ops, sizeof ops, "crop %d %d %d %d resize %u %u %s 0 0 %d %d",
                     (int)k[i].x0, (int)k[i].y0, (int)k[i].x1, (int)k[i].y1,
                     k[i].ow, k[i].oh, f ? "area" : "bilinear", w, h);
            snprintf(what, sizeof what, "crop then resize: %s", ops);
            pil_compare(src, &k[i], c, (resample_filter)f, RESAMPLE_CROP, ops,
                        what);
            free(src);
        }
}

/* ---- threads ------------------------------------------------------------- */

typedef struct tjob {
    const uint8_t *src;
    uint8_t *dst;
    int rc;
} tjob;

static void *thread_main(void *arg)
{
    tjob *j = arg;
    resample *r = NULL;
    st_error err = {0, ""};
    j->rc = resample_create(400, 300, 224, 224, 3, &r, &err);
    for (int rep = 0; rep < 20 && j->rc == 0; rep++)
        j->rc = resample_run(r, RESAMPLE_BILINEAR, j->src, 400, 300, 1200,
                             13.5, 7.25, 390.5, 299, j->dst, 224, 224,
                             rep & 1, &err);
    resample_destroy(r);
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    uint8_t *src = random_image(400, 300, 3);
    uint8_t *want = run_ours(src, 400, 300, 3, RESAMPLE_BILINEAR, 13.5, 7.25,
                             390.5, 299, 224, 224, RESAMPLE_FLIP);
    pthread_t th[4];
    tjob jobs[4];
    for (int i = 0; i < 4; i++) {
        jobs[i].src = src;
        jobs[i].dst = malloc(224 * 224 * 3);
        assert_int_equal(pthread_create(&th[i], NULL, thread_main, &jobs[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        assert_int_equal(jobs[i].rc, 0);
        assert_memory_equal(jobs[i].dst, want, 224 * 224 * 3);
        free(jobs[i].dst);
    }
    free(want);
    free(src);
}

/* ---- the SIMD kernels against the scalar path ---------------------------- */

/* A context with ST_RESAMPLE_ISA=isa (the variable restored after). */
static resample *create_isa(const char *isa, uint32_t bw, uint32_t bh,
                            uint32_t ow, uint32_t oh, int c)
{
    const char *old = getenv("ST_RESAMPLE_ISA");
    char keep[32] = "";
    if (old) snprintf(keep, sizeof keep, "%s", old);
    setenv("ST_RESAMPLE_ISA", isa, 1);
    resample *r = NULL;
    st_error err = {0, ""};
    int rc = resample_create(bw, bh, ow, oh, c, &r, &err);
    if (old) setenv("ST_RESAMPLE_ISA", keep, 1);
    else unsetenv("ST_RESAMPLE_ISA");
    if (rc != 0) fail_msg("%s", err.msg);
    assert_string_equal(resample_isa(r), isa);
    return r;
}

/* One axis of a random box inside [0, n): fractional, integer-aligned,
 * under a pixel, or the whole axis. */
static void random_span(uint32_t n, double *b0, double *b1)
{
    double u = (rnd() % 10000) / 10000.0, v = (rnd() % 10000) / 10000.0;
    switch (rnd() % 4) {
    case 0:
        *b0 = u * n * 0.9;
        *b1 = *b0 + (n - *b0) * (0.02 + 0.98 * v);
        break;
    case 1: {
        uint32_t a = rnd() % n;
        *b0 = a;
        *b1 = a + 1 + rnd() % (n - a);
        break;
    }
    case 2:
        *b0 = u * (n - 0.01);
        *b1 = *b0 + 0.01 + v * (n - *b0 - 0.01) * 0.05;
        break;
    default:
        *b0 = 0;
        *b1 = n;
    }
    if (*b1 > n) *b1 = n;
}

/* An output side: random, or the box's width when it is a whole number
 * (an axis that is copied). */
static uint32_t random_out(double b0, double b1, uint32_t max)
{
    double len = b1 - b0;
    if (rnd() % 4 == 0 && len == floor(len) && len <= max) return (uint32_t)len;
    return 1 + rnd() % max;
}

/* Random images, boxes, sizes, filters and flags through `isa` and the
 * scalar path, byte for byte (rows padded past sw * c half the time). */
static void compare_isa(const char *isa, int c, int cases)
{
    const uint32_t mw = 600, mh = 400, mo = 256;
    resample *ref = create_isa("scalar", mw, mh, mo, mo, c);
    resample *sim = create_isa(isa, mw, mh, mo, mo, c);
    uint8_t *a = malloc((size_t)mo * mo * c), *b = malloc((size_t)mo * mo * c);
    st_error err = {0, ""};
    for (int i = 0; i < cases; i++) {
        uint32_t sw = 1 + rnd() % mw, sh = 1 + rnd() % mh;
        size_t stride = (size_t)sw * c + (rnd() % 2 ? rnd() % 40 : 0);
        /* exactly sh rows of stride bytes: ASan sees any overread */
        uint8_t *src = random_image((uint32_t)stride, sh, 1);
        double x0, y0, x1, y1;
        random_span(sw, &x0, &x1);
        random_span(sh, &y0, &y1);
        uint32_t ow = random_out(x0, x1, mo), oh = random_out(y0, y1, mo);
        resample_filter f = (resample_filter)(rnd() % 2);
        int fl = (int)(rnd() % 4);
        int ra = resample_run(ref, f, src, sw, sh, stride, x0, y0, x1, y1, a,
                              ow, oh, fl, &err);
        int rb = resample_run(sim, f, src, sw, sh, stride, x0, y0, x1, y1, b,
                              ow, oh, fl, &err);
        assert_int_equal(ra, rb);
        if (ra == 0 && memcmp(a, b, (size_t)ow * oh * c) != 0)
            fail_msg("%s differs from scalar: %ux%u c=%d box (%.4f, %.4f)-"
                     "(%.4f, %.4f) to %ux%u filter %d flags %d", isa, sw, sh,
                     c, x0, y0, x1, y1, ow, oh, (int)f, fl);
        free(src);
    }
    free(a);
    free(b);
    resample_destroy(ref);
    resample_destroy(sim);
}

static void run_isa_cases(const char *isa, int have)
{
    if (!have) {
        printf("skipped: this CPU lacks %s\n", isa);
        skip();
    }
    for (int c = 1; c <= 4; c++) compare_isa(isa, c, 400);
}

static void test_avx2_bit_identical(void **state)
{
    (void)state;
    run_isa_cases("avx2", __builtin_cpu_supports("avx2"));
}

static int have_avx512(void)
{
    return __builtin_cpu_supports("avx2") &&
           __builtin_cpu_supports("avx512f") &&
           __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl");
}

static void test_avx512_bit_identical(void **state)
{
    (void)state;
    run_isa_cases("avx512", have_avx512());
}

static void test_avx512vnni_bit_identical(void **state)
{
    (void)state;
    run_isa_cases("avx512vnni",
                  have_avx512() && __builtin_cpu_supports("avx512vnni"));
}

/* ST_RESAMPLE_ISA names one of three kernels; anything else is refused. */
static void test_isa_bad_name(void **state)
{
    (void)state;
    const char *old = getenv("ST_RESAMPLE_ISA");
    char keep[32] = "";
    if (old) snprintf(keep, sizeof keep, "%s", old);
    setenv("ST_RESAMPLE_ISA", "neon", 1);
    resample *r = NULL;
    st_error err = {0, ""};
    assert_int_equal(resample_create(10, 10, 8, 8, 3, &r, &err), ST_EINVAL);
    assert_null(r);
    assert_non_null(strstr(err.msg, "ST_RESAMPLE_ISA=neon"));
    if (old) setenv("ST_RESAMPLE_ISA", keep, 1);
    else unsetenv("ST_RESAMPLE_ISA");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vs_float_reference),
        cmocka_unit_test(test_identity_is_copy),
        cmocka_unit_test(test_flip_mirrors),
        cmocka_unit_test(test_reads_only_needed_rows),
        cmocka_unit_test(test_footprint),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_vs_pil),
        cmocka_unit_test(test_crop_flag_vs_pil),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_avx2_bit_identical),
        cmocka_unit_test(test_avx512_bit_identical),
        cmocka_unit_test(test_avx512vnni_bit_identical),
        cmocka_unit_test(test_isa_bad_name),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    pil_cleanup();
    return rc;
}
