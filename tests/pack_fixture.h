/* tests/pack_fixture.h — pack fixtures shared by test_pack.c,
 * test_packer.c, test_shard.c and test_fused.c: a temporary directory with
 * one path under it per test, a shard's index rewritten behind a valid
 * footer, and a JPEG record damaged behind valid check values. Header-only
 * (static functions), like tests/fixtures.h. Include it after <cmocka.h>.
 *
 * defines: pkfx, pkfx_setup, pkfx_teardown, pkfx_index_read,
 *          pkfx_index_write, PKFX_SCAN_MIDDLE, pkfx_corrupt_jpeg
 */
#ifndef ST_TEST_PACK_FIXTURE_H
#define ST_TEST_PACK_FIXTURE_H

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#include "datasets/bytes.h"
#include "datasets/fsutil.h"
#include "datasets/manifest.h"
#include "datasets/shard.h"
#include "fixtures.h"

/* A fresh directory for each test and a path under it (a pack directory
 * or a shard file, named by the test file). */
typedef struct pkfx { char *dir; char path[4200]; } pkfx;

/* cmocka setup: *state = a pkfx whose dir is a new $TMPDIR/st-<tag>-XXXXXX
 * and whose path is dir/<leaf>. */
static inline int pkfx_setup(void **state, const char *tag, const char *leaf)
{
    pkfx *f = calloc(1, sizeof *f);
    if (f == NULL) return -1;
    f->dir = fx_tmpdir(tag);
    snprintf(f->path, sizeof f->path, "%s/%s", f->dir, leaf);
    *state = f;
    return f->dir ? 0 : -1;
}

/* cmocka teardown for pkfx_setup: removes the directory tree. */
static inline int pkfx_teardown(void **state)
{
    pkfx *f = *state;
    fx_rmtree(f->dir);
    free(f);
    return 0;
}

/* Reads the index of the version-2 shard open on fd: its n entries (a new
 * malloc'd (n) array) and the index's file offset io. */
static inline shard_entry *pkfx_index_read(int fd, uint64_t *n, uint64_t *io)
{
    uint8_t h[64];
    assert_int_equal(pread(fd, h, 64, 0), 64);
    *n = st_get_u64(h + 40);
    *io = st_get_u64(h + 48);
    shard_entry *idx = malloc(*n * sizeof *idx);
    assert_int_equal(pread(fd, idx, *n * 24, (off_t)*io), (ssize_t)(*n * 24));
    return idx;
}

/* Writes idx back at io and recomputes the footer's index XXH3 and its own
 * XXH3, so that only the entries' own checks can tell. @return the new
 * index XXH3 (the manifest keeps a copy). */
static inline uint64_t pkfx_index_write(int fd, const shard_entry *idx,
                                       uint64_t n, uint64_t io)
{
    uint8_t foot[32];
    assert_int_equal(pwrite(fd, idx, n * 24, (off_t)io), (ssize_t)(n * 24));
    uint64_t ix = XXH3_64bits(idx, n * 24);
    assert_int_equal(pread(fd, foot, 32, (off_t)(io + n * 24)), 32);
    st_put_u64(foot + 16, ix);
    st_put_u64(foot + 24, XXH3_64bits(foot, 24));
    assert_int_equal(pwrite(fd, foot, 32, (off_t)(io + n * 24)), 32);
    return ix;
}

/* pkfx_corrupt_jpeg's skip for the middle of the entropy-coded data. */
#define PKFX_SCAN_MIDDLE SIZE_MAX

/* Writes an EOI marker (ff d9) into record rec's JPEG entropy-coded data in
 * dir/file, skip bytes after the SOS segment (PKFX_SCAN_MIDDLE: halfway to
 * the closing EOI), then recomputes the record's check value, the index
 * XXH3 in the footer and the manifest's copy of it: only a decoder can
 * tell. Fails the test on any I/O or parse error. */
static inline void pkfx_corrupt_jpeg(const char *dir, const char *file,
                                    uint64_t rec, size_t skip)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    uint64_t n, io;
    shard_entry *idx = pkfx_index_read(fd, &n, &io);
    shard_entry *e = &idx[rec];
    uint8_t *r = malloc(e->length);
    assert_int_equal(pread(fd, r, e->length, (off_t)e->offset),
                     (ssize_t)e->length);
    size_t sos = 0;
    for (size_t i = 2; i + 1 < e->length; i++)
        if (r[i] == 0xff && r[i + 1] == 0xda) { sos = i; break; }
    assert_true(sos > 0);
    size_t data = sos + 2 + ((size_t)r[sos + 2] << 8 | r[sos + 3]);
    size_t at = skip == PKFX_SCAN_MIDDLE ? data + (e->length - 2 - data) / 2
                                        : data + skip;
    assert_true(at + 2 < e->length - 2);
    r[at] = 0xff;
    r[at + 1] = 0xd9;
    assert_int_equal(pwrite(fd, r, e->length, (off_t)e->offset),
                     (ssize_t)e->length);
    e->check = shard_record_check(r, e->length);
    uint64_t ix = pkfx_index_write(fd, idx, n, io);
    close(fd);
    free(r);
    free(idx);
    /* the manifest's copy of the index XXH3 */
    char mpath[4200];
    snprintf(mpath, sizeof mpath, "%s/MANIFEST", dir);
    void *text = NULL;
    size_t len = 0;
    manifest *m = NULL;
    st_error err = {0};
    assert_int_equal(fs_read_file(mpath, 1 << 20, &text, &len, &err), 0);
    assert_int_equal(manifest_parse(text, len, mpath, &m, &err), 0);
    for (uint32_t sp = 0; sp < m->nsplits; sp++)
        for (uint32_t k = 0; k < m->splits[sp].nshards; k++)
            if (strcmp(m->splits[sp].shards[k].file, file) == 0)
                m->splits[sp].shards[k].index_xxh3 = ix;
    char *out = NULL;
    assert_int_equal(manifest_format(m, &out, &len, &err), 0);
    assert_int_equal(fs_write_atomic(mpath, out, len, &err), 0);
    free(out);
    free(text);
    manifest_free(m);
}

#endif
