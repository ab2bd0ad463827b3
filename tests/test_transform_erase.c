/* tests/test_transform_erase.c — random erasing (loader/transform.h's
 * erase=P): the text form and its refusals, the box exactly as
 * torchvision's RandomErasing.get_params written plainly here (fed the
 * same per-sample numbers), its statistics (the rate, boxes inside the
 * image with 2-33 % of its area and aspect 0.3-3.3 up to rounding), the
 * pixels transform_erase changes, and the loader end to end: with
 * 'none erase=1' and 'pad-crop 1 erase=0.5' every sample is its record
 * with exactly its box zeroed, the same at 1 and 3 threads.
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

#include "datasets/codec.h"
#include "datasets/pack.h"
#include "loader/loader.h"
#include "loader/transform.h"

#include "fixtures.h"
#include "loader_fixture.h"

static transform_spec parse_ok(const char *text)
{
    transform_spec t;
    st_error err = {0, ""};
    if (transform_parse(text, &t, &err) != 0) fail_msg("'%s': %s", text, err.msg);
    return t;
}

/* ---- text form ------------------------------------------------------------- */

static void test_text_form(void **state)
{
    (void)state;
    static const struct {
        const char *in, *canon;
    } ok[] = {
        {"none erase=0.5", "none erase=0.5"},
        {"none erase=0", "none"},
        {"pad-crop 2 erase=0.25 flip", "pad-crop 2 flip erase=0.25"},
        {"random-resized-crop 32 erase=1 interp=area",
         "random-resized-crop 32 interp=area erase=1"},
        {"center-crop 64 erase=0.1", "center-crop 64 erase=0.1"},
        {"resize 8x6 flip erase=0.75", "resize 8x6 flip erase=0.75"},
    };
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) {
        transform_spec t = parse_ok(ok[i].in), u;
        char buf[256];
        transform_format(&t, buf, sizeof buf);
        if (strcmp(buf, ok[i].canon) != 0)
            fail_msg("'%s' formats as '%s', expected '%s'", ok[i].in, buf,
                     ok[i].canon);
        u = parse_ok(buf);
        assert_true(u.erase == t.erase && u.kind == t.kind && u.flip == t.flip);
    }
    static const struct {
        const char *in, *msg;
    } bad[] = {
        {"none erase=1.5", "expected erase=P with 0 <= P <= 1"},
        {"none erase=-0.1", "expected erase=P with 0 <= P <= 1"},
        {"none erase=half", "expected erase=P with 0 <= P <= 1"},
        {"none erase=", "expected erase=P with 0 <= P <= 1"},
        {"pad-crop 2 erase=0.5 erase=0.5", "erase given twice"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        transform_spec t;
        st_error err = {0, ""};
        assert_int_equal(transform_parse(bad[i].in, &t, &err), ST_EINVAL);
        if (strstr(err.msg, bad[i].msg) == NULL)
            fail_msg("'%s': message '%s' lacks '%s'", bad[i].in, err.msg,
                     bad[i].msg);
    }
}

/* ---- the box ---------------------------------------------------------------- */

/* torchvision's RandomErasing(p, scale=(0.02, 0.33), ratio=(0.3, 3.3))
 * .forward/get_params, written from its documentation, on the numbers of
 * the sample's stream from TF_ERASE_K (the contract's order). */
static int reference_box(double p, uint64_t seed, uint64_t epoch, uint64_t id,
                         uint32_t W, uint32_t H, uint32_t box[4])
{
    uint32_t k = TF_ERASE_K;
    if (!(transform_uniform(seed, epoch, id, k) < p)) return 0;
    for (int attempt = 0; attempt < 10; attempt++) {
        uint32_t base = k + 1 + 4 * (uint32_t)attempt;
        double erase_area = (double)W * H *
                            (0.02 + 0.31 * transform_uniform(seed, epoch, id, base));
        double lo = log(0.3), hi = log(3.3);
        double aspect = exp(lo + (hi - lo) * transform_uniform(seed, epoch, id, base + 1));
        long h = lrint(sqrt(erase_area * aspect));
        long w = lrint(sqrt(erase_area / aspect));
        if (!(h < (long)H && w < (long)W)) continue;
        if (h == 0 || w == 0) return 0;
        long i = (long)floor(transform_uniform(seed, epoch, id, base + 2) * (double)(H - h + 1));
        long j = (long)floor(transform_uniform(seed, epoch, id, base + 3) * (double)(W - w + 1));
        box[0] = (uint32_t)j, box[1] = (uint32_t)i;
        box[2] = (uint32_t)w, box[3] = (uint32_t)h;
        return 1;
    }
    return 0;
}

static void test_box_as_torchvision(void **state)
{
    (void)state;
    static const uint32_t sizes[][2] = {{28, 28}, {32, 32}, {224, 160}, {5, 3}, {1, 1}};
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
        uint32_t W = sizes[s][0], H = sizes[s][1];
        transform_spec t = parse_ok("none erase=0.5");
        int erased = 0, n = 20000;
        for (int id = 0; id < n; id++) {
            uint32_t a[4] = {0}, b[4] = {0};
            int ra = transform_erase_box(&t, 7, 3, (uint64_t)id, W, H, a);
            int rb = reference_box(0.5, 7, 3, (uint64_t)id, W, H, b);
            if (ra != rb || (ra && memcmp(a, b, sizeof a) != 0))
                fail_msg("%ux%u id %d: box %d {%u,%u,%u,%u}, expected %d "
                         "{%u,%u,%u,%u}", W, H, id, ra, a[0], a[1], a[2],
                         a[3], rb, b[0], b[1], b[2], b[3]);
            if (!ra) continue;
            erased++;
            assert_true(a[2] >= 1 && a[3] >= 1);
            assert_true(a[0] + a[2] <= W && a[1] + a[3] <= H);
            assert_true(a[2] < W && a[3] < H);
            /* the area fraction and aspect before rounding were inside the
             * ranges: after rounding each side moves by <= 1/2 */
            double frac_lo = (a[2] - 0.5) * (a[3] - 0.5) / ((double)W * H);
            double frac_hi = (a[2] + 0.5) * (a[3] + 0.5) / ((double)W * H);
            assert_true(frac_lo <= 0.33 + 1e-9 && frac_hi >= 0.02 - 1e-9);
            assert_true((a[3] + 0.5) / (a[2] - 0.5 + 1e-12) >= 0.3 - 1e-9);
            assert_true((a[3] - 0.5) / (a[2] + 0.5) <= 3.3 + 1e-9);
        }
        print_message("%ux%u: %d of %d erased\n", W, H, erased, n);
        if (W >= 28) {
            /* nearly every coin that says yes finds a box that fits: 0.5
             * within 5 standard deviations (0.0035) of the rate */
            double rate = (double)erased / n;
            assert_true(rate > 0.47 && rate < 0.5175);
        }
        if (W == 1) assert_int_equal(erased, 0);
    }
    /* erase=0 never erases; erase=1 always does on 28x28 (nearly); a
     * sample's box depends on the epoch */
    transform_spec off = parse_ok("pad-crop 2"), on = parse_ok("none erase=1");
    int always = 0, differ = 0;
    for (int id = 0; id < 1000; id++) {
        uint32_t a[4], b[4];
        assert_int_equal(transform_erase_box(&off, 1, 0, (uint64_t)id, 28, 28, a), 0);
        int r0 = transform_erase_box(&on, 1, 0, (uint64_t)id, 28, 28, a);
        int r1 = transform_erase_box(&on, 1, 1, (uint64_t)id, 28, 28, b);
        always += r0;
        differ += r0 && r1 && memcmp(a, b, sizeof a) != 0;
    }
    assert_true(always >= 990);
    assert_true(differ >= 980);
}

/* transform_erase zeroes the box's pixels, every channel, and nothing
 * else. */
static void test_erase_pixels(void **state)
{
    (void)state;
    transform_spec t = parse_ok("none erase=1");
    for (int c = 1; c <= 3; c += 2) {
        const uint32_t W = 20, H = 14;
        size_t n = (size_t)W * H * c;
        uint8_t *img = malloc(n), *out = malloc(n);
        assert_non_null(img);
        assert_non_null(out);
        for (size_t i = 0; i < n; i++) img[i] = (uint8_t)(1 + i % 250);
        for (uint64_t id = 0; id < 200; id++) {
            memcpy(out, img, n);
            transform_erase(&t, 5, 0, id, out, W, H, c);
            uint32_t b[4];
            int on = transform_erase_box(&t, 5, 0, id, W, H, b);
            for (uint32_t y = 0; y < H; y++)
                for (uint32_t x = 0; x < W; x++)
                    for (int k = 0; k < c; k++) {
                        size_t i = ((size_t)y * W + x) * c + k;
                        int inside = on && x >= b[0] && x < b[0] + b[2] &&
                                     y >= b[1] && y < b[1] + b[3];
                        assert_int_equal(out[i], inside ? 0 : img[i]);
                    }
        }
        free(out);
        free(img);
    }
}

/* ---- the loader ------------------------------------------------------------- */

static char *g_dir; /* fx_tmpdir's, freed by fx_rmtree */

static int setup(void **state)
{
    (void)state;
    if ((g_dir = fx_tmpdir("erase")) == NULL) return -1;
    char p[600];
    snprintf(p, sizeof p, "%s/p", g_dir);
    spec fx = {CODEC_ZSTD, 12, 10, 3, 90, 0, 1 << 20, NONE};
    st_error err = {0};
    if (write_pack(p, &fx, &err)) {
        fprintf(stderr, "fixture: %s\n", err.msg);
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    fx_rmtree(g_dir);
    return 0;
}

/* Streams 2 epochs of the pack with transform tf on `threads` producers;
 * checks each sample against its record with its box zeroed (pad-crop P:
 * the record shifted into the zero-padded frame first), and returns the
 * XXH3 of all batches into *sum. */
static void stream_check(const char *tf, uint32_t threads, uint64_t *sum,
                         int *erased)
{
    const uint32_t W = 10, H = 12, C = 3;
    loader_config cfg;
    loader_config_default(&cfg);
    cfg.batch_size = 8;
    cfg.threads = threads;
    cfg.seed = 11;
    cfg.epochs = 2;
    cfg.timeout_ms = 60000;
    transform_spec t = parse_ok(tf);
    cfg.transform = &t;
    char dir[600];
    snprintf(dir, sizeof dir, "%s/p", g_dir);
    loader *l = NULL;
    st_error err = {0};
    if (loader_open(dir, &cfg, &l, &err)) fail_msg("%s", err.msg);
    uint8_t rec[12 * 10 * 3], want[12 * 10 * 3];
    uint64_t h = 0;
    *erased = 0;
    for (uint64_t e = 0; e < 2; e++) {
        loader_batch b;
        int rc;
        while ((rc = loader_next_batch(l, &b, &err)) == 0) {
            size_t ss = (size_t)W * H * C;
            for (uint32_t i = 0; i < b.n; i++) {
                uint64_t id = b.ids[i];
                sample_pixels(id, rec, ss);
                transform_box bx;
                transform_params(&t, cfg.seed, e, id, W, H, &bx);
                memset(want, 0, ss);
                int P = t.kind == TRANSFORM_PAD_CROP ? (int)t.pad : 0;
                for (uint32_t y = 0; y < H; y++)
                    for (uint32_t x = 0; x < W; x++) {
                        /* output (x, y) shows padded (x + x0, y + y0) */
                        int sx = (int)x + (P ? (int)bx.x0 : 0) - P;
                        int sy = (int)y + (P ? (int)bx.y0 : 0) - P;
                        uint32_t ox = bx.flip ? W - 1 - x : x;
                        if (sx < 0 || sy < 0 || sx >= (int)W || sy >= (int)H)
                            continue;
                        memcpy(want + ((size_t)y * W + ox) * C,
                               rec + ((size_t)sy * W + (size_t)sx) * C, C);
                    }
                uint32_t box[4];
                if (transform_erase_box(&t, cfg.seed, e, id, W, H, box)) {
                    (*erased)++;
                    transform_erase(&t, cfg.seed, e, id, want, W, H, (int)C);
                }
                if (memcmp(b.pixels + i * ss, want, ss) != 0)
                    fail_msg("'%s' epoch %llu id %llu: pixels differ from the "
                             "record with its box zeroed", tf,
                             (unsigned long long)e, (unsigned long long)id);
                h = h * 1000003u ^ id;
            }
            assert_int_equal(loader_release(l, &b, &err), 0);
        }
        assert_int_equal(rc, ST_EEND);
    }
    loader_close(l);
    *sum = h;
}

static void test_loader_erases(void **state)
{
    (void)state;
    static const char *const tfs[] = {"none erase=1", "pad-crop 1 erase=0.5",
                                      "none flip erase=0.5"};
    for (size_t i = 0; i < sizeof tfs / sizeof *tfs; i++) {
        uint64_t a, b;
        int ea, eb;
        stream_check(tfs[i], 1, &a, &ea);
        stream_check(tfs[i], 3, &b, &eb);
        assert_true(a == b);
        assert_int_equal(ea, eb);
        print_message("'%s': %d of 180 samples erased\n", tfs[i], ea);
        assert_true(ea > (i == 0 ? 150 : 50));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text_form),
        cmocka_unit_test(test_box_as_torchvision),
        cmocka_unit_test(test_erase_pixels),
        cmocka_unit_test(test_loader_erases),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
