/* tests/test_shard.c — the shard file on its own: version-2 entries carry
 * offset, height and width and are used in place from a read-only mapping
 * (no anonymous memory per record); version-1 files still read; unknown
 * versions are refused by number; corrupt entries are refused at open. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "datasets/bytes.h"
#include "datasets/shard.h"
#include "fixtures.h"
#include "pack_fixture.h"

typedef pkfx fx; /* path: the shard file under dir */

static int setup(void **state) { return pkfx_setup(state, "shard", "s.shard"); }

/* Record i: 1 + i % 7 bytes of value i, an image of (1 + i % 5) x
 * (1 + i % 3) in a shard whose largest is 5 x 3 (version 1: 5 x 3). */
static void write_shard(const char *path, uint32_t version, uint64_t n)
{
    shard_header h = {.version = version, .codec = CODEC_RAW, .height = 5,
                      .width = 3, .channels = 1, .dtype = DTYPE_U8,
                      .label_type = LABEL_I32};
    shard_writer *w = NULL;
    st_error err = {0};
    assert_int_equal(shard_writer_open(path, &h, &w, &err), 0);
    uint8_t buf[8];
    for (uint64_t i = 0; i < n; i++) {
        size_t len = 1 + i % 7;
        memset(buf, (int)(i & 0xff), len);
        uint32_t hh = version == 1 ? 5 : 1 + (uint32_t)(i % 5);
        uint32_t ww = version == 1 ? 3 : 1 + (uint32_t)(i % 3);
        assert_int_equal(shard_writer_add(w, buf, len, (int32_t)i, hh, ww, &err), 0);
    }
    uint64_t bytes, fx3, ix3;
    assert_int_equal(shard_writer_finish(w, &bytes, &fx3, &ix3, &err), 0);
}

static void check_shard(const char *path, uint32_t version, uint64_t n)
{
    shard *s = NULL;
    st_error err = {0};
    if (shard_open(path, &s, &err) != 0) fail_msg("open: %s", err.msg);
    assert_int_equal(shard_header_of(s)->version, version);
    assert_int_equal(shard_count(s), n);
    uint64_t off = SHARD_HEADER_BYTES;
    uint8_t buf[8];
    for (uint64_t i = 0; i < n; i++) {
        const shard_entry *e = shard_entry_at(s, i);
        size_t len = 1 + i % 7;
        assert_int_equal(e->offset, off);
        assert_int_equal(e->length, len);
        assert_int_equal(e->label, (int32_t)i);
        assert_int_equal(e->height, version == 1 ? 5 : 1 + i % 5);
        assert_int_equal(e->width, version == 1 ? 3 : 1 + i % 3);
        assert_int_equal(shard_read_record(s, i, buf, sizeof buf, &err), 0);
        for (size_t j = 0; j < len; j++) assert_int_equal(buf[j], i & 0xff);
        off += len;
    }
    assert_int_equal(shard_max_length(s), n >= 7 ? 7 : n);
    assert_int_equal(shard_index_memory(s), version == 1 ? n * 24 : 0);
    if (version == 2)
        assert_int_equal(shard_header_of(s)->index_offset % 8, 0);
    shard_close(s);
}

static void test_v2_roundtrip(void **state)
{
    fx *f = *state;
    write_shard(f->path, 2, 1000);
    check_shard(f->path, 2, 1000);
}

static void test_v1_still_reads(void **state)
{
    fx *f = *state;
    write_shard(f->path, 1, 1000);
    check_shard(f->path, 1, 1000);
}

/* The v2 writer refuses sizes outside 1..the header's; v1 any other size. */
static void test_writer_sizes(void **state)
{
    fx *f = *state;
    shard_header h = {.codec = CODEC_RAW, .height = 5, .width = 3,
                      .channels = 1, .dtype = DTYPE_U8, .label_type = LABEL_I32};
    shard_writer *w = NULL;
    st_error err = {0};
    assert_int_equal(shard_writer_open(f->path, &h, &w, &err), 0);
    uint8_t b = 1;
    assert_int_equal(shard_writer_add(w, &b, 1, 0, 6, 3, &err), ST_EINVAL);
    assert_non_null(strstr(err.msg, "6x3"));
    assert_int_equal(shard_writer_add(w, &b, 1, 0, 5, 0, &err), ST_EINVAL);
    assert_int_equal(shard_writer_add(w, &b, 1, 0, 5, 3, &err), 0);
    shard_writer_abort(w);
    h.version = 1;
    assert_int_equal(shard_writer_open(f->path, &h, &w, &err), 0);
    assert_int_equal(shard_writer_add(w, &b, 1, 0, 4, 3, &err), ST_EINVAL);
    shard_writer_abort(w);
    h.version = 0;
    h.height = 70000;
    assert_int_equal(shard_writer_open(f->path, &h, &w, &err), ST_EINVAL);
}

/* Rewrites the header's version field (and its checksum). */
static void set_version(const char *path, uint32_t v)
{
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    uint8_t h[64];
    assert_int_equal(pread(fd, h, 64, 0), 64);
    st_put_u32(h + 8, v);
    st_put_u64(h + 56, XXH3_64bits(h, 56));
    assert_int_equal(pwrite(fd, h, 64, 0), 64);
    close(fd);
}

static void test_unknown_version(void **state)
{
    fx *f = *state;
    write_shard(f->path, 2, 10);
    set_version(f->path, 3);
    shard *s = NULL;
    st_error err = {0};
    assert_int_equal(shard_open(f->path, &s, &err), ST_EVERSION);
    assert_non_null(strstr(err.msg, "s.shard: shard format version 3 is not "
                                    "supported (this build reads versions 1 and 2)"));
    set_version(f->path, 0);
    st_clearerr(&err);
    assert_int_equal(shard_open(f->path, &s, &err), ST_EVERSION);
    assert_non_null(strstr(err.msg, "version 0"));
}

/* Applies fn to entry i of a version-2 shard, then recomputes the index
 * XXH3 and the footer so that only the entry's own checks can catch it. */
static void edit_entry(const char *path, uint64_t i,
                       void (*fn)(shard_entry *e))
{
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    uint64_t n, io;
    shard_entry *idx = pkfx_index_read(fd, &n, &io);
    fn(&idx[i]);
    pkfx_index_write(fd, idx, n, io);
    close(fd);
    free(idx);
}

static void e_overlap(shard_entry *e) { e->offset -= 1; }
static void e_past_index(shard_entry *e) { e->length += 1u << 20; }
static void e_zero(shard_entry *e) { e->length = 0; }
static void e_tall(shard_entry *e) { e->height = 6; }
static void e_no_width(shard_entry *e) { e->width = 0; }
static void e_label(shard_entry *e) { e->label ^= 1; }

static void expect_bad_entry(void **state, void (*fn)(shard_entry *),
                             uint64_t i, const char *want)
{
    fx *f = *state;
    write_shard(f->path, 2, 100);
    edit_entry(f->path, i, fn);
    shard *s = NULL;
    st_error err = {0};
    assert_int_equal(shard_open(f->path, &s, &err), ST_EFORMAT);
    if (strstr(err.msg, want) == NULL || strstr(err.msg, "s.shard") == NULL)
        fail_msg("message '%s' lacks '%s' or the file", err.msg, want);
}

static void test_entry_overlap(void **s) { expect_bad_entry(s, e_overlap, 40, "record 40 (bytes"); }
static void test_entry_past_index(void **s) { expect_bad_entry(s, e_past_index, 99, "record 99 (bytes"); }
static void test_entry_zero(void **s) { expect_bad_entry(s, e_zero, 0, "record 0 (bytes"); }
static void test_entry_height(void **s) { expect_bad_entry(s, e_tall, 7, "record 7 is 6x"); }
static void test_entry_width(void **s) { expect_bad_entry(s, e_no_width, 8, "record 8 is"); }

/* A changed entry without a recomputed XXH3 is an index checksum error;
 * the recomputed one (a label: structurally fine) opens. */
static void test_entry_checksum(void **state)
{
    fx *f = *state;
    write_shard(f->path, 2, 100);
    edit_entry(f->path, 3, e_label);
    shard *s = NULL;
    st_error err = {0};
    assert_int_equal(shard_open(f->path, &s, &err), 0);
    assert_int_equal(shard_entry_at(s, 3)->label, 2);
    shard_close(s);
    st_clearerr(&err);
    int fd = open(f->path, O_RDWR);
    uint8_t h[64], b;
    assert_int_equal(pread(fd, h, 64, 0), 64);
    off_t at = (off_t)(st_get_u64(h + 48) + 3 * 24 + 20); /* entry 3's height */
    assert_int_equal(pread(fd, &b, 1, at), 1);
    b ^= 1;
    assert_int_equal(pwrite(fd, &b, 1, at), 1);
    close(fd);
    assert_int_equal(shard_open(f->path, &s, &err), ST_ECHECKSUM);
    assert_non_null(strstr(err.msg, "s.shard: index checksum mismatch"));
}

static long status_kib(const char *key)
{
    FILE *fp = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    while (fp && fgets(line, sizeof line, fp))
        if (strncmp(line, key, strlen(key)) == 0) v = atol(line + strlen(key));
    if (fp) fclose(fp);
    return v;
}

/* Opens a shard of n records and returns RssAnon's growth in bytes while
 * it is open (every entry touched, as pack_open and the loader do). */
static long anon_growth(const char *path, uint64_t n)
{
    long before = status_kib("RssAnon:");
    shard *s = NULL;
    st_error err = {0};
    if (shard_open(path, &s, &err) != 0) fail_msg("open: %s", err.msg);
    uint64_t sum = 0;
    for (uint64_t i = 0; i < n; i++) sum += shard_entry_at(s, i)->length;
    long after = status_kib("RssAnon:");
    assert_true(sum > n);
    shard_close(s);
    return (after - before) * 1024;
}

/* 2M records: a version-2 index costs (far) less than 1 byte a record of
 * anonymous memory; a version-1 index, as a control, at least 20. */
static void test_index_not_anonymous(void **state)
{
    fx *f = *state;
    const uint64_t n = 2000000;
    if (status_kib("RssAnon:") < 0) {
        print_message("skipped: no RssAnon in /proc/self/status\n");
        skip();
    }
    write_shard(f->path, 2, n);
    long v2 = anon_growth(f->path, n);
    unlink(f->path);
    write_shard(f->path, 1, n);
    long v1 = anon_growth(f->path, n);
    print_message("RssAnon growth for %llu records: version 2 %ld bytes, "
                  "version 1 %ld bytes\n", (unsigned long long)n, v2, v1);
    if (v2 > (long)n) fail_msg("version 2 index grew RssAnon by %ld bytes", v2);
    if (v1 < (long)(20 * n)) fail_msg("control: version 1 grew only %ld", v1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, pkfx_teardown)
        T(test_v2_roundtrip), T(test_v1_still_reads), T(test_writer_sizes),
        T(test_unknown_version), T(test_entry_overlap),
        T(test_entry_past_index), T(test_entry_zero), T(test_entry_height),
        T(test_entry_width), T(test_entry_checksum),
        T(test_index_not_anonymous),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
