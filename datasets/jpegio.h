/* datasets/jpegio.h — JPEG in memory with libjpeg-turbo: header and EXIF
 * orientation, full decode (optionally DCT-scaled), crop-aware decode of a
 * region, encode, and the eight EXIF orientations applied to pixels.
 *
 * defines: jpegio_is_jpeg, jpegio_info, jpegio_read_info, jpegio_dec_create,
 *          jpegio_dec_destroy, jpegio_decode, jpegio_region, jpegio_decoded,
 *          jpegio_decode_region, jpegio_region_cap, jpegio_enc_create,
 *          jpegio_enc_destroy, jpegio_encode, jpegio_orient,
 *          jpegio_oriented_size, jpegio_scaled
 *
 * Contract:
 * - One jpegio_dec / jpegio_enc per thread. Each owns one libjpeg object,
 *   created once and reused for every image (jpeg_abort between images),
 *   and an error manager that longjmps back to the call.
 * - Every warning libjpeg emits ("Premature end of JPEG file", "Corrupt
 *   JPEG data: N extraneous bytes", ...) is an error: the call fails with
 *   ST_EDECODE and libjpeg's own message; no gray-filled pixels ever come
 *   back as a success.
 * - 12-bit (and any non-8-bit) JPEGs, zero-sized images and arithmetic
 *   coding libjpeg cannot read are refused with ST_EDECODE / ST_EFORMAT.
 * - Colour: the output has 1 or 3 channels. Grayscale to 3 channels
 *   replicates; YCbCr / RGB to 1 channel uses ITU-R BT.601 rounded as PIL's
 *   convert("L") (pngio_luma); Adobe CMYK / YCCK (inverted, as Photoshop
 *   writes them) go to RGB as PIL does: R = C*K/255 on the stored values.
 * - Deterministic: an image decodes to the same pixels whatever the
 *   handle decoded before (no table of an earlier image is ever used) and
 *   whether whole or as a region (block smoothing, which reads blocks a
 *   crop does not decode, is off).
 * - Messages carry no file name: the caller adds file, shard and record.
 * - Apart from libjpeg's own per-image pools (allocated by libjpeg inside
 *   jpeg_start_decompress and released at jpeg_abort, bounded by the image
 *   size), nothing is allocated per image by the decoder: dst is the
 *   caller's.
 */
#ifndef ST_JPEGIO_H
#define ST_JPEGIO_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

enum {
    JPEGIO_CS_GRAY = 1,
    JPEGIO_CS_YCBCR = 2,
    JPEGIO_CS_RGB = 3,
    JPEGIO_CS_CMYK = 4,
    JPEGIO_CS_YCCK = 5,
};

/* 1 when buf starts with a JPEG SOI marker and a marker (FF D8 FF). */
int jpegio_is_jpeg(const void *buf, size_t len);

typedef struct jpegio_info {
    uint32_t width, height;  /* as stored, before EXIF orientation */
    int components;          /* 1, 3 or 4 */
    int colorspace;          /* JPEGIO_CS_* as stored */
    int progressive;         /* 1: progressive (SOF2) */
    int orientation;         /* EXIF tag 0x0112, 1..8; 1 when absent/bad */
    int h_samp, v_samp;      /* luma sampling factors: 1 1 = 4:4:4,
                                2 1 = 4:2:2, 2 2 = 4:2:0 */
} jpegio_info;

typedef struct jpegio_dec jpegio_dec;

int jpegio_dec_create(jpegio_dec **out, st_error *err);
void jpegio_dec_destroy(jpegio_dec *d); /* accepts NULL */

/* Reads the markers up to the first scan (no entropy decoding) and the
 * EXIF orientation from APP1. @return 0 or ST_EDECODE / ST_EFORMAT. */
int jpegio_read_info(jpegio_dec *d, const void *buf, size_t len,
                     jpegio_info *out, st_error *err);

/* ceil(n / scale): the size libjpeg's DCT scaling by 1/scale gives. */
static inline uint32_t jpegio_scaled(uint32_t n, int scale)
{
    return (uint32_t)(((uint64_t)n + (uint64_t)scale - 1) / (uint64_t)scale);
}

/* Decodes the whole image at 1/scale (scale 1, 2, 4 or 8: libjpeg's DCT
 * scaling) to `channels` (1 or 3) channels, stored orientation (no EXIF
 * rotation), rows stride bytes apart at dst (cap bytes in all). *w and *h
 * receive the decoded size (jpegio_scaled of the stored size).
 * @return 0, ST_EDECODE (libjpeg's message), ST_EINVAL (dst too small). */
int jpegio_decode(jpegio_dec *d, const void *buf, size_t len, int scale,
                  int channels, uint8_t *dst, size_t stride, size_t cap,
                  uint32_t *w, uint32_t *h, st_error *err);

/* A region to decode, in stored full-resolution pixels: [x, x+w) x
 * [y, y+h), clipped by the caller to the image, w, h >= 1. */
typedef struct jpegio_region {
    uint32_t x, y, w, h;
    int scale;               /* 1, 2, 4 or 8 */
} jpegio_region;

/* What jpegio_decode_region produced, in scaled pixels. The decoded block
 * covers the scaled region and starts at (x0, y0) of the scaled image
 * (x0 <= region.x / scale: libjpeg's crop starts at an iMCU boundary). */
typedef struct jpegio_decoded {
    uint32_t x0, y0, w, h;   /* block origin and size, scaled pixels */
    uint32_t rows_total;     /* scaled image height */
    uint32_t rows_skipped;   /* rows above the block (jpeg_skip_scanlines)
                                plus rows below it never decoded
                                (jpeg_abort_decompress after the last) */
} jpegio_decoded;

/* Crop-aware decode: jpeg_crop_scanline to the region's columns,
 * jpeg_skip_scanlines to its top row, reads its rows, then
 * jpeg_abort_decompress, so the rows below are never entropy-decoded
 * (progressive images decode every scan into coefficients first, then the
 * same crop applies to the output). Writes the block (h, w, channels)
 * tightly packed at dst (cap bytes) and describes it in *out.
 * @return 0, ST_EDECODE, ST_EINVAL (a region outside the image, a bad
 *         scale, dst too small). */
int jpegio_decode_region(jpegio_dec *d, const void *buf, size_t len,
                         const jpegio_region *r, int channels, uint8_t *dst,
                         size_t cap, jpegio_decoded *out, st_error *err);

/* The most bytes jpegio_decode_region writes for r: the scaled region,
 * widened by the crop's margin (a column each side, 9 columns at least)
 * and its left edge rounded down to an iMCU column, times channels.
 * Every pixel of the requested region equals a full decode's at the same
 * scale; the block's columns outside it may not (libjpeg's upsampler sees
 * an edge there). */
size_t jpegio_region_cap(const jpegio_region *r, int channels);

typedef struct jpegio_enc jpegio_enc;

int jpegio_enc_create(jpegio_enc **out, st_error *err);
void jpegio_enc_destroy(jpegio_enc *e); /* accepts NULL */

/* Encodes (h, w, channels) pixels (channels 1 or 3; tightly packed) as a
 * baseline JPEG at quality 1..100, 4:2:0 for colour, no EXIF. *out points
 * into e's own buffer (grown as needed, kept between calls), valid until
 * the next call. @return 0 or ST_EDECODE / ST_ENOMEM / ST_EINVAL. */
int jpegio_encode(jpegio_enc *e, const uint8_t *pixels, uint32_t w,
                  uint32_t h, int channels, int quality, const uint8_t **out,
                  size_t *out_len, st_error *err);

/* Size after EXIF orientation o (5..8 swap width and height). */
void jpegio_oriented_size(int o, uint32_t w, uint32_t h, uint32_t *ow,
                          uint32_t *oh);

/* Applies EXIF orientation o (1..8) to src (h, w, c) into dst, which gets
 * the oriented size (jpegio_oriented_size); src and dst do not overlap.
 * 1 copies. The eight cases are the EXIF 2.3 definitions (2 mirror
 * horizontal, 3 rotate 180, 4 mirror vertical, 5 transpose, 6 rotate 90
 * clockwise, 7 transverse, 8 rotate 270 clockwise), as PIL's
 * ImageOps.exif_transpose. */
void jpegio_orient(int o, const uint8_t *src, uint32_t w, uint32_t h, int c,
                   uint8_t *dst);

#endif
