/* tests/test_transform.c — loader/transform: parse / format round trips and
 * bad input, determinism, RRC exactly as torchvision's get_params written
 * plainly here (fed the same per-sample numbers) and statistically (the
 * same algorithm on an independent generator, over 20,000 draws per source
 * shape, the fallback included), boxes inside the image, center-crop
 * geometry, pad-crop bounds, the flip rate, transform_dct_scale, and, with
 * python3-pil, torchvision's PIL pipeline (resize then crop; crop then
 * resize) against resample_run on the box.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "datasets/resample.h"
#include "loader/transform.h"
#include "pil_fixture.h"

#define NDRAW 20000

static transform_spec parse_ok(const char *text)
{
    transform_spec t;
    st_error err = {0, ""};
    int rc = transform_parse(text, &t, &err);
    if (rc != 0) fail_msg("'%s': %s", text, err.msg);
    return t;
}

static int spec_equal(const transform_spec *a, const transform_spec *b)
{
    return a->kind == b->kind && a->out_w == b->out_w &&
           a->out_h == b->out_h && a->scale_min == b->scale_min &&
           a->scale_max == b->scale_max && a->ratio_min == b->ratio_min &&
           a->ratio_max == b->ratio_max && a->attempts == b->attempts &&
           a->crop_frac == b->crop_frac && a->pad == b->pad &&
           a->flip == b->flip && a->interp == b->interp;
}

/* ---- text form ------------------------------------------------------------- */

static void test_parse_and_format(void **state)
{
    (void)state;
    static const struct {
        const char *in, *canon;
    } ok[] = {
        {"random-resized-crop 224", "random-resized-crop 224"},
        {"random-resized-crop 224 flip", "random-resized-crop 224 flip"},
        {"  random-resized-crop\t160  interp=area flip scale=0.35,1 ",
         "random-resized-crop 160 scale=0.35,1 flip interp=area"},
        {"random-resized-crop 64 ratio=0.5,2 attempts=3 scale=0.08,1",
         "random-resized-crop 64 ratio=0.5,2 attempts=3"},
        {"random-resized-crop 32 ratio=0.75,1.3333333",
         "random-resized-crop 32 ratio=0.75,1.3333333"},
        {"random-resized-crop 32 attempts=0", "random-resized-crop 32 attempts=0"},
        {"center-crop 224", "center-crop 224"},
        {"center-crop 224 crop-frac=0.875 interp=bilinear", "center-crop 224"},
        {"center-crop 288 crop-frac=1 flip", "center-crop 288 crop-frac=1 flip"},
        {"center-crop 224 crop-frac=0.95", "center-crop 224 crop-frac=0.95"},
        {"resize 32x48", "resize 32x48"},
        {"resize 1x4096 interp=area flip", "resize 1x4096 flip interp=area"},
        {"pad-crop 4 flip", "pad-crop 4 flip"},
        {"pad-crop 0", "pad-crop 0"},
        {"none", "none"},
        {"none flip", "none flip"},
    };
    char buf[256];
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        transform_spec t = parse_ok(ok[i].in);
        transform_format(&t, buf, sizeof buf);
        if (strcmp(buf, ok[i].canon) != 0)
            fail_msg("'%s' formats as '%s', expected '%s'", ok[i].in, buf,
                     ok[i].canon);
        transform_spec u = parse_ok(buf);
        assert_true(spec_equal(&t, &u));
    }
    transform_spec t = parse_ok("random-resized-crop 224");
    assert_int_equal(t.kind, TRANSFORM_RRC);
    assert_int_equal(t.out_w, 224);
    assert_int_equal(t.out_h, 224);
    assert_true(t.scale_min == 0.08 && t.scale_max == 1.0);
    assert_true(t.ratio_min == 0.75 && t.ratio_max == 4.0 / 3.0);
    assert_int_equal(t.attempts, 10);
    assert_int_equal(t.flip, 0);
    assert_int_equal(t.interp, RESAMPLE_BILINEAR);
    t = parse_ok("resize 32x48 interp=area");
    assert_int_equal(t.out_w, 32);
    assert_int_equal(t.out_h, 48);
    assert_int_equal(t.interp, RESAMPLE_AREA);
    t = parse_ok("pad-crop 4");
    assert_int_equal(t.kind, TRANSFORM_PAD_CROP);
    assert_int_equal(t.pad, 4);
    assert_int_equal(t.out_w, 0);
    /* any spec built in code round-trips too, odd doubles included */
    transform_spec_default(&t, TRANSFORM_RRC);
    t.out_w = t.out_h = 97;
    t.scale_min = 0.1 + 0.2;
    t.ratio_max = M_PI;
    t.flip = 1;
    transform_format(&t, buf, sizeof buf);
    transform_spec u = parse_ok(buf);
    assert_true(spec_equal(&t, &u));
    /* truncation keeps a terminated prefix */
    transform_format(&t, buf, 8);
    assert_string_equal(buf, "random-");
}

static void test_parse_bad(void **state)
{
    (void)state;
    static const struct {
        const char *in, *want;
    } bad[] = {
        {"random-resized-crop 0",
         "transform 'random-resized-crop 0': size 0: expected 1..4096"},
        {"random-resized-crop 4097", "size 4097: expected 1..4096"},
        {"random-resized-crop -3", "size -3: expected 1..4096"},
        {"random-resized-crop 22a", "size 22a: expected"},
        {"random-resized-crop", "missing the size: expected random-resized-crop S"},
        {"", "transform '': empty: expected random-resized-crop S"},
        {"   ", "empty"},
        {"crop 224", "'crop': expected random-resized-crop, center-crop"},
        {"center-crop 224 scale=0.5,1", "'scale=0.5,1': expected center-crop S"},
        {"random-resized-crop 224 scale=0.5", "'scale=0.5': expected scale=A,B"},
        {"random-resized-crop 224 scale=0.9,0.1", "with 0 < A <= B <= 1"},
        {"random-resized-crop 224 scale=0,1", "with 0 < A <= B <= 1"},
        {"random-resized-crop 224 scale=0.5,1.5", "with 0 < A <= B <= 1"},
        {"random-resized-crop 224 ratio=0,1", "'ratio=0,1': expected ratio=A,B"},
        {"random-resized-crop 224 ratio=2,1", "expected ratio=A,B"},
        {"random-resized-crop 224 ratio=nan,1", "expected ratio=A,B"},
        {"random-resized-crop 224 attempts=x", "'attempts=x': expected attempts=N"},
        {"random-resized-crop 224 attempts=1001", "attempts=N with N in 0..1000"},
        {"random-resized-crop 224 flip flip", "'flip': flip given twice"},
        {"random-resized-crop 224 interp=area interp=area", "interp given twice"},
        {"random-resized-crop 224 interp=nearest", "'interp=nearest': expected interp=bilinear"},
        {"random-resized-crop 224 flipped", "'flipped': expected random-resized-crop S"},
        {"center-crop 224 crop-frac=1.5", "'crop-frac=1.5': expected crop-frac=F"},
        {"center-crop 224 crop-frac=0", "expected crop-frac=F"},
        {"resize 32", "size 32: expected WxH, each 1..4096"},
        {"resize 0x32", "size 0x32: expected WxH"},
        {"resize 32x", "size 32x: expected WxH"},
        {"resize x32", "size x32: expected WxH"},
        {"pad-crop -1", "padding -1: expected 0..4096"},
        {"pad-crop 4 interp=area", "'interp=area': expected pad-crop P [flip]"},
        {"none 3", "'3': expected none [flip]"},
        {"none interp=area", "'interp=area': expected none [flip]"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        transform_spec t;
        memset(&t, 0x5a, sizeof t);
        transform_spec before = t;
        st_error err = {0, ""};
        int rc = transform_parse(bad[i].in, &t, &err);
        if (rc != ST_EINVAL) fail_msg("'%s' parsed (rc %d)", bad[i].in, rc);
        if (strstr(err.msg, bad[i].want) == NULL)
            fail_msg("'%s': message '%s' lacks '%s'", bad[i].in, err.msg,
                     bad[i].want);
        char quoted[300];
        snprintf(quoted, sizeof quoted, "transform '%s': ", bad[i].in);
        if (strncmp(err.msg, quoted, strlen(quoted)) != 0)
            fail_msg("'%s': message '%s' does not quote the text", bad[i].in,
                     err.msg);
        assert_memory_equal(&t, &before, sizeof t); /* untouched on error */
    }
    char longtext[700];
    memset(longtext, 'a', sizeof longtext - 1);
    longtext[sizeof longtext - 1] = '\0';
    transform_spec t;
    st_error err = {0, ""};
    assert_int_equal(transform_parse(longtext, &t, &err), ST_EINVAL);
    assert_non_null(strstr(err.msg, "longer than"));
}

/* ---- the plain torchvision algorithm ------------------------------------- */

typedef double (*uniform_fn)(void *ctx);

typedef struct sample_stream { /* the module's numbers, k = 1, 2, ... */
    uint64_t seed, epoch, id;
    uint32_t k;
} sample_stream;

static double stream_next(void *ctx)
{
    sample_stream *s = ctx;
    return transform_uniform(s->seed, s->epoch, s->id, s->k++);
}

typedef struct own_rng { /* an independent generator: xorshift64* */
    uint64_t s;
} own_rng;

static double own_next(void *ctx)
{
    own_rng *r = ctx;
    r->s ^= r->s >> 12;
    r->s ^= r->s << 25;
    r->s ^= r->s >> 27;
    return (double)((r->s * 2685821657736338717ull) >> 11) * 0x1.0p-53;
}

/* RandomResizedCrop.get_params, line by line; returns 1 on the fallback. */
static int plain_rrc(double scale0, double scale1, double ratio0,
                     double ratio1, int attempts, int width, int height,
                     uniform_fn next, void *ctx, int *i, int *j, int *h,
                     int *w)
{
    double area = (double)height * width;
    double log0 = log(ratio0), log1 = log(ratio1);
    for (int a = 0; a < attempts; a++) {
        double target_area = area * (scale0 + (scale1 - scale0) * next(ctx));
        double aspect = exp(log0 + (log1 - log0) * next(ctx));
        *w = (int)nearbyint(sqrt(target_area * aspect));
        *h = (int)nearbyint(sqrt(target_area / aspect));
        if (0 < *w && *w <= width && 0 < *h && *h <= height) {
            *i = (int)floor(next(ctx) * (height - *h + 1));
            *j = (int)floor(next(ctx) * (width - *w + 1));
            return 0;
        }
    }
    double in_ratio = (double)width / height;
    if (in_ratio < ratio0) {
        *w = width;
        *h = (int)nearbyint(*w / ratio0);
    } else if (in_ratio > ratio1) {
        *h = height;
        *w = (int)nearbyint(*h * ratio1);
    } else {
        *w = width;
        *h = height;
    }
    *i = (height - *h) / 2;
    *j = (width - *w) / 2;
    return 1;
}

static void check_inside(const transform_box *b, uint32_t W, uint32_t H)
{
    if (!(b->x0 >= 0 && b->y0 >= 0 && b->x1 <= W && b->y1 <= H &&
          b->x1 - b->x0 >= 1 && b->y1 - b->y0 >= 1))
        fail_msg("box (%g, %g)-(%g, %g) not inside %ux%u", b->x0, b->y0,
                 b->x1, b->y1, W, H);
}

static const uint32_t shapes[][2] = {
    {500, 375}, {375, 500}, {2000, 300}, {300, 2000}, {32, 32}, {1, 1},
    {7, 300},
};

static void test_rrc_same_numbers(void **state)
{
    (void)state;
    const char *specs[] = {"random-resized-crop 224",
                           "random-resized-crop 160 scale=0.35,1 flip",
                           "random-resized-crop 64 ratio=0.5,2 attempts=3",
                           "random-resized-crop 64 scale=1,1 ratio=1,1",
                           "random-resized-crop 64 attempts=0"};
    for (size_t s = 0; s < sizeof specs / sizeof specs[0]; s++) {
        transform_spec t = parse_ok(specs[s]);
        for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
            uint32_t W = shapes[k][0], H = shapes[k][1];
            for (uint64_t id = 0; id < 3000; id++) {
                transform_box b;
                transform_params(&t, 42, 3, id, W, H, &b);
                sample_stream ss = {42, 3, id, 1};
                int i, j, h, w;
                plain_rrc(t.scale_min, t.scale_max, t.ratio_min, t.ratio_max,
                          t.attempts, (int)W, (int)H, stream_next, &ss, &i,
                          &j, &h, &w);
                if (b.x0 != j || b.y0 != i || b.x1 != j + w || b.y1 != i + h)
                    fail_msg("%s %ux%u id %llu: box (%g,%g)-(%g,%g), plain "
                             "(%d,%d)-(%d,%d)", specs[s], W, H,
                             (unsigned long long)id, b.x0, b.y0, b.x1, b.y1,
                             j, i, j + w, i + h);
                check_inside(&b, W, H);
                assert_int_equal(b.crop_first, 1);
            }
        }
    }
}

/* ---- statistics ------------------------------------------------------------ */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Two-sample Kolmogorov-Smirnov statistic of sorted a and b (n each). */
static double ks(const double *a, const double *b, int n)
{
    int i = 0, j = 0;
    double d = 0;
    while (i < n && j < n) {
        double v = a[i] < b[j] ? a[i] : b[j];
        while (i < n && a[i] <= v) i++;
        while (j < n && b[j] <= v) j++;
        double g = fabs((double)i / n - (double)j / n);
        if (g > d) d = g;
    }
    return d;
}

static double mean_of(const double *v, int n, double *var)
{
    double m = 0, q = 0;
    for (int i = 0; i < n; i++) m += v[i];
    m /= n;
    for (int i = 0; i < n; i++) q += (v[i] - m) * (v[i] - m);
    *var = q / (n - 1);
    return m;
}

/* Compares the two samples' means (5 standard errors) and distributions
 * (KS at alpha about 1e-6: D <= 2.7 * sqrt(2 / n)), and prints quantiles. */
static void compare(const char *what, double *a, double *b, int n)
{
    double va, vb;
    double ma = mean_of(a, n, &va), mb = mean_of(b, n, &vb);
    double se = sqrt(va / n + vb / n);
    qsort(a, (size_t)n, sizeof *a, cmp_double);
    qsort(b, (size_t)n, sizeof *b, cmp_double);
    double d = ks(a, b, n), dmax = 2.7 * sqrt(2.0 / n);
    if (fabs(ma - mb) > 5 * se + 1e-12 || d > dmax)
        fail_msg("%s: means %.5f vs %.5f (tolerance %.5f), quartiles %.4f "
                 "%.4f %.4f vs %.4f %.4f %.4f, KS %.4f (<= %.4f)", what, ma,
                 mb, 5 * se, a[n / 4], a[n / 2], a[3 * n / 4], b[n / 4],
                 b[n / 2], b[3 * n / 4], d, dmax);
    for (int q = 1; q < 10; q++) { /* deciles agree to 5 binomial sigmas */
        double p = q / 10.0, band = 5 * sqrt(2 * p * (1 - p) / n) + 1.0 / n;
        int lo = (int)((p - band) * n), hi = (int)((p + band) * n);
        if (lo < 0) lo = 0;
        if (hi > n - 1) hi = n - 1;
        if (a[(int)(p * n)] < b[lo] || a[(int)(p * n)] > b[hi])
            fail_msg("%s: decile %d %.5f outside the other's [%.5f, %.5f]",
                     what, q, a[(int)(p * n)], b[lo], b[hi]);
    }
}

static void test_rrc_distribution(void **state)
{
    (void)state;
    static const uint32_t dshapes[][2] = {{500, 375}, {375, 500}, {2000, 300}};
    transform_spec t = parse_ok("random-resized-crop 224");
    double *area[2], *lar[2];
    for (int s = 0; s < 2; s++) {
        area[s] = malloc(sizeof(double) * NDRAW);
        lar[s] = malloc(sizeof(double) * NDRAW);
    }
    for (size_t k = 0; k < sizeof dshapes / sizeof dshapes[0]; k++) {
        int W = (int)dshapes[k][0], H = (int)dshapes[k][1];
        int fb_box[2] = {0, 0}, fb_plain = 0;
        int fi, fj, fh, fw; /* the fallback box */
        plain_rrc(0.08, 1, 0.75, 4.0 / 3.0, 0, W, H, own_next, NULL, &fi, &fj,
                  &fh, &fw);
        own_rng rng = {0x9e3779b97f4a7c15ull ^ (uint64_t)k};
        for (int n = 0; n < NDRAW; n++) {
            transform_box b;
            transform_params(&t, 7, 1, (uint64_t)n, (uint32_t)W, (uint32_t)H,
                             &b);
            double bw = b.x1 - b.x0, bh = b.y1 - b.y0;
            area[0][n] = bw * bh / ((double)W * H);
            lar[0][n] = log(bw / bh);
            fb_box[0] += b.x0 == fj && b.y0 == fi && bw == fw && bh == fh;
            int i, j, h, w;
            fb_plain += plain_rrc(0.08, 1, 0.75, 4.0 / 3.0, 10, W, H,
                                  own_next, &rng, &i, &j, &h, &w);
            area[1][n] = (double)w * h / ((double)W * H);
            lar[1][n] = log((double)w / h);
            fb_box[1] += j == fj && i == fi && w == fw && h == fh;
        }
        char what[96];
        snprintf(what, sizeof what, "%dx%d area fraction", W, H);
        compare(what, area[0], area[1], NDRAW);
        snprintf(what, sizeof what, "%dx%d log aspect", W, H);
        compare(what, lar[0], lar[1], NDRAW);
        /* the fallback's rate (boxes equal to the fallback box) */
        double p = (fb_box[0] + fb_box[1]) / (2.0 * NDRAW);
        double tol = 5 * sqrt(p * (1 - p) * 2.0 / NDRAW) + 2.0 / NDRAW;
        if (fabs((double)(fb_box[0] - fb_box[1])) / NDRAW > tol)
            fail_msg("%dx%d: fallback rate %.4f vs %.4f (tolerance %.4f)", W, H,
                     (double)fb_box[0] / NDRAW, (double)fb_box[1] / NDRAW, tol);
        if (W == 2000) /* 2000x300 falls back often: the test exercises it */
            assert_true(fb_plain > NDRAW / 10);
        print_message("%dx%d: area fraction median %.3f, fallback %.4f\n", W,
                      H, area[0][NDRAW / 2], (double)fb_box[0] / NDRAW);
    }
    for (int s = 0; s < 2; s++) {
        free(area[s]);
        free(lar[s]);
    }
}

/* ---- the other transforms -------------------------------------------------- */

static void test_determinism(void **state)
{
    (void)state;
    transform_spec t = parse_ok("random-resized-crop 224 flip");
    transform_box a, b;
    int diff_id = 0, diff_epoch = 0, diff_seed = 0;
    for (uint64_t id = 0; id < 1000; id++) {
        transform_params(&t, 5, 2, id, 640, 480, &a);
        transform_params(&t, 5, 2, id, 640, 480, &b);
        assert_memory_equal(&a, &b, sizeof a);
        transform_params(&t, 5, 2, id + 1, 640, 480, &b);
        diff_id += memcmp(&a, &b, sizeof a) != 0;
        transform_params(&t, 5, 3, id, 640, 480, &b);
        diff_epoch += memcmp(&a, &b, sizeof a) != 0;
        transform_params(&t, 6, 2, id, 640, 480, &b);
        diff_seed += memcmp(&a, &b, sizeof a) != 0;
    }
    assert_true(diff_id > 990);
    assert_true(diff_epoch > 990);
    assert_true(diff_seed > 990);
    /* the stream is a pure function of its inputs, and differs per k */
    assert_true(transform_uniform(1, 2, 3, 4) == transform_uniform(1, 2, 3, 4));
    assert_true(transform_uniform(1, 2, 3, 4) != transform_uniform(1, 2, 3, 5));
    assert_true(transform_uniform(1, 2, 3, 4) != transform_uniform(1, 2, 4, 4));
    assert_true(transform_uniform(1, 2, 3, 4) != transform_uniform(1, 3, 3, 4));
    assert_true(transform_uniform(1, 2, 3, 4) != transform_uniform(2, 2, 3, 4));
    /* swapping epoch and id does not give the same stream */
    assert_true(transform_uniform(0, 1, 2, 0) != transform_uniform(0, 2, 1, 0));
}

static void test_flip_rate(void **state)
{
    (void)state;
    const char *specs[] = {"random-resized-crop 224 flip", "center-crop 224 flip",
                           "resize 32x32 flip", "pad-crop 4 flip", "none flip"};
    for (size_t s = 0; s < sizeof specs / sizeof specs[0]; s++) {
        transform_spec t = parse_ok(specs[s]);
        transform_spec nf = t;
        nf.flip = 0;
        int flips = 0, run = 0, longest = 0, prev = -1;
        for (uint64_t id = 0; id < NDRAW; id++) {
            transform_box b, c;
            transform_params(&t, 11, 0, id, 500, 375, &b);
            transform_params(&nf, 11, 0, id, 500, 375, &c);
            assert_int_equal(c.flip, 0);
            /* the flip has its own number: the box does not move */
            assert_true(b.x0 == c.x0 && b.y0 == c.y0 && b.x1 == c.x1 &&
                        b.y1 == c.y1);
            flips += b.flip;
            run = b.flip == prev ? run + 1 : 1;
            prev = b.flip;
            if (run > longest) longest = run;
        }
        double rate = (double)flips / NDRAW, tol = 5 * sqrt(0.25 / NDRAW);
        if (fabs(rate - 0.5) > tol)
            fail_msg("%s: flip rate %.4f, expected 0.5 +- %.4f", specs[s], rate,
                     tol);
        assert_true(longest < 30); /* P(run >= 30 in 20000) ~ 2e-5 */
    }
}

static void test_center_geometry(void **state)
{
    (void)state;
    /* (W, H, S, crop_frac): resized size and crop origin worked by hand
     * from torchvision's formulas */
    static const struct {
        uint32_t W, H, S;
        double cf;
        double nw, nh, left, top;
    } c[] = {
        /* 256 short side; 256 * 500 / 375 = 341.33 -> 341; (341 - 224) / 2
         * = 58.5 rounds to even 58; (256 - 224) / 2 = 16 */
        {500, 375, 224, 0.875, 341, 256, 58, 16},
        {375, 500, 224, 0.875, 256, 341, 16, 58},
        {224, 224, 224, 0.875, 256, 256, 16, 16},
        {256, 256, 224, 0.875, 256, 256, 16, 16},
        /* 1.0: the short side to S; (1120 - 224) / 2 = 448 */
        {1000, 200, 224, 1.0, 1120, 224, 448, 0},
        /* int(160 / 0.95) = 168; 168 * 333 / 250 = 223.78 -> 223; (223 -
         * 160) / 2 = 31.5 rounds to even 32; (168 - 160) / 2 = 4 */
        {250, 333, 160, 0.95, 168, 223, 4, 32},
        /* (227 - 224) / 2 = 1.5 rounds to 2 */
        {227, 100, 224, 1.0, 508, 224, 142, 0},
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        transform_spec t;
        transform_spec_default(&t, TRANSFORM_CENTER);
        t.out_w = t.out_h = c[i].S;
        t.crop_frac = c[i].cf;
        transform_box b;
        transform_params(&t, 1, 2, 3, c[i].W, c[i].H, &b);
        double sx = c[i].W / c[i].nw, sy = c[i].H / c[i].nh;
        double want[4] = {c[i].left * sx, c[i].top * sy,
                          (c[i].left + c[i].S) * sx, (c[i].top + c[i].S) * sy};
        double got[4] = {b.x0, b.y0, b.x1, b.y1};
        for (int k = 0; k < 4; k++)
            if (fabs(got[k] - want[k]) > 1e-9)
                fail_msg("%ux%u S=%u cf=%g: box (%g,%g)-(%g,%g), expected "
                         "(%g,%g)-(%g,%g)", c[i].W, c[i].H, c[i].S, c[i].cf,
                         got[0], got[1], got[2], got[3], want[0], want[1],
                         want[2], want[3]);
        check_inside(&b, c[i].W, c[i].H);
        assert_int_equal(b.flip, 0);
        assert_int_equal(b.crop_first, 0);
        uint32_t ow, oh;
        transform_out_size(&t, c[i].W, c[i].H, &ow, &oh);
        assert_int_equal(ow, c[i].S);
        assert_int_equal(oh, c[i].S);
    }
}

static void test_pad_crop_and_whole(void **state)
{
    (void)state;
    transform_spec t = parse_ok("pad-crop 4");
    int count[9][9];
    memset(count, 0, sizeof count);
    for (uint64_t id = 0; id < NDRAW; id++) {
        transform_box b;
        transform_params(&t, 3, 9, id, 32, 28, &b);
        assert_true(b.x0 == floor(b.x0) && b.y0 == floor(b.y0));
        assert_true(b.x0 >= 0 && b.x0 <= 8 && b.y0 >= 0 && b.y0 <= 8);
        assert_true(b.x1 - b.x0 == 32 && b.y1 - b.y0 == 28);
        count[(int)b.y0][(int)b.x0]++;
    }
    double e = NDRAW / 81.0, tol = 5 * sqrt(e);
    for (int y = 0; y < 9; y++)
        for (int x = 0; x < 9; x++)
            if (fabs(count[y][x] - e) > tol)
                fail_msg("pad-crop origin (%d, %d): %d draws, expected %.0f "
                         "+- %.0f", x, y, count[y][x], e, tol);
    uint32_t ow, oh;
    transform_out_size(&t, 32, 28, &ow, &oh);
    assert_int_equal(ow, 32);
    assert_int_equal(oh, 28);
    const char *whole[] = {"pad-crop 0", "none", "resize 64x32"};
    for (int i = 0; i < 3; i++) {
        t = parse_ok(whole[i]);
        transform_box b;
        transform_params(&t, 3, 9, 77, 50, 40, &b);
        assert_true(b.x0 == 0 && b.y0 == 0 && b.x1 == 50 && b.y1 == 40);
    }
    transform_out_size(&t, 50, 40, &ow, &oh);
    assert_int_equal(ow, 64);
    assert_int_equal(oh, 32);
}

static void test_dct_scale(void **state)
{
    (void)state;
    assert_int_equal(transform_dct_scale(2000, 1800, 224, 224), 8);
    assert_int_equal(transform_dct_scale(1792, 1792, 224, 224), 8);
    assert_int_equal(transform_dct_scale(1791.9, 1792, 224, 224), 4);
    assert_int_equal(transform_dct_scale(896, 5000, 224, 224), 4);
    assert_int_equal(transform_dct_scale(895, 5000, 224, 224), 2);
    assert_int_equal(transform_dct_scale(448, 448, 224, 224), 2);
    assert_int_equal(transform_dct_scale(447.5, 448, 224, 224), 1);
    assert_int_equal(transform_dct_scale(300, 300, 224, 224), 1);
    assert_int_equal(transform_dct_scale(100, 100, 224, 224), 1);
    assert_int_equal(transform_dct_scale(64, 2000, 16, 100), 4);
    assert_int_equal(transform_dct_scale(8, 8, 1, 1), 8);
}

/* ---- transform_apply ------------------------------------------------------- */

static void test_apply(void **state)
{
    (void)state;
    const int c = 3;
    static const struct {
        const char *spec;
        uint32_t W, H;
    } k[] = {{"pad-crop 4 flip", 32, 28}, {"pad-crop 40 flip", 8, 6},
             {"pad-crop 0 flip", 9, 5}, {"none flip", 13, 7}};
    for (size_t s = 0; s < sizeof k / sizeof k[0]; s++) {
        transform_spec t = parse_ok(k[s].spec);
        uint32_t W = k[s].W, H = k[s].H, P = t.pad;
        size_t stride = (size_t)W * c + 5; /* rows with a gap */
        uint8_t *src = malloc(stride * H), *dst = malloc((size_t)W * H * c);
        for (size_t i = 0; i < stride * H; i++) src[i] = (uint8_t)(i * 31 + 7);
        int flips = 0;
        for (uint64_t id = 0; id < 40; id++) {
            transform_box b;
            transform_params(&t, 1, 1, id, W, H, &b);
            st_error err = {0, ""};
            memset(dst, 0xa5, (size_t)W * H * c);
            assert_int_equal(transform_apply(&t, &b, NULL, c, src, W, H,
                                             stride, dst, &err), 0);
            flips += b.flip;
            for (uint32_t y = 0; y < H; y++)
                for (uint32_t x = 0; x < W; x++)
                    for (int ch = 0; ch < c; ch++) {
                        uint32_t xs = b.flip ? W - 1 - x : x;
                        int64_t py = (int64_t)y + (int64_t)b.y0 - P;
                        int64_t px = (int64_t)xs + (int64_t)b.x0 - P;
                        uint8_t want = 0;
                        if (py >= 0 && py < H && px >= 0 && px < W)
                            want = src[(size_t)py * stride + (size_t)px * c + ch];
                        if (dst[((size_t)y * W + x) * c + ch] != want)
                            fail_msg("%s id %llu: pixel (%u, %u, %d) = %d, "
                                     "expected %d", k[s].spec,
                                     (unsigned long long)id, x, y, ch,
                                     dst[((size_t)y * W + x) * c + ch], want);
                    }
        }
        assert_true(flips > 0 && flips < 40);
        free(src);
        free(dst);
    }
}

/* transform_apply on the resampling kinds: resample_run of the box with
 * the box's flags. */
static void test_apply_resampling(void **state)
{
    (void)state;
    const int c = 3;
    const char *rs[] = {"random-resized-crop 48 flip", "center-crop 40 flip",
                        "resize 30x20 interp=area flip"};
    uint32_t W = 90, H = 70;
    uint8_t *src = malloc((size_t)W * H * c);
    pil_smooth_image(src, W, H, c, 3);
    resample *r = NULL;
    st_error err = {0, ""};
    assert_int_equal(resample_create(W, H, 48, 48, c, &r, &err), 0);
    uint8_t *a = malloc(48 * 48 * c), *b2 = malloc(48 * 48 * c);
    for (int s = 0; s < 3; s++) {
        transform_spec t = parse_ok(rs[s]);
        for (uint64_t id = 0; id < 10; id++) {
            transform_box b;
            transform_params(&t, 2, 0, id, W, H, &b);
            assert_int_equal(transform_apply(&t, &b, r, c, src, W, H,
                                             (size_t)W * c, a, &err), 0);
            int flags = (b.flip ? RESAMPLE_FLIP : 0) |
                        (b.crop_first ? RESAMPLE_CROP : 0);
            if (b.crop_first) /* RRC's integer box: the crop as an image */
                assert_int_equal(
                    resample_run(r, t.interp,
                                 src + ((size_t)b.y0 * W + (size_t)b.x0) * c,
                                 (uint32_t)(b.x1 - b.x0),
                                 (uint32_t)(b.y1 - b.y0), (size_t)W * c, 0, 0,
                                 b.x1 - b.x0, b.y1 - b.y0, b2, t.out_w,
                                 t.out_h, flags, &err), 0);
            else
                assert_int_equal(resample_run(r, t.interp, src, W, H,
                                              (size_t)W * c, b.x0, b.y0, b.x1,
                                              b.y1, b2, t.out_w, t.out_h,
                                              flags, &err), 0);
            assert_memory_equal(a, b2, (size_t)t.out_w * t.out_h * c);
        }
        transform_box b;
        transform_params(&t, 2, 0, 0, W, H, &b);
        assert_int_equal(transform_apply(&t, &b, NULL, c, src, W, H,
                                         (size_t)W * c, a, &err), ST_EINVAL);
        st_clearerr(&err);
    }
    free(a);
    free(b2);
    free(src);
    resample_destroy(r);
}

/* ---- against torchvision's PIL pipeline ------------------------------------ */

static double mad(const uint8_t *a, const uint8_t *b, size_t n, int *mx)
{
    double s = 0;
    *mx = 0;
    for (size_t i = 0; i < n; i++) {
        int d = abs((int)a[i] - (int)b[i]);
        s += d;
        if (d > *mx) *mx = d;
    }
    return s / n;
}

/* transform_apply of b (no flip) on img (H, W, 3) to an S x S output,
 * against PIL's result of ops on the same image. */
static void pil_check(const uint8_t *img, uint32_t W, uint32_t H, uint32_t S,
                      const transform_spec *t, const transform_box *b,
                      const char *ops, const char *what)
{
    const int c = 3;
    uint32_t pw, ph;
    uint8_t *want = pil_apply(img, W, H, c, ops, &pw, &ph);
    if (want == NULL) fail_msg("PIL failed: %s", ops);
    assert_int_equal(pw, S);
    assert_int_equal(ph, S);
    resample *r = NULL;
    st_error err = {0, ""};
    assert_int_equal(resample_create(W, H, S, S, c, &r, &err), 0);
    uint8_t *got = malloc((size_t)S * S * c);
    assert_int_equal(transform_apply(t, b, r, c, img, W, H, (size_t)W * c,
                                     got, &err), 0);
    int mx;
    double d = mad(got, want, (size_t)S * S * c, &mx);
    if (d > 2.0)
        fail_msg("%s on %ux%u (PIL: %s): mean abs diff %.4f (<= 2), max %d",
                 what, W, H, ops, d, mx);
    print_message("%s on %ux%u vs PIL: mean abs diff %.4f, max %d\n", what, W,
                  H, d, mx);
    free(got);
    free(want);
    resample_destroy(r);
}

static void test_vs_pil_pipeline(void **state)
{
    (void)state;
    char why[128];
    if (pil_python(why, sizeof why) == NULL) {
        print_message("skipped: %s\n", why);
        skip();
        return;
    }
    static const struct {
        uint32_t W, H, S;
        double cf;
    } cc[] = {{500, 375, 224, 0.875}, {375, 500, 224, 0.875},
              {333, 1000, 160, 0.95}, {227, 100, 224, 1.0},
              {640, 427, 224, 0.875}};
    for (size_t i = 0; i < sizeof cc / sizeof cc[0]; i++) {
        uint32_t W = cc[i].W, H = cc[i].H, S = cc[i].S;
        uint8_t *img = malloc((size_t)W * H * 3);
        pil_smooth_image(img, W, H, 3, 100 + (uint32_t)i);
        transform_spec t;
        transform_spec_default(&t, TRANSFORM_CENTER);
        t.out_w = t.out_h = S;
        t.crop_frac = cc[i].cf;
        transform_box b;
        transform_params(&t, 0, 0, 0, W, H, &b);
        /* torchvision: Resize(int(S / cf)) then CenterCrop(S), in ints */
        uint32_t R = (uint32_t)(S / cc[i].cf), nw, nh;
        if (W <= H) { nw = R; nh = (uint32_t)((double)R * H / W); }
        else { nh = R; nw = (uint32_t)((double)R * W / H); }
        int top = (int)nearbyint((nh - S) / 2.0);
        int left = (int)nearbyint((nw - S) / 2.0);
        char ops[256], what[64];
        snprintf(ops, sizeof ops, "resize %u %u bilinear 0 0 %u %u crop %d %d "
                 "%d %d", nw, nh, W, H, left, top, left + (int)S,
                 top + (int)S);
        snprintf(what, sizeof what, "center-crop %u crop-frac %g", S, cc[i].cf);
        pil_check(img, W, H, S, &t, &b, ops, what);
        /* RRC: torchvision crops, then resizes */
        for (int area = 0; area < 2; area++) {
            transform_spec rt = parse_ok(area ? "random-resized-crop 224 "
                                                "interp=area"
                                              : "random-resized-crop 224");
            for (uint64_t id = 0; id < 2; id++) {
                transform_params(&rt, 9, 0, id, W, H, &b);
                snprintf(ops, sizeof ops, "crop %d %d %d %d resize 224 224 "
                         "%s 0 0 %d %d", (int)b.x0, (int)b.y0, (int)b.x1,
                         (int)b.y1, area ? "area" : "bilinear",
                         (int)(b.x1 - b.x0), (int)(b.y1 - b.y0));
                pil_check(img, W, H, 224, &rt, &b, ops,
                          area ? "random-resized-crop 224 interp=area"
                               : "random-resized-crop 224");
            }
        }
        free(img);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_and_format),
        cmocka_unit_test(test_parse_bad),
        cmocka_unit_test(test_rrc_same_numbers),
        cmocka_unit_test(test_rrc_distribution),
        cmocka_unit_test(test_determinism),
        cmocka_unit_test(test_flip_rate),
        cmocka_unit_test(test_center_geometry),
        cmocka_unit_test(test_pad_crop_and_whole),
        cmocka_unit_test(test_dct_scale),
        cmocka_unit_test(test_apply),
        cmocka_unit_test(test_apply_resampling),
        cmocka_unit_test(test_vs_pil_pipeline),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    pil_cleanup();
    return rc;
}
