/* datasets/folder.c — the folder-of-images importer (JPEG and PNG).
 *
 * implements: folder_open and its source_ops (see source_impl.h).
 *
 * Layout: ROOT/CLASS/FILE, or, when ROOT holds train/ and test/ (or val/),
 * or train/ alone,
 * ROOT/SPLIT/CLASS/FILE with the splits in the order train, test, val.
 * Classes are sorted bytewise (strcmp) and a class's index is its position
 * in the sorted union of class names over all splits; files are sorted the
 * same way. Names starting with '.' are ignored everywhere, as are regular
 * files beside the class folders. Inside a class folder every entry must
 * be a JPEG or a PNG file, judged by its first bytes whatever its name
 * (x.jpg holding HTML, or notes.txt, is refused: "FILE: not a JPEG or PNG
 * file (starts with 3c 68 74 6d)"), as it always was for PNGs.
 *
 * open reads every file's header (PNG: signature and IHDR; JPEG: the
 * markers up to the first scan, with EXIF orientation, through jpegio), so
 * that a non-image, an unreadable file, a zero-sized, 12-bit or over
 * max_pixels image is refused before anything is written, and records each
 * image's stored size, orientation and final size: the stored size turned
 * by EXIF orientation (unless no_exif_rotate), then --max-side (area
 * downscale) or --resize. Images may differ in size: the source is then
 * variable, its height and width the largest. The dataset has 3 channels
 * when any image has colour (PNG RGB, RGBA, palette; any JPEG but gray),
 * else 1; alpha is kept only when the options ask for 4 channels.
 *
 * read loads one file (one read into the scratch) and runs: decode at the
 * stored size (JPEG under max_side: DCT-scaled by 1/2, 1/4 or 1/8 when the
 * scaled image still covers the final size), EXIF orientation
 * (jpegio_orient), resize; each stage writes straight into the caller's
 * pixels when it is the last. The file's own bytes are offered when they
 * decode to the sample with none of those stages and no colour conversion.
 */
#include "source_impl.h"
#include "jpegio.h"
#include "manifest.h"
#include "pngio.h"
#include "shard.h"

#include <dirent.h>
#include <errno.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Bytes of a file read at open: a PNG's IHDR, and a JPEG's markers up to
 * its first scan unless EXIF thumbnails or ICC profiles push that further
 * (then the whole file is read). */
#define PROBE_BYTES (64u << 10)
#define MAX_SPLITS 3

enum { KIND_PNG = 1, KIND_JPEG = 2 };

typedef struct folder_entry {
    size_t path;             /* offset of the NUL-terminated path in pool */
    int32_t label;
    uint32_t sw, sh;         /* as stored */
    uint32_t w, h;           /* the sample's size */
    uint8_t kind;            /* KIND_* */
    uint8_t orient;          /* EXIF orientation to apply; 1: none */
    uint8_t plain;           /* channels the file decodes to with no
                                conversion (8-bit, no palette, no
                                interlace; JPEG gray 1, YCbCr/RGB 3), or 0 */
    uint8_t color;           /* the image has colour */
} folder_entry;

typedef struct folder_split {
    folder_entry *e;         /* (n) in split/class/file order */
    uint64_t n, cap;
} folder_split;

typedef struct folder_impl {
    char *pool;              /* every file's path, NUL-separated */
    size_t pool_len, pool_cap;
    uint32_t nsplits;
    folder_split splits[MAX_SPLITS];
    uint32_t max_side;       /* the options' */
    int resize;              /* --resize: stb's default filter */
} folder_impl;

/* A growable list of malloc'd names. */
typedef struct names {
    char **v;
    size_t n, cap;
} names;

static void names_free(names *l)
{
    for (size_t i = 0; i < l->n; i++) free(l->v[i]);
    free(l->v);
    memset(l, 0, sizeof *l);
}

static int names_push(names *l, const char *s)
{
    if (l->n == l->cap) {
        size_t nc = l->cap ? 2 * l->cap : 16;
        char **nv = realloc(l->v, nc * sizeof *nv);
        if (nv == NULL) return -1;
        l->v = nv;
        l->cap = nc;
    }
    if ((l->v[l->n] = strdup(s)) == NULL) return -1;
    l->n++;
    return 0;
}

static int has_name(const names *l, const char *s)
{
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->v[i], s) == 0) return 1;
    return 0;
}

/* ---- directory scanning --------------------------------------------------- */

/* Lists dir's non-hidden entries. With files == NULL (a root or split
 * folder) subdirectories go to dirs and everything else is ignored; else (a
 * class folder) every entry goes to files, to be checked when probed.
 * Both lists come back sorted. */
static int list_dir(const char *dir, names *dirs, names *files, st_error *err)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return st_seterr(err, errno == ENOENT ? ST_ENOTFOUND : ST_EIO,
                         "%s: cannot open: %s", dir, strerror(errno));
    int rc = 0;
    struct dirent *de;
    for (errno = 0; (de = readdir(d)) != NULL; errno = 0) {
        if (de->d_name[0] == '.') continue;
        if (files != NULL) {
            if (names_push(files, de->d_name) < 0) goto nomem;
            continue;
        }
        char *p = source__join(dir, de->d_name);
        if (p == NULL) goto nomem;
        struct stat st;
        int st_rc = stat(p, &st), e = errno;
        free(p);
        if (st_rc != 0) {
            rc = st_seterr(err, e == ENOENT ? ST_ENOTFOUND : ST_EIO,
                           "%s/%s: cannot open: %s", dir, de->d_name,
                           strerror(e));
            goto out;
        }
        if (S_ISDIR(st.st_mode) && names_push(dirs, de->d_name) < 0)
            goto nomem;
    }
    if (errno != 0)
        rc = st_seterr(err, ST_EIO, "%s: cannot list: %s", dir,
                       strerror(errno));
    goto out;
nomem:
    rc = st_seterr(err, ST_ENOMEM, "%s: out of memory", dir);
out:
    closedir(d);
    if (dirs) source__sort_names(dirs->v, dirs->n);
    if (files) source__sort_names(files->v, files->n);
    return rc;
}

/* ---- the probe pass ------------------------------------------------------ */

/* What open keeps while probing. */
typedef struct probe_state {
    const source_options *opt;
    uint8_t *buf;            /* (cap) the head of a file, or all of it */
    size_t cap;
    jpegio_dec *jpeg;
    uint64_t max_file;       /* the largest file, bytes */
} probe_state;

static int with_file(st_error *err, const char *path, const st_error *inner)
{
    return st_seterr(err, inner->code, "%s: %s", path, inner->msg);
}

/* "FILE: not a JPEG or PNG file (starts with 3c 68 74 6d)" */
static int not_an_image(const char *path, const uint8_t *b, size_t n,
                        st_error *err)
{
    char hex[16] = "";
    size_t o = 0;
    for (size_t i = 0; i < n && i < 4; i++)
        o += (size_t)snprintf(hex + o, sizeof hex - o, "%s%02x",
                              i ? " " : "", b[i]);
    if (n == 0)
        return st_seterr(err, ST_EFORMAT, "%s: not a JPEG or PNG file "
                         "(empty)", path);
    return st_seterr(err, ST_EFORMAT, "%s: not a JPEG or PNG file (starts "
                     "with %s)", path, hex);
}

static int probe_png(const char *path, const uint8_t *b, size_t n,
                     folder_entry *e, st_error *err)
{
    pngio_info pi;
    st_error pe = {0, ""};
    if (pngio_probe(b, n, &pi, &pe) < 0) /* a bad header: as before */
        return st_seterr(err, ST_EFORMAT, "%s: %s", path, pe.msg);
    e->kind = KIND_PNG;
    e->sw = pi.width;
    e->sh = pi.height;
    e->orient = 1;
    e->color = (pi.color_type & PNG_COLOR_MASK_COLOR) != 0;
    e->plain = pi.bit_depth == 8 && !pi.interlaced &&
                       pi.color_type != PNG_COLOR_TYPE_PALETTE
                   ? (uint8_t)pi.channels
                   : 0;
    return 0;
}

/* Reads the JPEG header from the head of the file, or from the whole file
 * when the head stops before the first scan. */
static int probe_jpeg(const char *path, int fd, uint64_t size, size_t got,
                      probe_state *ps, folder_entry *e, st_error *err)
{
    jpegio_info ji;
    st_error je = {0, ""};
    int rc = jpegio_read_info(ps->jpeg, ps->buf, got, &ji, &je);
    if (rc == ST_EDECODE && size > got) {
        if (size > ps->cap) {
            uint8_t *nb = size <= SIZE_MAX ? realloc(ps->buf, (size_t)size)
                                           : NULL;
            if (nb == NULL)
                return st_seterr(err, ST_ENOMEM, "%s: out of memory for "
                                 "its %llu bytes", path,
                                 (unsigned long long)size);
            ps->buf = nb;
            ps->cap = (size_t)size;
        }
        ssize_t all = pread(fd, ps->buf, (size_t)size, 0);
        if (all < 0)
            return st_seterr(err, ST_EIO, "%s: cannot read: %s", path,
                             strerror(errno));
        st_clearerr(&je);
        rc = jpegio_read_info(ps->jpeg, ps->buf, (size_t)all, &ji, &je);
    }
    if (rc < 0) return with_file(err, path, &je);
    e->kind = KIND_JPEG;
    e->sw = ji.width;
    e->sh = ji.height;
    e->orient = ps->opt->no_exif_rotate ? 1 : (uint8_t)ji.orientation;
    e->color = ji.colorspace != JPEGIO_CS_GRAY;
    e->plain = ji.colorspace == JPEGIO_CS_GRAY ? 1
               : ji.colorspace == JPEGIO_CS_YCBCR ||
                       ji.colorspace == JPEGIO_CS_RGB
                   ? 3 : 0;
    return 0;
}

/* The sample's size: stored size, orientation, then resize or max_side. */
static void final_size(const source_options *o, folder_entry *e)
{
    uint32_t ow, oh;
    jpegio_oriented_size(e->orient, e->sw, e->sh, &ow, &oh);
    if (o->resize_w != 0) {
        e->w = o->resize_w;
        e->h = o->resize_h;
        return;
    }
    source__max_side(o->max_side, ow, oh, &e->w, &e->h);
}

static int probe_file(const char *path, probe_state *ps, folder_entry *e,
                      st_error *err)
{
    uint64_t size;
    int fd = source__open_regular(path, &size, err);
    if (fd < 0) return fd;
    if (size > ps->max_file) ps->max_file = size;
    ssize_t got = pread(fd, ps->buf, PROBE_BYTES, 0);
    int rc;
    if (got < 0) {
        rc = st_seterr(err, ST_EIO, "%s: cannot read: %s", path,
                       strerror(errno));
    } else if (jpegio_is_jpeg(ps->buf, (size_t)got)) {
        rc = probe_jpeg(path, fd, size, (size_t)got, ps, e, err);
    } else if (got >= 8 && memcmp(ps->buf, "\x89PNG\r\n\x1a\n", 8) == 0) {
        rc = probe_png(path, ps->buf, (size_t)got, e, err);
    } else {
        rc = not_an_image(path, ps->buf, (size_t)got, err);
    }
    close(fd);
    if (rc < 0) return rc;
    uint64_t px = (uint64_t)e->sw * e->sh, lim = ps->opt->max_pixels;
    if (lim != 0 && px > lim)
        return st_seterr(err, ST_EFORMAT, "%s: %ux%u = %llu pixels is over "
                         "--max-pixels %llu (a decompression bomb?)", path,
                         e->sw, e->sh, (unsigned long long)px,
                         (unsigned long long)lim);
    final_size(ps->opt, e);
    return 0;
}

static int push_entry(folder_impl *im, folder_split *sp, const char *path,
                      const folder_entry *fe, st_error *err)
{
    size_t k = strlen(path) + 1;
    if (im->pool_cap - im->pool_len < k) {
        size_t nc = im->pool_cap ? 2 * im->pool_cap : 1 << 16;
        while (nc - im->pool_len < k) nc *= 2;
        char *np = realloc(im->pool, nc);
        if (np == NULL) goto nomem;
        im->pool = np;
        im->pool_cap = nc;
    }
    if (sp->n == sp->cap) {
        uint64_t nc = sp->cap ? 2 * sp->cap : 256;
        folder_entry *ne = realloc(sp->e, nc * sizeof *ne);
        if (ne == NULL) goto nomem;
        sp->e = ne;
        sp->cap = nc;
    }
    memcpy(im->pool + im->pool_len, path, k);
    sp->e[sp->n] = *fe;
    sp->e[sp->n].path = im->pool_len;
    sp->n++;
    im->pool_len += k;
    return 0;
nomem:
    return st_seterr(err, ST_ENOMEM, "%s: out of memory", path);
}

/* Probes and records every file of one class folder. */
static int add_class(folder_impl *im, folder_split *sp, const char *cdir,
                     int32_t label, probe_state *ps, st_error *err)
{
    names files = {0};
    int rc = list_dir(cdir, NULL, &files, err);
    if (rc == 0 && files.n == 0)
        rc = st_seterr(err, ST_EFORMAT, "%s: empty class folder (no JPEG or "
                       "PNG files)", cdir);
    for (size_t i = 0; rc == 0 && i < files.n; i++) {
        char *p = source__join(cdir, files.v[i]);
        if (p == NULL) {
            rc = st_seterr(err, ST_ENOMEM, "out of memory");
            break;
        }
        folder_entry e;
        memset(&e, 0, sizeof e);
        e.label = label;
        rc = probe_file(p, ps, &e, err);
        if (rc == 0) rc = push_entry(im, sp, p, &e, err);
        free(p);
    }
    names_free(&files);
    return rc;
}

/* ---- classes and splits --------------------------------------------------- */

typedef struct layout {
    uint32_t nsplits;
    char *dir[MAX_SPLITS];       /* each split's folder */
    const char *name[MAX_SPLITS];
    names classes[MAX_SPLITS];   /* each split's class folders, sorted */
    names all;                   /* the sorted union */
} layout;

static void layout_free(layout *L)
{
    for (uint32_t j = 0; j < MAX_SPLITS; j++) {
        free(L->dir[j]);
        names_free(&L->classes[j]);
    }
    names_free(&L->all);
}

/* Decides between ROOT/CLASS and ROOT/SPLIT/CLASS. */
static int find_splits(const char *root, layout *L, st_error *err)
{
    names top = {0};
    int rc = list_dir(root, &top, NULL, err);
    if (rc < 0) goto out;
    /* train/ beside test/ or val/, or train/ alone (a training set
     * without a held-out split): splits; anything else: class folders */
    int split_mode = has_name(&top, "train") &&
                     (has_name(&top, "test") || has_name(&top, "val") ||
                      top.n == 1);
    if (!split_mode) {
        L->name[0] = "train";
        if ((L->dir[0] = strdup(root)) == NULL) goto nomem;
        L->nsplits = 1;
        goto out;
    }
    static const char *const order[MAX_SPLITS] = {"train", "test", "val"};
    for (size_t i = 0; i < top.n; i++)
        if (strcmp(top.v[i], "train") && strcmp(top.v[i], "test") &&
            strcmp(top.v[i], "val")) {
            rc = st_seterr(err, ST_EFORMAT,
                           "%s/%s: unexpected folder beside the train/ and "
                           "test/ splits (class folders belong inside each "
                           "split)",
                           root, top.v[i]);
            goto out;
        }
    for (int k = 0; k < MAX_SPLITS; k++) {
        if (!has_name(&top, order[k])) continue;
        L->name[L->nsplits] = order[k];
        if ((L->dir[L->nsplits++] = source__join(root, order[k])) == NULL)
            goto nomem;
    }
    goto out;
nomem:
    rc = st_seterr(err, ST_ENOMEM, "out of memory");
out:
    names_free(&top);
    return rc;
}

/* Writes name with bytes outside printable ASCII as \xNN, so that an
 * invalid name can be shown on one line. */
static const char *escaped(const char *name, char *buf, size_t cap)
{
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)name;
         *p && o + 5 < cap; p++) {
        if (*p >= 0x20 && *p < 0x7f) buf[o++] = (char)*p;
        else o += (size_t)snprintf(buf + o, cap - o, "\\x%02x", *p);
    }
    buf[o] = '\0';
    return buf;
}

/* Lists every split's classes, checks their names, builds the union. */
static int find_classes(const char *root, layout *L, st_error *err)
{
    for (uint32_t j = 0; j < L->nsplits; j++) {
        names *c = &L->classes[j];
        ST_TRY(list_dir(L->dir[j], c, NULL, err));
        if (c->n == 0)
            return st_seterr(err, ST_EFORMAT,
                             "%s: no class folders (expected one subfolder "
                             "of PNG files per class)",
                             L->dir[j]);
        for (size_t i = 0; i < c->n; i++) {
            char shown[256];
            if (!manifest_valid_class_name(c->v[i]))
                return st_seterr(err, ST_EFORMAT,
                                 "%s/%s: class name is not valid UTF-8 or "
                                 "holds control characters",
                                 L->dir[j], escaped(c->v[i], shown, sizeof shown));
            if (!has_name(&L->all, c->v[i]) &&
                names_push(&L->all, c->v[i]) < 0)
                return st_seterr(err, ST_ENOMEM, "out of memory");
        }
    }
    if (L->all.n > MANIFEST_MAX_CLASSES)
        return st_seterr(err, ST_EFORMAT, "%s: %zu classes (at most %u)",
                         root, L->all.n, MANIFEST_MAX_CLASSES);
    source__sort_names(L->all.v, L->all.n);
    return 0;
}

static int32_t class_index(const names *all, const char *name)
{
    size_t lo = 0, hi = all->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(all->v[mid], name);
        if (c == 0) return (int32_t)mid;
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return -1;
}

/* Walks split/class/file in order, probing and recording each file. */
static int probe_all(source *s, folder_impl *im, layout *L, probe_state *ps,
                     st_error *err)
{
    for (uint32_t j = 0; j < L->nsplits; j++) {
        folder_split *sp = &im->splits[j];
        for (size_t i = 0; i < L->classes[j].n; i++) {
            const char *cname = L->classes[j].v[i];
            char *cdir = source__join(L->dir[j], cname);
            if (cdir == NULL)
                return st_seterr(err, ST_ENOMEM, "out of memory");
            int rc = add_class(im, sp, cdir, class_index(&L->all, cname), ps,
                               err);
            free(cdir);
            if (rc < 0) return rc;
        }
        snprintf(s->info.splits[j].name, sizeof s->info.splits[j].name, "%s",
                 L->name[j]);
        s->info.splits[j].count = sp->n;
        s->info.nsplits = im->nsplits = j + 1;
    }
    return 0;
}

/* ---- ops ------------------------------------------------------------------ */

/* The DCT scale (1, 2, 4, 8) a JPEG decodes at: the largest whose image,
 * oriented, still covers the sample, when max_side shrinks it. */
static int dct_scale(const folder_impl *im, const folder_entry *e)
{
    if (e->kind != KIND_JPEG || im->max_side == 0 || im->resize) return 1;
    uint32_t tw, th; /* the sample's size in stored orientation */
    jpegio_oriented_size(e->orient, e->w, e->h, &tw, &th);
    int s = 8;
    while (s > 1 && (jpegio_scaled(e->sw, s) < tw ||
                     jpegio_scaled(e->sh, s) < th))
        s /= 2;
    return s;
}

/* Decodes the file (len bytes in sc->file) at 1/scale to (dh, dw, c) at
 * dst, dst holding exactly that; the file must still be what open saw. */
static int decode_file(const source_info *in, source_scratch *sc,
                       const folder_entry *e, const char *path, size_t len,
                       int scale, uint8_t *dst, uint32_t dw, uint32_t dh,
                       st_error *err)
{
    int c = (int)in->channels;
    st_error de = {0, ""};
    int is_jpeg = jpegio_is_jpeg(sc->file, len);
    if (is_jpeg != (e->kind == KIND_JPEG))
        return st_seterr(err, ST_EFORMAT, "%s: was a %s file when the "
                         "source was opened", path,
                         e->kind == KIND_JPEG ? "JPEG" : "PNG");
    if (!is_jpeg) {
        if (pngio_decode(sc->file, len, dw, dh, c, dst, &de) < 0)
            return with_file(err, path, &de);
        return 0;
    }
    jpegio_info ji;
    if (jpegio_read_info(sc->jpeg, sc->file, len, &ji, &de) < 0)
        return with_file(err, path, &de);
    if (ji.width != e->sw || ji.height != e->sh)
        return st_seterr(err, ST_EFORMAT, "%s: image is %ux%u, expected "
                         "%ux%u", path, ji.width, ji.height, e->sw, e->sh);
    int jc = c == 1 ? 1 : 3;
    uint32_t gw, gh;
    if (jpegio_decode(sc->jpeg, sc->file, len, scale, jc, dst,
                      (size_t)dw * jc, (size_t)dw * dh * jc, &gw, &gh,
                      &de) < 0)
        return with_file(err, path, &de);
    if (c == 4) /* RGB to RGBA in place, from the end */
        for (size_t i = (size_t)dw * dh; i-- > 0;) {
            uint8_t r = dst[3 * i], g = dst[3 * i + 1], b = dst[3 * i + 2];
            dst[4 * i] = r, dst[4 * i + 1] = g, dst[4 * i + 2] = b;
            dst[4 * i + 3] = 255;
        }
    return 0;
}

static int folder_read(const source *s, int split, uint64_t i,
                       source_scratch *sc, uint8_t *pixels, int32_t *label,
                       source_native *native, st_error *err)
{
    const folder_impl *im = s->impl;
    const folder_entry *e = &im->splits[split].e[i];
    const char *path = im->pool + e->path;
    size_t c = s->info.channels, len;
    ST_TRY(source__read_file(path, sc, &len, err));
    int scale = dct_scale(im, e);
    uint32_t dw = jpegio_scaled(e->sw, scale), dh = jpegio_scaled(e->sh, scale);
    uint32_t ow, oh;
    jpegio_oriented_size(e->orient, dw, dh, &ow, &oh);
    int orient = e->orient != 1, resize = ow != e->w || oh != e->h;
    size_t n = (size_t)dw * dh * c;
    uint8_t *cur = pixels;
    if (orient || resize) {
        ST_TRY(source__scratch_conv(sc, n, err));
        cur = sc->conv;
    }
    ST_TRY(decode_file(&s->info, sc, e, path, len, scale, cur, dw, dh, err));
    if (orient) {
        uint8_t *dst = pixels;
        if (resize) {
            ST_TRY(source__scratch_conv2(sc, n, err));
            dst = sc->conv2;
        }
        jpegio_orient(e->orient, cur, dw, dh, (int)c, dst);
        cur = dst;
    }
    if (resize)
        ST_TRY(source__resize(cur, ow, oh, pixels, e->w, e->h, (uint32_t)c,
                              !im->resize, path, err));
    *label = e->label;
    if (native != NULL && e->plain == c && !orient && !resize &&
        scale == 1) {
        native->bytes = sc->file;
        native->len = len;
        native->codec = e->kind == KIND_JPEG ? CODEC_JPEG : CODEC_PNG;
    }
    return 0;
}

static void folder_size(const source *s, int split, uint64_t i, uint32_t *w,
                        uint32_t *h)
{
    const folder_impl *im = s->impl;
    *w = im->splits[split].e[i].w;
    *h = im->splits[split].e[i].h;
}

static void folder_close(source *s)
{
    folder_impl *im = s->impl;
    if (im == NULL) return;
    for (uint32_t j = 0; j < MAX_SPLITS; j++) free(im->splits[j].e);
    free(im->pool);
    free(im);
    s->impl = NULL;
}

static const source_ops folder_ops = {folder_read, folder_close, folder_size};

/* Sets the shape and the scratch sizes from every entry's: the largest
 * sample, and the largest decoded image among those that pass through
 * the scratch on their way to the pixels. */
static void set_shape(source *s, folder_impl *im, const source_options *opt)
{
    source_info *in = &s->info;
    int any_color = 0, any_jpeg = 0, any_png = 0;
    uint64_t conv = 0, conv2 = 0, big = 0;
    uint32_t w0 = 0, h0 = 0;
    for (uint32_t j = 0; j < im->nsplits; j++)
        for (uint64_t k = 0; k < im->splits[j].n; k++) {
            const folder_entry *e = &im->splits[j].e[k];
            if (j == 0 && k == 0) w0 = e->w, h0 = e->h;
            if (e->w != w0 || e->h != h0) in->variable = 1;
            if (e->w > in->width) in->width = e->w;
            if (e->h > in->height) in->height = e->h;
            uint64_t px = (uint64_t)e->w * e->h, st = (uint64_t)e->sw * e->sh;
            if (px > big) big = px;
            any_color |= e->color;
            any_jpeg |= e->kind == KIND_JPEG;
            any_png |= e->kind == KIND_PNG;
            uint32_t ow, oh;
            jpegio_oriented_size(e->orient, e->sw, e->sh, &ow, &oh);
            int orient = e->orient != 1;
            int resize = ow != e->w || oh != e->h;
            if ((orient || resize) && st > conv) conv = st;
            if (orient && resize && st > conv2) conv2 = st;
        }
    in->channels = opt->channels ? (uint32_t)opt->channels : any_color ? 3 : 1;
    in->max_sample_bytes = big * in->channels;
    in->png_native = any_png;
    in->jpeg_native = any_jpeg;
    s->native_w = in->width;
    s->native_h = in->height;
    s->native_c = in->channels;
    s->scratch_conv = (size_t)(conv * in->channels);
    s->scratch_conv2 = (size_t)(conv2 * in->channels);
}

int folder_open(source *s, const char *path, const source_options *opt,
                st_error *err)
{
    folder_impl *im = calloc(1, sizeof *im);
    if (im == NULL) return st_seterr(err, ST_ENOMEM, "out of memory");
    s->impl = im;
    s->ops = &folder_ops;
    im->resize = opt->resize_w != 0;
    im->max_side = opt->max_side;
    layout L;
    memset(&L, 0, sizeof L);
    probe_state ps = {.opt = opt};
    int rc = 0;
    if ((ps.buf = malloc(PROBE_BYTES)) == NULL)
        rc = st_seterr(err, ST_ENOMEM, "out of memory");
    ps.cap = PROBE_BYTES;
    st_error je = {0, ""};
    if (rc == 0 && jpegio_dec_create(&ps.jpeg, &je) < 0)
        rc = st_seterr(err, je.code, "%s: %s", path, je.msg);
    if (rc == 0) rc = find_splits(path, &L, err);
    if (rc == 0) rc = find_classes(path, &L, err);
    if (rc == 0) rc = probe_all(s, im, &L, &ps, err);
    if (rc == 0)
        rc = source__set_classes(s, (const char *const *)L.all.v,
                                 (uint32_t)L.all.n, err);
    if (rc == 0) {
        set_shape(s, im, opt);
        s->scratch_file = (size_t)ps.max_file;
    }
    jpegio_dec_destroy(ps.jpeg);
    free(ps.buf);
    layout_free(&L);
    return rc;
}
