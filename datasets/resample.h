/* datasets/resample.h — 8-bit image resampling with antialiasing, as PIL's
 * Image.resize(size, filter, box): separable, horizontal pass then
 * vertical, with the filter's support widened by the scale factor when
 * downscaling, fixed-point coefficients, and an optional fractional source
 * box and horizontal flip of the output.
 *
 * defines: resample, resample_filter, RESAMPLE_FLIP, RESAMPLE_CROP,
 *          resample_create, resample_destroy, resample_run,
 *          resample_run_at, resample_footprint, resample_scratch_bytes,
 *          resample_isa
 *
 * Contract:
 * - One resample context per thread, sized at create for the largest
 *   source box and output it will see; resample_run never allocates.
 * - On the same box and output size the result matches PIL's resize with
 *   the same filter (BILINEAR: the triangle filter; BOX: the area filter)
 *   within a mean absolute difference of 1 level on 8-bit pixels.
 * - Pixels are (h, w, c) uint8, channels interleaved, c in 1..4.
 * - Reentrant: contexts share nothing; any number of threads may each run
 *   their own.
 * - What the filter reads: PIL's resize(box=...) lets the filter's support
 *   reach the source pixels just outside the box (up to the image's edge);
 *   that is what a resize of the whole image followed by a crop does
 *   (torchvision's center-crop). torchvision's crop-then-resize (RRC)
 *   never sees them: pass RESAMPLE_CROP, and the support is clamped to
 *   the box's pixels [floor(x0), ceil(x1)) x [floor(y0), ceil(y1)). For
 *   an integer box that is PIL's img.crop(box).resize(size) up to the
 *   rounding of the tap centres (x0 + (o + 0.5) * scale against PIL's
 *   (o + 0.5) * scale on the crop), which only matters where the area
 *   filter's step meets a centre exactly; for the bytes PIL gives, pass
 *   the crop as its own image (src at its corner, box (0, 0, w, h)).
 * - Kernels: resample_create picks the fastest this CPU has (AVX-512 with
 *   VNNI, AVX-512BW/VL, AVX2, else plain C / SSE4.1); all give the same
 *   bytes. ST_RESAMPLE_ISA=scalar|avx2|avx512|avx512vnni (read at
 *   create) forces one; forcing one the CPU lacks fails with ST_EINVAL.
 * - An axis whose box is integer-aligned and as long as the output is
 *   copied, not filtered (the filter would give the same bytes).
 */
#ifndef ST_RESAMPLE_H
#define ST_RESAMPLE_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

typedef enum resample_filter {
    RESAMPLE_BILINEAR = 0,   /* PIL Image.BILINEAR, antialiased */
    RESAMPLE_AREA = 1,       /* PIL Image.BOX: the area filter */
} resample_filter;

/* Flags of resample_run (its last int argument). */
enum {
    RESAMPLE_FLIP = 1, /* mirror the output left-right */
    RESAMPLE_CROP = 2, /* read only the box's pixels (see the contract) */
};

typedef struct resample resample;

/* Scratch bytes a context for these limits holds (for memory plans). */
size_t resample_scratch_bytes(uint32_t max_box_w, uint32_t max_box_h,
                              uint32_t max_out_w, uint32_t max_out_h, int c);

/* A context for source boxes up to max_box_w x max_box_h pixels and
 * outputs up to max_out_w x max_out_h, c channels.
 * @return 0 or ST_ENOMEM / ST_EINVAL. */
int resample_create(uint32_t max_box_w, uint32_t max_box_h,
                    uint32_t max_out_w, uint32_t max_out_h, int c,
                    resample **out, st_error *err);
void resample_destroy(resample *r); /* accepts NULL */

/* The kernels r runs: "scalar", "avx2", "avx512" or "avx512vnni" (a
 * static string). */
const char *resample_isa(const resample *r);

/* Resamples the box [x0, x1) x [y0, y1) (fractional source pixel
 * coordinates, 0 <= x0 < x1 <= sw, 0 <= y0 < y1 <= sh, x1 - x0 <=
 * max_box_w, y1 - y0 <= max_box_h) of src (sh, sw, c; rows stride bytes
 * apart) to dst (oh, ow, c) tightly packed. flip is a set of RESAMPLE_*
 * flags: RESAMPLE_FLIP (= 1, so a 0/1 flip works) mirrors the output
 * left-right, RESAMPLE_CROP clamps the filter to the box. The source rows
 * the vertical filter does not touch are never read. Allocates nothing.
 * @return 0 or ST_EINVAL (bad filter, box or sizes beyond the context's
 * limits, named in err). */
int resample_run(resample *r, resample_filter f, const uint8_t *src,
                 uint32_t sw, uint32_t sh, size_t stride, double x0,
                 double y0, double x1, double y1, uint8_t *dst, uint32_t ow,
                 uint32_t oh, int flip, st_error *err);

/* resample_run on a region of a larger source: src holds the source's
 * pixels [ox, ox + sw) x [oy, oy + sh) (a cropped decode), the box is in
 * the whole source's coordinates and must lie inside the region, and the
 * filter reads only the region. When the region covers
 * resample_footprint's, the bytes equal resample_run's on the whole
 * source exactly (the same arithmetic in the same coordinates).
 * @return as resample_run. */
int resample_run_at(resample *r, resample_filter f, const uint8_t *src,
                    uint32_t ox, uint32_t oy, uint32_t sw, uint32_t sh,
                    size_t stride, double x0, double y0, double x1, double y1,
                    uint8_t *dst, uint32_t ow, uint32_t oh, int flags,
                    st_error *err);

/* The source pixels [*ix0, *ix1) x [*iy0, *iy1) that resample_run with
 * the same arguments reads: the box's pixels [floor(x0), ceil(x1)) x
 * [floor(y0), ceil(y1)) and those the filter's support reaches beyond
 * them, clamped to the image (with RESAMPLE_CROP: just the box's pixels);
 * on an axis that is copied, the box itself. A fused decode needs to
 * produce only these, then calls resample_run_at on them. */
void resample_footprint(resample_filter f, uint32_t sw, uint32_t sh,
                        double x0, double y0, double x1, double y1,
                        uint32_t ow, uint32_t oh, int flags, uint32_t *ix0,
                        uint32_t *iy0, uint32_t *ix1, uint32_t *iy1);

#endif
