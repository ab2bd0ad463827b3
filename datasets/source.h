/* datasets/source.h — importers: a source dataset on disk (IDX, folder of
 * PNGs, CIFAR-10 binaries) seen as splits of fixed-shape uint8 samples.
 *
 * defines: source_open, source_close, source_info_of, source_read,
 *          source_scratch_create, source_scratch_destroy, source_format_name
 *
 * source_open checks the whole source's structure up front (magic numbers,
 * counts, sizes, class names, image sizes) so that a bad input is refused
 * before anything is written. source_read is safe to call from several
 * threads at once, each with its own scratch.
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

typedef struct source_options {
    source_format format;   /* SOURCE_AUTO detects it */
    int channels;           /* 0: natural (folder: 3 when any image has
                               colour, else 1; alpha dropped); else 1, 3
                               or 4 */
    uint32_t resize_w, resize_h; /* 0: no resizing; sizes must then agree */
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
    int png_native;         /* samples are stored as PNG files */
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

/* Fills pixels (H*W*C bytes) and *label with sample i of split. When png is
 * non-NULL and the sample is a PNG file that decodes to exactly these
 * pixels without conversion (8-bit, same channels, same size), *png and
 * *png_len point to its bytes inside sc; otherwise *png is set to NULL.
 * @return 0 or a negative st_errcode naming the file. */
int source_read(const source *s, int split, uint64_t i, source_scratch *sc,
                uint8_t *pixels, int32_t *label, const uint8_t **png,
                size_t *png_len, st_error *err);

#endif
