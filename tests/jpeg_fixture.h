/* tests/jpeg_fixture.h — test-only JPEG fixtures, written with libjpeg
 * directly (not through datasets/jpegio, which is what is under test), and
 * a bridge to PIL for reference decodes. Shared by test_jpegio.c and
 * test_jpegio_robust.c (through jpegio_fixture.h), test_folder.c and
 * test_source.c. Include it after <cmocka.h>.
 *
 * defines: jfx_opt, jfx_encode, jfx_pattern, jfx_exif, jfx_python,
 *          jfx_pil, jfx_mae, jfx_psnr
 *
 * jfx_encode stores pixels in any colour space libjpeg writes (gray, YCbCr,
 * RGB, Adobe CMYK, Adobe YCCK), with chosen sampling factors, baseline or
 * progressive, restart markers, quality, and an optional EXIF APP1 holding
 * an orientation (little or big endian TIFF). Only static functions: each
 * test binary compiles its own copy.
 */
#ifndef TEST_JPEG_FIXTURE_H
#define TEST_JPEG_FIXTURE_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <jpeglib.h>

#include "datasets/jpegio.h"

#define JFX_FN static __attribute__((unused))

typedef struct jfx_opt {
    uint32_t w, h;
    int cs;            /* JPEGIO_CS_* to store */
    int hs, vs;        /* sampling factors of the first component (colour) */
    int progressive;
    int restart;       /* restart interval in MCUs; 0: none */
    int quality;       /* 0: 95 */
    int orientation;   /* 0: no EXIF; else this value in an EXIF APP1 */
    int exif_be;       /* EXIF in big-endian ("MM") byte order */
} jfx_opt;

/* Input channels jfx_encode takes for a colour space: gray 1, CMYK / YCCK
 * 4 (CMYK as stored, i.e. Adobe-inverted), else RGB 3. */
JFX_FN int jfx_in_channels(int cs)
{
    return cs == JPEGIO_CS_GRAY ? 1 : cs >= JPEGIO_CS_CMYK ? 4 : 3;
}

/* An EXIF APP1 payload ("Exif\0\0" + TIFF) with a Make tag and the
 * orientation tag in IFD0. @return its length (b holds >= 64 bytes). */
JFX_FN size_t jfx_exif(uint8_t *b, int orientation, int be)
{
    memset(b, 0, 64);
    memcpy(b, "Exif\0\0", 6);
    uint8_t *t = b + 6;
#define JFX_P16(p, v) (be ? ((p)[0] = (uint8_t)((v) >> 8), (p)[1] = (uint8_t)(v)) \
                          : ((p)[0] = (uint8_t)(v), (p)[1] = (uint8_t)((v) >> 8)))
#define JFX_P32(p, v) (be ? (JFX_P16(p, (v) >> 16), JFX_P16((p) + 2, (v) & 0xffff)) \
                          : (JFX_P16(p, (v) & 0xffff), JFX_P16((p) + 2, (v) >> 16)))
    t[0] = t[1] = be ? 'M' : 'I';
    JFX_P16(t + 2, 42u);
    JFX_P32(t + 4, 8u);
    JFX_P16(t + 8, 2u);                 /* two entries */
    uint8_t *e = t + 10;
    JFX_P16(e, 0x010fu);                /* Make, ASCII, 4: "abc" */
    JFX_P16(e + 2, 2u);
    JFX_P32(e + 4, 4u);
    memcpy(e + 8, "abc", 4);
    e += 12;
    JFX_P16(e, 0x0112u);                /* Orientation, SHORT, 1 */
    JFX_P16(e + 2, 3u);
    JFX_P32(e + 4, 1u);
    JFX_P16(e + 8, (unsigned)orientation);
    e += 12;
    JFX_P32(e, 0u);                     /* no next IFD */
#undef JFX_P16
#undef JFX_P32
    return (size_t)(e + 4 - b);
}

/* Encodes (h, w, jfx_in_channels(o->cs)) pixels; a new malloc'd buffer. A
 * libjpeg failure exits (the test fails). */
JFX_FN uint8_t *jfx_encode(const jfx_opt *o, const uint8_t *px, size_t *len)
{
    struct jpeg_compress_struct ci;
    struct jpeg_error_mgr jerr;
    ci.err = jpeg_std_error(&jerr);
    jpeg_create_compress(&ci);
    unsigned char *buf = NULL;
    unsigned long n = 0;
    jpeg_mem_dest(&ci, &buf, &n);
    int nc = jfx_in_channels(o->cs);
    ci.image_width = o->w;
    ci.image_height = o->h;
    ci.input_components = nc;
    ci.in_color_space = nc == 1 ? JCS_GRAYSCALE : nc == 3 ? JCS_RGB : JCS_CMYK;
    jpeg_set_defaults(&ci);
    static const J_COLOR_SPACE stored[6] = {JCS_UNKNOWN, JCS_GRAYSCALE, JCS_YCbCr,
                                            JCS_RGB, JCS_CMYK, JCS_YCCK};
    jpeg_set_colorspace(&ci, stored[o->cs]);
    if (o->cs >= JPEGIO_CS_CMYK) ci.write_Adobe_marker = TRUE;
    jpeg_set_quality(&ci, o->quality ? o->quality : 95, TRUE);
    if (o->cs != JPEGIO_CS_GRAY && o->hs > 0) {
        ci.comp_info[0].h_samp_factor = o->hs;
        ci.comp_info[0].v_samp_factor = o->vs;
        for (int c = 1; c < ci.num_components; c++) {
            /* YCCK's K is sampled like Y */
            int full = o->cs == JPEGIO_CS_YCCK && c == 3;
            ci.comp_info[c].h_samp_factor = full ? o->hs : 1;
            ci.comp_info[c].v_samp_factor = full ? o->vs : 1;
        }
    }
    if (o->progressive) jpeg_simple_progression(&ci);
    ci.restart_interval = (unsigned)o->restart;
    jpeg_start_compress(&ci, TRUE);
    if (o->orientation) {
        uint8_t app1[64];
        size_t k = jfx_exif(app1, o->orientation, o->exif_be);
        jpeg_write_marker(&ci, JPEG_APP0 + 1, app1, (unsigned)k);
    }
    size_t stride = (size_t)o->w * nc;
    while (ci.next_scanline < ci.image_height) {
        JSAMPROW row = (JSAMPROW)(uintptr_t)(px + ci.next_scanline * stride);
        jpeg_write_scanlines(&ci, &row, 1);
    }
    jpeg_finish_compress(&ci);
    jpeg_destroy_compress(&ci);
    *len = n;
    return buf;
}

/* A smooth, asymmetric test picture (h, w, c): gradients, a few waves and
 * a bright disc; compresses well, so round-trip errors stay small. */
JFX_FN void jfx_pattern(uint8_t *px, uint32_t w, uint32_t h, int c,
                        uint32_t seed)
{
    for (uint32_t y = 0; y < h; y++)
        for (uint32_t x = 0; x < w; x++)
            for (int k = 0; k < c; k++) {
                double v = 40 + 150.0 * x / (w > 1 ? w - 1 : 1) * (k % 2 ? 1 : 0.5)
                         + 60.0 * y / (h > 1 ? h - 1 : 1) * (k == 2)
                         + 25 * sin(0.21 * x + 0.7 * k + seed) * cos(0.17 * y);
                double dx = x - 0.3 * w, dy = y - 0.6 * h;
                if (dx * dx + dy * dy < 0.02 * w * h) v += 50;
                px[((size_t)y * w + x) * c + k] =
                    (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
            }
}

/* Mean absolute difference and PSNR (dB) of two n-byte buffers. */
JFX_FN double jfx_mae(const uint8_t *a, const uint8_t *b, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++) s += abs((int)a[i] - (int)b[i]);
    return n ? s / (double)n : 0;
}

JFX_FN double jfx_psnr(const uint8_t *a, const uint8_t *b, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - (double)b[i];
        s += d * d;
    }
    return s == 0 ? 99 : 10 * log10(255.0 * 255.0 * (double)n / s);
}

/* A python3 that imports PIL ("python3" first, then Debian's own), or
 * NULL. */
JFX_FN const char *jfx_python(void)
{
    static const char *const cands[] = {"python3", "/usr/bin/python3"};
    static int done;
    static const char *found;
    if (done) return found;
    done = 1;
    for (size_t i = 0; i < sizeof cands / sizeof *cands; i++) {
        char cmd[256];
        snprintf(cmd, sizeof cmd, "%s -c 'import PIL' >/dev/null 2>&1",
                 cands[i]);
        if (system(cmd) == 0) return found = cands[i];
    }
    return NULL;
}

/* Decodes jpg with PIL: `im = Image.open(path)`, then the python
 * expression expr on im (e.g. 'im.convert("RGB")' or
 * 'ImageOps.exif_transpose(im).convert("L")'), and writes its tobytes()
 * into out, which must come back exactly n bytes.
 * @return 0, or -1 (PIL missing or the script failed). */
JFX_FN int jfx_pil(const uint8_t *jpg, size_t len, const char *expr,
                   uint8_t *out, size_t n)
{
    const char *py = jfx_python();
    if (py == NULL) return -1;
    char dir[] = "/tmp/jfx-pil-XXXXXX";
    if (mkdtemp(dir) == NULL) return -1;
    char in[96], res[96], cmd[1024];
    snprintf(in, sizeof in, "%s/in.jpg", dir);
    snprintf(res, sizeof res, "%s/out.raw", dir);
    FILE *f = fopen(in, "wb");
    int rc = -1;
    if (f == NULL) goto out;
    size_t wrote = fwrite(jpg, 1, len, f);
    if (fclose(f) != 0 || wrote != len) goto out;
    snprintf(cmd, sizeof cmd,
             "%s -c 'import sys\nfrom PIL import Image, ImageOps\n"
             "im = Image.open(sys.argv[1])\nim = %s\n"
             "open(sys.argv[2], \"wb\").write(im.tobytes())' %s %s",
             py, expr, in, res);
    if (system(cmd) != 0) goto out;
    f = fopen(res, "rb");
    if (f == NULL) goto out;
    size_t got = fread(out, 1, n, f);
    int extra = fgetc(f) != EOF;
    fclose(f);
    rc = got == n && !extra ? 0 : -1;
out:
    unlink(in);
    unlink(res);
    rmdir(dir);
    return rc;
}

#endif
