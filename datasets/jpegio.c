/* datasets/jpegio.c — JPEG in memory with libjpeg-turbo (see jpegio.h).
 *
 * implements: the marker walk (a hand-written parser that finds the frame
 *             header and the EXIF orientation in the caller's buffer
 *             without allocating, and refuses non-8-bit and zero-sized
 *             frames before libjpeg sees them), the decoder (full,
 *             DCT-scaled, cropped), the encoder (a growable destination
 *             kept in the handle), and the eight EXIF orientations.
 *
 * Errors: one error manager per handle. error_exit and every warning
 * (emit_message with level < 0) format libjpeg's message into the handle
 * and longjmp back to the public call, which aborts the libjpeg object
 * (jpeg_abort_*: the object stays usable) and returns ST_EDECODE. Trace
 * messages (level >= 0) are dropped; nothing is ever printed.
 *
 * Colour (what PIL does, so that packs match PIL/torchvision):
 * - gray, YCbCr and RGB to 3 channels: libjpeg's own JCS_RGB output (gray
 *   is replicated by libjpeg-turbo's gray->RGB converter);
 * - YCbCr / RGB to 1 channel: decoded to RGB, then pngio_luma. PIL's
 *   Image.open(f).convert("L") decodes a colour JPEG to RGB and applies
 *   its L24 conversion; libjpeg's YCbCr->gray would keep Y, which differs
 *   by a level here and there. tests/test_jpegio.c checks against PIL.
 * - CMYK / YCCK: decoded to JCS_CMYK (libjpeg turns YCCK into CMYK). The
 *   stored values are inverted (Adobe's convention; PIL assumes it for
 *   every 4-component JPEG: rawmode "CMYK;I"), so with stored s and
 *   n = s_K: R = n - n*(255 - s_C)/255 rounded as an exact x*y/255
 *   (the same for G, B): this equals PIL 9.4's CMYK->RGB applied to the
 *   un-inverted values, checked over all (C, K) pairs in the test. To 1
 *   channel: that RGB, then pngio_luma (PIL goes CMYK -> RGB -> L too).
 *
 * Block smoothing is off (see set_output), so a progressive file that
 * stops short of its last AC scans decodes the same whole or cropped.
 *
 * Region decode: the crop asked of libjpeg is widened by one column on
 * each side that is not an image edge, and to 2 * max_h_samp_factor + 1
 * columns at least (a narrower crop switches libjpeg-turbo to its plain
 * upsampler). libjpeg-turbo's fancy upsampler
 * treats the crop's edges as image edges, so the outermost column of a
 * crop may differ from a full decode; with the margin, every pixel of the
 * requested region equals the full decode's (the test checks this on all
 * subsamplings, baseline and progressive).
 */
#include "jpegio.h"
#include "pngio.h"

#include <setjmp.h>
#include <stddef.h>
#include <stdio.h> /* before jpeglib.h, which needs FILE */
#include <jerror.h>
#include <jpeglib.h>
#include <stdlib.h>
#include <string.h>

/* A crafted progressive file can hold thousands of tiny scans, each of
 * which costs a pass over the coefficient buffer; real encoders write ~10.
 * libjpeg-turbo's own tools cap scans the same way. */
#define JIO_MAX_SCANS 500
/* Rows asked of jpeg_read_scanlines per call (>= rec_outbuf_height, so
 * libjpeg never stages rows in a buffer of its own). */
#define JIO_ROWS 4
/* First size of an encoder's output buffer. */
#define JIO_ENC_INITIAL (64u << 10)

/* ---- the marker walk ----------------------------------------------------- */

int jpegio_is_jpeg(const void *buf, size_t len)
{
    const uint8_t *p = buf;
    return len >= 3 && p[0] == 0xff && p[1] == 0xd8 && p[2] == 0xff;
}

static uint32_t be16(const uint8_t *p) { return (uint32_t)p[0] << 8 | p[1]; }

/* 16 and 32-bit TIFF integers in the byte order le says. */
static uint32_t tiff16(const uint8_t *p, int le)
{
    return le ? (uint32_t)p[1] << 8 | p[0] : be16(p);
}

static uint32_t tiff32(const uint8_t *p, int le)
{
    return le ? (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 |
                    (uint32_t)p[1] << 8 | p[0]
              : be16(p) << 16 | be16(p + 2);
}

/* The orientation in a TIFF structure t (n bytes: what follows "Exif\0\0"
 * in APP1): IFD0's tag 0x0112, type SHORT, count 1, value 1..8; anything
 * else, or any offset outside t, gives 1. */
static int exif_orientation(const uint8_t *t, size_t n)
{
    if (n < 8) return 1;
    int le;
    if (t[0] == 'I' && t[1] == 'I') le = 1;
    else if (t[0] == 'M' && t[1] == 'M') le = 0;
    else return 1;
    if (tiff16(t + 2, le) != 42) return 1;
    uint64_t ifd = tiff32(t + 4, le);
    if (ifd + 2 > n) return 1;
    uint32_t count = tiff16(t + ifd, le);
    for (uint32_t k = 0; k < count; k++) {
        uint64_t e = ifd + 2 + 12 * (uint64_t)k;
        if (e + 12 > n) return 1;
        if (tiff16(t + e, le) != 0x0112) continue;
        if (tiff16(t + e + 2, le) != 3 || tiff32(t + e + 4, le) != 1)
            return 1;
        uint32_t v = tiff16(t + e + 8, le);
        return v >= 1 && v <= 8 ? (int)v : 1;
    }
    return 1;
}

/* SOF0..SOF15, less DHT (C4), JPG (C8) and DAC (CC). */
static int is_sof(uint8_t m)
{
    return m >= 0xc0 && m <= 0xcf && m != 0xc4 && m != 0xc8 && m != 0xcc;
}

typedef struct jio_head {
    int orientation;         /* from the first Exif APP1; 1 when none */
    int sof;                 /* 1: a frame header was found */
    int precision;           /* its sample precision, bits */
    uint32_t w, h;           /* its size */
} jio_head;

/* Walks the marker segments from SOI to the first SOS (or the end of what
 * is well formed). Never reads outside [p, p + len); libjpeg re-parses
 * everything and reports what is malformed. */
static void walk_markers(const uint8_t *p, size_t len, jio_head *hd)
{
    memset(hd, 0, sizeof *hd);
    hd->orientation = 1;
    int exif_seen = 0;
    size_t pos = 2;
    while (len >= 4 && pos <= len - 4) {
        if (p[pos] != 0xff) return;
        uint8_t m = p[pos + 1];
        if (m == 0xff) { /* fill byte */
            pos++;
            continue;
        }
        pos += 2;
        if (m == 0x01 || (m >= 0xd0 && m <= 0xd8)) continue; /* no length */
        if (m == 0xd9 || m == 0xda) return;                  /* EOI, SOS */
        size_t seg = be16(p + pos);
        if (seg < 2 || seg > len - pos) return;
        const uint8_t *body = p + pos + 2;
        size_t n = seg - 2;
        if (m == 0xe1 && !exif_seen && n >= 6 &&
            memcmp(body, "Exif\0\0", 6) == 0) {
            exif_seen = 1;
            hd->orientation = exif_orientation(body + 6, n - 6);
        }
        if (is_sof(m) && !hd->sof && n >= 5) {
            hd->sof = 1;
            hd->precision = body[0];
            hd->h = be16(body + 1);
            hd->w = be16(body + 3);
        }
        pos += seg;
    }
}

/* ---- the error manager --------------------------------------------------- */

typedef struct jio_err {
    struct jpeg_error_mgr pub;
    jmp_buf jb;              /* set by every public call before libjpeg */
    char msg[JMSG_LENGTH_MAX];
    int nomem;               /* the encoder's buffer could not grow */
} jio_err;

static void on_error_exit(j_common_ptr c)
{
    jio_err *e = (jio_err *)c->err;
    (*c->err->format_message)(c, e->msg);
    longjmp(e->jb, 1);
}

/* level < 0: a warning (corrupt or truncated data), which is an error
 * here; level >= 0: trace messages, dropped. */
static void on_emit(j_common_ptr c, int level)
{
    if (level < 0) on_error_exit(c);
}

static void on_output(j_common_ptr c) { (void)c; }

static void err_init(struct jpeg_error_mgr **slot, jio_err *e)
{
    *slot = jpeg_std_error(&e->pub);
    e->pub.error_exit = on_error_exit;
    e->pub.emit_message = on_emit;
    e->pub.output_message = on_output;
    e->msg[0] = '\0';
}

/* ---- the decoder --------------------------------------------------------- */

/* Quantization and Huffman tables outlive jpeg_abort (libjpeg keeps them
 * for abbreviated streams), so an image that lacks a table would decode
 * with the previous image's, or, in a progressive file that defines a
 * table after its first scan, with the one the previous decode of the same
 * file left: the result would depend on the handle's history. Before each
 * image the table pointers are cleared, so that a missing DQT fails and a
 * missing DHT gets libjpeg-turbo's standard tables, as on a fresh handle;
 * the table structs (allocated in libjpeg's permanent pool) go to a spare
 * list that the wrapped alloc_small hands back when libjpeg allocates a
 * table again, so the pool does not grow image after image. */
#define JIO_SPARE_Q NUM_QUANT_TBLS
#define JIO_SPARE_H (2 * NUM_HUFF_TBLS)

struct jpegio_dec {
    struct jpeg_decompress_struct ci;  /* created once, jpeg_abort'ed
                                          after every image */
    jio_err je;
    struct jpeg_progress_mgr prog;     /* the scan limit */
    void *(*alloc_small)(j_common_ptr, int, size_t); /* libjpeg's own */
    void *spare_q[JIO_SPARE_Q];        /* (nq) unused JQUANT_TBLs */
    void *spare_h[JIO_SPARE_H];        /* (nh) unused JHUFF_TBLs */
    int nq, nh;
};

static jpegio_dec *dec_of(j_common_ptr c)
{
    return (jpegio_dec *)(void *)((char *)c - offsetof(jpegio_dec, ci));
}

static void *recycling_alloc_small(j_common_ptr c, int pool, size_t size)
{
    jpegio_dec *d = dec_of(c);
    if (pool == JPOOL_PERMANENT) {
        if (size == sizeof(JQUANT_TBL) && d->nq > 0) return d->spare_q[--d->nq];
        if (size == sizeof(JHUFF_TBL) && d->nh > 0) return d->spare_h[--d->nh];
    }
    return d->alloc_small(c, pool, size);
}

static void spare_table(void **slot, void **list, int *n, int cap)
{
    if (*slot != NULL && *n < cap) list[(*n)++] = *slot;
    *slot = NULL;
}

/* Forgets every table of the previous image (see above). */
static void forget_tables(jpegio_dec *d)
{
    for (int i = 0; i < NUM_QUANT_TBLS; i++)
        spare_table((void **)&d->ci.quant_tbl_ptrs[i], d->spare_q, &d->nq,
                    JIO_SPARE_Q);
    for (int i = 0; i < NUM_HUFF_TBLS; i++) {
        spare_table((void **)&d->ci.dc_huff_tbl_ptrs[i], d->spare_h, &d->nh,
                    JIO_SPARE_H);
        spare_table((void **)&d->ci.ac_huff_tbl_ptrs[i], d->spare_h, &d->nh,
                    JIO_SPARE_H);
    }
}

static void on_progress(j_common_ptr c)
{
    j_decompress_ptr d = (j_decompress_ptr)c;
    if (d->input_scan_number > JIO_MAX_SCANS) {
        jio_err *e = (jio_err *)c->err;
        snprintf(e->msg, sizeof e->msg,
                 "more than %d scans (a crafted progressive JPEG?)",
                 JIO_MAX_SCANS);
        longjmp(e->jb, 1);
    }
}

int jpegio_dec_create(jpegio_dec **out, st_error *err)
{
    *out = NULL;
    jpegio_dec *d = calloc(1, sizeof *d);
    if (d == NULL)
        return st_seterr(err, ST_ENOMEM, "jpeg: no memory for a decoder");
    err_init(&d->ci.err, &d->je);
    if (setjmp(d->je.jb)) {
        st_seterr(err, ST_ENOMEM, "jpeg_create_decompress: %s", d->je.msg);
        jpeg_destroy_decompress(&d->ci);
        free(d);
        return ST_ENOMEM;
    }
    jpeg_create_decompress(&d->ci);
    d->prog.progress_monitor = on_progress;
    d->ci.progress = &d->prog;
    d->alloc_small = d->ci.mem->alloc_small;
    d->ci.mem->alloc_small = recycling_alloc_small;
    *out = d;
    return 0;
}

void jpegio_dec_destroy(jpegio_dec *d)
{
    if (d == NULL) return;
    jpeg_destroy_decompress(&d->ci);
    free(d);
}

static int map_colorspace(J_COLOR_SPACE cs, int ncomp)
{
    if (cs == JCS_GRAYSCALE && ncomp == 1) return JPEGIO_CS_GRAY;
    if (cs == JCS_YCbCr && ncomp == 3) return JPEGIO_CS_YCBCR;
    if (cs == JCS_RGB && ncomp == 3) return JPEGIO_CS_RGB;
    if (cs == JCS_CMYK && ncomp == 4) return JPEGIO_CS_CMYK;
    if (cs == JCS_YCCK && ncomp == 4) return JPEGIO_CS_YCCK;
    return 0;
}

/* Checks the buffer, hands it to libjpeg and reads the header; runs under
 * the caller's setjmp. */
static int dec_header(jpegio_dec *d, const void *buf, size_t len,
                      jpegio_info *info, st_error *err)
{
    if (!jpegio_is_jpeg(buf, len))
        return st_seterr(err, ST_EFORMAT, "not a JPEG file (no SOI marker)");
    jio_head hd;
    walk_markers(buf, len, &hd);
    if (hd.sof && hd.precision != 8)
        return st_seterr(err, ST_EFORMAT, "%d-bit JPEG (only 8-bit samples "
                         "are supported)", hd.precision);
    if (hd.sof && (hd.w == 0 || hd.h == 0))
        return st_seterr(err, ST_EFORMAT, "zero-sized JPEG (%ux%u)", hd.w,
                         hd.h);
    forget_tables(d);
    jpeg_mem_src(&d->ci, buf, (unsigned long)len);
    jpeg_read_header(&d->ci, TRUE);
    struct jpeg_decompress_struct *ci = &d->ci;
    if (ci->data_precision != 8)
        return st_seterr(err, ST_EFORMAT, "%d-bit JPEG (only 8-bit samples "
                         "are supported)", ci->data_precision);
    if (ci->image_width == 0 || ci->image_height == 0)
        return st_seterr(err, ST_EFORMAT, "zero-sized JPEG (%ux%u)",
                         ci->image_width, ci->image_height);
    int cs = map_colorspace(ci->jpeg_color_space, ci->num_components);
    if (cs == 0)
        return st_seterr(err, ST_EFORMAT, "JPEG with %d components in an "
                         "unknown colour space", ci->num_components);
    info->width = ci->image_width;
    info->height = ci->image_height;
    info->components = ci->num_components;
    info->colorspace = cs;
    info->progressive = ci->progressive_mode ? 1 : 0;
    info->orientation = hd.orientation;
    info->h_samp = ci->comp_info[0].h_samp_factor;
    info->v_samp = ci->comp_info[0].v_samp_factor;
    return 0;
}

/* A failure inside libjpeg (after longjmp): its message, the object reset. */
static int dec_failed(jpegio_dec *d, st_error *err)
{
    jpeg_abort_decompress(&d->ci);
    return st_seterr(err, ST_EDECODE, "%s", d->je.msg);
}

int jpegio_read_info(jpegio_dec *d, const void *buf, size_t len,
                     jpegio_info *out, st_error *err)
{
    if (setjmp(d->je.jb)) return dec_failed(d, err);
    int rc = dec_header(d, buf, len, out, err);
    jpeg_abort_decompress(&d->ci);
    return rc;
}

/* How rows leave libjpeg: straight into dst, or through a row of scratch
 * (libjpeg's image pool) and a conversion. */
enum { CONV_NONE = 0, CONV_LUMA, CONV_CMYK };

static int set_output(jpegio_dec *d, int cs, int channels)
{
    /* Block smoothing estimates the AC coefficients a progressive file
     * never sends from the neighbouring blocks' DC, which a crop does not
     * decode: full and cropped decodes would differ. A progressive file
     * that sends every coefficient (what encoders write) is unaffected. */
    d->ci.do_block_smoothing = FALSE;
    if (cs == JPEGIO_CS_CMYK || cs == JPEGIO_CS_YCCK) {
        d->ci.out_color_space = JCS_CMYK;
        return CONV_CMYK;
    }
    if (cs == JPEGIO_CS_GRAY && channels == 1) {
        d->ci.out_color_space = JCS_GRAYSCALE;
        return CONV_NONE;
    }
    d->ci.out_color_space = JCS_RGB;
    return channels == 1 ? CONV_LUMA : CONV_NONE;
}

/* x * y / 255 rounded to nearest, exact for 8-bit x and y. */
static uint32_t mul255(uint32_t x, uint32_t y)
{
    uint32_t t = x * y + 128;
    return ((t >> 8) + t) >> 8;
}

/* One row of w pixels: RGB (CONV_LUMA) or inverted CMYK (CONV_CMYK) at src
 * to `channels` channels at dst. */
static void convert_row(int conv, const uint8_t *src, uint8_t *dst,
                        uint32_t w, int channels)
{
    for (uint32_t x = 0; x < w; x++) {
        uint32_t r, g, b;
        if (conv == CONV_LUMA) {
            r = src[0], g = src[1], b = src[2];
            src += 3;
        } else {
            uint32_t n = src[3];
            r = n - mul255(255 - src[0], n);
            g = n - mul255(255 - src[1], n);
            b = n - mul255(255 - src[2], n);
            src += 4;
        }
        if (channels == 1) {
            *dst++ = pngio_luma(r, g, b);
        } else {
            dst[0] = (uint8_t)r;
            dst[1] = (uint8_t)g;
            dst[2] = (uint8_t)b;
            dst += 3;
        }
    }
}

/* Reads n rows of the current output width into dst, rows stride bytes
 * apart; after jpeg_start_decompress, under the caller's setjmp. */
static int read_rows(jpegio_dec *d, int conv, int channels, uint8_t *dst,
                     size_t stride, uint32_t n, st_error *err)
{
    struct jpeg_decompress_struct *ci = &d->ci;
    uint32_t w = ci->output_width;
    JSAMPARRAY tmp = NULL;
    if (conv != CONV_NONE)
        tmp = (*ci->mem->alloc_sarray)((j_common_ptr)ci, JPOOL_IMAGE,
                                       w * (JDIMENSION)ci->out_color_components,
                                       JIO_ROWS);
    for (uint32_t y = 0; y < n;) {
        JSAMPROW rows[JIO_ROWS];
        uint32_t want = n - y < JIO_ROWS ? n - y : JIO_ROWS;
        for (uint32_t k = 0; k < want; k++)
            rows[k] = tmp ? tmp[k] : dst + (size_t)(y + k) * stride;
        JDIMENSION got = jpeg_read_scanlines(ci, rows, want);
        if (got == 0)
            return st_seterr(err, ST_EDECODE, "libjpeg gave no row at row "
                             "%u of %u", y, n);
        for (uint32_t k = 0; tmp && k < got; k++)
            convert_row(conv, tmp[k], dst + (size_t)(y + k) * stride, w,
                        channels);
        y += got;
    }
    return 0;
}

static int check_args(int scale, int channels, st_error *err)
{
    if (scale != 1 && scale != 2 && scale != 4 && scale != 8)
        return st_seterr(err, ST_EINVAL, "JPEG scale 1/%d (1, 2, 4 or 8)",
                         scale);
    if (channels != 1 && channels != 3)
        return st_seterr(err, ST_EINVAL, "JPEG to %d channels (1 or 3)",
                         channels);
    return 0;
}

static int decode_body(jpegio_dec *d, const void *buf, size_t len,
                       int scale, int channels, uint8_t *dst, size_t stride,
                       size_t cap, uint32_t *w, uint32_t *h, st_error *err)
{
    jpegio_info info;
    ST_TRY(dec_header(d, buf, len, &info, err));
    int conv = set_output(d, info.colorspace, channels);
    d->ci.scale_num = 1;
    d->ci.scale_denom = (unsigned)scale;
    jpeg_calc_output_dimensions(&d->ci);
    uint32_t ow = d->ci.output_width, oh = d->ci.output_height;
    size_t row = (size_t)ow * (size_t)channels;
    if (stride < row || cap < row || (size_t)(oh - 1) > (cap - row) / stride)
        return st_seterr(err, ST_EINVAL, "JPEG %ux%u at 1/%d needs %ux%ux%d "
                         "bytes, the buffer holds %zu (stride %zu)",
                         info.width, info.height, scale, ow, oh, channels,
                         cap, stride);
    jpeg_start_decompress(&d->ci);
    ST_TRY(read_rows(d, conv, channels, dst, stride, oh, err));
    /* reads up to EOI: a file cut after its last row, or junk before EOI,
     * is an error too */
    jpeg_finish_decompress(&d->ci);
    *w = ow;
    *h = oh;
    return 0;
}

int jpegio_decode(jpegio_dec *d, const void *buf, size_t len, int scale,
                  int channels, uint8_t *dst, size_t stride, size_t cap,
                  uint32_t *w, uint32_t *h, st_error *err)
{
    ST_TRY(check_args(scale, channels, err));
    if (setjmp(d->je.jb)) return dec_failed(d, err);
    int rc = decode_body(d, buf, len, scale, channels, dst, stride, cap, w, h,
                         err);
    jpeg_abort_decompress(&d->ci);
    return rc;
}

size_t jpegio_region_cap(const jpegio_region *r, int channels)
{
    uint64_t s = r->scale >= 1 ? (uint64_t)r->scale : 1;
    uint64_t cols = ((uint64_t)r->x + r->w + s - 1) / s - r->x / s;
    uint64_t rows = ((uint64_t)r->y + r->h + s - 1) / s - r->y / s;
    /* the margin (2) or the least width (2 * 4 + 1), and the left edge
     * rounded down to an iMCU column (at most 8 * max_h_samp_factor (4) - 1
     * scaled pixels) */
    uint64_t wide = cols + 2 > 9 ? cols + 2 : 9;
    return (size_t)((wide + 31) * rows * (uint64_t)channels);
}

static int region_body(jpegio_dec *d, const void *buf, size_t len,
                       const jpegio_region *r, int channels, uint8_t *dst,
                       size_t cap, jpegio_decoded *out, st_error *err)
{
    struct jpeg_decompress_struct *ci = &d->ci;
    jpegio_info info;
    ST_TRY(dec_header(d, buf, len, &info, err));
    if (r->w == 0 || r->h == 0 || r->x >= info.width ||
        r->w > info.width - r->x || r->y >= info.height ||
        r->h > info.height - r->y)
        return st_seterr(err, ST_EINVAL, "region %ux%u at (%u, %u) is not "
                         "inside the %ux%u JPEG", r->w, r->h, r->x, r->y,
                         info.width, info.height);
    int conv = set_output(d, info.colorspace, channels);
    int s = r->scale;
    ci->scale_num = 1;
    ci->scale_denom = (unsigned)s;
    jpeg_start_decompress(ci);
    uint32_t ow = ci->output_width, oh = ci->output_height;
    uint32_t sx0 = r->x / (uint32_t)s, sy0 = r->y / (uint32_t)s;
    uint32_t sx1 = jpegio_scaled(r->x + r->w, s);
    uint32_t sy1 = jpegio_scaled(r->y + r->h, s);
    if (sx1 > ow) sx1 = ow;
    if (sy1 > oh) sy1 = oh;
    JDIMENSION x0 = sx0 > 0 ? sx0 - 1 : 0;
    JDIMENSION cw = (sx1 < ow ? sx1 + 1 : ow) - x0;
    /* a crop that leaves a subsampled component a single sample wide makes
     * libjpeg-turbo swap its fancy upsampler for a plain one; at least
     * 2 * max_h_samp_factor + 1 columns keep every component >= 2 wide */
    JDIMENSION need = 2 * (JDIMENSION)ci->max_h_samp_factor + 1;
    if (cw < need) cw = ow - x0 < need ? ow - x0 : need;
    if (cw < need) {
        x0 = ow > need ? ow - need : 0;
        cw = ow - x0;
    }
    if (cw < ow) jpeg_crop_scanline(ci, &x0, &cw);
    uint32_t rows = sy1 - sy0;
    size_t stride = (size_t)cw * (size_t)channels;
    if (stride * rows > cap)
        return st_seterr(err, ST_EINVAL, "JPEG region needs %ux%ux%d bytes, "
                         "the buffer holds %zu", cw, rows, channels, cap);
    if (sy0 > 0 && jpeg_skip_scanlines(ci, sy0) != sy0)
        return st_seterr(err, ST_EDECODE, "jpeg_skip_scanlines stopped "
                         "short of row %u", sy0);
    ST_TRY(read_rows(d, conv, channels, dst, stride, rows, err));
    out->x0 = x0;
    out->y0 = sy0;
    out->w = cw;
    out->h = rows;
    out->rows_total = oh;
    out->rows_skipped = oh - rows;
    return 0;
}

int jpegio_decode_region(jpegio_dec *d, const void *buf, size_t len,
                         const jpegio_region *r, int channels, uint8_t *dst,
                         size_t cap, jpegio_decoded *out, st_error *err)
{
    ST_TRY(check_args(r->scale, channels, err));
    if (setjmp(d->je.jb)) return dec_failed(d, err);
    int rc = region_body(d, buf, len, r, channels, dst, cap, out, err);
    /* the rows below the region are never decoded */
    jpeg_abort_decompress(&d->ci);
    return rc;
}

/* ---- the encoder --------------------------------------------------------- */

struct jpegio_enc {
    struct jpeg_compress_struct ci;    /* created once */
    jio_err je;
    struct jpeg_destination_mgr dm;    /* writes into buf */
    uint8_t *buf;                      /* (cap) the last image's bytes */
    size_t cap, len;
};

static jpegio_enc *enc_of(j_compress_ptr c)
{
    return (jpegio_enc *)(void *)((char *)c - offsetof(jpegio_enc, ci));
}

static void dst_init(j_compress_ptr c)
{
    jpegio_enc *e = enc_of(c);
    e->dm.next_output_byte = e->buf;
    e->dm.free_in_buffer = e->cap;
}

static boolean dst_empty(j_compress_ptr c)
{
    jpegio_enc *e = enc_of(c);
    size_t nc = e->cap * 2;
    uint8_t *nb = realloc(e->buf, nc);
    if (nb == NULL) {
        e->je.nomem = 1;
        ERREXIT1(c, JERR_OUT_OF_MEMORY, 0);
    }
    /* libjpeg asks for more only when the whole buffer is full */
    e->dm.next_output_byte = nb + e->cap;
    e->dm.free_in_buffer = nc - e->cap;
    e->buf = nb;
    e->cap = nc;
    return TRUE;
}

static void dst_term(j_compress_ptr c)
{
    jpegio_enc *e = enc_of(c);
    e->len = e->cap - e->dm.free_in_buffer;
}

int jpegio_enc_create(jpegio_enc **out, st_error *err)
{
    *out = NULL;
    jpegio_enc *e = calloc(1, sizeof *e);
    if (e == NULL || (e->buf = malloc(JIO_ENC_INITIAL)) == NULL) {
        free(e);
        return st_seterr(err, ST_ENOMEM, "jpeg: no memory for an encoder");
    }
    e->cap = JIO_ENC_INITIAL;
    err_init(&e->ci.err, &e->je);
    if (setjmp(e->je.jb)) {
        st_seterr(err, ST_ENOMEM, "jpeg_create_compress: %s", e->je.msg);
        jpeg_destroy_compress(&e->ci);
        free(e->buf);
        free(e);
        return ST_ENOMEM;
    }
    jpeg_create_compress(&e->ci);
    e->dm.init_destination = dst_init;
    e->dm.empty_output_buffer = dst_empty;
    e->dm.term_destination = dst_term;
    *out = e;
    return 0;
}

void jpegio_enc_destroy(jpegio_enc *e)
{
    if (e == NULL) return;
    jpeg_destroy_compress(&e->ci);
    free(e->buf);
    free(e);
}

static void encode_body(jpegio_enc *e, const uint8_t *pixels, uint32_t w,
                        uint32_t h, int channels, int quality)
{
    struct jpeg_compress_struct *ci = &e->ci;
    ci->dest = &e->dm;
    ci->image_width = w;
    ci->image_height = h;
    ci->input_components = channels;
    ci->in_color_space = channels == 3 ? JCS_RGB : JCS_GRAYSCALE;
    jpeg_set_defaults(ci); /* YCbCr 4:2:0 for colour, Huffman defaults */
    jpeg_set_quality(ci, quality, TRUE);
    jpeg_start_compress(ci, TRUE);
    size_t stride = (size_t)w * (size_t)channels;
    while (ci->next_scanline < h) {
        JSAMPROW row = (JSAMPROW)(uintptr_t)(pixels +
                                             ci->next_scanline * stride);
        jpeg_write_scanlines(ci, &row, 1);
    }
    jpeg_finish_compress(ci);
}

int jpegio_encode(jpegio_enc *e, const uint8_t *pixels, uint32_t w,
                  uint32_t h, int channels, int quality, const uint8_t **out,
                  size_t *out_len, st_error *err)
{
    *out = NULL;
    *out_len = 0;
    if (channels != 1 && channels != 3)
        return st_seterr(err, ST_EINVAL, "JPEG from %d channels (1 or 3)",
                         channels);
    if (quality < 1 || quality > 100)
        return st_seterr(err, ST_EINVAL, "JPEG quality %d (1..100)",
                         quality);
    if (w == 0 || h == 0)
        return st_seterr(err, ST_EINVAL, "JPEG of an empty %ux%u image", w,
                         h);
    e->je.nomem = 0;
    if (setjmp(e->je.jb)) {
        jpeg_abort_compress(&e->ci);
        return st_seterr(err, e->je.nomem ? ST_ENOMEM : ST_EDECODE,
                         "jpeg encode: %s", e->je.msg);
    }
    encode_body(e, pixels, w, h, channels, quality);
    *out = e->buf;
    *out_len = e->len;
    return 0;
}

/* ---- EXIF orientation ---------------------------------------------------- */

void jpegio_oriented_size(int o, uint32_t w, uint32_t h, uint32_t *ow,
                          uint32_t *oh)
{
    int swap = o >= 5 && o <= 8;
    *ow = swap ? h : w;
    *oh = swap ? w : h;
}

void jpegio_orient(int o, const uint8_t *src, uint32_t w, uint32_t h, int c,
                   uint8_t *dst)
{
    uint32_t ow, oh;
    if (o < 1 || o > 8) o = 1;
    jpegio_oriented_size(o, w, h, &ow, &oh);
    size_t cs = (size_t)c;
    if (o == 1) {
        memcpy(dst, src, (size_t)w * h * cs);
        return;
    }
    /* dst (Y, X) takes src (y, x); X runs along dst's rows */
    for (uint32_t Y = 0; Y < oh; Y++) {
        for (uint32_t X = 0; X < ow; X++) {
            uint32_t x, y;
            switch (o) {
            case 2: x = w - 1 - X, y = Y; break;          /* mirror */
            case 3: x = w - 1 - X, y = h - 1 - Y; break;  /* rotate 180 */
            case 4: x = X, y = h - 1 - Y; break;          /* flip */
            case 5: x = Y, y = X; break;                  /* transpose */
            case 6: x = Y, y = h - 1 - X; break;          /* 90 clockwise */
            case 7: x = w - 1 - Y, y = h - 1 - X; break;  /* transverse */
            default: x = w - 1 - Y, y = X; break;         /* 270 clockwise */
            }
            memcpy(dst + ((size_t)Y * ow + X) * cs,
                   src + ((size_t)y * w + x) * cs, cs);
        }
    }
}
