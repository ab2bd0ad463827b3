/* datasets/idx.c — the IDX importer (MNIST, Fashion-MNIST and their kin).
 *
 * implements: idx_open and its source_ops (see source_impl.h).
 *
 * A path is either a directory, whose *images-idx3-ubyte[.gz] files are
 * paired with their *labels-idx1-ubyte[.gz] files into the splits "train"
 * (names containing "train") and "test" ("t10k" or "test"), or one images
 * file, paired the same way, which becomes the split "train". Gzip is
 * recognised by its magic bytes and inflated with zlib; a stream that is
 * truncated, corrupt or followed by garbage is refused. Both files of a
 * pair are held in memory, decompressed (Fashion-MNIST: 55 MB).
 *
 * IDX layout (big-endian): images: u32 magic 0x00000803, u32 count,
 * u32 rows, u32 cols, then count*rows*cols bytes; labels: u32 magic
 * 0x00000801, u32 count, then count bytes.
 */
#include "source_impl.h"

#include <dirent.h>
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define IDX_IMAGES_MAGIC 0x00000803u
#define IDX_LABELS_MAGIC 0x00000801u
#define IDX_MAX_SIDE 65535u
#define GZ_CHUNK (1u << 20)
#define GZ_FIRST_CAP_MAX ((size_t)256 << 20)

typedef struct idx_split {
    char *images_path, *labels_path;
    uint8_t *images_buf;     /* the whole decompressed images file */
    uint8_t *labels_buf;     /* the whole decompressed labels file */
    const uint8_t *images;   /* (count, rows, cols) inside images_buf */
    const uint8_t *labels;   /* (count) inside labels_buf */
    uint64_t count;
} idx_split;

typedef struct idx_impl {
    uint32_t rows, cols;
    uint32_t nsplits;
    idx_split splits[2];
} idx_impl;

static const char *const fashion_names[10] = {
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
           (uint32_t)p[3];
}

/* ---- loading -------------------------------------------------------------- */

static int read_all(int fd, const char *path, uint8_t *dst, size_t n,
                    st_error *err)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, dst + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0)
            return st_seterr(err, ST_EIO, "%s: cannot read: %s", path,
                             strerror(errno));
        if (r == 0)
            return st_seterr(err, ST_EIO, "%s: shrank while being read",
                             path);
        got += (size_t)r;
    }
    return 0;
}

static int gz_corrupt(const char *path, const char *why, st_error *err)
{
    return st_seterr(err, ST_EDECODE,
                     "%s: truncated or corrupt gzip stream (%s)", path, why);
}

/* A first guess at the output size: the gzip trailer's ISIZE (size mod
 * 2^32 of the last member), bounded; the buffer grows if it is wrong. */
static size_t gz_size_hint(int fd, uint64_t size)
{
    uint8_t t[4];
    if (size < 18 || pread(fd, t, 4, (off_t)size - 4) != 4) return 1 << 16;
    size_t n = (size_t)t[0] | (size_t)t[1] << 8 | (size_t)t[2] << 16 |
               (size_t)t[3] << 24;
    if (n > GZ_FIRST_CAP_MAX) n = GZ_FIRST_CAP_MAX;
    return n + 1; /* +1: the end is then seen without a regrow */
}

/* Runs the inflate loop over fd; out/len/cap describe the growing output.
 * Concatenated gzip members are accepted; anything else after a member is
 * an error, as is a stream that stops before its end. */
static int gz_loop(z_stream *zs, int fd, const char *path, uint8_t *in,
                   uint8_t **out, size_t *len, size_t *cap, st_error *err)
{
    int eof = 0, ended = 0;
    for (;;) {
        if (zs->avail_in == 0 && !eof) {
            ssize_t r = read(fd, in, GZ_CHUNK);
            if (r < 0 && errno == EINTR) continue;
            if (r < 0)
                return st_seterr(err, ST_EIO, "%s: cannot read: %s", path,
                                 strerror(errno));
            eof = r == 0;
            zs->next_in = in;
            zs->avail_in = (uInt)r;
        }
        if (zs->avail_in == 0 && eof) break;
        if (ended) {
            if (zs->next_in[0] != 0x1f)
                return gz_corrupt(path, "trailing data after the end", err);
            if (inflateReset(zs) != Z_OK)
                return gz_corrupt(path, "inflateReset failed", err);
            ended = 0;
        }
        if (*len == *cap) {
            size_t nc = *cap * 2;
            uint8_t *nb = realloc(*out, nc);
            if (nb == NULL)
                return st_seterr(err, ST_ENOMEM,
                                 "%s: out of memory inflating (%zu bytes)",
                                 path, nc);
            *out = nb;
            *cap = nc;
        }
        size_t room = *cap - *len;
        if (room > UINT32_MAX) room = UINT32_MAX;
        zs->next_out = *out + *len;
        zs->avail_out = (uInt)room;
        int zr = inflate(zs, Z_NO_FLUSH);
        *len += room - zs->avail_out;
        if (zr == Z_STREAM_END) ended = 1;
        else if (zr == Z_MEM_ERROR)
            return st_seterr(err, ST_ENOMEM, "%s: zlib: out of memory", path);
        else if (zr != Z_OK && zr != Z_BUF_ERROR)
            return gz_corrupt(path, zs->msg ? zs->msg : zError(zr), err);
    }
    if (!ended) return gz_corrupt(path, "unexpected end of file", err);
    return 0;
}

static int gunzip_fd(int fd, uint64_t size, const char *path, uint8_t **out,
                     size_t *out_len, st_error *err)
{
    int rc = ST_ENOMEM;
    size_t cap = gz_size_hint(fd, size), len = 0;
    uint8_t *in = malloc(GZ_CHUNK);
    uint8_t *buf = malloc(cap);
    if (in == NULL || buf == NULL) {
        st_seterr(err, rc, "%s: out of memory", path);
        goto out_free;
    }
    if (lseek(fd, 0, SEEK_SET) != 0) {
        rc = st_seterr(err, ST_EIO, "%s: cannot seek: %s", path,
                       strerror(errno));
        goto out_free;
    }
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    int zr = inflateInit2(&zs, 16 + MAX_WBITS);
    if (zr != Z_OK) {
        rc = st_seterr(err, zr == Z_MEM_ERROR ? ST_ENOMEM : ST_EINTERNAL,
                       "%s: inflateInit2: %s", path, zError(zr));
        goto out_free;
    }
    rc = gz_loop(&zs, fd, path, in, &buf, &len, &cap, err);
    inflateEnd(&zs);
    if (rc < 0) goto out_free;
    free(in);
    *out = buf;
    *out_len = len;
    return 0;
out_free:
    free(buf);
    free(in);
    return rc;
}

/* Reads path whole into a new buffer, inflating it when it is gzip. */
static int load_file(const char *path, uint8_t **out, size_t *len,
                     st_error *err)
{
    uint64_t size;
    int fd = source__open_regular(path, &size, err);
    if (fd < 0) return fd;
    int rc = 0;
    uint8_t magic[2] = {0, 0};
    if (size >= 2 && (rc = read_all(fd, path, magic, 2, err)) < 0) goto out;
    if (magic[0] == 0x1f && magic[1] == 0x8b) {
        rc = gunzip_fd(fd, size, path, out, len, err);
        goto out;
    }
    if ((uint64_t)(size_t)size != size ||
        (*out = malloc(size ? (size_t)size : 1)) == NULL) {
        rc = st_seterr(err, ST_ENOMEM, "%s: out of memory (%llu bytes)",
                       path, (unsigned long long)size);
        goto out;
    }
    memcpy(*out, magic, size < 2 ? (size_t)size : 2);
    if (size > 2 &&
        (rc = read_all(fd, path, *out + 2, (size_t)size - 2, err)) < 0) {
        free(*out);
        *out = NULL;
        goto out;
    }
    *len = (size_t)size;
out:
    close(fd);
    return rc;
}

/* ---- parsing -------------------------------------------------------------- */

static int parse_images(const char *path, const uint8_t *b, size_t len,
                        uint64_t *n, uint32_t *rows, uint32_t *cols,
                        st_error *err)
{
    if (len < 4 || be32(b) != IDX_IMAGES_MAGIC)
        return st_seterr(err, ST_EFORMAT,
                         "%s: not an IDX images file (magic 0x%08x, expected "
                         "0x%08x)",
                         path, len >= 4 ? be32(b) : 0u, IDX_IMAGES_MAGIC);
    if (len < 16)
        return st_seterr(err, ST_EFORMAT,
                         "%s: IDX header truncated (%zu bytes)", path, len);
    *n = be32(b + 4);
    *rows = be32(b + 8);
    *cols = be32(b + 12);
    if (*rows == 0 || *cols == 0 || *rows > IDX_MAX_SIDE ||
        *cols > IDX_MAX_SIDE)
        return st_seterr(err, ST_EFORMAT, "%s: header says images of %ux%u",
                         path, *rows, *cols);
    uint64_t want = 16 + *n * *rows * *cols;
    if (want != len)
        return st_seterr(err, ST_EFORMAT,
                         "%s: header says %llu images of %ux%u but the file "
                         "holds %zu bytes (expected %llu)",
                         path, (unsigned long long)*n, *rows, *cols, len,
                         (unsigned long long)want);
    if (*n == 0)
        return st_seterr(err, ST_EFORMAT, "%s: header says 0 images", path);
    return 0;
}

static int parse_labels(const char *path, const uint8_t *b, size_t len,
                        uint64_t *n, st_error *err)
{
    if (len < 4 || be32(b) != IDX_LABELS_MAGIC)
        return st_seterr(err, ST_EFORMAT,
                         "%s: not an IDX labels file (magic 0x%08x, expected "
                         "0x%08x)",
                         path, len >= 4 ? be32(b) : 0u, IDX_LABELS_MAGIC);
    if (len < 8)
        return st_seterr(err, ST_EFORMAT,
                         "%s: IDX header truncated (%zu bytes)", path, len);
    *n = be32(b + 4);
    if (8 + *n != len)
        return st_seterr(err, ST_EFORMAT,
                         "%s: header says %llu labels but the file holds "
                         "%zu bytes (expected %llu)",
                         path, (unsigned long long)*n, len,
                         (unsigned long long)(8 + *n));
    return 0;
}

/* Loads and checks one images/labels pair into sp (paths already set). */
static int load_split(idx_impl *im, uint32_t j, st_error *err)
{
    idx_split *sp = &im->splits[j];
    size_t ilen = 0, llen = 0;
    uint64_t n = 0, nl = 0;
    uint32_t rows = 0, cols = 0;
    ST_TRY(load_file(sp->images_path, &sp->images_buf, &ilen, err));
    ST_TRY(parse_images(sp->images_path, sp->images_buf, ilen, &n, &rows,
                        &cols, err));
    ST_TRY(load_file(sp->labels_path, &sp->labels_buf, &llen, err));
    ST_TRY(parse_labels(sp->labels_path, sp->labels_buf, llen, &nl, err));
    if (n != nl)
        return st_seterr(err, ST_EFORMAT,
                         "%s holds %llu images but %s holds %llu labels",
                         sp->images_path, (unsigned long long)n,
                         sp->labels_path, (unsigned long long)nl);
    if (j > 0 && (rows != im->rows || cols != im->cols))
        return st_seterr(err, ST_EFORMAT,
                         "%s: images are %ux%u but %s holds %ux%u",
                         sp->images_path, rows, cols,
                         im->splits[0].images_path, im->rows, im->cols);
    im->rows = rows;
    im->cols = cols;
    sp->images = sp->images_buf + 16;
    sp->labels = sp->labels_buf + 8;
    sp->count = n;
    return 0;
}

/* ---- finding the files ---------------------------------------------------- */

static int is_gz(const char *name)
{
    size_t k = strlen(name);
    return k > 3 && strcmp(name + k - 3, ".gz") == 0;
}

static int exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

/* The labels file of an images file: "images-idx3" -> "labels-idx1" (also
 * with a '.' for '-'); when that name is absent, the same with ".gz" added
 * or removed. Both names present is refused as ambiguous. */
static int labels_for(const char *images, char **out, st_error *err)
{
    const char *base = strrchr(images, '/');
    base = base ? base + 1 : images;
    const char *m = strstr(base, "images-idx3");
    if (m == NULL) m = strstr(base, "images.idx3");
    if (m == NULL)
        return st_seterr(err, ST_EINVAL,
                         "%s: cannot name its labels file (the name has no "
                         "'images-idx3')",
                         images);
    size_t n = strlen(images), at = (size_t)(m - images);
    char *first = malloc(n + 1), *twin = malloc(n + 4);
    if (first == NULL || twin == NULL) {
        free(first);
        free(twin);
        return st_seterr(err, ST_ENOMEM, "out of memory");
    }
    memcpy(first, images, n + 1);
    memcpy(first + at, "labels", 6);
    first[at + 6 + 4] = '1'; /* "idx3" -> "idx1" */
    memcpy(twin, first, n + 1);
    if (is_gz(twin)) twin[n - 3] = '\0';
    else memcpy(twin + n, ".gz", 4);
    if (exists(first) && exists(twin)) {
        st_seterr(err, ST_EFORMAT, "%s and %s both exist (ambiguous labels "
                  "for %s; remove one)", first, twin, base);
        free(first);
        free(twin);
        return ST_EFORMAT;
    }
    if (exists(first) || !exists(twin)) {
        free(twin);
        if (exists(first)) {
            *out = first;
            return 0;
        }
        st_seterr(err, ST_ENOTFOUND, "%s: no such file (the labels for %s)",
                  first, images);
        free(first);
        return ST_ENOTFOUND;
    }
    free(first);
    *out = twin;
    return 0;
}

/* Which split an images file name belongs to: 0 train, 1 test, -1 none. */
static int split_of(const char *name)
{
    const char *m = strstr(name, "images");
    size_t k = m ? (size_t)(m - name) : strlen(name);
    char pre[256];
    if (k >= sizeof pre) k = sizeof pre - 1;
    memcpy(pre, name, k);
    pre[k] = '\0';
    if (strstr(pre, "train") != NULL) return 0;
    if (strstr(pre, "t10k") != NULL || strstr(pre, "test") != NULL) return 1;
    return -1;
}

/* Picks the images file of each split in dir. Two candidates for one split
 * are refused, a plain file and its .gz twin included (after gunzip -k the
 * two may differ, and picking one silently hides which was packed). */
static int scan_dir(const char *dir, char *found[2], st_error *err)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return st_seterr(err, errno == ENOENT ? ST_ENOTFOUND : ST_EIO,
                         "%s: cannot open: %s", dir, strerror(errno));
    int rc = 0;
    struct dirent *de;
    for (errno = 0; (de = readdir(d)) != NULL; errno = 0) {
        const char *nm = de->d_name;
        if (nm[0] == '.' || (strstr(nm, "images-idx3-ubyte") == NULL &&
                             strstr(nm, "images.idx3-ubyte") == NULL))
            continue;
        int sp = split_of(nm);
        if (sp < 0) {
            rc = st_seterr(err, ST_EFORMAT,
                           "%s/%s: cannot tell whether it is train or test "
                           "data (expected a train- or t10k- prefix)",
                           dir, nm);
            break;
        }
        if (found[sp] != NULL) {
            const char *old = strrchr(found[sp], '/') + 1;
            rc = st_seterr(err, ST_EFORMAT,
                           "%s: both %s and %s hold %s images (ambiguous; "
                           "remove one)", dir, old, nm,
                           sp ? "test" : "train");
            break;
        }
        if ((found[sp] = source__join(dir, nm)) == NULL) {
            rc = st_seterr(err, ST_ENOMEM, "out of memory");
            break;
        }
    }
    if (rc == 0 && de == NULL && errno != 0)
        rc = st_seterr(err, ST_EIO, "%s: cannot list: %s", dir,
                       strerror(errno));
    closedir(d);
    if (rc == 0 && found[0] == NULL && found[1] == NULL)
        rc = st_seterr(err, ST_ENOTFOUND,
                       "%s: no *-images-idx3-ubyte[.gz] files", dir);
    return rc;
}

/* ---- classes -------------------------------------------------------------- */

static int looks_fashion(const char *path)
{
    char *a = strdup(path), *b = strdup(path);
    int yes = 0;
    if (a != NULL && b != NULL)
        yes = strcasestr(basename(a), "fashion") != NULL ||
              strcasestr(basename(dirname(b)), "fashion") != NULL;
    free(a);
    free(b);
    return yes;
}

static int set_classes(source *s, const idx_impl *im, const char *path,
                       int is_dir, st_error *err)
{
    uint32_t max = 0;
    for (uint32_t k = 0; k < im->nsplits; k++)
        for (uint64_t i = 0; i < im->splits[k].count; i++)
            if (im->splits[k].labels[i] > max) max = im->splits[k].labels[i];
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s", path);
    size_t k = strlen(tmp);
    while (k > 1 && tmp[k - 1] == '/') tmp[--k] = '\0';
    int fashion = is_dir ? strcasestr(basename(tmp), "fashion") != NULL
                         : looks_fashion(tmp);
    if (fashion && max < 10)
        return source__set_classes(s, fashion_names, 10, err);
    char digits[256][4];
    const char *names[256];
    for (uint32_t c = 0; c <= max; c++) {
        snprintf(digits[c], sizeof digits[c], "%u", c);
        names[c] = digits[c];
    }
    return source__set_classes(s, names, max + 1, err);
}

/* ---- ops ------------------------------------------------------------------ */

static int idx_read(const source *s, int split, uint64_t i,
                    source_scratch *sc, uint8_t *pixels, int32_t *label,
                    source_native *native, st_error *err)
{
    (void)native;
    const idx_impl *im = s->impl;
    const idx_split *sp = &im->splits[split];
    size_t n = (size_t)im->rows * im->cols;
    *label = sp->labels[i];
    return source__finish(s, sc, sp->images + i * n, pixels, sp->images_path,
                          i, err);
}

static void idx_close(source *s)
{
    idx_impl *im = s->impl;
    if (im == NULL) return;
    for (int k = 0; k < 2; k++) {
        free(im->splits[k].images_path);
        free(im->splits[k].labels_path);
        free(im->splits[k].images_buf);
        free(im->splits[k].labels_buf);
    }
    free(im);
    s->impl = NULL;
}

static const source_ops idx_ops = {idx_read, idx_close, NULL};

int idx_open(source *s, const char *path, const source_options *opt,
             st_error *err)
{
    idx_impl *im = calloc(1, sizeof *im);
    if (im == NULL) return st_seterr(err, ST_ENOMEM, "out of memory");
    s->impl = im;
    s->ops = &idx_ops;
    struct stat st;
    if (stat(path, &st) != 0)
        return st_seterr(err, errno == ENOENT ? ST_ENOTFOUND : ST_EIO,
                         "%s: cannot open: %s", path, strerror(errno));
    int is_dir = S_ISDIR(st.st_mode);
    char *found[2] = {NULL, NULL};
    if (is_dir) {
        int rc = scan_dir(path, found, err);
        if (rc < 0) {
            free(found[0]);
            free(found[1]);
            return rc;
        }
    } else if ((found[0] = strdup(path)) == NULL) {
        return st_seterr(err, ST_ENOMEM, "out of memory");
    }
    static const char *const names[2] = {"train", "test"};
    uint32_t m = 0;
    for (int k = 0; k < 2; k++) {
        if (found[k] == NULL) continue;
        im->splits[m].images_path = found[k];
        snprintf(s->info.splits[m].name, sizeof s->info.splits[m].name, "%s",
                 names[k]);
        m++;
    }
    for (uint32_t j = 0; j < m; j++) {
        ST_TRY(labels_for(im->splits[j].images_path,
                          &im->splits[j].labels_path, err));
        ST_TRY(load_split(im, j, err));
        s->info.splits[j].count = im->splits[j].count;
        s->info.nsplits = im->nsplits = j + 1;
    }
    source__set_shape(s, opt, im->cols, im->rows, 1);
    return set_classes(s, im, path, is_dir, err);
}
