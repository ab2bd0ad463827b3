/* datasets/shard.c — writing and reading one shard file.
 *
 * Layout (datasets/FORMAT.md), version 2: 64-byte header | records |
 * zero padding to 8 bytes | index of 24-byte entries | 32-byte footer.
 * Version 1: header | records | 12-byte entries | footer. The writer
 * streams records through a 1 MiB buffer and patches the header last; the
 * reader validates every structural field at open (a version-2 index in
 * place, through a read-only mapping) and each record's XXH3 on read.
 */
#include "shard.h"
#include "bytes.h"
#include "fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#define XXH_STATIC_LINKING_ONLY /* XXH3_state_t on the stack */
#include <xxhash.h>

#define WBUF_BYTES (1u << 20)
#define MAX_RECORD_BYTES (1u << 30)

/* ---- shared helpers ---------------------------------------------------- */

static int write_all(int fd, const void *buf, size_t len, const char *path,
                     st_error *err)
{
    const uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            if (n == 0) errno = ENOSPC;
            return fs_errno_err(err, path, "write failed");
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static int pread_all(int fd, void *buf, size_t len, uint64_t off,
                     const char *path, st_error *err)
{
    uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = pread(fd, p, len, (off_t)off);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return fs_errno_err(err, path, "read failed");
        if (n == 0)
            return st_seterr(err, ST_EFORMAT, "%s: unexpected end of file at "
                             "byte %llu (truncated shard)", path,
                             (unsigned long long)off);
        p += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return 0;
}

static void encode_header(const shard_header *h, uint8_t out[64])
{
    memset(out, 0, 64);
    memcpy(out, SHARD_MAGIC, 8);
    st_put_u32(out + 8, h->version);
    st_put_u32(out + 12, h->codec);
    st_put_u32(out + 16, h->height);
    st_put_u32(out + 20, h->width);
    st_put_u32(out + 24, h->channels);
    st_put_u32(out + 28, h->dtype);
    st_put_u32(out + 32, h->label_type);
    st_put_u32(out + 36, h->dict_id);
    st_put_u64(out + 40, h->record_count);
    st_put_u64(out + 48, h->index_offset);
    st_put_u64(out + 56, XXH3_64bits(out, 56));
}

static void encode_footer(uint64_t count, uint64_t index_xxh3, uint8_t out[32])
{
    memcpy(out, SHARD_FOOTER_MAGIC, 8);
    st_put_u64(out + 8, count);
    st_put_u64(out + 16, index_xxh3);
    st_put_u64(out + 24, XXH3_64bits(out, 24));
}

uint32_t shard_record_check(const void *data, size_t len)
{
    return (uint32_t)XXH3_64bits(data, len);
}

/* ---- writer ------------------------------------------------------------ */

struct shard_writer {
    char *path;
    int fd;
    shard_header hdr;
    uint8_t *buf;            /* (WBUF_BYTES) pending bytes */
    size_t buf_len;
    uint64_t bytes;          /* file bytes so far, counting buf */
    shard_entry *index;      /* (index_cap) one per record */
    uint64_t count, index_cap;
};

int shard_writer_open(const char *path, const shard_header *hdr,
                      shard_writer **out, st_error *err)
{
    *out = NULL;
    shard_writer *w = calloc(1, sizeof *w);
    if (w == NULL) goto fail_nomem;
    w->fd = -1;
    w->path = strdup(path);
    w->buf = malloc(WBUF_BYTES);
    if (w->path == NULL || w->buf == NULL) goto fail_nomem;
    w->hdr = *hdr;
    w->hdr.version = hdr->version == 1 ? 1 : SHARD_VERSION;
    if (w->hdr.height == 0 || w->hdr.width == 0 ||
        w->hdr.height > SHARD_MAX_SIDE || w->hdr.width > SHARD_MAX_SIDE) {
        free(w->path);
        free(w->buf);
        free(w);
        return st_seterr(err, ST_EINVAL, "%s: shard shape %ux%u is not in "
                         "1..%u", path, hdr->height, hdr->width,
                         SHARD_MAX_SIDE);
    }
    w->fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (w->fd < 0) {
        int rc = fs_errno_err(err, path, "cannot create");
        shard_writer_abort(w);
        return rc;
    }
    memset(w->buf, 0, SHARD_HEADER_BYTES); /* placeholder header */
    w->buf_len = SHARD_HEADER_BYTES;
    w->bytes = SHARD_HEADER_BYTES;
    *out = w;
    return 0;
fail_nomem:
    if (w) { free(w->path); free(w->buf); free(w); }
    return st_seterr(err, ST_ENOMEM, "%s: out of memory", path);
}

static int wflush(shard_writer *w, st_error *err)
{
    int rc = write_all(w->fd, w->buf, w->buf_len, w->path, err);
    w->buf_len = 0;
    return rc;
}

static int wput(shard_writer *w, const void *data, size_t len, st_error *err)
{
    if (len == 0) return 0; /* data may be NULL (no records) */
    if (w->buf_len + len > WBUF_BYTES) {
        ST_TRY(wflush(w, err));
        if (len > WBUF_BYTES) {
            ST_TRY(write_all(w->fd, data, len, w->path, err));
            w->bytes += len;
            return 0;
        }
    }
    memcpy(w->buf + w->buf_len, data, len);
    w->buf_len += len;
    w->bytes += len;
    return 0;
}

int shard_writer_add(shard_writer *w, const void *data, size_t len,
                     int32_t label, uint32_t height, uint32_t width,
                     st_error *err)
{
    if (len == 0 || len > MAX_RECORD_BYTES)
        return st_seterr(err, ST_EINVAL, "%s: record %llu has %zu bytes "
                         "(must be 1..%u)", w->path,
                         (unsigned long long)w->count, len, MAX_RECORD_BYTES);
    int fixed = w->hdr.version == 1;
    if (height == 0 || width == 0 || height > w->hdr.height ||
        width > w->hdr.width ||
        (fixed && (height != w->hdr.height || width != w->hdr.width)))
        return st_seterr(err, ST_EINVAL, "%s: record %llu is %ux%u (H x W), "
                         "outside the shard's %s%ux%u", w->path,
                         (unsigned long long)w->count, height, width,
                         fixed ? "fixed " : "1x1..", w->hdr.height,
                         w->hdr.width);
    if (w->count == w->index_cap) {
        uint64_t cap = w->index_cap ? w->index_cap * 2 : 4096;
        shard_entry *n = realloc(w->index, cap * sizeof *n);
        if (n == NULL)
            return st_seterr(err, ST_ENOMEM, "%s: out of memory", w->path);
        w->index = n;
        w->index_cap = cap;
    }
    shard_entry *e = &w->index[w->count];
    e->offset = w->bytes;
    e->length = (uint32_t)len;
    e->label = label;
    e->check = shard_record_check(data, len);
    e->height = (uint16_t)height;
    e->width = (uint16_t)width;
    ST_TRY(wput(w, data, len, err));
    w->count++;
    return 0;
}

uint64_t shard_writer_bytes(const shard_writer *w) { return w->bytes; }

/* Appends the index (version 2: zero padding to 8 bytes first, then the
 * 24-byte entries as they are in memory; version 1: 12-byte entries). */
static int write_index(shard_writer *w, XXH3_state_t *st, st_error *err)
{
    static const uint8_t zeros[8];
    if (w->hdr.version == 1) {
        w->hdr.index_offset = w->bytes;
        for (uint64_t i = 0; i < w->count; i++) {
            const shard_entry *e = &w->index[i];
            uint8_t ent[SHARD_ENTRY_BYTES_V1];
            st_put_u32(ent, e->length);
            st_put_u32(ent + 4, (uint32_t)e->label);
            st_put_u32(ent + 8, e->check);
            XXH3_64bits_update(st, ent, sizeof ent);
            ST_TRY(wput(w, ent, sizeof ent, err));
        }
        return 0;
    }
    size_t pad = (size_t)((8 - w->bytes % 8) % 8);
    ST_TRY(wput(w, zeros, pad, err));
    w->hdr.index_offset = w->bytes;
    size_t bytes = (size_t)w->count * sizeof *w->index;
    XXH3_64bits_update(st, w->index, bytes); /* little-endian host */
    return wput(w, w->index, bytes, err);
}

static int write_tail(shard_writer *w, uint64_t *index_xxh3, st_error *err)
{
    uint8_t foot[SHARD_FOOTER_BYTES], head[64];
    XXH3_state_t st;
    XXH3_64bits_reset(&st);
    w->hdr.record_count = w->count;
    ST_TRY(write_index(w, &st, err));
    *index_xxh3 = XXH3_64bits_digest(&st);
    encode_footer(w->count, *index_xxh3, foot);
    ST_TRY(wput(w, foot, sizeof foot, err));
    ST_TRY(wflush(w, err));
    encode_header(&w->hdr, head);
    if (pwrite(w->fd, head, sizeof head, 0) != (ssize_t)sizeof head)
        return fs_errno_err(err, w->path, "header write failed");
    if (fsync(w->fd) != 0) return fs_errno_err(err, w->path, "fsync failed");
    return 0;
}

/* Hashes the finished file by reading it back (from the page cache). */
static int hash_file(int fd, uint64_t size, const char *path, uint64_t *out,
                     st_error *err)
{
    uint8_t *buf = malloc(WBUF_BYTES);
    if (buf == NULL) return st_seterr(err, ST_ENOMEM, "%s: out of memory", path);
    XXH3_state_t st;
    XXH3_64bits_reset(&st);
    int rc = 0;
    for (uint64_t off = 0; off < size && rc == 0;) {
        size_t n = size - off < WBUF_BYTES ? (size_t)(size - off) : WBUF_BYTES;
        rc = pread_all(fd, buf, n, off, path, err);
        XXH3_64bits_update(&st, buf, n);
        off += n;
    }
    *out = XXH3_64bits_digest(&st);
    free(buf);
    return rc;
}

int shard_writer_finish(shard_writer *w, uint64_t *file_bytes,
                        uint64_t *file_xxh3, uint64_t *index_xxh3,
                        st_error *err)
{
    int rc = write_tail(w, index_xxh3, err);
    if (rc == 0) {
        int rfd = open(w->path, O_RDONLY | O_CLOEXEC);
        if (rfd < 0) {
            rc = fs_errno_err(err, w->path, "cannot reopen");
        } else {
            rc = hash_file(rfd, w->bytes, w->path, file_xxh3, err);
            close(rfd);
        }
        *file_bytes = w->bytes;
    }
    if (close(w->fd) != 0 && rc == 0) rc = fs_errno_err(err, w->path, "close failed");
    w->fd = -1;
    if (rc != 0) unlink(w->path);
    free(w->index);
    free(w->buf);
    free(w->path);
    free(w);
    return rc;
}

void shard_writer_abort(shard_writer *w)
{
    if (w == NULL) return;
    if (w->fd >= 0) {
        close(w->fd);
        unlink(w->path);
    }
    free(w->index);
    free(w->buf);
    free(w->path);
    free(w);
}

/* ---- reader ------------------------------------------------------------ */

struct shard {
    char *path;
    int fd;
    shard_header hdr;
    uint64_t index_xxh3;
    uint32_t max_length;     /* largest record length */
    int mixed;               /* some entry is not header height x width */
    const shard_entry *index;/* (record_count): into map, or copy */
    shard_entry *copy;       /* version 1: the copied index, else NULL */
    void *map;               /* version 2: index + footer, read-only */
    size_t map_len;
};

int shard_parse_header(const uint8_t *b, size_t len, const char *path,
                       shard_header *h, st_error *err)
{
    if (len < SHARD_HEADER_BYTES || memcmp(b, SHARD_MAGIC, 8) != 0)
        return st_seterr(err, ST_EFORMAT, "%s: not a streamtrain shard "
                         "(bad magic)", path);
    h->version = st_get_u32(b + 8);
    if (h->version < SHARD_VERSION_MIN || h->version > SHARD_VERSION)
        return st_seterr(err, ST_EVERSION, "%s: shard format version %u is "
                         "not supported (this build reads versions %u and %u)",
                         path, h->version, SHARD_VERSION_MIN, SHARD_VERSION);
    if (st_get_u64(b + 56) != XXH3_64bits(b, 56))
        return st_seterr(err, ST_ECHECKSUM, "%s: header checksum mismatch "
                         "(corrupt header)", path);
    h->codec = st_get_u32(b + 12);
    h->height = st_get_u32(b + 16);
    h->width = st_get_u32(b + 20);
    h->channels = st_get_u32(b + 24);
    h->dtype = st_get_u32(b + 28);
    h->label_type = st_get_u32(b + 32);
    h->dict_id = st_get_u32(b + 36);
    h->record_count = st_get_u64(b + 40);
    h->index_offset = st_get_u64(b + 48);
    uint32_t max_codec = h->version == 1 ? CODEC_PNG : CODEC_JPEG;
    if (h->codec > max_codec || h->dtype != DTYPE_U8 ||
        h->label_type != LABEL_I32 || h->height == 0 || h->width == 0 ||
        h->channels == 0 || h->channels > 4 || h->height > SHARD_MAX_SIDE ||
        h->width > SHARD_MAX_SIDE)
        return st_seterr(err, ST_EFORMAT, "%s: header has an invalid codec, "
                         "dtype, label type or shape", path);
    if (h->version >= 2 && h->index_offset % 8 != 0)
        return st_seterr(err, ST_EFORMAT, "%s: index offset %llu is not "
                         "8-byte aligned", path,
                         (unsigned long long)h->index_offset);
    return 0;
}

static int check_footer(shard *s, const uint8_t *f, st_error *err)
{
    if (memcmp(f, SHARD_FOOTER_MAGIC, 8) != 0)
        return st_seterr(err, ST_EFORMAT, "%s: bad footer magic (truncated "
                         "or corrupt shard)", s->path);
    if (st_get_u64(f + 24) != XXH3_64bits(f, 24))
        return st_seterr(err, ST_ECHECKSUM, "%s: footer checksum mismatch",
                         s->path);
    if (st_get_u64(f + 8) != s->hdr.record_count)
        return st_seterr(err, ST_EFORMAT, "%s: footer record count %llu "
                         "disagrees with header %llu", s->path,
                         (unsigned long long)st_get_u64(f + 8),
                         (unsigned long long)s->hdr.record_count);
    s->index_xxh3 = st_get_u64(f + 16);
    return 0;
}

/* The bounds pass shared by both versions: e (index i) must start exactly
 * at *end (where the record before ends; 64 for the first), end by the
 * index, and have a size within the header's. Advances *end. */
static int check_entry(shard *s, uint64_t i, const shard_entry *e,
                       uint64_t *end, st_error *err)
{
    const shard_header *h = &s->hdr;
    if (e->length == 0 || e->offset != *end || e->offset > h->index_offset ||
        e->length > h->index_offset - e->offset)
        return st_seterr(err, ST_EFORMAT, "%s: record %llu (bytes %llu..+%u) "
                         "does not follow the record before it inside the "
                         "record area (corrupt index)", s->path,
                         (unsigned long long)i, (unsigned long long)e->offset,
                         e->length);
    if (e->height == 0 || e->width == 0 || e->height > h->height ||
        e->width > h->width)
        return st_seterr(err, ST_EFORMAT, "%s: record %llu is %ux%u, outside "
                         "the shard's 1x1..%ux%u (corrupt index)", s->path,
                         (unsigned long long)i, e->height, e->width,
                         h->height, h->width);
    if (e->length > s->max_length) s->max_length = e->length;
    if (e->height != h->height || e->width != h->width) s->mixed = 1;
    *end = e->offset + e->length;
    return 0;
}

/* Version 1: reads the 12-byte entries and the footer, copies the index
 * with offsets as prefix sums; records must fill the area exactly. */
static int load_index_v1(shard *s, st_error *err)
{
    uint64_t n = s->hdr.record_count;
    size_t bytes = (size_t)n * SHARD_ENTRY_BYTES_V1;
    uint8_t *raw = malloc(bytes + SHARD_FOOTER_BYTES);
    s->copy = malloc((n ? n : 1) * sizeof *s->copy);
    int rc = 0;
    if (raw == NULL || s->copy == NULL) {
        rc = st_seterr(err, ST_ENOMEM, "%s: out of memory for %llu index "
                       "entries", s->path, (unsigned long long)n);
        goto out;
    }
    rc = pread_all(s->fd, raw, bytes + SHARD_FOOTER_BYTES,
                   s->hdr.index_offset, s->path, err);
    if (rc == 0) rc = check_footer(s, raw + bytes, err);
    if (rc) goto out;
    if (XXH3_64bits(raw, bytes) != s->index_xxh3) {
        rc = st_seterr(err, ST_ECHECKSUM, "%s: index checksum mismatch "
                       "(corrupt index)", s->path);
        goto out;
    }
    uint64_t off = SHARD_HEADER_BYTES, end = SHARD_HEADER_BYTES;
    for (uint64_t i = 0; i < n && rc == 0; i++) {
        const uint8_t *p = raw + i * SHARD_ENTRY_BYTES_V1;
        shard_entry *e = &s->copy[i];
        *e = (shard_entry){.offset = off, .length = st_get_u32(p),
                           .label = (int32_t)st_get_u32(p + 4),
                           .check = st_get_u32(p + 8),
                           .height = (uint16_t)s->hdr.height,
                           .width = (uint16_t)s->hdr.width};
        rc = check_entry(s, i, e, &end, err);
        off += e->length;
    }
    if (rc == 0 && off != s->hdr.index_offset)
        rc = st_seterr(err, ST_EFORMAT, "%s: records end at byte %llu but the "
                       "index starts at %llu", s->path, (unsigned long long)off,
                       (unsigned long long)s->hdr.index_offset);
    s->index = s->copy;
out:
    free(raw);
    return rc;
}

/* Version 2: maps index + footer read-only and checks them in place. */
static int map_index_v2(shard *s, uint64_t size, st_error *err)
{
    long page = sysconf(_SC_PAGESIZE);
    uint64_t n = s->hdr.record_count, bytes = n * SHARD_ENTRY_BYTES;
    uint64_t at = s->hdr.index_offset - s->hdr.index_offset % (uint64_t)page;
    s->map_len = (size_t)(size - at);
    s->map = mmap(NULL, s->map_len, PROT_READ, MAP_SHARED, s->fd, (off_t)at);
    if (s->map == MAP_FAILED) {
        s->map = NULL;
        return fs_errno_err(err, s->path, "cannot map the index");
    }
    const uint8_t *idx = (const uint8_t *)s->map + (s->hdr.index_offset - at);
    ST_TRY(check_footer(s, idx + bytes, err));
    if (XXH3_64bits(idx, (size_t)bytes) != s->index_xxh3)
        return st_seterr(err, ST_ECHECKSUM, "%s: index checksum mismatch "
                         "(corrupt index)", s->path);
    s->index = (const shard_entry *)idx;
    uint64_t end = SHARD_HEADER_BYTES;
    for (uint64_t i = 0; i < n; i++)
        ST_TRY(check_entry(s, i, &s->index[i], &end, err));
    if (s->hdr.index_offset - end >= 8)
        return st_seterr(err, ST_EFORMAT, "%s: records end at byte %llu but the "
                         "index starts at %llu (corrupt index)", s->path,
                         (unsigned long long)end,
                         (unsigned long long)s->hdr.index_offset);
    return 0;
}

static int validate(shard *s, st_error *err)
{
    struct stat stt;
    uint8_t head[SHARD_HEADER_BYTES];
    if (fstat(s->fd, &stt) != 0) return fs_errno_err(err, s->path, "stat failed");
    uint64_t size = (uint64_t)stt.st_size;
    if (size < SHARD_HEADER_BYTES + SHARD_FOOTER_BYTES)
        return st_seterr(err, ST_EFORMAT, "%s: %llu bytes is too short for a "
                         "shard (truncated)", s->path, (unsigned long long)size);
    ST_TRY(pread_all(s->fd, head, sizeof head, 0, s->path, err));
    ST_TRY(shard_parse_header(head, sizeof head, s->path, &s->hdr, err));
    uint64_t n = s->hdr.record_count;
    uint64_t eb = s->hdr.version == 1 ? SHARD_ENTRY_BYTES_V1 : SHARD_ENTRY_BYTES;
    if (n > (size / eb) || s->hdr.index_offset < 64 ||
        s->hdr.index_offset > size ||
        size - s->hdr.index_offset != n * eb + SHARD_FOOTER_BYTES)
        return st_seterr(err, ST_EFORMAT, "%s: file size %llu disagrees with "
                         "%llu records indexed at byte %llu (truncated or "
                         "corrupt shard)", s->path, (unsigned long long)size,
                         (unsigned long long)n,
                         (unsigned long long)s->hdr.index_offset);
    return s->hdr.version == 1 ? load_index_v1(s, err)
                               : map_index_v2(s, size, err);
}

int shard_open(const char *path, shard **out, st_error *err)
{
    *out = NULL;
    shard *s = calloc(1, sizeof *s);
    if (s == NULL || (s->path = strdup(path)) == NULL) {
        free(s);
        return st_seterr(err, ST_ENOMEM, "%s: out of memory", path);
    }
    s->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (s->fd < 0) {
        int rc = errno == ENOENT
                     ? st_seterr(err, ST_ENOTFOUND, "%s: shard is missing", path)
                     : fs_errno_err(err, path, "cannot open");
        shard_close(s);
        return rc;
    }
    int rc = validate(s, err);
    if (rc) {
        shard_close(s);
        return rc;
    }
    *out = s;
    return 0;
}

void shard_close(shard *s)
{
    if (s == NULL) return;
    if (s->map) munmap(s->map, s->map_len);
    if (s->fd >= 0) close(s->fd);
    free(s->copy);
    free(s->path);
    free(s);
}

const shard_header *shard_header_of(const shard *s) { return &s->hdr; }
uint64_t shard_count(const shard *s) { return s->hdr.record_count; }
uint64_t shard_index_xxh3(const shard *s) { return s->index_xxh3; }
const char *shard_path(const shard *s) { return s->path; }
int shard_fd(const shard *s) { return s->fd; }
uint32_t shard_max_length(const shard *s) { return s->max_length; }
int shard_uniform(const shard *s) { return !s->mixed; }

size_t shard_index_memory(const shard *s)
{
    return s->copy ? (size_t)s->hdr.record_count * sizeof *s->copy : 0;
}

const shard_entry *shard_entry_at(const shard *s, uint64_t i)
{
    return &s->index[i];
}

int shard_read_record(const shard *s, uint64_t i, void *buf, size_t cap,
                      st_error *err)
{
    if (i >= s->hdr.record_count)
        return st_seterr(err, ST_EINVAL, "%s: record %llu out of range",
                         s->path, (unsigned long long)i);
    const shard_entry *e = &s->index[i];
    if (e->length > cap)
        return st_seterr(err, ST_EINVAL, "%s: record %llu needs %u bytes, "
                         "buffer holds %zu", s->path, (unsigned long long)i,
                         e->length, cap);
    ST_TRY(pread_all(s->fd, buf, e->length, e->offset, s->path, err));
    if (shard_record_check(buf, e->length) != e->check)
        return st_seterr(err, ST_ECHECKSUM, "%s: record %llu checksum "
                         "mismatch", s->path, (unsigned long long)i);
    return 0;
}
