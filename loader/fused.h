/* loader/fused.h — one sample's fused decode, crop, resize and flip,
 * straight into its place in a ring slot (internal to loader/).
 *
 * defines: fused, fused_config, fused_config_of, fused_stats,
 *          fused_scratch_bytes, fused_create, fused_destroy, fused_sample
 *
 * For a transform that crops or resizes (loader/transform.h), a producer
 * hands each record here instead of decoding it into the slot:
 *   JPEG records   the crop box and flip come from transform_params; the
 *                  DCT scale from transform_dct_scale; jpegio_decode_region
 *                  then entropy-decodes only the box's columns and rows
 *                  (rows above are skipped, rows below never read) at
 *                  1/scale into this thread's buffer, and resample_run
 *                  resizes the box from there into the slot, mirrored when
 *                  flipped;
 *   other codecs   the record decodes whole into the buffer (its own
 *                  size), then the same resample_run;
 *   pad-crop       a window of the record's own size, offset in the image
 *                  padded by P zeros, copied (and mirrored) into the slot;
 *   none + flip    decode into the slot, then mirror each row in place;
 *   erase=P        after any of these, transform_erase zeroes the sample's
 *                  rectangle in the slot (none + erase also comes here).
 * Every parameter is a pure function of (seed, epoch, sample id), so any
 * thread count, rank or resume sees the same pixels.
 *
 * Memory: the buffer (the pack's largest image) and the resampler's
 * scratch, allocated once per producer in fused_create; fused_sample never
 * allocates (libjpeg's per-image pools aside, see datasets/jpegio.h).
 */
#ifndef ST_LOADER_FUSED_H
#define ST_LOADER_FUSED_H

#include <stddef.h>
#include <stdint.h>

#include "datasets/codec.h"
#include "datasets/error.h"
#include "datasets/manifest.h"
#include "loader/transform.h"

typedef struct fused_config {
    transform_spec t;            /* the split's transform */
    uint32_t codec;              /* CODEC_* of the pack */
    uint32_t channels;           /* C */
    uint32_t max_w, max_h;       /* the pack's largest image */
    uint32_t out_w, out_h;       /* the slot's sample size */
    uint64_t seed;               /* the loader's seed */
} fused_config;

/* The configuration for transform t over a pack described by m (its
 * largest image, codec and channels) with the loader's seed. */
void fused_config_of(const manifest *m, const transform_spec *t,
                     uint64_t seed, fused_config *out);

/* Per-producer counters, summed by the caller. */
typedef struct fused_stats {
    uint64_t decode_ns;          /* entropy decode + colour conversion */
    uint64_t resize_ns;          /* resampling / cropping into the slot */
    uint64_t rows_total;         /* JPEG rows in the decoded scale */
    uint64_t rows_skipped;       /* of those, rows never output */
} fused_stats;

typedef struct fused fused;

/* Bytes fused_create allocates for c (for the loader's memory cap). */
size_t fused_scratch_bytes(const fused_config *c);

/* @return 0 or ST_ENOMEM / ST_EINVAL. */
int fused_create(const fused_config *c, fused **out, st_error *err);
void fused_destroy(fused *f); /* accepts NULL */

/* Turns record (src, len), an image of w x h pixels, into sample id of
 * epoch at dst (out_h, out_w, C). dec decodes the pack's non-JPEG records.
 * @return 0 or ST_EDECODE / ST_EINVAL with the library's message (the
 *         caller adds split, shard and record). */
int fused_sample(fused *f, codec_dec *dec, const uint8_t *src, size_t len,
                 uint32_t w, uint32_t h, uint64_t epoch, uint64_t id,
                 uint8_t *dst, fused_stats *st, st_error *err);

#endif
