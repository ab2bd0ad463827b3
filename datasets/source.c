/* datasets/source.c — the importer front: option checks, format
 * auto-detection, dispatch to idx.c / folder.c / cifar.c through the
 * source_ops vtable (source_impl.h), per-thread scratch, and the helpers the
 * importers share (file reading, channel conversion, resizing).
 *
 * Auto-detection: a file is IDX; a directory holding *idx3-ubyte[.gz] is
 * IDX, one holding data_batch_1.bin or test_batch.bin is CIFAR-10, any
 * other directory with a subdirectory is a folder of images, and anything
 * else is refused saying what was looked for.
 */
#include "source.h"
#include "source_impl.h"
#include "jpegio.h"
#include "pngio.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stb_image_resize.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

const char *source_format_name(source_format f)
{
    switch (f) {
    case SOURCE_AUTO: return "auto";
    case SOURCE_IDX: return "idx";
    case SOURCE_FOLDER: return "folder";
    case SOURCE_CIFAR10: return "cifar10";
    default: return "unknown";
    }
}

static int errno_code(int e)
{
    return e == ENOENT || e == ENOTDIR ? ST_ENOTFOUND : ST_EIO;
}

/* ---- auto-detection ------------------------------------------------------- */

/* 1 when dir/name is a directory (a candidate class or split folder). */
static int is_subdir(const char *dir, const char *name)
{
    if (name[0] == '.') return 0;
    char *p = source__join(dir, name);
    struct stat st;
    int yes = p != NULL && stat(p, &st) == 0 && S_ISDIR(st.st_mode);
    free(p);
    return yes;
}

static int detect_dir(const char *path, source_format *f, st_error *err)
{
    DIR *d = opendir(path);
    if (d == NULL)
        return st_seterr(err, errno_code(errno), "%s: cannot open: %s", path,
                         strerror(errno));
    int idx = 0, cifar = 0, dirs = 0;
    struct dirent *de;
    errno = 0;
    while ((de = readdir(d)) != NULL) {
        if (strstr(de->d_name, "idx3-ubyte") != NULL) idx = 1;
        if (strcmp(de->d_name, "data_batch_1.bin") == 0 ||
            strcmp(de->d_name, "test_batch.bin") == 0)
            cifar = 1;
        if (!idx && !cifar && !dirs) dirs = is_subdir(path, de->d_name);
        errno = 0;
    }
    int rd_errno = errno;
    closedir(d);
    if (rd_errno != 0)
        return st_seterr(err, ST_EIO, "%s: cannot list: %s", path,
                         strerror(rd_errno));
    if (!idx && !cifar && !dirs)
        return st_seterr(err, ST_EFORMAT, "%s: not a recognised source: no "
                         "IDX images file (train-images-idx3-ubyte[.gz]), no "
                         "CIFAR-10 data_batch_*.bin or test_batch.bin, no "
                         "class folders of JPEG or PNG files", path);
    *f = idx ? SOURCE_IDX : cifar ? SOURCE_CIFAR10 : SOURCE_FOLDER;
    return 0;
}

static int detect(const char *path, source_format *f, st_error *err)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return st_seterr(err, errno_code(errno), "%s: cannot open: %s", path,
                         strerror(errno));
    if (S_ISREG(st.st_mode)) {
        *f = SOURCE_IDX;
        return 0;
    }
    if (!S_ISDIR(st.st_mode))
        return st_seterr(err, ST_EINVAL, "%s: not a file or directory", path);
    return detect_dir(path, f, err);
}

static int check_options(const char *path, const source_options *o,
                         st_error *err)
{
    if (o->format < SOURCE_AUTO || o->format > SOURCE_CIFAR10)
        return st_seterr(err, ST_EINVAL, "%s: unknown source format %d", path,
                         (int)o->format);
    if (o->channels != 0 && o->channels != 1 && o->channels != 3 &&
        o->channels != 4)
        return st_seterr(err, ST_EINVAL,
                         "%s: %d channels requested (1, 3 or 4)", path,
                         o->channels);
    if ((o->resize_w == 0) != (o->resize_h == 0) ||
        o->resize_w > SOURCE_MAX_SIDE || o->resize_h > SOURCE_MAX_SIDE)
        return st_seterr(err, ST_EINVAL, "%s: bad resize %ux%u", path,
                         o->resize_w, o->resize_h);
    if (o->max_side > SOURCE_MAX_SIDE)
        return st_seterr(err, ST_EINVAL, "%s: max side %u (at most %u)",
                         path, o->max_side, SOURCE_MAX_SIDE);
    if (o->max_side != 0 && o->resize_w != 0)
        return st_seterr(err, ST_EINVAL, "%s: resize %ux%u and max side %u "
                         "do not combine (resize makes every image exactly "
                         "its size)", path, o->resize_w, o->resize_h,
                         o->max_side);
    return 0;
}

/* ---- open / close --------------------------------------------------------- */

int source_open(const char *path, const source_options *opt, source **out,
                st_error *err)
{
    static const source_options defaults = {0};
    *out = NULL;
    if (opt == NULL) opt = &defaults;
    ST_TRY(check_options(path, opt, err));
    source_format f = opt->format;
    if (f == SOURCE_AUTO) ST_TRY(detect(path, &f, err));

    source *s = calloc(1, sizeof *s);
    if (s == NULL) return st_seterr(err, ST_ENOMEM, "%s: out of memory", path);
    s->path = strdup(path);
    int rc = ST_ENOMEM;
    if (s->path == NULL) {
        st_seterr(err, rc, "%s: out of memory", path);
        goto fail;
    }
    s->info.format = f;
    switch (f) {
    case SOURCE_IDX: rc = idx_open(s, path, opt, err); break;
    case SOURCE_FOLDER: rc = folder_open(s, path, opt, err); break;
    default: rc = cifar_open(s, path, opt, err); break;
    }
    if (rc < 0) goto fail;
    *out = s;
    return 0;
fail:
    source_close(s);
    return rc;
}

void source_close(source *s)
{
    if (s == NULL) return;
    if (s->ops != NULL) s->ops->close(s);
    for (uint32_t i = 0; i < s->info.nclasses; i++) free(s->info.classes[i]);
    free(s->info.classes);
    free(s->path);
    free(s);
}

const source_info *source_info_of(const source *s)
{
    return &s->info;
}

/* ---- scratch -------------------------------------------------------------- */

int source_scratch_create(const source *s, source_scratch **out,
                          st_error *err)
{
    *out = NULL;
    source_scratch *sc = calloc(1, sizeof *sc);
    if (sc == NULL ||
        source__scratch_file(sc, s->scratch_file, NULL) < 0 ||
        source__scratch_conv(sc, s->scratch_conv, NULL) < 0 ||
        source__scratch_conv2(sc, s->scratch_conv2, NULL) < 0) {
        source_scratch_destroy(sc);
        return st_seterr(err, ST_ENOMEM, "%s: out of memory for scratch",
                         s->path);
    }
    if (s->info.jpeg_native) {
        st_error je = {0, ""};
        if (jpegio_dec_create(&sc->jpeg, &je) < 0) {
            source_scratch_destroy(sc);
            return st_seterr(err, je.code, "%s: %s", s->path, je.msg);
        }
    }
    *out = sc;
    return 0;
}

void source_scratch_destroy(source_scratch *sc)
{
    if (sc == NULL) return;
    jpegio_dec_destroy(sc->jpeg);
    free(sc->file);
    free(sc->conv);
    free(sc->conv2);
    free(sc);
}

static int grow(uint8_t **p, size_t *cap, size_t n, st_error *err)
{
    if (n <= *cap) return 0;
    uint8_t *np = realloc(*p, n);
    if (np == NULL)
        return st_seterr(err, ST_ENOMEM, "out of memory (%zu bytes)", n);
    *p = np;
    *cap = n;
    return 0;
}

int source__scratch_file(source_scratch *sc, size_t n, st_error *err)
{
    return grow(&sc->file, &sc->file_cap, n, err);
}

int source__scratch_conv(source_scratch *sc, size_t n, st_error *err)
{
    return grow(&sc->conv, &sc->conv_cap, n, err);
}

int source__scratch_conv2(source_scratch *sc, size_t n, st_error *err)
{
    return grow(&sc->conv2, &sc->conv2_cap, n, err);
}

/* ---- read ----------------------------------------------------------------- */

int source_read(const source *s, int split, uint64_t i, source_scratch *sc,
                uint8_t *pixels, int32_t *label, source_native *native,
                st_error *err)
{
    if (native != NULL) memset(native, 0, sizeof *native);
    if (split < 0 || (uint32_t)split >= s->info.nsplits)
        return st_seterr(err, ST_EINVAL, "%s: no split %d", s->path, split);
    if (i >= s->info.splits[split].count)
        return st_seterr(err, ST_EINVAL,
                         "%s: split %s has %llu samples, asked for #%llu",
                         s->path, s->info.splits[split].name,
                         (unsigned long long)s->info.splits[split].count,
                         (unsigned long long)i);
    return s->ops->read(s, split, i, sc, pixels, label, native, err);
}

void source_sample_size(const source *s, int split, uint64_t i, uint32_t *w,
                        uint32_t *h)
{
    *w = *h = 0;
    if (split < 0 || (uint32_t)split >= s->info.nsplits ||
        i >= s->info.splits[split].count)
        return;
    if (s->ops->size != NULL) {
        s->ops->size(s, split, i, w, h);
        return;
    }
    *w = s->info.width;
    *h = s->info.height;
}

/* ---- helpers shared with the importers ------------------------------------ */

void source__set_shape(source *s, const source_options *opt,
                       uint32_t native_w, uint32_t native_h,
                       uint32_t native_c)
{
    s->native_w = native_w;
    s->native_h = native_h;
    s->native_c = native_c;
    s->info.width = opt->resize_w ? opt->resize_w : native_w;
    s->info.height = opt->resize_h ? opt->resize_h : native_h;
    if (opt->max_side != 0) {
        source__max_side(opt->max_side, native_w, native_h, &s->info.width,
                         &s->info.height);
        s->area_resize = 1;
    }
    s->info.channels = opt->channels ? (uint32_t)opt->channels : native_c;
    s->info.max_sample_bytes = (uint64_t)s->info.width * s->info.height *
                               s->info.channels;
    int resize = s->info.width != native_w || s->info.height != native_h;
    int conv = s->info.channels != native_c;
    s->scratch_conv = resize && conv ? (size_t)native_w * native_h *
                                           s->info.channels
                                     : 0;
}

int source__set_classes(source *s, const char *const *names, uint32_t n,
                        st_error *err)
{
    s->info.classes = calloc(n ? n : 1, sizeof *s->info.classes);
    if (s->info.classes == NULL) goto nomem;
    for (uint32_t i = 0; i < n; i++) {
        s->info.classes[i] = strdup(names[i]);
        if (s->info.classes[i] == NULL) goto nomem;
        s->info.nclasses = i + 1;
    }
    s->info.nclasses = n;
    return 0;
nomem:
    return st_seterr(err, ST_ENOMEM, "%s: out of memory for class names",
                     s->path);
}

/* (n pixels of cin channels) -> (n pixels of cout channels). */
static void convert(const uint8_t *src, uint32_t cin, uint8_t *dst,
                    uint32_t cout, size_t n)
{
    for (size_t i = 0; i < n; i++, src += cin, dst += cout) {
        uint32_t r = src[0], g = r, b = r, a = 255;
        if (cin == 2) a = src[1];
        if (cin >= 3) {
            g = src[1];
            b = src[2];
        }
        if (cin == 4) a = src[3];
        if (cout == 1) {
            /* as pngio: an RGB sample gives the same gray whether it came
             * from a PNG or not */
            dst[0] = pngio_luma(r, g, b);
            continue;
        }
        dst[0] = (uint8_t)r;
        dst[1] = (uint8_t)g;
        dst[2] = (uint8_t)b;
        if (cout == 4) dst[3] = (uint8_t)a;
    }
}

void source__max_side(uint32_t max_side, uint32_t w, uint32_t h,
                      uint32_t *ow, uint32_t *oh)
{
    *ow = w;
    *oh = h;
    uint32_t lo = w < h ? w : h, hi = w < h ? h : w;
    if (max_side == 0 || hi <= max_side) return;
    /* round(lo * max_side / hi), halves up */
    uint64_t o = ((uint64_t)lo * max_side * 2 + hi) / (2 * (uint64_t)hi);
    if (o < 1) o = 1;
    *ow = w < h ? (uint32_t)o : max_side;
    *oh = w < h ? max_side : (uint32_t)o;
    if (w == h) *ow = *oh = max_side;
}

int source__resize(const uint8_t *src, uint32_t sw, uint32_t sh,
                   uint8_t *dst, uint32_t dw, uint32_t dh, uint32_t c,
                   int area, const char *file, st_error *err)
{
    int ok = area ? stbir_resize_uint8_generic(
                        src, (int)sw, (int)sh, 0, dst, (int)dw, (int)dh, 0,
                        (int)c, STBIR_ALPHA_CHANNEL_NONE, 0, STBIR_EDGE_CLAMP,
                        STBIR_FILTER_BOX, STBIR_COLORSPACE_LINEAR, NULL)
                  : stbir_resize_uint8(src, (int)sw, (int)sh, 0, dst, (int)dw,
                                       (int)dh, 0, (int)c);
    if (!ok)
        return st_seterr(err, ST_ENOMEM,
                         "%s: stbir_resize_uint8 %ux%u -> %ux%u failed "
                         "(out of memory)",
                         file, sw, sh, dw, dh);
    return 0;
}

int source__finish(const source *s, source_scratch *sc, const uint8_t *src,
                   uint8_t *dst, const char *file, uint64_t record,
                   st_error *err)
{
    const source_info *in = &s->info;
    size_t n = (size_t)s->native_w * s->native_h;
    int conv = in->channels != s->native_c;
    int resize = in->width != s->native_w || in->height != s->native_h;
    if (!conv && !resize) {
        memcpy(dst, src, n * in->channels);
        return 0;
    }
    if (!resize) {
        convert(src, s->native_c, dst, in->channels, n);
        return 0;
    }
    if (conv) {
        if (sc->conv_cap < n * in->channels)
            return st_seterr(err, ST_EINTERNAL,
                             "%s: record %llu: scratch too small", file,
                             (unsigned long long)record);
        convert(src, s->native_c, sc->conv, in->channels, n);
        src = sc->conv;
    }
    return source__resize(src, s->native_w, s->native_h, dst, in->width,
                          in->height, in->channels, s->area_resize, file,
                          err);
}

static const char *file_kind(mode_t m)
{
    return S_ISDIR(m) ? "is a directory" : S_ISFIFO(m) ? "is a FIFO"
         : S_ISSOCK(m) ? "is a socket" : S_ISCHR(m) ? "is a character device"
         : S_ISBLK(m) ? "is a block device" : "is not a regular file";
}

/* stat before open, so that a FIFO is refused instead of blocking open();
 * O_NONBLOCK and the fstat close the race with a file swapped in between
 * (O_NONBLOCK means nothing for a regular file). */
int source__open_regular(const char *path, uint64_t *size, st_error *err)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return st_seterr(err, errno_code(errno), "%s: cannot open: %s", path,
                         strerror(errno));
    if (!S_ISREG(st.st_mode))
        return st_seterr(err, ST_EIO, "%s: cannot read: %s (expected a "
                         "regular file)", path, file_kind(st.st_mode));
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return st_seterr(err, errno_code(errno), "%s: cannot open: %s", path,
                         strerror(errno));
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return st_seterr(err, ST_EIO, "%s: cannot stat: %s", path,
                         strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return st_seterr(err, ST_EIO, "%s: cannot read: %s (expected a "
                         "regular file)", path, file_kind(st.st_mode));
    }
    *size = (uint64_t)st.st_size;
    return fd;
}

int source__read_file(const char *path, source_scratch *sc, size_t *len,
                      st_error *err)
{
    uint64_t size;
    int fd = source__open_regular(path, &size, err);
    if (fd < 0) return fd;
    int rc = 0;
    if ((uint64_t)(size_t)size != size) {
        rc = st_seterr(err, ST_ENOMEM, "%s: too large", path);
        goto out;
    }
    if ((rc = source__scratch_file(sc, (size_t)size, err)) < 0) goto out;
    size_t got = 0;
    while (got < (size_t)size) {
        ssize_t r = read(fd, sc->file + got, (size_t)size - got);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            rc = st_seterr(err, ST_EIO, "%s: cannot read: %s", path,
                           strerror(errno));
            goto out;
        }
        if (r == 0) {
            rc = st_seterr(err, ST_EIO, "%s: shrank while being read", path);
            goto out;
        }
        got += (size_t)r;
    }
    *len = got;
out:
    close(fd);
    return rc;
}

char *source__join(const char *dir, const char *name)
{
    size_t a = strlen(dir), b = strlen(name);
    while (a > 1 && dir[a - 1] == '/') a--;
    char *p = malloc(a + b + 2);
    if (p == NULL) return NULL;
    memcpy(p, dir, a);
    p[a] = '/';
    memcpy(p + a + 1, name, b + 1);
    return p;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

void source__sort_names(char **names, size_t n)
{
    if (n > 1) qsort(names, n, sizeof *names, cmp_names);
}
