/* datasets/pngio.h — PNG in memory with libpng: decode to a fixed channel
 * count, and encode.
 *
 * defines: pngio_info, pngio_luma, pngio_probe, pngio_decode,
 *          pngio_decode_in, pngio_arena_create, pngio_arena_destroy,
 *          pngio_encode
 *
 * Decoding converts every colour type and bit depth libpng reads (gray,
 * gray+alpha, RGB, RGBA, palette with or without tRNS, 1/2/4/8/16-bit,
 * interlaced) to 8-bit samples with the requested channel count:
 *   1: gray (colour images are converted with pngio_luma: ITU-R BT.601
 *      weights rounded as PIL's convert("L") does, so packs match
 *      PIL/torchvision),
 *   3: RGB (gray is replicated), 4: RGBA (opaque alpha added if missing);
 *   alpha is dropped for 1 and 3. 16-bit samples are scaled (v*255/65535).
 * libpng errors are caught (setjmp) and returned as ST_EDECODE with
 * libpng's own message.
 */
#ifndef ST_PNGIO_H
#define ST_PNGIO_H

#include <stdint.h>
#include <stddef.h>

#include "error.h"

typedef struct pngio_info {
    uint32_t width, height;
    int channels;       /* natural channel count after expansion: 1..4 */
    int bit_depth;      /* as stored */
    int color_type;     /* PNG_COLOR_TYPE_* as stored */
    int interlaced;
} pngio_info;

/* Gray from 8-bit RGB: ITU-R BT.601 luma, L = (299 R + 587 G + 114 B) /
 * 1000, in PIL's fixed point and rounding (Pillow's Convert.c, L24):
 * (R*19595 + G*38470 + B*7471 + 0x8000) >> 16. Gray stays gray (R=G=B=v
 * gives v). Shared by pngio and the importers' channel conversion. */
static inline uint8_t pngio_luma(uint32_t r, uint32_t g, uint32_t b)
{
    return (uint8_t)((r * 19595u + g * 38470u + b * 7471u + 0x8000u) >> 16);
}

/* Reads the header only. @return 0 or ST_EDECODE ("not a PNG file", ...). */
int pngio_probe(const void *src, size_t len, pngio_info *info, st_error *err);

/* Decodes a whole PNG into dst, which holds width*height*channels bytes;
 * the image must be exactly width x height (else ST_EFORMAT naming both
 * sizes). channels is 1, 3 or 4. Safe to call from many threads.
 * @return 0 or ST_EDECODE / ST_EFORMAT / ST_ENOMEM. */
int pngio_decode(const void *src, size_t len, uint32_t width,
                 uint32_t height, int channels, uint8_t *dst, st_error *err);

/* A per-thread memory arena for libpng's decoder state, so that decoding
 * allocates nothing in steady state: it is reset at the start of every
 * decode, and an image that needs more than its size falls back to malloc
 * for the excess (counted by pngio_arena_overflows). */
typedef struct pngio_arena pngio_arena;

/* An arena sized for images of width x channels: ~200 KiB plus a few rows.
 * @return 0 or ST_ENOMEM. */
int pngio_arena_create(uint32_t width, int channels, pngio_arena **out,
                       st_error *err);
void pngio_arena_destroy(pngio_arena *a); /* accepts NULL */

/* Allocations that did not fit the arena since it was created. */
uint64_t pngio_arena_overflows(const pngio_arena *a);

/* pngio_decode with libpng's memory taken from a (NULL: malloc). One arena
 * serves one thread at a time. */
int pngio_decode_in(pngio_arena *a, const void *src, size_t len,
                    uint32_t width, uint32_t height, int channels,
                    uint8_t *dst, st_error *err);

/* Encodes width x height x channels (1, 3 or 4) 8-bit pixels. *buf and *cap
 * is a growable buffer owned by the caller (realloc'd as needed; start
 * with NULL/0); *len receives the encoded size. Deterministic output.
 * @return 0 or ST_ENOMEM / ST_EINTERNAL. */
int pngio_encode(const uint8_t *pixels, uint32_t width, uint32_t height,
                 int channels, uint8_t **buf, size_t *cap, size_t *len,
                 st_error *err);

#endif
