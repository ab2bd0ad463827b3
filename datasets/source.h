/* datasets/source.h — importers: a source dataset on disk (IDX, folder of
 * JPEG and PNG files, CIFAR-10 binaries) seen as splits of uint8 samples,
 * of one size or (folders) each of its own.
 *
 * defines: source_open, source_close, source_info_of, source_read,
 *          source_sample_size, source_native, source_scratch_create,
 *          source_scratch_destroy, source_format_name,
 *          SOURCE_DEFAULT_MAX_PIXELS
 *
 * source_open checks the whole source's structure up front (magic numbers,
 * counts, sizes, class names, every image's header) so that a bad input is
 * refused before anything is written, and knows every sample's final size
 * (source_sample_size) before any is read. source_read is safe to call
 * from several threads at once, each with its own scratch.
 */
#ifndef ST_SOURCE_H
#define ST_SOURCE_H

#include <stdint.h>
#include <stddef.h>

#include "error.h"

#define SOURCE_MAX_SPLITS 8

typedef enum source_format {
    SOURCE_AUTO = 0,
    SOURCE_IDX,
    SOURCE_FOLDER,
    SOURCE_CIFAR10,
} source_format;

/* Largest resize target accepted (each side). */
#define SOURCE_MAX_SIDE 16384u

/* PIL's decompression-bomb limit (Image.MAX_IMAGE_PIXELS): packdata's
 * default --max-pixels. */
#define SOURCE_DEFAULT_MAX_PIXELS 89478485u

typedef struct source_options {
    source_format format;   /* SOURCE_AUTO detects it */
    int channels;           /* 0: natural (folder: 3 when any image has
                               colour, else 1; alpha dropped); else 1, 3
                               or 4 */
    uint32_t resize_w, resize_h; /* 0: no resizing; else every sample is
                                    exactly resize_w x resize_h */
    uint32_t max_side;      /* 0: none; else a sample whose longer side is
                               over max_side is downscaled (area filter) to
                               exactly max_side on that side, the other
                               round(side * max_side / long) (>= 1); not
                               with resize */
    uint64_t max_pixels;    /* 0: no limit; else an image of more stored
                               pixels is refused by name (packdata's
                               default: SOURCE_DEFAULT_MAX_PIXELS) */
    int no_exif_rotate;     /* keep JPEGs in their stored orientation
                               instead of applying EXIF's */
} source_options;

typedef struct source_split {
    char name[64];          /* "train", "test", "val" */
    uint64_t count;
} source_split;

typedef struct source_info {
    source_format format;
    uint32_t height, width, channels;
    uint32_t nclasses;
    char **classes;         /* (nclasses), owned by the source */
    uint32_t nsplits;
    source_split splits[SOURCE_MAX_SPLITS];
    int png_native;         /* some samples are stored as PNG files */
    int jpeg_native;        /* some samples are stored as JPEG files */
    int variable;           /* samples differ in size; height and width
                               are the largest of each */
    uint64_t max_sample_bytes; /* the largest w * h * channels of one
                                  sample (<= height * width * channels) */
} source_info;

typedef struct source source;
typedef struct source_scratch source_scratch;

/* @return 0, or ST_ENOTFOUND / ST_EIO / ST_EFORMAT / ST_EDECODE /
 *         ST_EINVAL with a one-line message naming the file. */
int source_open(const char *path, const source_options *opt, source **out,
                st_error *err);
void source_close(source *s); /* accepts NULL */
const source_info *source_info_of(const source *s);
const char *source_format_name(source_format f);

int source_scratch_create(const source *s, source_scratch **out,
                          st_error *err);
void source_scratch_destroy(source_scratch *sc); /* accepts NULL */

/* The size of sample i of split (after EXIF orientation, max_side and
 * resize): info's height and width unless info.variable. 0 x 0 for a
 * sample that does not exist. */
void source_sample_size(const source *s, int split, uint64_t i, uint32_t *w,
                        uint32_t *h);

/* A sample's own file bytes, when they can be stored as they are. */
typedef struct source_native {
    const uint8_t *bytes;   /* the file's bytes inside the scratch (valid
                               until its next read), or NULL */
    size_t len;
    uint32_t codec;         /* CODEC_PNG or CODEC_JPEG (shard.h) */
} source_native;

/* Fills pixels and *label with sample i of split. pixels holds at least
 * info.max_sample_bytes; the sample is written tightly packed at its own
 * size (source_sample_size), (h, w, channels) uint8. native (may be NULL)
 * gets the file's bytes when they decode to exactly these pixels with no
 * resize, rotation or colour conversion (8-bit, the same channels, EXIF
 * orientation 1 or no_exif_rotate, no max_side downscale), else
 * native->bytes = NULL.
 * @return 0 or a negative st_errcode naming the file ("photos/cat/x.jpg:
 *         Premature end of JPEG file"). */
int source_read(const source *s, int split, uint64_t i, source_scratch *sc,
                uint8_t *pixels, int32_t *label, source_native *native,
                st_error *err);

#endif
