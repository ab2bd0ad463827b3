/* datasets/source_impl.h — private: the vtable between source.c (dispatch,
 * auto-detection, scratch, pixel conversion) and the importers idx.c,
 * folder.c and cifar.c. Not for use outside datasets/.
 *
 * defines: struct source, struct source_scratch, source_ops,
 *          idx_open, folder_open, cifar_open,
 *          source__set_shape, source__set_classes, source__finish,
 *          source__resize, source__max_side, source__scratch_file,
 *          source__scratch_conv2, source__read_file,
 *          source__join
 *
 * An importer's *_open fills s->info (format, shape, classes, splits),
 * s->ops, s->impl and the scratch sizes. It sets s->ops as soon as s->impl
 * exists, so that on failure source_open can call ops->close to free a
 * half-built impl. Its read must be safe to call from many threads, each
 * with its own scratch: it reads s and never writes it.
 */
#ifndef ST_SOURCE_IMPL_H
#define ST_SOURCE_IMPL_H

#include <stdint.h>
#include <stddef.h>

#include "error.h"
#include "source.h"

typedef struct source_ops {
    /* split and i are already checked against info.splits; native, when
     * non-NULL, is cleared on entry. */
    int (*read)(const source *s, int split, uint64_t i, source_scratch *sc,
                uint8_t *pixels, int32_t *label, source_native *native,
                st_error *err);
    void (*close)(source *s); /* frees s->impl, which may be half-built */
    /* sample i's size (checked like read); NULL: every sample is info's */
    void (*size)(const source *s, int split, uint64_t i, uint32_t *w,
                 uint32_t *h);
} source_ops;

struct source {
    source_info info;         /* info.classes: (nclasses) malloc'd strings */
    const source_ops *ops;
    void *impl;
    char *path;               /* as given to source_open */
    /* Samples as stored, before channel conversion and resizing (idx and
     * cifar10; folder images carry their own size). */
    uint32_t native_w, native_h, native_c;
    size_t scratch_file;      /* bytes each scratch needs for file data */
    size_t scratch_conv;      /* bytes each scratch needs for converted
                                 pixels awaiting a resize */
    size_t scratch_conv2;     /* bytes for a second stage (folder: oriented
                                 pixels awaiting a resize) */
    int area_resize;          /* the resize comes from max_side: area
                                 filter (else stb's default, as --resize) */
};

struct source_scratch {
    uint8_t *file;            /* (file_cap) one file's bytes / one record */
    size_t file_cap;
    uint8_t *conv;            /* (conv_cap) pixels before resizing */
    size_t conv_cap;
    uint8_t *conv2;           /* (conv2_cap) oriented pixels before resizing */
    size_t conv2_cap;
    struct jpegio_dec *jpeg;  /* when info.jpeg_native; created with the
                                 scratch */
};

int idx_open(source *s, const char *path, const source_options *opt,
             st_error *err);
int folder_open(source *s, const char *path, const source_options *opt,
                st_error *err);
int cifar_open(source *s, const char *path, const source_options *opt,
               st_error *err);

/* Sets info.width/height/channels (and max_sample_bytes) of a fixed-size
 * source from the native shape and the options (resize or max_side,
 * channels), and scratch_conv for the conversion pipeline. */
void source__set_shape(source *s, const source_options *opt,
                       uint32_t native_w, uint32_t native_h,
                       uint32_t native_c);

/* Copies n names into s->info.classes. @return 0 or ST_ENOMEM. */
int source__set_classes(source *s, const char *const *names, uint32_t n,
                        st_error *err);

/* Turns one stored sample (native_h, native_w, native_c) at src into the
 * dataset's (height, width, channels) at dst: channel conversion (gray is
 * replicated, RGB goes to gray with pngio_luma (BT.601, as PIL), alpha
 * is added opaque or dropped), then resizing through sc->conv. file and
 * record name the sample in errors. */
int source__finish(const source *s, source_scratch *sc, const uint8_t *src,
                   uint8_t *dst, const char *file, uint64_t record,
                   st_error *err);

/* Resizes (sh, sw, c) at src to (dh, dw, c) at dst with stb_image_resize:
 * area (STBIR_FILTER_BOX) when area, else stb's default filters (what
 * --resize has always used). @return 0 or ST_ENOMEM naming file. */
int source__resize(const uint8_t *src, uint32_t sw, uint32_t sh,
                   uint8_t *dst, uint32_t dw, uint32_t dh, uint32_t c,
                   int area, const char *file, st_error *err);

/* The size max_side gives a w x h image: unchanged when its longer side
 * is at most max_side (or max_side is 0), else that side max_side and the
 * other round(side * max_side / long), at least 1. */
void source__max_side(uint32_t max_side, uint32_t w, uint32_t h,
                      uint32_t *ow, uint32_t *oh);

/* Makes sure sc->conv2 holds at least n bytes. @return 0 or ST_ENOMEM. */
int source__scratch_conv2(source_scratch *sc, size_t n, st_error *err);

/* Makes sure sc->conv holds at least n bytes. @return 0 or ST_ENOMEM. */
int source__scratch_conv(source_scratch *sc, size_t n, st_error *err);

/* Makes sure sc->file holds at least n bytes. @return 0 or ST_ENOMEM. */
int source__scratch_file(source_scratch *sc, size_t n, st_error *err);

/* Reads the whole regular file at path into sc->file (one read). *len gets
 * its size. @return 0 or ST_ENOTFOUND / ST_EIO / ST_ENOMEM naming path. */
int source__read_file(const char *path, source_scratch *sc, size_t *len,
                      st_error *err);

/* Opens path read-only and checks it is a regular file; *size gets its
 * size. @return an fd, or ST_ENOTFOUND / ST_EIO naming path. */
int source__open_regular(const char *path, uint64_t *size, st_error *err);

/* Formats "dir/name" into a new malloc'd string. NULL when out of memory. */
char *source__join(const char *dir, const char *name);

/* Sorts names bytewise (strcmp). */
void source__sort_names(char **names, size_t n);

#endif
