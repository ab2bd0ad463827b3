/* tests/test_codec.c — every codec at each image's own size: raw, zstd
 * and png exactly, jpeg within a tolerance; sizes outside the shape and
 * records of another size are refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "datasets/codec.h"
#include "datasets/shard.h"

#define MAXH 40
#define MAXW 33

/* A smooth image (JPEG-friendly) that differs per (h, w, c). */
static void image(uint32_t h, uint32_t w, uint32_t c, uint8_t *px)
{
    for (uint32_t y = 0; y < h; y++)
        for (uint32_t x = 0; x < w; x++)
            for (uint32_t k = 0; k < c; k++)
                px[(y * w + x) * c + k] =
                    (uint8_t)(40 + (y * 150) / h + (x * 50) / w + k * 9);
}

/* Encodes and decodes images of several sizes; tol is the largest mean
 * absolute difference allowed (0: exact). */
static void roundtrip(uint32_t codec, uint32_t c, double tol)
{
    codec_shape shape = {codec, MAXH, MAXW, c};
    codec_enc *enc = NULL;
    codec_dec *dec = NULL;
    st_error err = {0};
    if (codec_enc_create(&shape, codec == CODEC_ZSTD ? 3 : 0, NULL, &enc, &err) ||
        codec_dec_create(&shape, NULL, &dec, &err))
        fail_msg("create: %s", err.msg);
    static const uint32_t sizes[][2] = {{MAXH, MAXW}, {1, 1}, {17, 5}, {8, 33},
                                        {40, 1}, {23, 29}};
    uint8_t *px = malloc(MAXH * MAXW * 4), *out = malloc(MAXH * MAXW * 4);
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
        uint32_t h = sizes[s][0], w = sizes[s][1];
        size_t n = (size_t)h * w * c;
        image(h, w, c, px);
        const uint8_t *rec;
        size_t len;
        if (codec_encode(enc, px, h, w, &rec, &len, &err))
            fail_msg("encode %ux%u: %s", h, w, err.msg);
        uint8_t *copy = malloc(len);
        memcpy(copy, rec, len);
        memset(out, 0, n);
        if (codec_decode(dec, copy, len, h, w, out, &err))
            fail_msg("decode %ux%u: %s", h, w, err.msg);
        double sad = 0;
        for (size_t i = 0; i < n; i++) sad += abs((int)out[i] - (int)px[i]);
        if (sad / (double)n > tol)
            fail_msg("codec %u %ux%ux%u: mean abs diff %.3f > %.3f", codec, h,
                     w, c, sad / (double)n, tol);
        /* the same record read as another size is an error */
        if (h > 1) {
            st_clearerr(&err);
            int rc = codec_decode(dec, copy, len, h - 1, w, out, &err);
            assert_true(rc == ST_EDECODE || rc == ST_EFORMAT);
        }
        free(copy);
    }
    st_clearerr(&err);
    assert_int_equal(codec_encode(enc, px, MAXH + 1, 1, NULL, NULL, &err), ST_EINVAL);
    assert_non_null(strstr(err.msg, "41x1"));
    st_clearerr(&err);
    assert_int_equal(codec_decode(dec, px, 1, 1, 0, out, &err), ST_EINVAL);
    free(px);
    free(out);
    codec_enc_destroy(enc);
    codec_dec_destroy(dec);
}

static void test_raw(void **s) { (void)s; roundtrip(CODEC_RAW, 3, 0); }
static void test_zstd(void **s) { (void)s; roundtrip(CODEC_ZSTD, 3, 0); }
static void test_png(void **s) { (void)s; roundtrip(CODEC_PNG, 4, 0); }
static void test_jpeg_rgb(void **s) { (void)s; roundtrip(CODEC_JPEG, 3, 3.0); }
static void test_jpeg_gray(void **s) { (void)s; roundtrip(CODEC_JPEG, 1, 2.0); }

/* jpeg holds 1 or 3 channels; quality 1..100. */
static void test_jpeg_shape(void **state)
{
    (void)state;
    codec_shape shape = {CODEC_JPEG, 8, 8, 4};
    codec_enc *enc = NULL;
    codec_dec *dec = NULL;
    st_error err = {0};
    assert_int_equal(codec_enc_create(&shape, 0, NULL, &enc, &err), ST_EINVAL);
    st_clearerr(&err);
    assert_int_equal(codec_dec_create(&shape, NULL, &dec, &err), ST_EINVAL);
    shape.channels = 3;
    st_clearerr(&err);
    assert_int_equal(codec_enc_create(&shape, 101, NULL, &enc, &err), ST_EINVAL);
}

/* Dictionary training on samples of their own sizes. */
static void test_dict_sizes(void **state)
{
    (void)state;
    size_t sizes[64], total = 0;
    for (int i = 0; i < 64; i++) total += sizes[i] = (size_t)(300 + 37 * i);
    uint8_t *buf = malloc(total), *p = buf;
    for (int i = 0; i < 64; i++) {
        for (size_t j = 0; j < sizes[i]; j++) p[j] = (uint8_t)((j % 50) * (i % 4 + 1));
        p += sizes[i];
    }
    uint8_t dict[4096];
    size_t len = 0;
    st_error err = {0};
    assert_int_equal(codec_train_dict_sizes(buf, sizes, 64, dict, sizeof dict,
                                            &len, &err), 0);
    assert_true(len > 0 && len <= sizeof dict);
    assert_true(codec_dict_id(dict, len) != 0);
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_raw), cmocka_unit_test(test_zstd),
        cmocka_unit_test(test_png), cmocka_unit_test(test_jpeg_rgb),
        cmocka_unit_test(test_jpeg_gray), cmocka_unit_test(test_jpeg_shape),
        cmocka_unit_test(test_dict_sizes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
