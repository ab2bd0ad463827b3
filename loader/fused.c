/* loader/fused.c — a sample's decode, crop, resize and flip in one pass
 * into its ring-slot place (see fused.h for the paths by codec).
 */
#include "loader/fused.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "datasets/jpegio.h"
#include "datasets/resample.h"
#include "datasets/shard.h"

struct fused {
    fused_config c;
    jpegio_dec *jd;         /* JPEG packs */
    resample *rs;           /* transforms that resize */
    uint8_t *buf;           /* (max_h, max_w, C): a decoded image or block */
    size_t cap;
};

static inline uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int resizes(const transform_spec *t)
{
    return t->kind == TRANSFORM_RRC || t->kind == TRANSFORM_CENTER ||
           t->kind == TRANSFORM_RESIZE;
}

void fused_config_of(const manifest *m, const transform_spec *t,
                     uint64_t seed, fused_config *out)
{
    uint32_t ow, oh;
    transform_out_size(t, m->width, m->height, &ow, &oh);
    *out = (fused_config){
        .t = *t, .codec = m->codec, .channels = m->channels,
        .max_w = m->width, .max_h = m->height, .out_w = ow, .out_h = oh,
        .seed = seed,
    };
}

size_t fused_scratch_bytes(const fused_config *c)
{
    size_t n = (size_t)c->max_w * c->max_h * c->channels;
    if (resizes(&c->t))
        n += resample_scratch_bytes(c->max_w, c->max_h, c->out_w, c->out_h,
                                    (int)c->channels);
    return n + (c->codec == CODEC_JPEG ? (64u << 10) : 0);
}

int fused_create(const fused_config *c, fused **out, st_error *err)
{
    *out = NULL;
    if (c->channels < 1 || c->channels > 4 || c->max_w == 0 || c->max_h == 0)
        return st_seterr(err, ST_EINVAL, "loader: bad transform geometry");
    fused *f = calloc(1, sizeof *f);
    if (f == NULL) return st_seterr(err, ST_ENOMEM, "loader: no memory");
    f->c = *c;
    f->cap = (size_t)c->max_w * c->max_h * c->channels;
    f->buf = malloc(f->cap);
    int rc = f->buf ? 0 : st_seterr(err, ST_ENOMEM, "loader: no memory for "
                                    "a %zu-byte decode buffer", f->cap);
    if (rc == 0 && c->codec == CODEC_JPEG) rc = jpegio_dec_create(&f->jd, err);
    if (rc == 0 && resizes(&c->t))
        rc = resample_create(c->max_w, c->max_h, c->out_w, c->out_h,
                             (int)c->channels, &f->rs, err);
    if (rc) {
        fused_destroy(f);
        return rc;
    }
    *out = f;
    return 0;
}

void fused_destroy(fused *f)
{
    if (f == NULL) return;
    resample_destroy(f->rs);
    jpegio_dec_destroy(f->jd);
    free(f->buf);
    free(f);
}

/* Mirrors each of h rows of w pixels (c bytes each) in place. */
static void mirror_rows(uint8_t *p, uint32_t w, uint32_t h, uint32_t c)
{
    for (uint32_t y = 0; y < h; y++) {
        uint8_t *row = p + (size_t)y * w * c;
        for (uint32_t a = 0, b = w - 1; a < b; a++, b--)
            for (uint32_t k = 0; k < c; k++) {
                uint8_t t = row[a * c + k];
                row[a * c + k] = row[b * c + k];
                row[b * c + k] = t;
            }
    }
}

static int flags(const transform_box *bx)
{
    return (bx->flip ? RESAMPLE_FLIP : 0) | (bx->crop_first ? RESAMPLE_CROP : 0);
}

/* 1 for an integer crop-first box (RRC's): transform_apply resamples it
 * as its own image, with tap centres from its corner, and so must we. */
static int own_image(const transform_box *bx)
{
    return bx->crop_first && bx->x0 == floor(bx->x0) &&
           bx->y0 == floor(bx->y0) && bx->x0 >= 0 && bx->y0 >= 0;
}

/* An unscaled integer crop-first box resampled as its own image out of
 * the decoded block blk (which holds the box's pixels: its footprint
 * under RESAMPLE_CROP), as transform_apply does on a whole decode: the
 * same source pixels, the same centres, the same bytes. resample_run_at
 * would place the centres at x0 + (o + 0.5) * scale instead, which the
 * area filter's step can tell apart. */
static int run_own(fused *f, const jpegio_decoded *blk, const transform_box *bx,
                   uint8_t *dst, int fl, st_error *err)
{
    const fused_config *c = &f->c;
    uint32_t x = (uint32_t)bx->x0, y = (uint32_t)bx->y0;
    uint32_t bw = (uint32_t)ceil(bx->x1) - x, bh = (uint32_t)ceil(bx->y1) - y;
    if (x < blk->x0 || y < blk->y0 || x + bw > blk->x0 + blk->w ||
        y + bh > blk->y0 + blk->h)
        return st_seterr(err, ST_EINTERNAL, "loader: the decoded block "
                         "misses the crop box");
    size_t stride = (size_t)blk->w * c->channels;
    const uint8_t *src = f->buf + (size_t)(y - blk->y0) * stride +
                         (size_t)(x - blk->x0) * c->channels;
    return resample_run(f->rs, c->t.interp, src, bw, bh, stride, 0, 0,
                        bx->x1 - x, bx->y1 - y, dst, c->out_w, c->out_h, fl,
                        err);
}

/* JPEG: decode only the pixels the resampler reads (resample_footprint of
 * the box, at the DCT scale the output allows), then resample the box from
 * that block (resample_run_at; an unscaled RRC box as its own image,
 * run_own): on an unscaled decode the bytes equal a full decode followed
 * by transform_apply (tests/test_fused.c). */
static int jpeg_box(fused *f, const uint8_t *src, size_t len, uint32_t w,
                    uint32_t h, const transform_box *bx, uint8_t *dst,
                    fused_stats *st, st_error *err)
{
    const fused_config *c = &f->c;
    /* The area filter at a ratio near 1 mixes whole DCT blocks where a
     * full decode averages its exact window (tests/test_fused.c measured a
     * mean error of 6 levels at box / s just over the output): it decodes
     * two DCT steps finer, so that its own window spans >= 4 scaled
     * pixels. Bilinear's triangle hides the prefilter at any step. */
    uint32_t k = c->t.interp == RESAMPLE_AREA ? 4 : 1;
    int s = transform_dct_scale(bx->x1 - bx->x0, bx->y1 - bx->y0,
                                k * c->out_w, k * c->out_h);
    uint32_t sw = jpegio_scaled(w, s), sh = jpegio_scaled(h, s);
    /* scaled pixel i is the DCT block rows/columns [i*s, (i+1)*s): the
     * box maps by 1/s (the last pixel may reach past the image edge) */
    double fx = 1.0 / s, fy = 1.0 / s;
    double x0 = bx->x0 * fx, x1 = fmin(bx->x1 * fx, sw);
    double y0 = bx->y0 * fy, y1 = fmin(bx->y1 * fy, sh);
    int fl = flags(bx);
    uint32_t ix0, iy0, ix1, iy1;
    resample_footprint(c->t.interp, sw, sh, x0, y0, x1, y1, c->out_w,
                       c->out_h, fl, &ix0, &iy0, &ix1, &iy1);
    uint32_t rx1 = ix1 * (uint32_t)s < w ? ix1 * (uint32_t)s : w;
    uint32_t ry1 = iy1 * (uint32_t)s < h ? iy1 * (uint32_t)s : h;
    jpegio_region r = {ix0 * (uint32_t)s, iy0 * (uint32_t)s,
                       rx1 - ix0 * (uint32_t)s, ry1 - iy0 * (uint32_t)s, s};
    jpegio_decoded blk;
    uint64_t t0 = now_ns();
    ST_TRY(jpegio_decode_region(f->jd, src, len, &r, (int)c->channels, f->buf,
                                f->cap, &blk, err));
    uint64_t t1 = now_ns();
    st->decode_ns += t1 - t0;
    st->rows_total += blk.rows_total;
    st->rows_skipped += blk.rows_skipped;
    int rc = s == 1 && own_image(bx)
                 ? run_own(f, &blk, bx, dst, fl, err)
                 : resample_run_at(f->rs, c->t.interp, f->buf, blk.x0, blk.y0,
                                   blk.w, blk.h, (size_t)blk.w * c->channels,
                                   x0, y0, x1, y1, dst, c->out_w, c->out_h, fl,
                                   err);
    st->resize_ns += now_ns() - t1;
    return rc;
}

/* The transform's pixels of one sample (fused_sample before erasing). */
static int sample_pixels(fused *f, codec_dec *dec, const uint8_t *src,
                         size_t len, uint32_t w, uint32_t h, uint64_t epoch,
                         uint64_t id, uint8_t *dst, fused_stats *st,
                         st_error *err)
{
    const fused_config *c = &f->c;
    transform_box bx;
    transform_params(&c->t, c->seed, epoch, id, w, h, &bx);
    if (resizes(&c->t) && c->codec == CODEC_JPEG)
        return jpeg_box(f, src, len, w, h, &bx, dst, st, err);
    uint64_t t0 = now_ns();
    if (c->t.kind == TRANSFORM_NONE) {
        ST_TRY(codec_decode(dec, src, len, h, w, dst, err));
        uint64_t t1 = now_ns();
        st->decode_ns += t1 - t0;
        if (bx.flip) mirror_rows(dst, w, h, c->channels);
        st->resize_ns += now_ns() - t1;
        return 0;
    }
    if ((size_t)w * h * c->channels > f->cap)
        return st_seterr(err, ST_EINVAL, "image %ux%u is larger than the "
                         "pack's largest", w, h);
    ST_TRY(codec_decode(dec, src, len, h, w, f->buf, err));
    uint64_t t1 = now_ns();
    st->decode_ns += t1 - t0;
    int rc = transform_apply(&c->t, &bx, f->rs, (int)c->channels, f->buf, w,
                             h, (size_t)w * c->channels, dst, err);
    st->resize_ns += now_ns() - t1;
    return rc;
}

int fused_sample(fused *f, codec_dec *dec, const uint8_t *src, size_t len,
                 uint32_t w, uint32_t h, uint64_t epoch, uint64_t id,
                 uint8_t *dst, fused_stats *st, st_error *err)
{
    ST_TRY(sample_pixels(f, dec, src, len, w, h, epoch, id, dst, st, err));
    const fused_config *c = &f->c;
    if (c->t.erase > 0) {
        uint32_t ow, oh;
        transform_out_size(&c->t, w, h, &ow, &oh);
        transform_erase(&c->t, c->seed, epoch, id, dst, ow, oh,
                        (int)c->channels);
    }
    return 0;
}
