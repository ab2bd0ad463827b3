/* tests/test_jpegio_robust.c — datasets/jpegio on bad input and across
 * many images: warnings as errors (truncated files, an out-of-sequence
 * restart marker, a stray marker, junk before EOI), refused inputs (12-bit,
 * zero height, not a JPEG, bad arguments), a handle that stays usable after
 * each failure, Huffman and quantization tables that do not carry over
 * from one image to the next, and heap use that stays flat over 2000
 * decodes. (Parsing, decodes, the encoder, orientation and the PIL
 * comparison: tests/test_jpegio.c.) Fixtures are written at test time with
 * libjpeg (tests/jpeg_fixture.h, tests/jpegio_fixture.h).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <malloc.h>
#include <stdlib.h>
#include <string.h>

#include "datasets/jpegio.h"
#include "jpegio_fixture.h"

/* ---- bad input ------------------------------------------------------------ */

static void expect_fail(jpegio_dec *d, const uint8_t *b, size_t len, int code,
                        const char *words, const char *what)
{
    st_error err = {0, ""};
    jpegio_info in;
    uint8_t *px = malloc(61 * 45 * 3);
    uint32_t w, h;
    jpegio_region r = {0, 40, 61, 5, 1};
    jpegio_decoded out;
    int rc = jpegio_decode(d, b, len, 1, 3, px, 61 * 3, 61 * 45 * 3, &w, &h,
                           &err);
    if (rc != code || strstr(err.msg, words) == NULL)
        fail_msg("%s: decode gave %d '%s', expected %d '%s'", what, rc,
                 err.msg, code, words);
    assert_null(strchr(err.msg, '\n'));
    st_clearerr(&err);
    rc = jpegio_decode_region(d, b, len, &r, 3, px, 61 * 45 * 3, &out, &err);
    if (rc != code)
        fail_msg("%s: region decode gave %d '%s'", what, rc, err.msg);
    st_clearerr(&err);
    (void)in;
    free(px);
}

static void test_truncated(void **state)
{
    (void)state;
    jpegio_dec *d;
    st_error err = {0, ""};
    assert_int_equal(jpegio_dec_create(&d, &err), 0);
    for (int prog = 0; prog < 2; prog++) {
        jfx_opt o = {61, 45, JPEGIO_CS_YCBCR, 2, 2, prog, 0, 95, 0, 0};
        fixture f = make(&o, 5);
        expect_fail(d, f.jpg, f.len * 6 / 10, ST_EDECODE, "Premature end",
                    "cut at 60%");
        expect_fail(d, f.jpg, f.len - 1, ST_EDECODE, "Premature end",
                    "cut in EOI");
        /* the header alone still reads */
        jpegio_info in;
        assert_int_equal(jpegio_read_info(d, f.jpg, f.len * 6 / 10, &in,
                                          &err), 0);
        /* cut inside the header */
        st_clearerr(&err);
        assert_int_equal(jpegio_read_info(d, f.jpg, 40, &in, &err),
                         ST_EDECODE);
        assert_non_null(strstr(err.msg, "Premature end"));
        /* the decoder is still good afterwards */
        uint32_t w, h;
        free(full_decode(d, &f, 1, 3, &w, &h));
        drop(&f);
    }
    jpegio_dec_destroy(d);
}

/* Offset of the first SOS segment's data. */
static size_t scan_start(const uint8_t *b, size_t len)
{
    for (size_t i = 2; i + 4 < len;) {
        size_t seg = (size_t)b[i + 2] << 8 | b[i + 3];
        if (b[i + 1] == 0xda) return i + 2 + seg;
        i += 2 + seg;
    }
    return 0;
}

static void test_corrupt(void **state)
{
    (void)state;
    jpegio_dec *d;
    st_error err = {0, ""};
    assert_int_equal(jpegio_dec_create(&d, &err), 0);
    jfx_opt o = {61, 45, JPEGIO_CS_YCBCR, 2, 2, 0, 2, 95, 0, 0};
    fixture f = make(&o, 5);
    size_t at = scan_start(f.jpg, f.len);
    assert_true(at > 0 && at + 64 < f.len);
    uint8_t *b = malloc(f.len);
    /* a restart marker out of sequence */
    memcpy(b, f.jpg, f.len);
    uint8_t *rst = memmem(b + at, f.len - at, "\xff\xd1", 2);
    assert_non_null(rst);
    rst[1] = 0xd5;
    expect_fail(d, b, f.len, ST_EDECODE, "Corrupt JPEG data", "bad RST");
    /* a marker in the middle of the entropy-coded data */
    memcpy(b, f.jpg, f.len);
    b[at + 30] = 0xff;
    b[at + 31] = 0xc4;
    expect_fail(d, b, f.len, ST_EDECODE, "Corrupt JPEG data", "stray marker");
    /* junk between the last scan and EOI */
    jfx_opt o2 = {61, 45, JPEGIO_CS_YCBCR, 2, 2, 0, 0, 95, 0, 0};
    fixture g = make(&o2, 5);
    enum { JUNK = 64 };
    uint8_t *j = malloc(g.len + JUNK);
    memcpy(j, g.jpg, g.len - 2);
    memset(j + g.len - 2, 0x5a, JUNK);
    memcpy(j + g.len - 2 + JUNK, "\xff\xd9", 2);
    st_error e2 = {0, ""};
    uint8_t *px = malloc(61 * 45 * 3);
    uint32_t w, h;
    int rc = jpegio_decode(d, j, g.len + JUNK, 1, 3, px, 61 * 3, 61 * 45 * 3,
                           &w, &h, &e2);
    if (rc != ST_EDECODE || strstr(e2.msg, "extraneous") == NULL)
        fail_msg("junk before EOI: %d '%s'", rc, e2.msg);
    free(px);
    free(j);
    drop(&g);
    free(b);
    drop(&f);
    jpegio_dec_destroy(d);
}

static void test_refused(void **state)
{
    (void)state;
    jpegio_dec *d;
    st_error err = {0, ""};
    assert_int_equal(jpegio_dec_create(&d, &err), 0);
    jfx_opt o = {61, 45, JPEGIO_CS_YCBCR, 2, 2, 0, 0, 95, 0, 0};
    fixture f = make(&o, 5);
    uint8_t *sof = memmem(f.jpg, f.len, "\xff\xc0", 2);
    assert_non_null(sof);
    /* 12-bit: the SOF's precision byte */
    sof[4] = 12;
    expect_fail(d, f.jpg, f.len, ST_EFORMAT, "12-bit", "12-bit");
    jpegio_info in;
    assert_int_equal(jpegio_read_info(d, f.jpg, f.len, &in, &err), ST_EFORMAT);
    st_clearerr(&err);
    sof[4] = 8;
    /* zero height (a DNL-defined height, which libjpeg cannot read) */
    sof[5] = sof[6] = 0;
    expect_fail(d, f.jpg, f.len, ST_EFORMAT, "zero-sized", "zero height");
    sof[5] = 0, sof[6] = 45;
    /* not JPEG at all */
    static const char html[] = "<html><body>not a photo</body></html>";
    expect_fail(d, (const uint8_t *)html, sizeof html, ST_EFORMAT,
                "not a JPEG", "html");
    static const uint8_t png[8] = {137, 80, 78, 71, 13, 10, 26, 10};
    assert_false(jpegio_is_jpeg(png, sizeof png));
    assert_false(jpegio_is_jpeg(f.jpg, 2));
    assert_int_equal(jpegio_read_info(d, png, sizeof png, &in, &err),
                     ST_EFORMAT);
    st_clearerr(&err);
    /* SOI and nothing else */
    assert_int_equal(jpegio_read_info(d, f.jpg, 3, &in, &err), ST_EDECODE);
    st_clearerr(&err);
    /* bad arguments */
    uint8_t px[16];
    uint32_t w, h;
    assert_int_equal(jpegio_decode(d, f.jpg, f.len, 3, 3, px, 16, 16, &w, &h,
                                   &err), ST_EINVAL);
    st_clearerr(&err);
    assert_int_equal(jpegio_decode(d, f.jpg, f.len, 1, 4, px, 16, 16, &w, &h,
                                   &err), ST_EINVAL);
    st_clearerr(&err);
    /* still good */
    free(full_decode(d, &f, 1, 3, &w, &h));
    drop(&f);
    jpegio_dec_destroy(d);
}

/* ---- across images -------------------------------------------------------- */

/* b without its segments of marker m before the first scan; a new buffer. */
static uint8_t *strip(const uint8_t *b, size_t len, uint8_t m, size_t *out)
{
    uint8_t *o = malloc(len);
    size_t i = 2, n = 2;
    memcpy(o, b, 2);
    while (i + 4 < len && b[i + 1] != 0xda) {
        size_t seg = 2 + ((size_t)b[i + 2] << 8 | b[i + 3]);
        if (b[i + 1] != m) {
            memcpy(o + n, b + i, seg);
            n += seg;
        }
        i += seg;
    }
    memcpy(o + n, b + i, len - i);
    *out = n + len - i;
    return o;
}

/* Tables do not carry over from one image to the next: an image without
 * DHT decodes with libjpeg-turbo's standard tables and one without DQT
 * fails, whatever the handle decoded before. */
static void test_tables_do_not_carry_over(void **state)
{
    (void)state;
    st_error err = {0, ""};
    /* baseline at libjpeg's defaults: the standard Huffman tables */
    jfx_opt o = {61, 45, JPEGIO_CS_YCBCR, 2, 2, 0, 0, 90, 0, 0};
    fixture f = make(&o, 4);
    /* progressive: optimized tables, other quantization */
    jfx_opt po = {61, 45, JPEGIO_CS_YCBCR, 2, 2, 1, 0, 50, 0, 0};
    fixture p = make(&po, 8);
    size_t nh, nq;
    uint8_t *no_dht = strip(f.jpg, f.len, 0xc4, &nh);
    uint8_t *no_dqt = strip(f.jpg, f.len, 0xdb, &nq);
    assert_true(nh < f.len && nq < f.len);
    fixture fh = {NULL, no_dht, nh}, fq = {NULL, no_dqt, nq};
    jpegio_dec *fresh, *used;
    assert_int_equal(jpegio_dec_create(&fresh, &err), 0);
    assert_int_equal(jpegio_dec_create(&used, &err), 0);
    uint32_t w, h;
    uint8_t *want = full_decode(fresh, &f, 1, 3, &w, &h);
    for (int rep = 0; rep < 50; rep++) {
        free(full_decode(used, &p, 1, 3, &w, &h));
        uint8_t *got = full_decode(used, &fh, 1, 3, &w, &h);
        assert_memory_equal(got, want, (size_t)w * h * 3);
        free(got);
        uint8_t px[61 * 45 * 3];
        st_clearerr(&err);
        int rc = jpegio_decode(used, fq.jpg, fq.len, 1, 3, px, 61 * 3,
                               sizeof px, &w, &h, &err);
        if (rc != ST_EDECODE || strstr(err.msg, "table") == NULL)
            fail_msg("no DQT after another image: %d '%s'", rc, err.msg);
    }
    free(want);
    free(no_dht);
    free(no_dqt);
    drop(&f);
    drop(&p);
    jpegio_dec_destroy(fresh);
    jpegio_dec_destroy(used);
}

/* A handle's memory stays flat over many images: libjpeg's image pools
 * are released at every jpeg_abort, and the tables forgotten before each
 * image are recycled rather than allocated again in the permanent pool. */
static void test_memory_flat(void **state)
{
    (void)state;
    jfx_opt a = {61, 45, JPEGIO_CS_YCBCR, 2, 2, 1, 0, 75, 0, 0};
    jfx_opt b = {61, 45, JPEGIO_CS_YCBCR, 2, 1, 0, 3, 90, 6, 0};
    fixture fa = make(&a, 1), fb = make(&b, 2);
    jpegio_dec *d;
    st_error err = {0, ""};
    assert_int_equal(jpegio_dec_create(&d, &err), 0);
    static uint8_t out[61 * 45 * 3];
    size_t before = 0;
    for (int r = 0; r < 2000; r++) {
        if (r == 10) before = mallinfo2().uordblks;
        const fixture *f = r & 1 ? &fa : &fb;
        uint32_t w, h;
        assert_int_equal(jpegio_decode(d, f->jpg, f->len, 1, 3, out, 61 * 3,
                                       sizeof out, &w, &h, &err), 0);
        jpegio_region rg = {3, 5, 20, 20, 1 << (r % 4)};
        jpegio_decoded o;
        assert_int_equal(jpegio_decode_region(d, f->jpg, f->len, &rg, 3, out,
                                              sizeof out, &o, &err), 0);
    }
    size_t after = mallinfo2().uordblks;
    if (after != before)
        fail_msg("heap in use went from %zu to %zu bytes over 1990 images",
                 before, after);
    jpegio_dec_destroy(d);
    drop(&fa);
    drop(&fb);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_corrupt),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_tables_do_not_carry_over),
        cmocka_unit_test(test_memory_flat),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
