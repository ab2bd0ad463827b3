/* datasets/folder.c — the folder-of-PNGs importer.
 *
 * implements: folder_open and its source_ops (see source_impl.h).
 *
 * Layout: ROOT/CLASS/FILE, or, when ROOT holds train/ and test/ (or val/),
 * ROOT/SPLIT/CLASS/FILE with the splits in the order train, test, val.
 * Classes are sorted bytewise (strcmp) and a class's index is its position
 * in the sorted union of class names over all splits; files are sorted the
 * same way. Names starting with '.' are ignored everywhere, as are regular
 * files beside the class folders; inside a class folder every entry must be
 * a PNG file (judged by its bytes, not its name).
 *
 * open reads the first bytes of every file (signature and IHDR), so that a
 * non-PNG, an unreadable file or an image of the wrong size is refused
 * before anything is written. Without resizing all images must share the
 * first image's size. The dataset has 3 channels when any image has colour
 * (RGB, RGBA, palette), else 1; alpha is kept only when the options ask for
 * 4 channels. read loads one file (one read into the scratch),
 * decodes it with pngio_decode straight into the caller's pixels (or into
 * the scratch, then resizes), and offers the file's own bytes when they
 * decode to those pixels with no conversion.
 */
#include "source_impl.h"
#include "manifest.h"
#include "pngio.h"

#include <dirent.h>
#include <errno.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PROBE_BYTES 64 /* signature + IHDR = 33, and a little more */
#define MAX_SPLITS 3

typedef struct folder_entry {
    size_t path;             /* offset of the NUL-terminated path in pool */
    int32_t label;
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
    int resize;              /* images may differ from (height, width) */
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

/* ---- the probe pass ------------------------------------------------------- */

/* What open learns while probing, in split/class/file order. */
typedef struct probe_state {
    const source_options *opt;
    uint64_t nimages;
    uint32_t w, h;           /* the first image's size */
    char *first;             /* the first image's path */
    int any_color;           /* some image is RGB, RGBA or palette */
    uint64_t max_file;       /* largest file, bytes */
    uint64_t max_pixels;     /* largest w*h among images that need resizing */
} probe_state;

static int probe_file(const char *path, probe_state *ps, st_error *err)
{
    uint64_t size;
    int fd = source__open_regular(path, &size, err);
    if (fd < 0) return fd;
    uint8_t head[PROBE_BYTES];
    ssize_t got = pread(fd, head, sizeof head, 0);
    int e = errno;
    close(fd);
    if (got < 0)
        return st_seterr(err, ST_EIO, "%s: cannot read: %s", path,
                         strerror(e));
    pngio_info pi;
    st_error pe = {0, ""};
    if (pngio_probe(head, (size_t)got, &pi, &pe) < 0)
        return st_seterr(err, ST_EFORMAT, "%s: %s", path, pe.msg);
    if (size > ps->max_file) ps->max_file = size;
    if (ps->nimages++ == 0) {
        if ((ps->first = strdup(path)) == NULL)
            return st_seterr(err, ST_ENOMEM, "out of memory");
        ps->w = pi.width;
        ps->h = pi.height;
    }
    if (pi.color_type & PNG_COLOR_MASK_COLOR) ps->any_color = 1;
    const source_options *o = ps->opt;
    if (o->resize_w == 0 && (pi.width != ps->w || pi.height != ps->h))
        return st_seterr(err, ST_EFORMAT,
                         "%s: image is %ux%u but %s is %ux%u (all images "
                         "must have one size unless resizing)",
                         path, pi.width, pi.height, ps->first, ps->w, ps->h);
    if (o->resize_w != 0 && (pi.width != o->resize_w ||
                             pi.height != o->resize_h)) {
        uint64_t px = (uint64_t)pi.width * pi.height;
        if (px > ps->max_pixels) ps->max_pixels = px;
    }
    return 0;
}

static int push_entry(folder_impl *im, folder_split *sp, const char *path,
                      int32_t label, st_error *err)
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
    sp->e[sp->n].path = im->pool_len;
    sp->e[sp->n].label = label;
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
        rc = st_seterr(err, ST_EFORMAT, "%s: empty class folder (no PNG "
                       "files)", cdir);
    for (size_t i = 0; rc == 0 && i < files.n; i++) {
        char *p = source__join(cdir, files.v[i]);
        if (p == NULL) {
            rc = st_seterr(err, ST_ENOMEM, "out of memory");
            break;
        }
        rc = probe_file(p, ps, err);
        if (rc == 0) rc = push_entry(im, sp, p, label, err);
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
    int split_mode = has_name(&top, "train") &&
                     (has_name(&top, "test") || has_name(&top, "val"));
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

static int with_file(st_error *err, const char *path, const st_error *inner)
{
    return st_seterr(err, inner->code, "%s: %s", path, inner->msg);
}

static int folder_read(const source *s, int split, uint64_t i,
                       source_scratch *sc, uint8_t *pixels, int32_t *label,
                       const uint8_t **png, size_t *png_len, st_error *err)
{
    const folder_impl *im = s->impl;
    const folder_entry *e = &im->splits[split].e[i];
    const char *path = im->pool + e->path;
    const source_info *in = &s->info;
    size_t len;
    ST_TRY(source__read_file(path, sc, &len, err));
    pngio_info pi;
    st_error pe = {0, ""};
    if (pngio_probe(sc->file, len, &pi, &pe) < 0)
        return with_file(err, path, &pe);
    int c = (int)in->channels;
    int same = pi.width == in->width && pi.height == in->height;
    if (same || !im->resize) {
        if (pngio_decode(sc->file, len, in->width, in->height, c, pixels,
                         &pe) < 0)
            return with_file(err, path, &pe);
    } else {
        size_t n = (size_t)pi.width * pi.height * (size_t)c;
        ST_TRY(source__scratch_conv(sc, n, err));
        if (pngio_decode(sc->file, len, pi.width, pi.height, c, sc->conv,
                         &pe) < 0)
            return with_file(err, path, &pe);
        ST_TRY(source__resize(sc->conv, pi.width, pi.height, pixels,
                              in->width, in->height, in->channels, path,
                              err));
    }
    *label = e->label;
    if (png != NULL && same && pi.bit_depth == 8 && pi.channels == c &&
        !pi.interlaced && pi.color_type != PNG_COLOR_TYPE_PALETTE) {
        *png = sc->file;
        *png_len = len;
    }
    return 0;
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

static const source_ops folder_ops = {folder_read, folder_close};

int folder_open(source *s, const char *path, const source_options *opt,
                st_error *err)
{
    folder_impl *im = calloc(1, sizeof *im);
    if (im == NULL) return st_seterr(err, ST_ENOMEM, "out of memory");
    s->impl = im;
    s->ops = &folder_ops;
    im->resize = opt->resize_w != 0;
    layout L;
    memset(&L, 0, sizeof L);
    probe_state ps = {.opt = opt};
    int rc = find_splits(path, &L, err);
    if (rc == 0) rc = find_classes(path, &L, err);
    if (rc == 0) rc = probe_all(s, im, &L, &ps, err);
    if (rc == 0)
        rc = source__set_classes(s, (const char *const *)L.all.v,
                                 (uint32_t)L.all.n, err);
    if (rc == 0) {
        source__set_shape(s, opt, ps.w, ps.h, ps.any_color ? 3 : 1);
        s->scratch_file = (size_t)ps.max_file;
        s->scratch_conv = (size_t)ps.max_pixels * s->info.channels;
        s->info.png_native = 1;
    }
    free(ps.first);
    layout_free(&L);
    return rc;
}
