/* tests/test_pngio.c — datasets/pngio: decoding of every colour type, bit
 * depth, palette/tRNS and interlace to 1, 3 and 4 channels against an
 * independent reference (tests/source_fixture.h), the header probe, encode
 * round trips and determinism, bad input, and concurrent decoding.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "datasets/pngio.h"
#include "source_fixture.h"

static const int chans[3] = {1, 3, 4};

/* libpng's scale_16 formula is round(v / 257) for every 16-bit v. */
static void test_scale16_formula(void **state)
{
    (void)state;
    for (uint32_t v = 0; v <= 65535; v++)
        assert_int_equal(pfx_scale16(v), (uint32_t)floor(v / 257.0 + 0.5));
}

static void check_kind(int kind, int interlace, uint32_t w, uint32_t h)
{
    static pfx_img im;
    pfx_make(&im, kind, w, h, interlace, (uint32_t)(kind * 3 + 1));
    uint8_t *png;
    size_t len;
    assert_int_equal(pfx_png_encode(&im.p, &png, &len), 0);

    pngio_info pi;
    st_error err = {0, ""};
    assert_int_equal(pngio_probe(png, len, &pi, &err), 0);
    assert_int_equal(pi.width, w);
    assert_int_equal(pi.height, h);
    assert_int_equal(pi.bit_depth, im.p.depth);
    assert_int_equal(pi.color_type, im.p.color_type);
    assert_int_equal(pi.interlaced, interlace);
    int nat = pfx_samples(im.p.color_type);
    if (im.p.color_type == PNG_COLOR_TYPE_PALETTE) nat = 3;
    if (im.p.ntrans || im.p.has_trans_color) nat++;
    assert_int_equal(pi.channels, nat);

    uint8_t *out = malloc((size_t)w * h * 4);
    for (int c = 0; c < 3; c++) {
        memset(out, 0xa5, (size_t)w * h * 4);
        int rc = pngio_decode(png, len, w, h, chans[c], out, &err);
        if (rc != 0) fprintf(stderr, "%s: %s\n", im.name, err.msg);
        assert_int_equal(rc, 0);
        assert_int_equal(pfx_png_check(&im.p, chans[c], out, im.name), 0);
        /* the same through a decode arena: same pixels, nothing malloc'd */
        pngio_arena *a = NULL;
        assert_int_equal(pngio_arena_create(w, chans[c], &a, &err), 0);
        for (int rep = 0; rep < 2; rep++) {
            memset(out, 0x5a, (size_t)w * h * 4);
            assert_int_equal(pngio_decode_in(a, png, len, w, h, chans[c], out,
                                             &err), 0);
            assert_int_equal(pfx_png_check(&im.p, chans[c], out, im.name), 0);
        }
        if (pngio_arena_overflows(a) != 0)
            fail_msg("%s %ux%u: %llu allocations overflowed the arena",
                     im.name, w, h,
                     (unsigned long long)pngio_arena_overflows(a));
        pngio_arena_destroy(a);
    }
    free(out);
    free(png);
}

static void test_decode_every_kind(void **state)
{
    (void)state;
    for (int k = 0; k < PFX_KINDS; k++) {
        check_kind(k, 0, 13, 7);
        check_kind(k, 1, 13, 7);
        check_kind(k, 1, 1, 1);   /* Adam7 with passes that hold nothing */
        check_kind(k, 1, 3, 9);
    }
    /* wide rows: the arena grows with the width it was made for */
    for (int k = 0; k < PFX_KINDS; k += 3) check_kind(k, 1, 700, 5);
}

static void test_probe_short_buffer(void **state)
{
    (void)state;
    static pfx_img im;
    pfx_make(&im, 8, 10, 4, 0, 9);
    uint8_t *png;
    size_t len;
    assert_int_equal(pfx_png_encode(&im.p, &png, &len), 0);
    pngio_info pi;
    st_error err = {0, ""};
    assert_int_equal(pngio_probe(png, 33, &pi, &err), 0);
    assert_int_equal(pi.width, 10);
    assert_int_equal(pi.height, 4);
    assert_int_equal(pi.channels, 3);
    assert_int_equal(pngio_probe(png, 32, &pi, &err), ST_EDECODE);
    assert_non_null(strstr(err.msg, "truncated"));
    st_clearerr(&err);
    png[30] ^= 1; /* inside IHDR's CRC */
    assert_int_equal(pngio_probe(png, len, &pi, &err), ST_EDECODE);
    assert_non_null(strstr(err.msg, "CRC"));
    st_clearerr(&err);
    assert_int_equal(pngio_probe("GIF89a....", 10, &pi, &err), ST_EDECODE);
    assert_non_null(strstr(err.msg, "not a PNG"));
    free(png);
}

static void test_encode_roundtrip(void **state)
{
    (void)state;
    enum { W = 37, H = 23 };
    static uint8_t px[W * H * 4], out[W * H * 4];
    for (size_t i = 0; i < sizeof px; i++) px[i] = (uint8_t)pfx_hash((uint32_t)i);
    for (int c = 0; c < 3; c++) {
        uint8_t *a = NULL, *b = NULL;
        size_t acap = 0, bcap = 0, alen = 0, blen = 0;
        st_error err = {0, ""};
        assert_int_equal(pngio_encode(px, W, H, chans[c], &a, &acap, &alen,
                                      &err), 0);
        /* a second encode into a too-small buffer must grow it */
        bcap = 16;
        b = malloc(bcap);
        assert_int_equal(pngio_encode(px, W, H, chans[c], &b, &bcap, &blen,
                                      &err), 0);
        assert_int_equal(alen, blen);
        assert_memory_equal(a, b, alen);
        pngio_info pi;
        assert_int_equal(pngio_probe(a, alen, &pi, &err), 0);
        assert_int_equal(pi.channels, chans[c]);
        assert_int_equal(pi.bit_depth, 8);
        assert_int_equal(pngio_decode(a, alen, W, H, chans[c], out, &err), 0);
        assert_memory_equal(px, out, (size_t)W * H * chans[c]);
        free(a);
        free(b);
    }
}

static void test_decode_bad(void **state)
{
    (void)state;
    enum { W = 16, H = 16 };
    static uint8_t px[W * H], out[W * H * 4];
    for (size_t i = 0; i < sizeof px; i++) px[i] = (uint8_t)(i * 7);
    uint8_t *png = NULL;
    size_t cap = 0, len = 0;
    st_error err = {0, ""};
    assert_int_equal(pngio_encode(px, W, H, 1, &png, &cap, &len, &err), 0);

    /* every truncation is an error, down to a missing IEND */
    for (size_t n = 0; n < len; n++) {
        st_clearerr(&err);
        assert_int_equal(pngio_decode(png, n, W, H, 1, out, &err),
                         ST_EDECODE);
        assert_true(err.msg[0] != '\0');
    }
    /* a flipped byte anywhere after the signature is an error (CRC) */
    for (size_t at = 8; at < len; at++) {
        png[at] ^= 0x10;
        st_clearerr(&err);
        int rc = pngio_decode(png, len, W, H, 1, out, &err);
        png[at] ^= 0x10;
        assert_true(rc == ST_EDECODE || rc == ST_EFORMAT);
    }
    st_clearerr(&err);
    assert_int_equal(pngio_decode(png, len, W + 1, H, 1, out, &err),
                     ST_EFORMAT);
    assert_non_null(strstr(err.msg, "16x16"));
    assert_non_null(strstr(err.msg, "17x16"));
    st_clearerr(&err);
    assert_int_equal(pngio_decode(png, len, W, H, 2, out, &err), ST_EINVAL);
    st_clearerr(&err);
    assert_int_equal(pngio_decode("hello", 5, W, H, 1, out, &err),
                     ST_EDECODE);
    free(png);
}

typedef struct th_arg {
    const uint8_t *png;
    size_t len;
    const uint8_t *want;
    int bad;
} th_arg;

static void *th_decode(void *p)
{
    th_arg *a = p;
    uint8_t out[13 * 7 * 3];
    st_error err = {0, ""};
    for (int i = 0; i < 2000; i++) {
        if (pngio_decode(a->png, a->len, 13, 7, 3, out, &err) != 0 ||
            memcmp(out, a->want, sizeof out) != 0)
            a->bad++;
    }
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    static pfx_img im;
    pfx_make(&im, 17, 13, 7, 1, 4);
    uint8_t *png;
    size_t len;
    assert_int_equal(pfx_png_encode(&im.p, &png, &len), 0);
    uint8_t want[13 * 7 * 3];
    st_error err = {0, ""};
    assert_int_equal(pngio_decode(png, len, 13, 7, 3, want, &err), 0);
    pthread_t t[4];
    th_arg a[4];
    for (int i = 0; i < 4; i++) {
        a[i] = (th_arg){png, len, want, 0};
        assert_int_equal(pthread_create(&t[i], NULL, th_decode, &a[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        assert_int_equal(pthread_join(t[i], NULL), 0);
        assert_int_equal(a[i].bad, 0);
    }
    free(png);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scale16_formula),
        cmocka_unit_test(test_decode_every_kind),
        cmocka_unit_test(test_probe_short_buffer),
        cmocka_unit_test(test_encode_roundtrip),
        cmocka_unit_test(test_decode_bad),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
