/* datasets/pngio.c — PNG in memory with libpng's low-level API.
 *
 * implements: pngio_probe (a hand-written IHDR parser: no libpng state, so
 *             it can look at the first few bytes of a file), pngio_decode
 *             (to 1, 3 or 4 channels of 8-bit samples, rows written straight
 *             into the caller's buffer), pngio_encode (deterministic: fixed
 *             zlib level and filter set).
 *
 * Every libpng call runs under a setjmp; libpng's error text lands in a
 * per-call buffer and becomes the st_error message. Warnings are dropped
 * (libraries never print). There is no shared state, so any number of
 * threads may decode at once.
 */
#include "pngio.h"

#include <png.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define PIO_MSG 256
/* zlib level and filter set for pngio_encode: fixed so that the same pixels
 * always give the same bytes (for a given libpng/zlib build). */
#define PIO_LEVEL 6
#define PIO_FILTERS PNG_ALL_FILTERS

static const uint8_t png_sig[8] = {137, 80, 78, 71, 13, 10, 26, 10};

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
           (uint32_t)p[3];
}

/* ---- probe ---------------------------------------------------------------- */

static int valid_depth(int ct, int depth)
{
    switch (ct) {
    case PNG_COLOR_TYPE_GRAY:
        return depth == 1 || depth == 2 || depth == 4 || depth == 8 ||
               depth == 16;
    case PNG_COLOR_TYPE_PALETTE:
        return depth == 1 || depth == 2 || depth == 4 || depth == 8;
    case PNG_COLOR_TYPE_RGB:
    case PNG_COLOR_TYPE_GRAY_ALPHA:
    case PNG_COLOR_TYPE_RGB_ALPHA:
        return depth == 8 || depth == 16;
    default:
        return 0;
    }
}

/* Walks the chunks after IHDR that lie inside the buffer, up to the first
 * IDAT, looking for tRNS. */
static int has_trns(const uint8_t *p, size_t len)
{
    size_t pos = 33;
    while (len >= 8 && pos <= len - 8) {
        uint32_t n = be32(p + pos);
        if (memcmp(p + pos + 4, "IDAT", 4) == 0) return 0;
        if (memcmp(p + pos + 4, "tRNS", 4) == 0) return 1;
        if (n > 0x7fffffffu || (uint64_t)n + 12 > len - pos) return 0;
        pos += (size_t)n + 12;
    }
    return 0;
}

int pngio_probe(const void *src, size_t len, pngio_info *info, st_error *err)
{
    const uint8_t *p = src;
    if (len < 8 || memcmp(p, png_sig, 8) != 0)
        return st_seterr(err, ST_EDECODE, "not a PNG file");
    if (len < 33)
        return st_seterr(err, ST_EDECODE, "truncated PNG header");
    if (be32(p + 8) != 13 || memcmp(p + 12, "IHDR", 4) != 0)
        return st_seterr(err, ST_EDECODE, "corrupt PNG header (no IHDR)");
    if ((uint32_t)crc32(crc32(0, NULL, 0), p + 12, 17) != be32(p + 29))
        return st_seterr(err, ST_EDECODE,
                         "corrupt PNG header (IHDR CRC mismatch)");
    uint32_t w = be32(p + 16), h = be32(p + 20);
    int depth = p[24], ct = p[25];
    if (w == 0 || h == 0 || w > 0x7fffffffu || h > 0x7fffffffu)
        return st_seterr(err, ST_EDECODE, "bad PNG size %ux%u", w, h);
    if (!valid_depth(ct, depth))
        return st_seterr(err, ST_EDECODE,
                         "bad PNG colour type %d / bit depth %d", ct, depth);
    if (p[26] != 0 || p[27] != 0 || p[28] > 1)
        return st_seterr(err, ST_EDECODE,
                         "bad PNG compression/filter/interlace method");
    static const int nat[7] = {1, 0, 3, 3, 2, 0, 4};
    info->width = w;
    info->height = h;
    info->bit_depth = depth;
    info->color_type = ct;
    info->interlaced = p[28];
    info->channels = nat[ct];
    if ((ct == PNG_COLOR_TYPE_GRAY || ct == PNG_COLOR_TYPE_RGB ||
         ct == PNG_COLOR_TYPE_PALETTE) && has_trns(p, len))
        info->channels++;
    return 0;
}

/* ---- libpng plumbing ------------------------------------------------------ */

/* libpng's error pointer is a char[PIO_MSG] that receives the message. */
static void pio_error(png_structp png, png_const_charp msg)
{
    char *buf = png_get_error_ptr(png);
    snprintf(buf, PIO_MSG, "libpng: %s", msg);
    png_longjmp(png, 1);
}

static void pio_warning(png_structp png, png_const_charp msg)
{
    (void)png;
    (void)msg;
}

typedef struct rd_src {
    const uint8_t *p;
    size_t len, pos;
} rd_src;

static void rd_fn(png_structp png, png_bytep out, size_t n)
{
    rd_src *s = png_get_io_ptr(png);
    if (n > s->len - s->pos) png_error(png, "truncated PNG (read past end)");
    memcpy(out, s->p + s->pos, n);
    s->pos += n;
}

/* ---- decode --------------------------------------------------------------- */

/* Asks libpng for exactly `channels` 8-bit samples per pixel. */
static void set_transforms(png_structp png, png_infop info, int channels)
{
    int ct = png_get_color_type(png, info);
    int depth = png_get_bit_depth(png, info);
    int color = (ct & PNG_COLOR_MASK_COLOR) != 0;
    int alpha = (ct & PNG_COLOR_MASK_ALPHA) != 0;

    if (ct == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (ct == PNG_COLOR_TYPE_GRAY && depth < 8)
        png_set_expand_gray_1_2_4_to_8(png);
    if (png_get_valid(png, info, PNG_INFO_tRNS)) {
        png_set_tRNS_to_alpha(png);
        alpha = 1;
    }
    if (depth == 16) png_set_scale_16(png);
    /* colour to 1 channel never gets here: pngio_decode_in decodes RGB and
     * applies pngio_luma itself */
    if (channels >= 3 && !color) png_set_gray_to_rgb(png);
    if (channels != 4 && alpha) png_set_strip_alpha(png);
    if (channels == 4 && !alpha) png_set_add_alpha(png, 0xff, PNG_FILLER_AFTER);
}

/* The part that runs under setjmp. Nothing here is modified after setjmp
 * and read after a longjmp, so no volatile is needed. */
static int decode_body(png_structp png, png_infop info, rd_src *src,
                       uint32_t width, uint32_t height, int channels,
                       uint8_t *dst, char *msg)
{
    if (setjmp(png_jmpbuf(png))) return ST_EDECODE;
    png_set_read_fn(png, src, rd_fn);
    png_read_info(png, info);
    uint32_t w = png_get_image_width(png, info);
    uint32_t h = png_get_image_height(png, info);
    if (w != width || h != height) {
        snprintf(msg, PIO_MSG, "image is %ux%u, expected %ux%u", w, h, width,
                 height);
        return ST_EFORMAT;
    }
    set_transforms(png, info, channels);
    int passes = png_set_interlace_handling(png);
    png_read_update_info(png, info);
    size_t stride = (size_t)width * (size_t)channels;
    if (png_get_rowbytes(png, info) != stride ||
        png_get_bit_depth(png, info) != 8) {
        snprintf(msg, PIO_MSG,
                 "libpng transforms gave %zu bytes per row, expected %zu",
                 (size_t)png_get_rowbytes(png, info), stride);
        return ST_EINTERNAL;
    }
    /* Interlaced images: each pass fills its own pixels of every row. */
    for (int pass = 0; pass < passes; pass++)
        for (uint32_t y = 0; y < height; y++)
            png_read_row(png, dst + (size_t)y * stride, NULL);
    png_read_end(png, NULL);
    return 0;
}

/* ---- the decode arena ------------------------------------------------------ */

struct pngio_arena {
    uint8_t *base;      /* (cap) bump-allocated, reset per decode */
    size_t cap, used;
    uint64_t overflows; /* allocations served by malloc instead */
};

#define ARENA_ALIGN 16u

int pngio_arena_create(uint32_t width, int channels, pngio_arena **out,
                       st_error *err)
{
    *out = NULL;
    pngio_arena *a = calloc(1, sizeof *a);
    /* png_struct + info (~2 KiB), zlib's inflate state and 32 KiB window,
     * and libpng's row buffers (16-bit RGBA rows at worst: 8 bytes a
     * pixel, a few of them) */
    size_t row = (size_t)width * 8 + 64;
    if (a) a->cap = (192u << 10) + 4 * row * (size_t)(channels > 0);
    if (a == NULL || (a->base = malloc(a->cap)) == NULL) {
        free(a);
        return st_seterr(err, ST_ENOMEM, "png: no memory for a decode arena");
    }
    *out = a;
    return 0;
}

void pngio_arena_destroy(pngio_arena *a)
{
    if (a == NULL) return;
    free(a->base);
    free(a);
}

uint64_t pngio_arena_overflows(const pngio_arena *a) { return a->overflows; }

static png_voidp arena_malloc(png_structp png, png_alloc_size_t n)
{
    pngio_arena *a = png_get_mem_ptr(png);
    size_t need = (n + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
    if (need <= a->cap - a->used) {
        void *p = a->base + a->used;
        a->used += need;
        return p;
    }
    a->overflows++;
    return malloc(n);
}

static void arena_free(png_structp png, png_voidp p)
{
    pngio_arena *a = png_get_mem_ptr(png);
    uint8_t *b = p;
    if (b != NULL && (b < a->base || b >= a->base + a->cap)) free(p);
}

int pngio_decode(const void *src, size_t len, uint32_t width,
                 uint32_t height, int channels, uint8_t *dst, st_error *err)
{
    return pngio_decode_in(NULL, src, len, width, height, channels, dst, err);
}

/* One decode to exactly `channels` samples (libpng's transforms). */
static int decode_one(pngio_arena *a, const void *src, size_t len,
                      uint32_t width, uint32_t height, int channels,
                      uint8_t *dst, st_error *err)
{
    char msg[PIO_MSG] = "";
    rd_src rs = {src, len, 0};
    if (a) a->used = 0;
    png_structp png =
        a ? png_create_read_struct_2(PNG_LIBPNG_VER_STRING, msg, pio_error,
                                     pio_warning, a, arena_malloc, arena_free)
          : png_create_read_struct(PNG_LIBPNG_VER_STRING, msg, pio_error,
                                   pio_warning);
    if (png == NULL)
        return st_seterr(err, ST_ENOMEM, "png_create_read_struct failed");
    png_infop info = png_create_info_struct(png);
    if (info == NULL) {
        png_destroy_read_struct(&png, NULL, NULL);
        return st_seterr(err, ST_ENOMEM, "png_create_info_struct failed");
    }
    int rc = decode_body(png, info, &rs, width, height, channels, dst, msg);
    png_destroy_read_struct(&png, &info, NULL);
    if (rc < 0) return st_seterr(err, rc, "%s", msg);
    return 0;
}

/* A colour image asked for as 1 channel: decoded as RGB into a temporary
 * image, then turned to gray with pngio_luma (libpng's own rgb_to_gray
 * rounds differently from PIL). The temporary image is malloc'd: only
 * packdata converts colour to gray, the loader never does. */
static int decode_gray(pngio_arena *a, const void *src, size_t len,
                       uint32_t width, uint32_t height, uint8_t *dst,
                       st_error *err)
{
    size_t n = (size_t)width * height;
    if (n > SIZE_MAX / 3)
        return st_seterr(err, ST_ENOMEM, "png: %ux%u image is too large",
                         width, height);
    uint8_t *rgb = malloc(n * 3);
    if (rgb == NULL)
        return st_seterr(err, ST_ENOMEM, "png: no memory for a %ux%u RGB "
                         "image", width, height);
    int rc = decode_one(a, src, len, width, height, 3, rgb, err);
    for (size_t i = 0; rc == 0 && i < n; i++)
        dst[i] = pngio_luma(rgb[3 * i], rgb[3 * i + 1], rgb[3 * i + 2]);
    free(rgb);
    return rc;
}

int pngio_decode_in(pngio_arena *a, const void *src, size_t len,
                    uint32_t width, uint32_t height, int channels,
                    uint8_t *dst, st_error *err)
{
    if (channels != 1 && channels != 3 && channels != 4)
        return st_seterr(err, ST_EINVAL, "pngio_decode: %d channels",
                         channels);
    pngio_info pi;
    st_error pe = {0, ""};
    if (channels == 1 && pngio_probe(src, len, &pi, &pe) == 0 &&
        (pi.color_type & PNG_COLOR_MASK_COLOR))
        return decode_gray(a, src, len, width, height, dst, err);
    return decode_one(a, src, len, width, height, channels, dst, err);
}

/* ---- encode --------------------------------------------------------------- */

typedef struct wr_dst {
    uint8_t **buf;
    size_t *cap;
    size_t len;
    int nomem;
} wr_dst;

static void wr_fn(png_structp png, png_bytep data, size_t n)
{
    wr_dst *d = png_get_io_ptr(png);
    if (n > *d->cap - d->len) {
        size_t cap = *d->cap ? *d->cap : 4096;
        while (cap - d->len < n) cap *= 2;
        uint8_t *nb = realloc(*d->buf, cap);
        if (nb == NULL) {
            d->nomem = 1;
            png_error(png, "out of memory growing the output buffer");
        }
        *d->buf = nb;
        *d->cap = cap;
    }
    memcpy(*d->buf + d->len, data, n);
    d->len += n;
}

static void wr_flush(png_structp png)
{
    (void)png;
}

static int encode_body(png_structp png, png_infop info, wr_dst *d,
                       const uint8_t *pixels, uint32_t width,
                       uint32_t height, int channels)
{
    static const int ct[5] = {0, PNG_COLOR_TYPE_GRAY, 0, PNG_COLOR_TYPE_RGB,
                              PNG_COLOR_TYPE_RGB_ALPHA};
    if (setjmp(png_jmpbuf(png))) return d->nomem ? ST_ENOMEM : ST_EINTERNAL;
    png_set_write_fn(png, d, wr_fn, wr_flush);
    png_set_compression_level(png, PIO_LEVEL);
    png_set_filter(png, PNG_FILTER_TYPE_BASE, PIO_FILTERS);
    png_set_IHDR(png, info, width, height, 8, ct[channels],
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
                 PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    size_t stride = (size_t)width * (size_t)channels;
    for (uint32_t y = 0; y < height; y++)
        png_write_row(png, pixels + (size_t)y * stride);
    png_write_end(png, NULL);
    return 0;
}

int pngio_encode(const uint8_t *pixels, uint32_t width, uint32_t height,
                 int channels, uint8_t **buf, size_t *cap, size_t *len,
                 st_error *err)
{
    if (channels != 1 && channels != 3 && channels != 4)
        return st_seterr(err, ST_EINVAL, "pngio_encode: %d channels",
                         channels);
    if (width == 0 || height == 0)
        return st_seterr(err, ST_EINVAL, "pngio_encode: empty image");
    char msg[PIO_MSG] = "";
    wr_dst d = {buf, cap, 0, 0};
    png_structp png =
        png_create_write_struct(PNG_LIBPNG_VER_STRING, msg, pio_error,
                                pio_warning);
    if (png == NULL)
        return st_seterr(err, ST_ENOMEM, "png_create_write_struct failed");
    png_infop info = png_create_info_struct(png);
    if (info == NULL) {
        png_destroy_write_struct(&png, NULL);
        return st_seterr(err, ST_ENOMEM, "png_create_info_struct failed");
    }
    int rc = encode_body(png, info, &d, pixels, width, height, channels);
    png_destroy_write_struct(&png, &info);
    if (rc < 0) return st_seterr(err, rc, "%s", msg);
    *len = d.len;
    return 0;
}
