/* tests/source_fixture.h — test-only helpers shared by test_pngio.c,
 * test_source.c and test_folder.c. Include it after <cmocka.h>.
 *
 * PNGs: write PNGs of any colour type, bit depth, palette, tRNS
 * and interlace with libpng directly (not through pngio, which is what is
 * under test), and compute independently what each pixel must decode to.
 *
 * defines: pfx_png, pfx_png_encode, pfx_png_write, pfx_pixel, pfx_png_check,
 *          pfx_write_file, pfx_scale16, pfx_img, pfx_make, PFX_KINDS;
 *          for dataset trees under one mkdtemp directory (g_root, made by
 *          setup, removed by teardown): pj (path printf), mkdirs, put
 *          (plain or gzip), put_images / put_labels (IDX), truncate_to,
 *          flip_byte, file_size, expect_open_err, open_ok, build_folder /
 *          check_split (PNG class folders and their check), flat_png,
 *          check_unreadable (EACCES, as uid 65534 when running as root)
 *
 * Reference conversions (what datasets/pngio.h promises):
 *   - 1/2/4-bit gray: v * 255 / (2^depth - 1), exact;
 *   - 16-bit: libpng's png_set_scale_16, documented in png.h/pngpriv.h as
 *     PNG_DIV257: (v * 255 + 32895) >> 16, which equals round(v / 257)
 *     exactly for every 16-bit v (test_pngio checks this over all v);
 *   - colour to gray: ITU-R BT.601 on the 8-bit samples, exactly as PIL's
 *     convert("L"): (R*19595 + G*38470 + B*7471 + 0x8000) >> 16 (pfx_luma);
 *   - tRNS: alpha 0 where the pixel equals the transparent colour (gray,
 *     RGB) or trans[index] (palette); alpha is dropped for 1 and 3 channels
 *     and added as 255 for 4.
 * Only static functions (header-only like tests/fixtures.h): each test
 * binary compiles its own copy.
 */
#ifndef TEST_SOURCE_FIXTURE_H
#define TEST_SOURCE_FIXTURE_H

#include <errno.h>
#include <ftw.h>
#include <grp.h>
#include <math.h>
#include <png.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include "datasets/source.h"

/* every helper may go unused in one of the test binaries */
#define PFX_FN static __attribute__((unused))

typedef struct pfx_png {
    uint32_t w, h;
    int color_type;          /* PNG_COLOR_TYPE_* */
    int depth;               /* 1, 2, 4, 8, 16 */
    int interlace;           /* 0 or 1 (Adam7) */
    const uint16_t *v;       /* (h, w, samples per pixel) raw values;
                                palette: the index */
    int npal;
    const png_color *pal;    /* (npal) */
    int ntrans;              /* palette tRNS: alpha of the first ntrans */
    const uint8_t *trans;
    int has_trans_color;     /* gray/RGB tRNS */
    png_color_16 trans_color;
} pfx_png;

typedef struct pfx_px {
    uint8_t r, g, b, a;
    double y;                /* BT.601 luma as PIL computes it, 0..255 */
    int color;               /* source is RGB or palette */
} pfx_px;

/* PIL's RGB -> L (Pillow Convert.c, L24), written out here rather than
 * taken from pngio.h, whose pngio_luma is what is under test. */
PFX_FN double pfx_luma(uint32_t r, uint32_t g, uint32_t b)
{
    return (double)((r * 19595u + g * 38470u + b * 7471u + 0x8000u) >> 16);
}

PFX_FN int pfx_samples(int ct)
{
    switch (ct) {
    case PNG_COLOR_TYPE_GRAY_ALPHA: return 2;
    case PNG_COLOR_TYPE_RGB: return 3;
    case PNG_COLOR_TYPE_RGB_ALPHA: return 4;
    default: return 1;
    }
}

PFX_FN uint8_t pfx_scale16(uint32_t v)
{
    return (uint8_t)((v * 255u + 32895u) >> 16);
}

PFX_FN uint8_t pfx_scale(uint32_t v, int depth)
{
    if (depth == 16) return pfx_scale16(v);
    return (uint8_t)(v * 255u / ((1u << depth) - 1u));
}

typedef struct pfx_buf {
    uint8_t *p;
    size_t len, cap;
} pfx_buf;

PFX_FN void pfx_wr(png_structp png, png_bytep d, size_t n)
{
    pfx_buf *b = png_get_io_ptr(png);
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2;
        b->p = realloc(b->p, b->cap);
        if (b->p == NULL) png_error(png, "oom");
    }
    memcpy(b->p + b->len, d, n);
    b->len += n;
}

PFX_FN void pfx_flush(png_structp png)
{
    (void)png;
}

static int pfx_encode_body(png_structp png, png_infop info, const pfx_png *p,
                          png_bytep *rp, pfx_buf *b)
{
    if (setjmp(png_jmpbuf(png))) return -1;
    png_set_write_fn(png, b, pfx_wr, pfx_flush);
    png_set_IHDR(png, info, p->w, p->h, p->depth, p->color_type,
                 p->interlace ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    if (p->npal) png_set_PLTE(png, info, p->pal, p->npal);
    if (p->ntrans) png_set_tRNS(png, info, p->trans, p->ntrans, NULL);
    if (p->has_trans_color) png_set_tRNS(png, info, NULL, 0, &p->trans_color);
    png_write_info(png, info);
    if (p->depth < 8) png_set_packing(png);
    png_write_image(png, rp);
    png_write_end(png, NULL);
    return 0;
}

/* Encodes p into a new malloc'd buffer. @return 0 or -1. */
PFX_FN int pfx_png_encode(const pfx_png *p, uint8_t **out, size_t *len)
{
    int ns = pfx_samples(p->color_type), bps = p->depth == 16 ? 2 : 1;
    size_t stride = (size_t)p->w * ns * bps;
    uint8_t *rows = malloc(stride * p->h);
    png_bytep *rp = malloc(p->h * sizeof *rp);
    pfx_buf b = {0};
    png_structp png =
        png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    int rc = -1;
    if (rows && rp && info) {
        for (size_t i = 0; i < (size_t)p->w * p->h * ns; i++) {
            if (bps == 2) {
                rows[2 * i] = (uint8_t)(p->v[i] >> 8);
                rows[2 * i + 1] = (uint8_t)p->v[i];
            } else {
                rows[i] = (uint8_t)p->v[i];
            }
        }
        for (uint32_t y = 0; y < p->h; y++) rp[y] = rows + y * stride;
        rc = pfx_encode_body(png, info, p, rp, &b);
    }
    png_destroy_write_struct(&png, &info);
    free(rows);
    free(rp);
    if (rc != 0) {
        free(b.p);
        return -1;
    }
    *out = b.p;
    *len = b.len;
    return 0;
}

PFX_FN int pfx_write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (f == NULL) return -1;
    size_t n = fwrite(data, 1, len, f);
    return fclose(f) == 0 && n == len ? 0 : -1;
}

PFX_FN int pfx_png_write(const char *path, const pfx_png *p)
{
    uint8_t *b;
    size_t n;
    if (pfx_png_encode(p, &b, &n) != 0) return -1;
    int rc = pfx_write_file(path, b, n);
    free(b);
    return rc;
}

/* What pixel (x, y) of p must decode to. */
PFX_FN pfx_px pfx_pixel(const pfx_png *p, uint32_t x, uint32_t y)
{
    int ns = pfx_samples(p->color_type);
    const uint16_t *s = p->v + ((size_t)y * p->w + x) * ns;
    pfx_px o = {0, 0, 0, 255, 0, 0};
    const png_color_16 *tc = &p->trans_color;
    switch (p->color_type) {
    case PNG_COLOR_TYPE_PALETTE:
        o.r = p->pal[s[0]].red;
        o.g = p->pal[s[0]].green;
        o.b = p->pal[s[0]].blue;
        if (s[0] < p->ntrans) o.a = p->trans[s[0]];
        o.color = 1;
        o.y = pfx_luma(o.r, o.g, o.b);
        return o;
    case PNG_COLOR_TYPE_GRAY:
    case PNG_COLOR_TYPE_GRAY_ALPHA:
        o.r = o.g = o.b = pfx_scale(s[0], p->depth);
        o.y = o.r;
        if (ns == 2) o.a = pfx_scale(s[1], p->depth);
        else if (p->has_trans_color && s[0] == tc->gray) o.a = 0;
        return o;
    default:
        o.r = pfx_scale(s[0], p->depth);
        o.g = pfx_scale(s[1], p->depth);
        o.b = pfx_scale(s[2], p->depth);
        o.color = 1;
        o.y = pfx_luma(o.r, o.g, o.b);
        if (ns == 4) o.a = pfx_scale(s[3], p->depth);
        else if (p->has_trans_color && s[0] == tc->red &&
                 s[1] == tc->green && s[2] == tc->blue)
            o.a = 0;
        return o;
    }
}

/* Counts the samples of out (h, w, channels) that differ from the
 * reference; prints the first few. */
PFX_FN int pfx_png_check(const pfx_png *p, int channels, const uint8_t *out,
                        const char *what)
{
    int bad = 0;
    for (uint32_t y = 0; y < p->h; y++)
        for (uint32_t x = 0; x < p->w; x++) {
            pfx_px e = pfx_pixel(p, x, y);
            const uint8_t *o = out + ((size_t)y * p->w + x) * channels;
            int ok;
            if (channels == 1)
                ok = o[0] == (e.color ? e.y : e.r);
            else
                ok = o[0] == e.r && o[1] == e.g && o[2] == e.b &&
                     (channels == 3 || o[3] == e.a);
            if (!ok && bad++ < 3)
                fprintf(stderr,
                        "%s: (%u,%u) got %u,%u,%u,%u want %u,%u,%u,%u "
                        "y=%.2f\n",
                        what, x, y, o[0], channels > 1 ? o[1] : 0,
                        channels > 1 ? o[2] : 0, channels > 3 ? o[3] : 0,
                        e.r, e.g, e.b, e.a, e.y);
        }
    return bad;
}

/* ---- a catalogue of test images ------------------------------------------ */

#define PFX_MAX_PIXELS 4096
#define PFX_KINDS 19

/* One test image with its own storage. */
typedef struct pfx_img {
    pfx_png p;
    char name[40];
    uint16_t v[PFX_MAX_PIXELS * 4];
    png_color pal[256];
    uint8_t trans[256];
} pfx_img;

PFX_FN uint32_t pfx_hash(uint32_t a)
{
    a ^= a >> 16;
    a *= 0x7feb352du;
    a ^= a >> 15;
    a *= 0x846ca68bu;
    a ^= a >> 16;
    return a;
}

/* kind: 0-4 gray 1/2/4/8/16-bit, 5 gray8+tRNS, 6-7 gray+alpha 8/16,
 * 8-9 RGB 8/16, 10 RGB8+tRNS, 11-12 RGBA 8/16, 13-16 palette 1/2/4/8-bit,
 * 17 palette8+tRNS, 18 palette4+tRNS. seed varies the pixels.
 * w*h <= PFX_MAX_PIXELS. */
PFX_FN void pfx_make(pfx_img *im, int kind, uint32_t w, uint32_t h,
                    int interlace, uint32_t seed)
{
    static const int ct[PFX_KINDS] = {0, 0, 0, 0, 0, 0, 4, 4, 2, 2,
                                     2, 6, 6, 3, 3, 3, 3, 3, 3};
    static const int depth[PFX_KINDS] = {1, 2, 4, 8, 16, 8, 8, 16, 8, 16,
                                        8, 8, 16, 1, 2, 4, 8, 8, 4};
    static const char *const nm[PFX_KINDS] = {
        "gray1", "gray2", "gray4", "gray8", "gray16", "gray8-trns",
        "ga8", "ga16", "rgb8", "rgb16", "rgb8-trns", "rgba8", "rgba16",
        "pal1", "pal2", "pal4", "pal8", "pal8-trns", "pal4-trns"};
    static const uint16_t edge16[8] = {0,     128,   32767, 32896,
                                       65535, 65407, 257,   385};
    memset(&im->p, 0, sizeof im->p);
    pfx_png *p = &im->p;
    p->w = w;
    p->h = h;
    p->color_type = ct[kind];
    p->depth = depth[kind];
    p->interlace = interlace;
    p->v = im->v;
    snprintf(im->name, sizeof im->name, "%s%s", nm[kind],
             interlace ? "-adam7" : "");
    int ns = pfx_samples(p->color_type);
    uint32_t max = p->color_type == PNG_COLOR_TYPE_PALETTE
                       ? (p->depth == 8 ? 200u : (1u << p->depth))
                       : (1u << p->depth) - 1u;
    if (p->color_type == PNG_COLOR_TYPE_PALETTE) {
        p->npal = (int)max;
        p->pal = im->pal;
        for (int i = 0; i < p->npal; i++) {
            uint32_t r = pfx_hash(seed * 977u + (uint32_t)i);
            im->pal[i].red = (png_byte)r;
            im->pal[i].green = (png_byte)(r >> 8);
            im->pal[i].blue = (png_byte)(r >> 16);
        }
        max -= 1;
    }
    for (size_t i = 0; i < (size_t)w * h * ns; i++) {
        uint32_t r = pfx_hash((uint32_t)i * 31u + seed * 7919u + (uint32_t)kind);
        im->v[i] = (uint16_t)(r % (max + 1));
        if (p->depth == 16 && i % 3 == 0) im->v[i] = edge16[(i / 3) % 8];
    }
    if (kind == 5 || kind == 10) { /* every third pixel is transparent */
        p->has_trans_color = 1;
        p->trans_color.gray = im->v[0];
        p->trans_color.red = im->v[0];
        p->trans_color.green = im->v[1 % ns];
        p->trans_color.blue = im->v[2 % ns];
        for (size_t i = 0; i < (size_t)w * h; i += 3)
            memcpy(&im->v[i * ns], im->v, ns * sizeof im->v[0]);
    }
    if (kind == 17 || kind == 18) {
        p->ntrans = p->npal / 2;
        p->trans = im->trans;
        for (int i = 0; i < p->ntrans; i++)
            im->trans[i] = (uint8_t)pfx_hash(seed + 5u * (uint32_t)i);
    }
}

/* ---- dataset trees under a temporary directory ------------------------- */

static char g_root[64] __attribute__((unused)); /* mkdtemp dir of the run */

/* printf into one of 64 rotating path buffers (enough for one test's
 * paths to stay valid while it uses them) */
PFX_FN const char *pj(const char *fmt, ...)
{
    static char buf[64][512];
    static int k;
    char *b = buf[k++ & 63];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b, 512, fmt, ap);
    va_end(ap);
    return b;
}

PFX_FN void mkdirs(const char *path)
{
    char tmp[512];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *p = tmp + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            mkdir(tmp, 0755);
            *p = '/';
        }
    assert_true(mkdir(tmp, 0755) == 0 || errno == EEXIST);
}

PFX_FN void put(const char *path, const void *data, size_t len, int gz)
{
    if (!gz) {
        assert_int_equal(pfx_write_file(path, data, len), 0);
        return;
    }
    gzFile g = gzopen(path, "wb9");
    assert_non_null(g);
    assert_int_equal(gzwrite(g, data, (unsigned)len), (int)len);
    assert_int_equal(gzclose(g), Z_OK);
}

PFX_FN void be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* Writes an IDX images file: header (magic, n, rows, cols) + npx bytes. */
PFX_FN void put_images(const char *path, int gz, uint32_t magic, uint32_t n,
                       uint32_t rows, uint32_t cols, const uint8_t *px,
                       size_t npx)
{
    uint8_t *b = malloc(16 + npx);
    be32(b, magic);
    be32(b + 4, n);
    be32(b + 8, rows);
    be32(b + 12, cols);
    memcpy(b + 16, px, npx);
    put(path, b, 16 + npx, gz);
    free(b);
}

PFX_FN void put_labels(const char *path, int gz, uint32_t n,
                       const uint8_t *lab, size_t nlab)
{
    uint8_t *b = malloc(8 + nlab);
    be32(b, 0x801);
    be32(b + 4, n);
    memcpy(b + 8, lab, nlab);
    put(path, b, 8 + nlab, gz);
    free(b);
}

PFX_FN void truncate_to(const char *path, off_t n)
{
    assert_int_equal(truncate(path, n), 0);
}

PFX_FN off_t file_size(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return st.st_size;
}

PFX_FN void flip_byte(const char *path, off_t at)
{
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    assert_int_equal(fseeko(f, at, SEEK_SET), 0);
    int c = fgetc(f);
    assert_int_equal(fseeko(f, at, SEEK_SET), 0);
    fputc(c ^ 0x55, f);
    assert_int_equal(fclose(f), 0);
}

/* Opens path and expects code with every needle in the message. */
PFX_FN void expect_open_err(const char *path, const source_options *opt,
                            int code, const char *n1, const char *n2)
{
    source *s = (source *)1;
    st_error err = {0, ""};
    int rc = source_open(path, opt, &s, &err);
    if (rc != code || (n1 && !strstr(err.msg, n1)) ||
        (n2 && !strstr(err.msg, n2)))
        fprintf(stderr, "open %s: rc %d msg \"%s\" (want %d, %s, %s)\n", path,
                rc, err.msg, code, n1 ? n1 : "", n2 ? n2 : "");
    assert_int_equal(rc, code);
    assert_int_equal(err.code, code);
    assert_null(s);
    if (n1) assert_non_null(strstr(err.msg, n1));
    if (n2) assert_non_null(strstr(err.msg, n2));
    assert_null(strchr(err.msg, '\n'));
}

PFX_FN source *open_ok(const char *path, const source_options *opt)
{
    source *s = NULL;
    st_error err = {0, ""};
    int rc = source_open(path, opt, &s, &err);
    if (rc != 0) fprintf(stderr, "open %s: %s\n", path, err.msg);
    assert_int_equal(rc, 0);
    assert_non_null(s);
    return s;
}

PFX_FN int rm_one(const char *p, const struct stat *st, int flag,
                  struct FTW *f)
{
    (void)st;
    (void)flag;
    (void)f;
    return remove(p);
}

PFX_FN int setup(void **state)
{
    (void)state;
    snprintf(g_root, sizeof g_root, "/tmp/st_source_XXXXXX");
    if (mkdtemp(g_root) == NULL) return -1;
    return chmod(g_root, 0755);
}

PFX_FN int teardown(void **state)
{
    (void)state;
    return nftw(g_root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

typedef struct spec {
    const char *dir;   /* split/class relative to the dataset */
    int kind;          /* pfx_make kind */
    int interlace;
} spec;

enum { FW = 9, FH = 6, MAXSPEC = 32 };
static pfx_img g_img[MAXSPEC] __attribute__((unused));

/* Writes spec[i] as DIR/spec.dir/NN-kind.png (NN = i, so that the sorted
 * order inside a class is the spec order). List specs in class order. */
PFX_FN void build_folder(const char *dir_, const spec *sp, int n)
{
    char dir[512];
    snprintf(dir, sizeof dir, "%s", dir_);
    assert_true(n <= MAXSPEC);
    for (int i = 0; i < n; i++) {
        pfx_make(&g_img[i], sp[i].kind, FW, FH, sp[i].interlace,
                (uint32_t)i + 11);
        mkdirs(pj("%s/%s", dir, sp[i].dir));
        assert_int_equal(pfx_png_write(pj("%s/%s/%02d-%s.png", dir, sp[i].dir,
                                         i, g_img[i].name),
                                      &g_img[i].p),
                         0);
    }
}

/* Reads split `split` (samples [from, from+n) of the spec) and checks every
 * pixel against the reference, the labels, and when the file's own bytes
 * are offered. */
PFX_FN void check_split(source *s, int split, int from, int n,
                        const int *labels)
{
    const source_info *in = source_info_of(s);
    int c = (int)in->channels;
    source_scratch *sc;
    st_error err = {0, ""};
    assert_int_equal(source_scratch_create(s, &sc, &err), 0);
    assert_int_equal(in->splits[split].count, n);
    uint8_t px[FW * FH * 4];
    for (int k = 0; k < n; k++) {
        pfx_img *im = &g_img[from + k];
        int32_t lab = -1;
        source_native sn;
        int rc = source_read(s, split, (uint64_t)k, sc, px, &lab, &sn, &err);
        const uint8_t *png = sn.bytes;
        size_t plen = sn.len;
        if (rc) fprintf(stderr, "%s\n", err.msg);
        assert_int_equal(rc, 0);
        assert_int_equal(pfx_png_check(&im->p, c, px, im->name), 0);
        assert_int_equal(lab, labels[k]);
        /* natural channels; palette files are never offered as is */
        int ct = im->p.color_type;
        int nat = ct == PNG_COLOR_TYPE_GRAY ? 1
                  : ct == PNG_COLOR_TYPE_GRAY_ALPHA ? 2
                  : ct == PNG_COLOR_TYPE_RGB ? 3
                  : ct == PNG_COLOR_TYPE_RGB_ALPHA ? 4 : 0;
        if (im->p.has_trans_color) nat++;
        int native = im->p.depth == 8 && !im->p.interlace && nat == c;
        assert_int_equal(png != NULL, native);
        if (native) {
            uint8_t *want;
            size_t wlen;
            assert_int_equal(pfx_png_encode(&im->p, &want, &wlen), 0);
            assert_int_equal(plen, wlen);
            assert_memory_equal(png, want, wlen);
            free(want);
        }
    }
    source_scratch_destroy(sc);
}

/* A w x h gray PNG of one value (0 < w*h <= PFX_MAX_PIXELS). */
PFX_FN void flat_png(const char *path, uint32_t w, uint32_t h, uint16_t v)
{
    static pfx_img im;
    pfx_make(&im, 3, w, h, 0, 1);
    for (uint32_t i = 0; i < w * h; i++) im.v[i] = v;
    assert_int_equal(pfx_png_write(path, &im.p), 0);
}

/* Opens path as uid/gid 65534 in a child. @return 0 and fills code/msg, or
 * -1 when the child could not drop privileges. */
PFX_FN int open_as_nobody(const char *path, int *code, char *msg, size_t cap)
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        st_error err = {0, ""};
        int rc = 1;
        if (setgroups(0, NULL) == 0 && setgid(65534) == 0 &&
            setuid(65534) == 0) {
            source *s = NULL;
            rc = source_open(path, NULL, &s, &err) == 0 ? 2 : 0;
            source_close(s);
        }
        if (write(fds[1], &rc, sizeof rc) != sizeof rc ||
            write(fds[1], &err, sizeof err) != sizeof err)
            _exit(1);
        _exit(0);
    }
    close(fds[1]);
    int rc = -1;
    st_error err = {0, ""};
    ssize_t a = read(fds[0], &rc, sizeof rc);
    ssize_t b = read(fds[0], &err, sizeof err);
    close(fds[0]);
    int status;
    waitpid(pid, &status, 0);
    if (a != sizeof rc || b != sizeof err || rc == 1) return -1;
    assert_int_equal(rc, 0); /* 2: it opened an unreadable file */
    *code = err.code;
    snprintf(msg, cap, "%s", err.msg);
    return 0;
}

PFX_FN void check_unreadable(const char *dir, const char *file)
{
    assert_int_equal(chmod(file, 0), 0);
    int code;
    char msg[512];
    if (geteuid() != 0) {
        expect_open_err(dir, NULL, ST_EIO, file, "Permission denied");
    } else if (open_as_nobody(dir, &code, msg, sizeof msg) == 0) {
        assert_int_equal(code, ST_EIO);
        assert_non_null(strstr(msg, file));
        assert_non_null(strstr(msg, "Permission denied"));
    } else {
        skip();
    }
}

#endif
