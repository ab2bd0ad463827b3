/* loader/transform.h — per-split sample transforms that turn an image of
 * any size into the ring slot's fixed (S_h, S_w, C): their text form, and
 * their random parameters as a pure function of (seed, epoch, sample id).
 *
 * defines: transform_kind, transform_spec, transform_spec_default,
 *          transform_spec_train_default, transform_parse, transform_format,
 *          transform_box,
 *          transform_params, transform_out_size, transform_uniform,
 *          transform_dct_scale, transform_apply, transform_erase_box,
 *          transform_erase, transform_pair, transform_pair_pick
 *
 * Contract:
 * - transform_params is deterministic and thread-free: the same (spec,
 *   seed, epoch, id, source size) gives the same box and flip on every
 *   thread, rank and resume. It never allocates.
 * - Boxes are in source pixels of the stored (upright) image, fractional
 *   where the transform defines them so (center-crop), and always inside
 *   it, except pad-crop, whose box is in the padded image's coordinates
 *   (x, y in [0, 2P]) with the padding filled with zeros.
 * - The pixels themselves are made by the loader's producers with
 *   datasets/resample.h: resample_run of the box to transform_out_size,
 *   with RESAMPLE_FLIP when box.flip, and for crop_first boxes only the
 *   box's pixels (see transform_box). transform_apply does exactly that,
 *   and pad-crop's padding, for an image decoded whole; a fused decode
 *   produces only resample_footprint's region and calls resample_run_at
 *   on it (or, for an integer crop_first box, resample_run on the box as
 *   its own image), which gives the same bytes.
 * - Randomness: sample id of epoch has its own stream of uniform numbers
 *   (transform_uniform: a splitmix64 chain over (seed, epoch, id), then
 *   counter k). Number 0 is the flip (flip when < 1/2); numbers 1, 2, ...
 *   are the transform's draws in torchvision's order (RRC: per attempt
 *   the area fraction then the log-ratio, and on acceptance the top then
 *   the left edge; pad-crop: top, left). An integer uniform in [0, n)
 *   (torch.randint(0, n)) is floor(u * n). Random erasing draws from
 *   number TF_ERASE_K on: the coin, then per attempt the area fraction,
 *   the log-ratio, the top and the left edge (torchvision's order).
 *
 * Text form (as --train-transform / --eval-transform take it): a name, its
 * size, then optional words, separated by spaces:
 *   random-resized-crop S [scale=A,B] [ratio=A,B] [attempts=N] [flip] [interp=bilinear|area]
 *   center-crop S [crop-frac=F] [flip] [interp=...]
 *   resize WxH [flip] [interp=...]
 *   pad-crop P [flip]
 *   none [flip]
 * and any of them takes [erase=P]: after the transform, with probability
 * P, one rectangle of the output is set to 0, as torchvision's
 * RandomErasing(p=P) with its defaults (area 2-33 % of the output, aspect
 * 0.3-3.3 log-uniform, 10 attempts, value 0: black, the background of
 * Fashion-MNIST and MNIST; on normalized data torchvision's 0 is the mean).
 * Defaults: scale=0.08,1 ratio=3/4,4/3 (the doubles 0.75 and 4.0 / 3.0)
 * attempts=10 crop-frac=0.875 interp=bilinear, no flip, erase=0. Limits: sizes
 * 1..4096, P 0..4096, 0 < scale A <= B <= 1, 0 < ratio A <= B, attempts
 * 0..1000 (0: always the fallback), 0 < crop-frac <= 1, 0 <= erase <= 1.
 * Each option at
 * most once, and only where its transform takes it.
 */
#ifndef ST_TRANSFORM_H
#define ST_TRANSFORM_H

#include <stddef.h>
#include <stdint.h>

#include "datasets/error.h"
#include "datasets/resample.h"

typedef enum transform_kind {
    TRANSFORM_NONE = 0,       /* today's behaviour: fixed-size packs only */
    TRANSFORM_RRC = 1,        /* torchvision RandomResizedCrop */
    TRANSFORM_CENTER = 2,     /* resize shorter side to S/crop_frac, centre S x S */
    TRANSFORM_RESIZE = 3,     /* exact resize to W x H, no crop */
    TRANSFORM_PAD_CROP = 4,   /* random crop of the original size from the
                                 image zero-padded by P on every side */
} transform_kind;

typedef struct transform_spec {
    transform_kind kind;
    uint32_t out_w, out_h;    /* RRC / center: S, S; resize: W, H; pad-crop
                                 and none: 0 (the source's size) */
    double scale_min, scale_max;  /* RRC area fraction */
    double ratio_min, ratio_max;  /* RRC aspect w/h, sampled log-uniform */
    int attempts;             /* RRC tries before the centre fallback */
    double crop_frac;         /* center-crop */
    uint32_t pad;             /* pad-crop P */
    int flip;                 /* horizontal flip with probability 1/2 */
    resample_filter interp;
    double erase;             /* random erasing probability (0: none) */
} transform_spec;

/* The first number of a sample's stream that random erasing uses. */
#define TF_ERASE_K 200u

/* t = the defaults above for kind (sizes 0). */
void transform_spec_default(transform_spec *t, transform_kind kind);

/* t = the default training transform for --image-size s:
 * 'random-resized-crop s flip'. */
void transform_spec_train_default(transform_spec *t, uint32_t s);

/* Parses the text form. @return 0 or ST_EINVAL with a message that quotes
 * the text and the bad word and says what was expected, e.g.
 * "transform 'random-resized-crop 0': size 0: expected 1..4096". */
int transform_parse(const char *text, transform_spec *out, st_error *err);

/* The canonical text form of t: the name, the size, then only the options
 * that differ from the defaults, in the order of the grammar above,
 * numbers in the shortest form that reads back exactly. Round-trips
 * through transform_parse. Truncated to len - 1 characters. */
void transform_format(const transform_spec *t, char *buf, size_t len);

/* One sample's parameters. */
typedef struct transform_box {
    double x0, y0, x1, y1;    /* source box (see the contract) */
    int flip;                 /* mirror the output left-right */
    int crop_first;           /* 1: the transform crops, then resizes (RRC,
                                 as torchvision): the filter must not read
                                 outside the box. Resample the integer box
                                 as its own image (src at its corner, box
                                 (0, 0, w, h): PIL-exact), or a fractional
                                 one (DCT-scaled) with RESAMPLE_CROP. Also
                                 1 for pad-crop and none, which only copy.
                                 0: it resizes the whole image (center-crop,
                                 resize): the filter reads past the box's
                                 edges as a resize of the whole image does
                                 (resample_footprint says how far) */
} transform_box;

/* The box and flip of sample id in epoch for a source image of src_w x
 * src_h pixels (both >= 1), as a pure function of (t, seed, epoch, id,
 * size). RRC follows torchvision's get_params exactly (integer boxes: area
 * fraction uniform in scale, log-ratio uniform, w = round(sqrt(a*r)), h =
 * round(sqrt(a/r)) with Python's round-half-even, accepted when 0 < w <= W
 * and 0 < h <= H, origin uniform; after `attempts` failures the centre
 * crop of the aspect clamped to ratio, at least 1 pixel on each side where
 * torchvision would give an empty crop). center-crop: the box of the
 * original image that torchvision's Resize(int(S / crop_frac)) (shorter
 * side to that size, the longer int(size * long / short)) then
 * CenterCrop(S) (top = round((h - S) / 2)) keeps: resampled straight to
 * S x S it has the same filter scale and the same tap centres as the
 * resize of the whole image, so the pixels agree but for the float
 * rounding of the box's ends (PIL-exact in tests/test_transform.c).
 * resize and none: the whole image; pad-crop: origin uniform in [0, 2P]^2,
 * the source's size. */
void transform_params(const transform_spec *t, uint64_t seed, uint64_t epoch,
                      uint64_t id, uint32_t src_w, uint32_t src_h,
                      transform_box *out);

/* The output size of t for a src_w x src_h source: (S, S), (W, H), or the
 * source's size for pad-crop and none. */
void transform_out_size(const transform_spec *t, uint32_t src_w,
                        uint32_t src_h, uint32_t *out_w, uint32_t *out_h);

/* Number k of sample id's uniform stream in epoch: a double in [0, 1) with
 * 53 random bits (see the contract for which k is used for what). */
double transform_uniform(uint64_t seed, uint64_t epoch, uint64_t id,
                         uint32_t k);

/* The largest libjpeg DCT scale s in {8, 4, 2, 1} with box_w / s >= out_w
 * and box_h / s >= out_h: decoding at 1/s then loses nothing the output
 * keeps. */
int transform_dct_scale(double box_w, double box_h, uint32_t out_w,
                        uint32_t out_h);

/* The sample's pixels from a fully decoded image (the path without the
 * fused decode: raw / zstd / PNG records, or a JPEG decoded whole):
 * src (sh, sw, c), rows stride bytes apart, b from transform_params on the
 * same size, into dst (transform_out_size, c) tightly packed.
 * random-resized-crop, center-crop, resize: resample_run of the box with
 * t's filter, RESAMPLE_FLIP when b->flip, RESAMPLE_CROP when
 * b->crop_first, where an integer crop-first box runs as its own image
 * (src at its corner, box (0, 0, w, h): PIL's crop(box).resize(size)
 * bit for bit); r must have c channels and limits covering the box and
 * the output. pad-crop: the box's window of the image zero-padded by P
 * (torchvision's RandomCrop(size, padding=P)), then mirrored when flip;
 * none: a copy, mirrored when flip (r unused, may be NULL for both).
 * Allocates nothing. @return 0 or resample_run's ST_EINVAL. */
int transform_apply(const transform_spec *t, const transform_box *b,
                    resample *r, int c, const uint8_t *src, uint32_t sw,
                    uint32_t sh, size_t stride, uint8_t *dst, st_error *err);

/* Random erasing of sample id in epoch on its out_w x out_h output: 1
 * and box = {x0, y0, w, h} (w, h >= 1, inside the output) when a
 * rectangle is erased, 0 when not (the coin said no, t->erase is 0, or no
 * attempt fitted), a pure function of (t, seed, epoch, id, size). */
int transform_erase_box(const transform_spec *t, uint64_t seed,
                        uint64_t epoch, uint64_t id, uint32_t out_w,
                        uint32_t out_h, uint32_t box[4]);

/* Applies transform_erase_box to dst (out_h, out_w, c) uint8, tightly
 * packed: the box's pixels, every channel, set to 0. */
void transform_erase(const transform_spec *t, uint64_t seed, uint64_t epoch,
                     uint64_t id, uint8_t *dst, uint32_t out_w,
                     uint32_t out_h, int c);

/* A training and an evaluation transform, as streamtrain picks them. */
typedef struct transform_pair {
    transform_spec train, eval;   /* valid when has_train / has_eval */
    int has_train, has_eval;
    uint32_t out_w, out_h;        /* the training output: the model's input */
} transform_pair;

/* Picks the pair from the text forms train_text and eval_text (NULL: the
 * default) and image_size S (0: none), for a pack of images up to src_w x
 * src_h (variable: of different sizes; dir names it in messages). Training
 * defaults to 'random-resized-crop S flip' with S, else none; evaluation to
 * 'center-crop S' with S (or, on a variable pack, the training output's
 * side when it is square), else none.
 * @return 0, or ST_EINVAL: a text that does not parse (named by its
 *         option), a variable pack without S or a training transform, or
 *         an evaluation output of another size than training's. */
int transform_pair_pick(transform_pair *p, const char *train_text,
                        const char *eval_text, uint32_t image_size,
                        uint32_t src_w, uint32_t src_h, int variable,
                        const char *dir, st_error *err);

#endif
