/* tests/test_jpegio.c — datasets/jpegio: header and EXIF parsing, full and
 * DCT-scaled decodes of every variety libjpeg writes (baseline and
 * progressive; gray, YCbCr, RGB, Adobe CMYK and YCCK; 4:4:4, 4:2:2, 4:2:0;
 * restart markers; odd sizes), crop-aware region decodes against a full
 * decode, the encoder, the eight EXIF orientations, and, when python3-pil
 * is present, PIL's decode of the same files. (Bad input, tables and heap
 * use across images: tests/test_jpegio_robust.c.) Fixtures are written at
 * test time with libjpeg (tests/jpeg_fixture.h, tests/jpegio_fixture.h).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "datasets/jpegio.h"
#include "datasets/pngio.h"
#include "jpegio_fixture.h"

/* The varieties every decode test walks through. */
typedef struct variety {
    const char *name;
    jfx_opt o;
} variety;

static const variety kinds[] = {
    {"ycc420", {61, 45, JPEGIO_CS_YCBCR, 2, 2, 0, 0, 95, 0, 0}},
    {"ycc422", {61, 45, JPEGIO_CS_YCBCR, 2, 1, 0, 0, 95, 0, 0}},
    {"ycc444", {61, 45, JPEGIO_CS_YCBCR, 1, 1, 0, 0, 95, 0, 0}},
    {"ycc440", {61, 45, JPEGIO_CS_YCBCR, 1, 2, 0, 0, 95, 0, 0}},
    {"ycc420-prog", {61, 45, JPEGIO_CS_YCBCR, 2, 2, 1, 0, 95, 0, 0}},
    {"ycc422-prog", {61, 45, JPEGIO_CS_YCBCR, 2, 1, 1, 0, 95, 0, 0}},
    {"ycc444-prog", {37, 23, JPEGIO_CS_YCBCR, 1, 1, 1, 0, 95, 0, 0}},
    {"ycc420-rst", {61, 45, JPEGIO_CS_YCBCR, 2, 2, 0, 1, 95, 0, 0}},
    {"ycc422-rst3", {61, 45, JPEGIO_CS_YCBCR, 2, 1, 0, 3, 95, 0, 0}},
    {"odd37x23", {37, 23, JPEGIO_CS_YCBCR, 2, 2, 0, 0, 95, 0, 0}},
    {"gray", {37, 23, JPEGIO_CS_GRAY, 0, 0, 0, 0, 95, 0, 0}},
    {"gray-prog-rst", {61, 45, JPEGIO_CS_GRAY, 0, 0, 1, 2, 95, 0, 0}},
    {"rgb", {37, 23, JPEGIO_CS_RGB, 1, 1, 0, 0, 95, 0, 0}},
    {"cmyk", {37, 23, JPEGIO_CS_CMYK, 1, 1, 0, 0, 95, 0, 0}},
    {"ycck420", {61, 45, JPEGIO_CS_YCCK, 2, 2, 0, 0, 95, 0, 0}},
    {"ycck-prog", {37, 23, JPEGIO_CS_YCCK, 2, 1, 1, 0, 95, 0, 0}},
};
#define NKINDS (sizeof kinds / sizeof *kinds)

/* What the stored values of a source pixel are in RGB, as jpegio promises
 * (inverted CMYK as PIL converts it). */
static void expect_rgb(int cs, const uint8_t *s, uint8_t *rgb)
{
    if (cs == JPEGIO_CS_GRAY) {
        rgb[0] = rgb[1] = rgb[2] = s[0];
    } else if (cs >= JPEGIO_CS_CMYK) {
        for (int k = 0; k < 3; k++) /* n - n * (255 - s) / 255 */
            rgb[k] = (uint8_t)lround(s[3] - s[3] * (255.0 - s[k]) / 255.0);
    } else {
        memcpy(rgb, s, 3);
    }
}

/* ---- header -------------------------------------------------------------- */

static void test_info(void **state)
{
    (void)state;
    jpegio_dec *d;
    st_error err = {0, ""};
    assert_int_equal(jpegio_dec_create(&d, &err), 0);
    for (size_t k = 0; k < NKINDS; k++) {
        const jfx_opt *o = &kinds[k].o;
        fixture f = make(o, (uint32_t)k);
        jpegio_info in;
        assert_true(jpegio_is_jpeg(f.jpg, f.len));
        assert_int_equal(jpegio_read_info(d, f.jpg, f.len, &in, &err), 0);
        assert_int_equal(in.width, o->w);
        assert_int_equal(in.height, o->h);
        assert_int_equal(in.colorspace, o->cs);
        assert_int_equal(in.components,
                         o->cs == JPEGIO_CS_GRAY ? 1 : o->cs >= 4 ? 4 : 3);
        assert_int_equal(in.progressive, o->progressive);
        assert_int_equal(in.orientation, 1);
        if (o->cs != JPEGIO_CS_GRAY) {
            assert_int_equal(in.h_samp, o->hs);
            assert_int_equal(in.v_samp, o->vs);
        }
        drop(&f);
    }
    jpegio_dec_destroy(d);
    jpegio_dec_destroy(NULL);
}

static void test_exif_orientation(void **state)
{
    (void)state;
    jpegio_dec *d;
    st_error err = {0, ""};
    assert_int_equal(jpegio_dec_create(&d, &err), 0);
    for (int be = 0; be < 2; be++)
        for (int o = 1; o <= 8; o++) {
            jfx_opt opt = {13, 9, JPEGIO_CS_YCBCR, 2, 2, o & 1, 0, 90, o, be};
            fixture f = make(&opt, 3);
            jpegio_info in;
            assert_int_equal(jpegio_read_info(d, f.jpg, f.len, &in, &err), 0);
            assert_int_equal(in.orientation, o);
            drop(&f);
        }
    /* values outside 1..8, and broken TIFF structures, give 1 */
    jfx_opt opt = {13, 9, JPEGIO_CS_YCBCR, 2, 2, 0, 0, 90, 9, 0};
    fixture f = make(&opt, 3);
    jpegio_info in;
    assert_int_equal(jpegio_read_info(d, f.jpg, f.len, &in, &err), 0);
    assert_int_equal(in.orientation, 1);
    drop(&f);
    opt.orientation = 6;
    f = make(&opt, 3);
    uint8_t *app1 = memmem(f.jpg, f.len, "Exif\0\0", 6);
    assert_non_null(app1);
    uint8_t *t = app1 + 6;
    /* (little-endian TIFF: IFD0 at 8, its count at 8, the Make entry at
     * 10, the orientation entry at 22) */
    static const struct { size_t at; uint8_t v; size_t at2; uint8_t v2; }
    breaks[] = {
        {0, 'X', 0, 'X'},      /* byte order */
        {2, 43, 2, 43},        /* magic 42 */
        {4, 200, 4, 200},      /* IFD0 offset outside the segment */
        {8, 1, 8, 1},          /* one entry: the orientation is not in it */
        {8, 200, 22, 0x13},    /* entries running past the segment, none
                                  of them the orientation */
        {24, 4, 24, 4},        /* orientation's type: LONG */
        {26, 2, 26, 2},        /* orientation's count: 2 */
        {30, 0, 30, 0},        /* orientation 0 */
    };
    for (size_t b = 0; b < sizeof breaks / sizeof *breaks; b++) {
        uint8_t keep = t[breaks[b].at], keep2 = t[breaks[b].at2];
        t[breaks[b].at] = breaks[b].v;
        t[breaks[b].at2] = breaks[b].v2;
        assert_int_equal(jpegio_read_info(d, f.jpg, f.len, &in, &err), 0);
        if (in.orientation != 1)
            fail_msg("break %zu: orientation %d", b, in.orientation);
        t[breaks[b].at2] = keep2;
        t[breaks[b].at] = keep;
    }
    assert_int_equal(jpegio_read_info(d, f.jpg, f.len, &in, &err), 0);
    assert_int_equal(in.orientation, 6);
    /* random bytes in the TIFF structure: any answer in 1..8, no crash
     * (AddressSanitizer watches the reads in the sanitizer builds) */
    size_t seg = (size_t)app1[-2] << 8 | app1[-1];
    uint32_t h = 1;
    for (int rep = 0; rep < 2000; rep++) {
        for (size_t i = 6; i < seg - 2; i++) {
            h = h * 1103515245u + 12345u;
            if ((h >> 16) % 4 == 0) app1[i] = (uint8_t)(h >> 24);
        }
        assert_int_equal(jpegio_read_info(d, f.jpg, f.len, &in, &err), 0);
        assert_in_range(in.orientation, 1, 8);
    }
    drop(&f);
    jpegio_dec_destroy(d);
}

/* ---- full decodes --------------------------------------------------------- */

static void test_roundtrip(void **state)
{
    (void)state;
    jpegio_dec *d;
    st_error err = {0, ""};
    assert_int_equal(jpegio_dec_create(&d, &err), 0);
    for (size_t k = 0; k < NKINDS; k++) {
        const jfx_opt *o = &kinds[k].o;
        fixture f = make(o, (uint32_t)k);
        int nc = jfx_in_channels(o->cs);
        size_t n = (size_t)o->w * o->h;
        uint8_t *want = malloc(n * 3), *gray = malloc(n);
        for (size_t i = 0; i < n; i++) {
            expect_rgb(o->cs, f.src + i * nc, want + 3 * i);
            gray[i] = pngio_luma(want[3 * i], want[3 * i + 1], want[3 * i + 2]);
        }
        uint32_t w, h;
        uint8_t *rgb = full_decode(d, &f, 1, 3, &w, &h);
        uint8_t *g = full_decode(d, &f, 1, 1, &w, &h);
        double p3 = jfx_psnr(rgb, want, n * 3), p1 = jfx_psnr(g, gray, n);
        /* q95: ~40 dB on this picture; 4:2:0 chroma costs a little */
        if (p3 < 34 || p1 < 36)
            fail_msg("%s: PSNR %.1f dB (RGB), %.1f dB (gray)", kinds[k].name,
                     p3, p1);
        /* 1 channel is exactly pngio_luma of the 3-channel decode */
        for (size_t i = 0; i < n; i++)
            assert_int_equal(g[i], pngio_luma(rgb[3 * i], rgb[3 * i + 1],
                                              rgb[3 * i + 2]));
        /* a stride wider than the row leaves the gaps alone */
        size_t stride = (size_t)w * 3 + 5;
        uint8_t *wide = malloc(stride * h);
        memset(wide, 0xa5, stride * h);
        assert_int_equal(jpegio_decode(d, f.jpg, f.len, 1, 3, wide, stride,
                                       stride * h, &w, &h, &err), 0);
        for (uint32_t y = 0; y < h; y++) {
            assert_memory_equal(wide + y * stride, rgb + (size_t)y * w * 3,
                                (size_t)w * 3);
            for (int z = 0; z < 5; z++)
                assert_int_equal(wide[y * stride + (size_t)w * 3 + z], 0xa5);
        }
        /* a buffer one byte short is refused before anything is decoded */
        assert_int_equal(jpegio_decode(d, f.jpg, f.len, 1, 3, wide,
                                       (size_t)w * 3, n * 3 - 1, &w, &h,
                                       &err), ST_EINVAL);
        st_clearerr(&err);
        free(wide);
        free(rgb);
        free(g);
        free(want);
        free(gray);
        drop(&f);
    }
    jpegio_dec_destroy(d);
}

/* A DCT-scaled decode is close to the full decode area-averaged over
 * scale x scale blocks (the edge blocks over what they hold). */
static void test_scaled(void **state)
{
    (void)state;
    jpegio_dec *d;
    st_error err = {0, ""};
    assert_int_equal(jpegio_dec_create(&d, &err), 0);
    for (size_t k = 0; k < NKINDS; k++) {
        const jfx_opt *o = &kinds[k].o;
        fixture f = make(o, (uint32_t)k);
        uint32_t W, H, w, h;
        uint8_t *full = full_decode(d, &f, 1, 3, &W, &H);
        for (int s = 2; s <= 8; s *= 2) {
            uint8_t *sc = full_decode(d, &f, s, 3, &w, &h);
            double mae = 0;
            for (uint32_t y = 0; y < h; y++)
                for (uint32_t x = 0; x < w; x++)
                    for (int c = 0; c < 3; c++) {
                        double sum = 0;
                        int cnt = 0;
                        for (uint32_t yy = y * s; yy < H && yy < (y + 1) * s; yy++)
                            for (uint32_t xx = x * s; xx < W && xx < (x + 1) * s; xx++, cnt++)
                                sum += full[((size_t)yy * W + xx) * 3 + c];
                        mae += fabs(sum / cnt - sc[((size_t)y * w + x) * 3 + c]);
                    }
            mae /= (double)w * h * 3;
            /* at 1/8 libjpeg decodes DC only and replicates chroma (no
             * fancy upsampling): 4:2:2 / 4:4:0 lose the most (~4.8 here) */
            double tol = s == 2 ? 1.5 : s == 4 ? 2.5 : 6.0;
            if (mae > tol)
                fail_msg("%s at 1/%d: mean abs difference %.2f from the area "
                         "average of the full decode", kinds[k].name, s, mae);
            free(sc);
        }
        free(full);
        drop(&f);
    }
    jpegio_dec_destroy(d);
}

/* ---- region decodes ------------------------------------------------------- */

static void check_region(jpegio_dec *d, const fixture *f, const char *name,
                         const uint8_t *full, uint32_t W, uint32_t H,
                         const jpegio_region *r, int c)
{
    st_error err = {0, ""};
    size_t cap = jpegio_region_cap(r, c);
    uint8_t *blk = malloc(cap);
    jpegio_decoded out;
    int rc = jpegio_decode_region(d, f->jpg, f->len, r, c, blk, cap, &out,
                                  &err);
    if (rc != 0) fail_msg("%s: region: %s", name, err.msg);
    int s = r->scale;
    uint32_t sx0 = r->x / s, sy0 = r->y / s;
    uint32_t sx1 = jpegio_scaled(r->x + r->w, s);
    uint32_t sy1 = jpegio_scaled(r->y + r->h, s);
    assert_true(out.x0 <= sx0 && out.y0 <= sy0);
    assert_true(out.x0 + out.w >= sx1 && out.y0 + out.h >= sy1);
    assert_true(out.x0 + out.w <= W && out.y0 + out.h <= H);
    assert_int_equal(out.rows_total, H);
    assert_int_equal(out.rows_skipped, H - out.h);
    assert_true((size_t)out.w * out.h * c <= cap);
    for (uint32_t y = sy0; y < sy1; y++) {
        const uint8_t *a = full + ((size_t)y * W + sx0) * c;
        const uint8_t *b = blk + ((size_t)(y - out.y0) * out.w +
                                  (sx0 - out.x0)) * c;
        if (memcmp(a, b, (size_t)(sx1 - sx0) * c) != 0)
            fail_msg("%s: region %ux%u at (%u, %u) 1/%d, %d channels: row %u "
                     "differs from the full decode", name, r->w, r->h, r->x,
                     r->y, s, c, y);
    }
    free(blk);
}

static void test_region_equals_full(void **state)
{
    (void)state;
    jpegio_dec *d;
    st_error err = {0, ""};
    assert_int_equal(jpegio_dec_create(&d, &err), 0);
    uint32_t h = 7;
    for (size_t k = 0; k < NKINDS; k++) {
        const jfx_opt *o = &kinds[k].o;
        fixture f = make(o, (uint32_t)k);
        for (int s = 1; s <= 8; s *= 2)
            for (int c = 1; c <= 3; c += 2) {
                uint32_t W, H;
                uint8_t *full = full_decode(d, &f, s, c, &W, &H);
                jpegio_region fixed[] = {
                    {0, 0, o->w, o->h, s},           /* everything */
                    {1, 1, 1, 1, s},                 /* one pixel */
                    {o->w - 1, o->h - 1, 1, 1, s},   /* the last one */
                    {17, 9, 21, 13, s},              /* odd, off iMCUs */
                    {16, 16, 16, 16, s},             /* on iMCUs */
                    {3, 0, o->w - 3, 5, s},          /* to the right edge */
                    {0, 0, 1, 19, s},                /* narrow at x 0 */
                    {0, 3, 2, 9, s},
                    {o->w - 2, 1, 2, 5, s},          /* narrow, right */
                };
                for (size_t i = 0; i < sizeof fixed / sizeof *fixed; i++) {
                    jpegio_region r = fixed[i];
                    if (r.x + r.w > o->w || r.y + r.h > o->h) continue;
                    check_region(d, &f, kinds[k].name, full, W, H, &r, c);
                }
                for (int rep = 0; rep < 12; rep++) {
                    jpegio_region r = {0, 0, 0, 0, s};
                    h = h * 1103515245u + 12345u;
                    r.x = (h >> 8) % o->w;
                    r.w = 1 + (h >> 20) % (o->w - r.x);
                    h = h * 1103515245u + 12345u;
                    r.y = (h >> 8) % o->h;
                    r.h = 1 + (h >> 20) % (o->h - r.y);
                    check_region(d, &f, kinds[k].name, full, W, H, &r, c);
                }
                free(full);
            }
        drop(&f);
    }
    jpegio_dec_destroy(d);
}

/* A large image: the region's rows below are never decoded, and the rows
 * above are skipped, yet the pixels are the full decode's. */
static void test_region_large(void **state)
{
    (void)state;
    jpegio_dec *d;
    st_error err = {0, ""};
    assert_int_equal(jpegio_dec_create(&d, &err), 0);
    for (int prog = 0; prog < 2; prog++) {
        jfx_opt o = {517, 389, JPEGIO_CS_YCBCR, 2, 2, prog, prog ? 0 : 5, 90,
                     0, 0};
        fixture f = make(&o, 11);
        for (int s = 1; s <= 8; s *= 2) {
            uint32_t W, H;
            uint8_t *full = full_decode(d, &f, s, 3, &W, &H);
            jpegio_region r = {201, 133, 224, 197, s};
            check_region(d, &f, prog ? "large-prog" : "large", full, W, H,
                         &r, 3);
            free(full);
        }
        /* bad regions and scales */
        uint8_t px[64];
        jpegio_decoded out;
        jpegio_region bad[] = {
            {0, 0, 0, 1, 1}, {0, 0, 518, 1, 1}, {517, 0, 1, 1, 1},
            {0, 389, 1, 1, 1}, {0, 300, 1, 90, 1}, {0, 0, 1, 1, 3},
        };
        for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
            st_clearerr(&err);
            assert_int_equal(jpegio_decode_region(d, f.jpg, f.len, &bad[i],
                                                  3, px, sizeof px, &out,
                                                  &err), ST_EINVAL);
        }
        /* a block larger than the buffer */
        jpegio_region big = {0, 0, 100, 100, 1};
        st_clearerr(&err);
        assert_int_equal(jpegio_decode_region(d, f.jpg, f.len, &big, 3, px,
                                              sizeof px, &out, &err),
                         ST_EINVAL);
        drop(&f);
    }
    jpegio_dec_destroy(d);
}

/* ---- encode --------------------------------------------------------------- */

static void test_encode(void **state)
{
    (void)state;
    jpegio_enc *e;
    jpegio_dec *d;
    st_error err = {0, ""};
    assert_int_equal(jpegio_enc_create(&e, &err), 0);
    assert_int_equal(jpegio_dec_create(&d, &err), 0);
    /* 700x500 noisy RGB: well over the encoder's first 64 KiB buffer */
    enum { W = 700, H = 500 };
    uint8_t *px = malloc(W * H * 3), *back = malloc(W * H * 3);
    jfx_pattern(px, W, H, 3, 1);
    for (int c = 1; c <= 3; c += 2) {
        const uint8_t *out;
        size_t len;
        assert_int_equal(jpegio_encode(e, px, W, H, c, 90, &out, &len, &err),
                         0);
        uint8_t *copy = malloc(len);
        memcpy(copy, out, len);
        jpegio_info in;
        assert_int_equal(jpegio_read_info(d, copy, len, &in, &err), 0);
        assert_int_equal(in.width, W);
        assert_int_equal(in.height, H);
        assert_int_equal(in.colorspace, c == 3 ? JPEGIO_CS_YCBCR : JPEGIO_CS_GRAY);
        assert_int_equal(in.progressive, 0);
        if (c == 3) {
            assert_int_equal(in.h_samp, 2);
            assert_int_equal(in.v_samp, 2);
        }
        uint32_t w, h;
        assert_int_equal(jpegio_decode(d, copy, len, 1, c, back, W * c,
                                       W * H * c, &w, &h, &err), 0);
        double p = jfx_psnr(px, back, (size_t)W * H * c);
        if (p < 35) fail_msg("%d channels at q90: PSNR %.1f dB", c, p);
        /* deterministic: the same pixels give the same bytes */
        assert_int_equal(jpegio_encode(e, px, W, H, c, 90, &out, &len, &err),
                         0);
        assert_memory_equal(out, copy, len);
        free(copy);
    }
    /* quality moves the size */
    const uint8_t *out;
    size_t lo, hi;
    assert_int_equal(jpegio_encode(e, px, W, H, 3, 20, &out, &lo, &err), 0);
    assert_int_equal(jpegio_encode(e, px, W, H, 3, 98, &out, &hi, &err), 0);
    assert_true(lo * 2 < hi);
    assert_int_equal(jpegio_encode(e, px, W, H, 3, 0, &out, &lo, &err),
                     ST_EINVAL);
    assert_int_equal(jpegio_encode(e, px, W, H, 4, 90, &out, &lo, &err),
                     ST_EINVAL);
    assert_int_equal(jpegio_encode(e, px, 0, H, 3, 90, &out, &lo, &err),
                     ST_EINVAL);
    /* a failure inside libjpeg leaves the encoder usable */
    st_clearerr(&err);
    assert_int_equal(jpegio_encode(e, px, 70000, 1, 1, 90, &out, &lo, &err),
                     ST_EDECODE);
    assert_non_null(strstr(err.msg, "65500"));
    assert_int_equal(jpegio_encode(e, px, 5, 5, 3, 90, &out, &lo, &err), 0);
    free(px);
    free(back);
    jpegio_enc_destroy(e);
    jpegio_enc_destroy(NULL);
    jpegio_dec_destroy(d);
}

/* ---- orientation ---------------------------------------------------------- */

/* A 3x2 image (w 3, h 2), one channel, and what each orientation gives,
 * written out by hand from the EXIF 2.3 definitions:
 *     a b c
 *     d e f                                                              */
static void test_orient(void **state)
{
    (void)state;
    static const uint8_t src[6] = {'a', 'b', 'c', 'd', 'e', 'f'};
    static const struct { uint32_t w, h; const char *px; } want[9] = {
        {0, 0, ""},
        {3, 2, "abcdef"},   /* 1 */
        {3, 2, "cbafed"},   /* 2 mirror horizontal */
        {3, 2, "fedcba"},   /* 3 rotate 180 */
        {3, 2, "defabc"},   /* 4 mirror vertical */
        {2, 3, "adbecf"},   /* 5 transpose */
        {2, 3, "daebfc"},   /* 6 rotate 90 clockwise */
        {2, 3, "fcebda"},   /* 7 transverse */
        {2, 3, "cfbead"},   /* 8 rotate 270 clockwise */
    };
    for (int o = 1; o <= 8; o++) {
        uint8_t dst[6];
        uint32_t w, h;
        jpegio_oriented_size(o, 3, 2, &w, &h);
        assert_int_equal(w, want[o].w);
        assert_int_equal(h, want[o].h);
        jpegio_orient(o, src, 3, 2, 1, dst);
        if (memcmp(dst, want[o].px, 6) != 0)
            fail_msg("orientation %d: %.6s, expected %s", o, (char *)dst,
                     want[o].px);
        /* three channels move together */
        uint8_t s3[18], d3[18];
        for (int i = 0; i < 18; i++) s3[i] = (uint8_t)(src[i / 3] + i % 3 * 100);
        jpegio_orient(o, s3, 3, 2, 3, d3);
        for (int i = 0; i < 18; i++)
            assert_int_equal(d3[i], (uint8_t)(want[o].px[i / 3] + i % 3 * 100));
    }
}

/* ---- against PIL ---------------------------------------------------------- */

static int have_pil(void)
{
    if (jfx_python() != NULL) return 1;
    print_message("python3-pil not importable (tried python3 and "
                  "/usr/bin/python3): skipping the PIL comparison\n");
    return 0;
}

static void compare_pil(jpegio_dec *d, const fixture *f, const char *name,
                        const char *expr, int c, int orient, int scale)
{
    uint32_t w, h;
    uint8_t *mine = full_decode(d, f, scale, c, &w, &h);
    jpegio_info in;
    st_error err = {0, ""};
    assert_int_equal(jpegio_read_info(d, f->jpg, f->len, &in, &err), 0);
    size_t n = (size_t)w * h * c;
    if (orient) {
        uint8_t *o = malloc(n);
        jpegio_orient(in.orientation, mine, w, h, c, o);
        free(mine);
        mine = o;
    }
    uint8_t *pil = malloc(n);
    if (jfx_pil(f->jpg, f->len, expr, pil, n) != 0)
        fail_msg("%s: PIL could not decode it (%s)", name, expr);
    size_t diff = 0;
    for (size_t i = 0; i < n; i++) diff += mine[i] != pil[i];
    double mae = jfx_mae(mine, pil, n);
    /* both are libjpeg-turbo with its defaults: identical is expected */
    if (diff != 0)
        fail_msg("%s (%s, 1/%d): %zu of %zu samples differ from PIL's, "
                 "mean %.3f", name, expr, scale, diff, n, mae);
    free(mine);
    free(pil);
}

static void test_against_pil(void **state)
{
    (void)state;
    if (!have_pil()) skip();
    jpegio_dec *d;
    st_error err = {0, ""};
    assert_int_equal(jpegio_dec_create(&d, &err), 0);
    for (size_t k = 0; k < NKINDS; k++) {
        fixture f = make(&kinds[k].o, (uint32_t)k);
        compare_pil(d, &f, kinds[k].name, "im.convert(\"RGB\")", 3, 0, 1);
        compare_pil(d, &f, kinds[k].name, "im.convert(\"L\")", 1, 0, 1);
        /* DCT-scaled: PIL's draft mode asks libjpeg for the same scale */
        for (int s = 2; s <= 8; s *= 2) {
            char expr[128];
            const jfx_opt *o = &kinds[k].o;
            snprintf(expr, sizeof expr, "[im.draft(\"RGB\", (%u, %u)), "
                     "im][1].convert(\"RGB\")", o->w / s, o->h / s);
            compare_pil(d, &f, kinds[k].name, expr, 3, 0, s);
        }
        drop(&f);
    }
    /* every orientation, as ImageOps.exif_transpose */
    for (int o = 1; o <= 8; o++) {
        jfx_opt opt = {37, 23, JPEGIO_CS_YCBCR, 2, 2, 0, 0, 90, o, o & 1};
        fixture f = make(&opt, 9);
        compare_pil(d, &f, "exif",
                    "ImageOps.exif_transpose(im).convert(\"RGB\")", 3, 1, 1);
        drop(&f);
    }
    /* the CMYK formula over a picture holding every stored (C, K) pair:
     * C runs along x, K along y, at q100 4:4:4 */
    jfx_opt opt = {256, 256, JPEGIO_CS_CMYK, 1, 1, 0, 0, 100, 0, 0};
    uint8_t *cmyk = malloc(256 * 256 * 4);
    for (int y = 0; y < 256; y++)
        for (int x = 0; x < 256; x++) {
            uint8_t *p = cmyk + (y * 256 + x) * 4;
            p[0] = (uint8_t)x, p[1] = (uint8_t)(255 - x), p[2] = (uint8_t)y;
            p[3] = (uint8_t)y;
        }
    fixture f = {cmyk, NULL, 0};
    f.jpg = jfx_encode(&opt, cmyk, &f.len);
    compare_pil(d, &f, "cmyk-all", "im.convert(\"RGB\")", 3, 0, 1);
    drop(&f);
    jpegio_dec_destroy(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_info),
        cmocka_unit_test(test_exif_orientation),
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_scaled),
        cmocka_unit_test(test_region_equals_full),
        cmocka_unit_test(test_region_large),
        cmocka_unit_test(test_encode),
        cmocka_unit_test(test_orient),
        cmocka_unit_test(test_against_pil),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
