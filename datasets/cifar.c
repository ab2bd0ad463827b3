/* datasets/cifar.c — the CIFAR-10 binary importer.
 *
 * implements: cifar_open and its source_ops (see source_impl.h).
 *
 * A directory holds data_batch_1.bin .. data_batch_5.bin (split "train", in
 * that order; a prefix 1..k of them is accepted, a gap is not, nor any other
 * data_batch_*.bin such as data_batch_6.bin) and
 * test_batch.bin (split "test"). Each file is a run of 3073-byte records:
 * one label byte (0..9), then 32x32 red, 32x32 green, 32x32 blue bytes,
 * each plane row-major. Samples come out interleaved as (32, 32, 3).
 * Class names come from batches.meta.txt (first 10 non-empty lines) when it
 * exists, else the standard CIFAR-10 names.
 *
 * open checks sizes and scans every label; the files stay open and
 * source_read preads one record, so the data is never held in memory.
 */
#include "source_impl.h"
#include "manifest.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CIFAR_SIDE 32u
#define CIFAR_PLANE (CIFAR_SIDE * CIFAR_SIDE)
#define CIFAR_REC (1u + 3u * CIFAR_PLANE) /* 3073 */
#define CIFAR_CLASSES 10u
#define CIFAR_TRAIN_FILES 5
#define CIFAR_SCAN_RECS 512u /* records per read while scanning labels */
#define CIFAR_META_MAX 65536u

typedef struct cifar_file {
    char *path;
    int fd;                  /* -1 when not open */
    uint64_t records;
} cifar_file;

typedef struct cifar_split {
    cifar_file files[CIFAR_TRAIN_FILES];
    int nfiles;
} cifar_split;

typedef struct cifar_impl {
    cifar_split splits[2];
    uint32_t nsplits;
} cifar_impl;

static const char *const cifar_names[CIFAR_CLASSES] = {
    "airplane", "automobile", "bird",  "cat",  "deer",
    "dog",      "frog",       "horse", "ship", "truck"};

/* ---- open ----------------------------------------------------------------- */

/* Checks f's size and every label byte. */
static int scan_file(cifar_file *f, uint8_t *buf, st_error *err)
{
    uint64_t size;
    int fd = source__open_regular(f->path, &size, err);
    if (fd < 0) return fd;
    f->fd = fd;
    if (size == 0 || size % CIFAR_REC != 0)
        return st_seterr(err, ST_EFORMAT,
                         "%s: size %llu is not a positive multiple of %u "
                         "(1 label byte + 3072 pixel bytes per record)",
                         f->path, (unsigned long long)size, CIFAR_REC);
    f->records = size / CIFAR_REC;
    for (uint64_t r = 0; r < f->records; r += CIFAR_SCAN_RECS) {
        uint64_t n = f->records - r;
        if (n > CIFAR_SCAN_RECS) n = CIFAR_SCAN_RECS;
        size_t want = (size_t)n * CIFAR_REC;
        ssize_t got = pread(fd, buf, want, (off_t)(r * CIFAR_REC));
        if (got < 0)
            return st_seterr(err, ST_EIO, "%s: cannot read: %s", f->path,
                             strerror(errno));
        if ((size_t)got != want)
            return st_seterr(err, ST_EIO, "%s: shrank while being read",
                             f->path);
        for (uint64_t k = 0; k < n; k++)
            if (buf[k * CIFAR_REC] >= CIFAR_CLASSES)
                return st_seterr(err, ST_EFORMAT,
                                 "%s: record %llu has label %u; CIFAR-10 "
                                 "labels are 0..9",
                                 f->path, (unsigned long long)(r + k),
                                 buf[k * CIFAR_REC]);
    }
    return 0;
}

static int add_file(cifar_split *sp, const char *dir, const char *name,
                    uint8_t *buf, st_error *err)
{
    cifar_file *f = &sp->files[sp->nfiles];
    f->fd = -1;
    if ((f->path = source__join(dir, name)) == NULL)
        return st_seterr(err, ST_ENOMEM, "out of memory");
    sp->nfiles++;
    return scan_file(f, buf, err);
}

static int exists(const char *dir, const char *name)
{
    char *p = source__join(dir, name);
    struct stat st;
    int yes = p != NULL && lstat(p, &st) == 0;
    free(p);
    return yes;
}

/* Refuses a data_batch_*.bin other than data_batch_1..5.bin, which would
 * otherwise be left out of the pack without a word. */
static int check_extra_batches(const char *dir, st_error *err)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return st_seterr(err, ST_EIO, "%s: cannot list: %s", dir,
                         strerror(errno));
    int rc = 0;
    struct dirent *de;
    while (rc == 0 && (de = readdir(d)) != NULL) {
        const char *nm = de->d_name;
        size_t n = strlen(nm);
        if (strncmp(nm, "data_batch_", 11) != 0 || n < 15 ||
            strcmp(nm + n - 4, ".bin") != 0)
            continue;
        if (n == 16 && nm[11] >= '1' && nm[11] <= '0' + CIFAR_TRAIN_FILES)
            continue;
        rc = st_seterr(err, ST_EFORMAT, "%s/%s: not a CIFAR-10 file (CIFAR-10 "
                       "has data_batch_1.bin .. data_batch_%d.bin); move it "
                       "out of the directory", dir, nm, CIFAR_TRAIN_FILES);
    }
    closedir(d);
    return rc;
}

/* Finds the batch files and scans them into im. */
static int find_batches(source *s, cifar_impl *im, const char *dir,
                        uint8_t *buf, st_error *err)
{
    char name[32];
    int ntrain = 0;
    ST_TRY(check_extra_batches(dir, err));
    for (int k = 1; k <= CIFAR_TRAIN_FILES; k++) {
        snprintf(name, sizeof name, "data_batch_%d.bin", k);
        if (!exists(dir, name)) continue;
        if (ntrain != k - 1)
            return st_seterr(err, ST_ENOTFOUND,
                             "%s/data_batch_%d.bin: missing (but %s exists)",
                             dir, ntrain + 1, name);
        ntrain = k;
    }
    if (ntrain > 0) {
        cifar_split *sp = &im->splits[im->nsplits++];
        for (int k = 1; k <= ntrain; k++) {
            snprintf(name, sizeof name, "data_batch_%d.bin", k);
            ST_TRY(add_file(sp, dir, name, buf, err));
        }
        snprintf(s->info.splits[0].name, sizeof s->info.splits[0].name,
                 "train");
    }
    if (exists(dir, "test_batch.bin")) {
        uint32_t j = im->nsplits++;
        ST_TRY(add_file(&im->splits[j], dir, "test_batch.bin", buf, err));
        snprintf(s->info.splits[j].name, sizeof s->info.splits[j].name,
                 "test");
    }
    if (im->nsplits == 0)
        return st_seterr(err, ST_ENOTFOUND,
                         "%s: no data_batch_N.bin or test_batch.bin", dir);
    for (uint32_t j = 0; j < im->nsplits; j++) {
        uint64_t n = 0;
        for (int k = 0; k < im->splits[j].nfiles; k++)
            n += im->splits[j].files[k].records;
        s->info.splits[j].count = n;
    }
    s->info.nsplits = im->nsplits;
    return 0;
}

/* Reads batches.meta.txt: the first 10 non-empty lines, trailing
 * whitespace dropped. Absent file: the standard names. */
static int load_classes(source *s, const char *dir, uint8_t *buf,
                        st_error *err)
{
    char *path = source__join(dir, "batches.meta.txt");
    if (path == NULL) return st_seterr(err, ST_ENOMEM, "out of memory");
    struct stat st;
    int rc = 0;
    if (lstat(path, &st) != 0) {
        rc = source__set_classes(s, cifar_names, CIFAR_CLASSES, err);
        goto out;
    }
    uint64_t size;
    int fd = source__open_regular(path, &size, err);
    if (fd < 0) {
        rc = fd;
        goto out;
    }
    ssize_t got = read(fd, buf, CIFAR_META_MAX - 1);
    int e = errno;
    close(fd);
    if (got < 0) {
        rc = st_seterr(err, ST_EIO, "%s: cannot read: %s", path, strerror(e));
        goto out;
    }
    buf[got] = '\0';
    const char *names[CIFAR_CLASSES];
    uint32_t n = 0, line = 0;
    for (char *save = NULL, *l = strtok_r((char *)buf, "\n", &save);
         l != NULL && n < CIFAR_CLASSES; l = strtok_r(NULL, "\n", &save)) {
        line++;
        size_t k = strlen(l);
        while (k > 0 && (l[k - 1] == '\r' || l[k - 1] == ' ' ||
                         l[k - 1] == '\t'))
            l[--k] = '\0';
        if (k == 0) continue;
        if (!manifest_valid_class_name(l)) {
            rc = st_seterr(err, ST_EFORMAT,
                           "%s: class name on line %u is not valid UTF-8 or "
                           "holds control characters",
                           path, line);
            goto out;
        }
        names[n++] = l;
    }
    if (n < CIFAR_CLASSES) {
        rc = st_seterr(err, ST_EFORMAT,
                       "%s: lists %u class names, expected %u", path, n,
                       CIFAR_CLASSES);
        goto out;
    }
    rc = source__set_classes(s, names, CIFAR_CLASSES, err);
out:
    free(path);
    return rc;
}

/* ---- ops ------------------------------------------------------------------ */

static int cifar_read(const source *s, int split, uint64_t i,
                      source_scratch *sc, uint8_t *pixels, int32_t *label,
                      source_native *native, st_error *err)
{
    (void)native;
    const cifar_impl *im = s->impl;
    const cifar_split *sp = &im->splits[split];
    int k = 0;
    while (k < sp->nfiles - 1 && i >= sp->files[k].records)
        i -= sp->files[k++].records;
    const cifar_file *f = &sp->files[k];
    uint8_t *rec = sc->file;
    ssize_t got = pread(f->fd, rec, CIFAR_REC, (off_t)(i * CIFAR_REC));
    if (got != (ssize_t)CIFAR_REC)
        return st_seterr(err, ST_EIO, "%s: record %llu: cannot read: %s",
                         f->path, (unsigned long long)i,
                         got < 0 ? strerror(errno) : "file shrank");
    if (rec[0] >= CIFAR_CLASSES)
        return st_seterr(err, ST_EFORMAT, "%s: record %llu has label %u",
                         f->path, (unsigned long long)i, rec[0]);
    *label = rec[0];
    int direct = s->info.channels == 3 && s->info.width == CIFAR_SIDE &&
                 s->info.height == CIFAR_SIDE;
    uint8_t *hwc = direct ? pixels : rec + CIFAR_REC;
    const uint8_t *r = rec + 1, *g = r + CIFAR_PLANE, *b = g + CIFAR_PLANE;
    for (uint32_t p = 0; p < CIFAR_PLANE; p++) {
        hwc[3 * p] = r[p];
        hwc[3 * p + 1] = g[p];
        hwc[3 * p + 2] = b[p];
    }
    if (direct) return 0;
    return source__finish(s, sc, hwc, pixels, f->path, i, err);
}

static void cifar_close(source *s)
{
    cifar_impl *im = s->impl;
    if (im == NULL) return;
    for (int j = 0; j < 2; j++)
        for (int k = 0; k < im->splits[j].nfiles; k++) {
            cifar_file *f = &im->splits[j].files[k];
            if (f->fd >= 0) close(f->fd);
            free(f->path);
        }
    free(im);
    s->impl = NULL;
}

static const source_ops cifar_ops = {cifar_read, cifar_close, NULL};

int cifar_open(source *s, const char *path, const source_options *opt,
               st_error *err)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return st_seterr(err, errno == ENOENT ? ST_ENOTFOUND : ST_EIO,
                         "%s: cannot open: %s", path, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return st_seterr(err, ST_EINVAL,
                         "%s: not a directory (CIFAR-10 wants the folder of "
                         "*_batch*.bin files)",
                         path);
    cifar_impl *im = calloc(1, sizeof *im);
    size_t bufsz = CIFAR_SCAN_RECS * CIFAR_REC;
    uint8_t *buf = malloc(bufsz > CIFAR_META_MAX ? bufsz : CIFAR_META_MAX);
    if (im == NULL || buf == NULL) {
        free(im);
        free(buf);
        return st_seterr(err, ST_ENOMEM, "out of memory");
    }
    s->impl = im;
    s->ops = &cifar_ops;
    int rc = find_batches(s, im, path, buf, err);
    if (rc == 0) rc = load_classes(s, path, buf, err);
    free(buf);
    if (rc < 0) return rc;
    source__set_shape(s, opt, CIFAR_SIDE, CIFAR_SIDE, 3);
    /* one record, then its interleaved (32, 32, 3) copy */
    s->scratch_file = CIFAR_REC + 3 * CIFAR_PLANE;
    return 0;
}
