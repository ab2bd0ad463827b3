/* tests/test_pack.c — the pack format end to end: round trips for every
 * codec, determinism across thread counts, corruption detection, atomic
 * output, --force, cancellation and a full disk. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <errno.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "datasets/bytes.h"
#include "datasets/codec.h"
#include "datasets/fsutil.h"
#include "datasets/pack.h"
#include "loader/loader.h"
#include "fixtures.h"
#include "pack_fixture.h"

#define H 12
#define W 10
#define NTRAIN 900
#define NTEST 150

typedef pkfx fx; /* path: the pack directory under dir */

static int setup(void **state) { return pkfx_setup(state, "pack", "p"); }

/* Decodes every sample of every split and compares with the fixture. */
static void check_contents(const char *dir)
{
    pack *p = NULL;
    st_error err = {0};
    assert_int_equal(pack_open(dir, &p, &err), 0);
    const manifest *m = pack_manifest(p);
    assert_int_equal(m->height, H);
    assert_int_equal(m->width, W);
    assert_int_equal(m->channels, 1);
    int tr = pack_split_find(p, "train"), te = pack_split_find(p, "test");
    assert_true(tr >= 0 && te >= 0);
    assert_int_equal(pack_split_samples(p, tr), NTRAIN);
    assert_int_equal(pack_split_samples(p, te), NTEST);
    codec_shape shape = {m->codec, H, W, 1};
    codec_dec *dec = NULL;
    assert_int_equal(codec_dec_create(&shape, pack_ddict(p), &dec, &err), 0);
    uint8_t rec[4096], pix[H * W];
    for (uint64_t i = 0; i < NTRAIN; i++) {
        uint32_t k;
        uint64_t r;
        pack_locate(p, tr, i, &k, &r);
        const shard *s = pack_shard(p, tr, k);
        const shard_entry *e = shard_entry_at(s, r);
        assert_int_equal(shard_read_record(s, r, rec, sizeof rec, &err), 0);
        assert_int_equal(e->height, H);
        assert_int_equal(e->width, W);
        assert_int_equal(codec_decode(dec, rec, e->length, H, W, pix, &err), 0);
        for (int j = 0; j < H * W; j++) assert_int_equal(pix[j], fx_pixel(i, (uint64_t)j));
        assert_int_equal(e->label, fx_label(i, 10));
    }
    pack_verify_stats vs;
    assert_int_equal(pack_verify(p, &vs, &err), 0);
    assert_int_equal(vs.records, NTRAIN + NTEST);
    codec_dec_destroy(dec);
    pack_close(p);
}

static void roundtrip(void **state, int codec, uint64_t shard_bytes)
{
    fx *f = *state;
    st_error err = {0};
    int rc = fx_make_pack(f->dir, "p", NTRAIN, NTEST, H, W, codec, 2,
                          shard_bytes, &err);
    if (rc) fail_msg("pack failed: %s", err.msg);
    check_contents(f->path);
}

static void test_roundtrip_zstd(void **s) { roundtrip(s, CODEC_ZSTD, 0); }
static void test_roundtrip_png(void **s) { roundtrip(s, CODEC_PNG, 0); }
static void test_roundtrip_raw(void **s) { roundtrip(s, CODEC_RAW, 0); }

/* Huffman-coded literals: the same pixels, fewer bytes than the default
 * (pixels with few distinct values, as in real images, are what Huffman
 * coding shrinks). */
static void test_huffman_literals(void **state)
{
    (void)state;
    codec_shape shape = {CODEC_ZSTD, 28, 28, 1};
    uint8_t pix[784], out[784];
    uint32_t x = 12345;
    size_t sizes[2] = {0, 0};
    st_error err = {0};
    codec_dec *dec = NULL;
    assert_int_equal(codec_dec_create(&shape, NULL, &dec, &err), 0);
    for (int huf = 0; huf < 2; huf++) {
        codec_enc *enc = NULL;
        assert_int_equal(codec_enc_create(&shape, 9, NULL, &enc, &err), 0);
        assert_int_equal(codec_enc_huffman_literals(enc, huf, &err), 0);
        x = 12345;
        for (int n = 0; n < 50; n++) {
            for (int j = 0; j < 784; j++) {
                x = x * 1103515245u + 12345u;
                pix[j] = (uint8_t)(16 * ((x >> 16) % 6));
            }
            const uint8_t *enc_out;
            size_t len;
            assert_int_equal(codec_encode(enc, pix, 28, 28, &enc_out, &len, &err), 0);
            assert_int_equal(codec_decode(dec, enc_out, len, 28, 28, out, &err), 0);
            assert_memory_equal(out, pix, sizeof pix);
            sizes[huf] += len;
        }
        codec_enc_destroy(enc);
    }
    codec_dec_destroy(dec);
    if (sizes[1] >= sizes[0])
        fail_msg("Huffman literals gave %zu bytes, raw literals %zu",
                 sizes[1], sizes[0]);
}

/* Small shards: many per split, so pack_locate crosses shard boundaries. */
static void test_roundtrip_many_shards(void **state)
{
    roundtrip(state, CODEC_ZSTD, 8192);
    pack *p = NULL;
    st_error err = {0};
    fx *f = *state;
    assert_int_equal(pack_open(f->path, &p, &err), 0);
    assert_true(pack_split_nshards(p, pack_split_find(p, "train")) > 3);
    pack_close(p);
}

static int files_equal(const char *a, const char *b)
{
    void *da = NULL, *db = NULL;
    size_t la = 0, lb = 0;
    int eq = fs_read_file(a, 1u << 30, &da, &la, NULL) == 0 &&
             fs_read_file(b, 1u << 30, &db, &lb, NULL) == 0 && la == lb &&
             memcmp(da, db, la) == 0;
    free(da);
    free(db);
    return eq;
}

static void test_deterministic(void **state)
{
    fx *f = *state;
    st_error err = {0};
    const char *names[] = {"MANIFEST", "dictionary.zstd", "train-00000.shard",
                           "train-00001.shard", "test-00000.shard"};
    assert_int_equal(fx_make_pack(f->dir, "a", NTRAIN, NTEST, H, W, CODEC_ZSTD,
                                  1, 16384, &err), 0);
    assert_int_equal(fx_make_pack(f->dir, "b", NTRAIN, NTEST, H, W, CODEC_ZSTD,
                                  3, 16384, &err), 0);
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        char a[4200], b[4200];
        snprintf(a, sizeof a, "%s/a/%s", f->dir, names[i]);
        snprintf(b, sizeof b, "%s/b/%s", f->dir, names[i]);
        if (!files_equal(a, b)) fail_msg("%s differs between 1 and 3 threads", names[i]);
    }
}

/* Flips one byte of file at offset (negative: from the end). */
static void flip(const char *dir, const char *name, long off)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    off_t size = lseek(fd, 0, SEEK_END);
    off_t at = off >= 0 ? off : size + off;
    uint8_t b;
    assert_int_equal(pread(fd, &b, 1, at), 1);
    b ^= 0x5a;
    assert_int_equal(pwrite(fd, &b, 1, at), 1);
    close(fd);
}

/* Packs, applies damage, and checks that opening (or verifying when
 * at_open is 0) fails with code and a message containing want. */
static void expect_damage(void **state, void (*damage)(const char *dir),
                          int at_open, int code, const char *want)
{
    fx *f = *state;
    st_error err = {0};
    assert_int_equal(fx_make_pack(f->dir, "p", NTRAIN, NTEST, H, W, CODEC_ZSTD,
                                  2, 0, &err), 0);
    damage(f->path);
    pack *p = NULL;
    int rc = pack_open(f->path, &p, &err);
    if (!at_open) {
        assert_int_equal(rc, 0);
        pack_verify_stats vs;
        rc = pack_verify(p, &vs, &err);
        pack_close(p);
    }
    assert_int_equal(rc, code);
    if (strstr(err.msg, want) == NULL)
        fail_msg("message '%s' lacks '%s'", err.msg, want);
}

static void d_header(const char *d) { flip(d, "train-00000.shard", 20); }
static void d_record(const char *d) { flip(d, "train-00000.shard", 64 + 5); }
static void d_index(const char *d) { flip(d, "train-00000.shard", -32 - 24 * 5 - 3); }
static void d_footer(const char *d) { flip(d, "train-00000.shard", -10); }
static void d_manifest(const char *d) { flip(d, "MANIFEST", 40); }
static void d_dict(const char *d) { flip(d, "dictionary.zstd", 100); }
static void d_version(const char *d) { flip(d, "train-00000.shard", 8); }
static void d_truncate(const char *d)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/train-00000.shard", d);
    struct stat st;
    stat(path, &st);
    assert_int_equal(truncate(path, st.st_size - 100), 0);
}
static void d_missing(const char *d)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/test-00000.shard", d);
    unlink(path);
}
static void d_manifest_version(const char *d)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/MANIFEST", d);
    void *t = NULL;
    size_t n = 0;
    assert_int_equal(fs_read_file(path, 1 << 20, &t, &n, NULL), 0);
    ((char *)t)[17] = '3'; /* "streamtrain-pack 3" */
    assert_int_equal(fs_write_atomic(path, t, n, NULL), 0);
    free(t);
}

static void test_corrupt_header(void **s) { expect_damage(s, d_header, 1, ST_ECHECKSUM, "train-00000.shard: header checksum"); }
static void test_corrupt_record(void **s) { expect_damage(s, d_record, 0, ST_ECHECKSUM, "split train, shard train-00000.shard, record 0"); }
static void test_corrupt_index(void **s) { expect_damage(s, d_index, 1, ST_ECHECKSUM, "index checksum"); }
static void test_corrupt_footer(void **s) { expect_damage(s, d_footer, 1, ST_ECHECKSUM, "footer checksum"); }
static void test_corrupt_manifest(void **s) { expect_damage(s, d_manifest, 1, ST_ECHECKSUM, "MANIFEST: checksum mismatch"); }
static void test_corrupt_dict(void **s) { expect_damage(s, d_dict, 1, ST_ECHECKSUM, "dictionary checksum"); }
static void test_truncated_shard(void **s) { expect_damage(s, d_truncate, 1, ST_EFORMAT, "truncated"); }
static void test_missing_shard(void **s) { expect_damage(s, d_missing, 1, ST_ENOTFOUND, "test-00000.shard: shard is missing"); }
static void test_shard_version(void **s) { expect_damage(s, d_version, 1, ST_EVERSION, "shard format version"); }
static void test_manifest_version(void **s) { expect_damage(s, d_manifest_version, 1, ST_EVERSION, "pack format version 3 is not supported (this build reads versions 1 and 2)"); }


/* ---- packs written directly (version 1, variable shapes) --------------- */

#define VMAXH 37
#define VMAXW 29
#define VN 60

/* Sample i of a direct pack: its size (fixed packs: VMAXH x VMAXW) and a
 * smooth image of it (JPEG-friendly). */
static void v_size(int variable, uint64_t i, uint32_t *h, uint32_t *w)
{
    *h = variable ? 1 + (uint32_t)(i * 7 % VMAXH) : VMAXH;
    *w = variable ? 1 + (uint32_t)(i * 5 % VMAXW) : VMAXW;
    if (variable && i == 3) *h = VMAXH, *w = VMAXW; /* reach the maxima */
}

static void v_image(uint64_t i, uint32_t h, uint32_t w, uint32_t c,
                    uint8_t *px)
{
    for (uint32_t y = 0; y < h; y++)
        for (uint32_t x = 0; x < w; x++)
            for (uint32_t k = 0; k < c; k++)
                px[((size_t)y * w + x) * c + k] =
                    (uint8_t)(20 + (i % 9) * 5 + (y * 100) / h + (x * 40) / w + k * 7);
}

static void write_direct(const char *out, uint32_t codec, uint32_t c,
                         int variable, int version)
{
    static const char *const names[10] = {"0", "1", "2", "3", "4", "5", "6",
                                          "7", "8", "9"};
    pack_writer_config wc = {
        .codec = codec, .level = codec == CODEC_ZSTD ? 3 : 0, .height = VMAXH,
        .width = VMAXW, .channels = c, .variable = variable,
        .format_version = version, .shard_bytes = 8192, .nclasses = 10,
        .classes = names};
    codec_shape shape = {codec, VMAXH, VMAXW, c};
    codec_enc *enc = NULL;
    pack_writer *w = NULL;
    st_error err = {0};
    uint8_t *px = malloc(VMAXH * VMAXW * 4);
    if (codec_enc_create(&shape, wc.level, NULL, &enc, &err) ||
        pack_writer_open(out, &wc, &w, &err) ||
        pack_writer_begin_split(w, "train", &err))
        fail_msg("writer: %s", err.msg);
    for (uint64_t i = 0; i < VN; i++) {
        uint32_t h, ww;
        v_size(variable, i, &h, &ww);
        v_image(i, h, ww, c, px);
        const uint8_t *rec;
        size_t len;
        if (codec_encode(enc, px, h, ww, &rec, &len, &err) ||
            pack_writer_add(w, rec, len, fx_label(i, 10), h, ww, &err))
            fail_msg("add %llu: %s", (unsigned long long)i, err.msg);
    }
    double mean[4] = {72.94, 1.5, 0, 255}, sd[4] = {10.25, 0.125, 0, 127.5};
    if (pack_writer_set_stats(w, "train", mean, sd, &err) ||
        pack_writer_commit(w, &err))
        fail_msg("commit: %s", err.msg);
    codec_enc_destroy(enc);
    free(px);
}

/* Opens a direct pack and checks its manifest, every entry's size and
 * every decoded sample (tol: mean absolute difference allowed). */
static void check_direct(const char *dir, uint32_t codec, uint32_t c,
                         int variable, int version, double tol)
{
    pack *p = NULL;
    st_error err = {0};
    if (pack_open(dir, &p, &err)) fail_msg("open: %s", err.msg);
    const manifest *m = pack_manifest(p);
    assert_int_equal(m->version, version ? (uint32_t)version : 2);
    assert_int_equal(m->codec, codec);
    assert_int_equal(m->variable, variable);
    assert_int_equal(pack_is_variable(p), variable);
    assert_int_equal(m->max_h, VMAXH);
    assert_int_equal(m->max_w, VMAXW);
    assert_int_equal(pack_max_sample_bytes(p), VMAXH * VMAXW * c);
    assert_int_equal(pack_sample_bytes(p), VMAXH * VMAXW * c);
    assert_int_equal(m->has_stats, version != 1);
    if (version != 1) {
        assert_string_equal(m->stats_split, "train");
        assert_true(m->mean[0] == 72.94 && m->std[0] == 10.25);
        if (c > 3) assert_true(m->mean[3] == 255 && m->std[3] == 127.5);
    }
    int tr = pack_split_find(p, "train");
    codec_shape shape = {codec, VMAXH, VMAXW, c};
    codec_dec *dec = NULL;
    assert_int_equal(codec_dec_create(&shape, pack_ddict(p), &dec, &err), 0);
    uint8_t *rec = malloc(pack_max_record(p)), *pix = malloc(VMAXH * VMAXW * 4),
            *want = malloc(VMAXH * VMAXW * 4);
    size_t maxrec = 0;
    for (uint64_t i = 0; i < VN; i++) {
        uint32_t k, h, w;
        uint64_t r;
        pack_locate(p, tr, i, &k, &r);
        const shard *s = pack_shard(p, tr, k);
        const shard_entry *e = shard_entry_at(s, r);
        v_size(variable, i, &h, &w);
        assert_int_equal(e->height, h);
        assert_int_equal(e->width, w);
        assert_int_equal(e->label, fx_label(i, 10));
        if (e->length > maxrec) maxrec = e->length;
        assert_int_equal(shard_read_record(s, r, rec, pack_max_record(p), &err), 0);
        if (codec_decode(dec, rec, e->length, h, w, pix, &err))
            fail_msg("decode %llu: %s", (unsigned long long)i, err.msg);
        v_image(i, h, w, c, want);
        double sad = 0;
        size_t n = (size_t)h * w * c;
        for (size_t j = 0; j < n; j++) sad += abs((int)pix[j] - (int)want[j]);
        if (sad / (double)n > tol)
            fail_msg("sample %llu: mean abs diff %.3f", (unsigned long long)i,
                     sad / (double)n);
    }
    assert_int_equal(pack_max_record(p), maxrec);
    assert_int_equal(pack_index_memory(p), version == 1 ? VN * sizeof(shard_entry) : 0);
    pack_verify_stats vs;
    if (pack_verify(p, &vs, &err)) fail_msg("verify: %s", err.msg);
    assert_int_equal(vs.records, VN);
    free(rec);
    free(pix);
    free(want);
    codec_dec_destroy(dec);
    pack_close(p);
}

static void direct(void **state, uint32_t codec, uint32_t c, int variable,
                   int version, double tol)
{
    fx *f = *state;
    write_direct(f->path, codec, c, variable, version);
    check_direct(f->path, codec, c, variable, version, tol);
}

static void test_v1_raw(void **s) { direct(s, CODEC_RAW, 3, 0, 1, 0); }
static void test_v1_zstd(void **s) { direct(s, CODEC_ZSTD, 1, 0, 1, 0); }
static void test_v1_png(void **s) { direct(s, CODEC_PNG, 4, 0, 1, 0); }
static void test_fixed_jpeg(void **s) { direct(s, CODEC_JPEG, 3, 0, 0, 3.0); }
static void test_var_raw(void **s) { direct(s, CODEC_RAW, 3, 1, 0, 0); }
static void test_var_zstd(void **s) { direct(s, CODEC_ZSTD, 1, 1, 0, 0); }
static void test_var_png(void **s) { direct(s, CODEC_PNG, 4, 1, 0, 0); }
static void test_var_jpeg(void **s) { direct(s, CODEC_JPEG, 3, 1, 0, 3.0); }
static void test_var_jpeg_gray(void **s) { direct(s, CODEC_JPEG, 1, 1, 0, 2.0); }


/* packinfo --verify (pack_verify) decodes every JPEG record: corrupt
 * entropy data behind a valid check value is a decode error naming the
 * record, never gray pixels. */
static void test_verify_corrupt_jpeg(void **state)
{
    fx *f = *state;
    write_direct(f->path, CODEC_JPEG, 3, 1, 0);
    pkfx_corrupt_jpeg(f->path, "train-00000.shard", 3, PKFX_SCAN_MIDDLE);
    pack *p = NULL;
    st_error err = {0};
    if (pack_open(f->path, &p, &err)) fail_msg("open: %s", err.msg);
    pack_verify_stats vs;
    int rc = pack_verify(p, &vs, &err);
    pack_close(p);
    assert_int_equal(rc, ST_EDECODE);
    if (strstr(err.msg, "split train, shard train-00000.shard, record 3:") == NULL)
        fail_msg("message: %s", err.msg);
    print_message("verify: %s\n", err.msg);
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* pack_split_sizes (packinfo's sizes line) against a sort of every size. */
static void test_split_sizes(void **state)
{
    fx *f = *state;
    write_direct(f->path, CODEC_RAW, 1, 1, 0);
    uint32_t v[3][VN];
    for (uint64_t i = 0; i < VN; i++) {
        v_size(1, i, &v[0][i], &v[1][i]);
        v[2][i] = v[0][i] * v[1][i];
    }
    pack *p = NULL;
    st_error err = {0};
    assert_int_equal(pack_open(f->path, &p, &err), 0);
    pack_size_summary z;
    assert_int_equal(pack_split_sizes(p, 0, &z, &err), 0);
    for (int k = 0; k < 3; k++) {
        qsort(v[k], VN, sizeof v[k][0], cmp_u32);
        assert_int_equal(z.min[k], v[k][0]);
        assert_int_equal(z.med[k], v[k][(VN - 1) / 2]);
        assert_int_equal(z.max[k], v[k][VN - 1]);
    }
    pack_close(p);
    /* sizes whose pixel counts span many 65536-wide bins (the radix
     * select's second pass), in 1-byte records: nothing is decoded */
    enum { N = 1001 };
    static uint32_t b[3][N];
    pack_writer_config wc = {.codec = CODEC_RAW, .height = 4000, .width = 3000,
                             .channels = 1, .variable = 1, .force = 1};
    pack_writer *w = NULL;
    assert_int_equal(pack_writer_open(f->path, &wc, &w, &err), 0);
    assert_int_equal(pack_writer_begin_split(w, "train", &err), 0);
    uint32_t x = 7;
    for (int i = 0; i < N; i++) {
        x = x * 1103515245u + 12345u;
        b[0][i] = 1 + (x >> 8) % 4000;
        x = x * 1103515245u + 12345u;
        b[1][i] = 1 + (x >> 8) % 3000;
        b[2][i] = b[0][i] * b[1][i];
        uint8_t byte = 1;
        assert_int_equal(pack_writer_add(w, &byte, 1, 0, b[0][i], b[1][i], &err), 0);
    }
    assert_int_equal(pack_writer_commit(w, &err), 0);
    assert_int_equal(pack_open(f->path, &p, &err), 0);
    assert_int_equal(pack_split_sizes(p, 0, &z, &err), 0);
    for (int k = 0; k < 3; k++) {
        qsort(b[k], N, sizeof b[k][0], cmp_u32);
        assert_int_equal(z.min[k], b[k][0]);
        assert_int_equal(z.med[k], b[k][(N - 1) / 2]);
        assert_int_equal(z.max[k], b[k][N - 1]);
    }
    pack_close(p);
}


/* A version-1 pack streams through the loader exactly as before. */
static void test_v1_loader(void **state)
{
    fx *f = *state;
    write_direct(f->path, CODEC_ZSTD, 1, 0, 1);
    loader_config c;
    loader_config_default(&c);
    c.batch_size = 10;
    c.shuffle = LOADER_SHUFFLE_NONE;
    c.epochs = 1;
    loader *l = NULL;
    st_error err = {0};
    if (loader_open(f->path, &c, &l, &err)) fail_msg("loader: %s", err.msg);
    loader_batch b;
    uint8_t want[VMAXH * VMAXW];
    uint64_t seen = 0;
    while (loader_next_batch(l, &b, &err) == 0) {
        for (uint32_t i = 0; i < b.n; i++) {
            v_image(b.ids[i], VMAXH, VMAXW, 1, want);
            assert_memory_equal(b.pixels + (size_t)i * sizeof want, want, sizeof want);
            assert_int_equal(b.labels[i], fx_label(b.ids[i], 10));
            seen++;
        }
        assert_int_equal(loader_release(l, &b, &err), 0);
    }
    assert_int_equal(seen, VN);
    loader_close(l);
}

/* The loader refuses a variable-size split until a transform is given. */
static void test_var_loader_refuses(void **state)
{
    fx *f = *state;
    write_direct(f->path, CODEC_RAW, 3, 1, 0);
    loader_config c;
    loader_config_default(&c);
    loader *l = NULL;
    st_error err = {0};
    assert_int_equal(loader_open(f->path, &c, &l, &err), ST_EINVAL);
    assert_non_null(strstr(err.msg, "split 'train' holds images of different "
                                    "sizes"));
    assert_non_null(strstr(err.msg, "use random-resized-crop S, center-crop S "
                                    "or resize WxH"));
}

/* The writer refuses sizes outside the maxima and, in a fixed-shape pack,
 * any size but the shape. */
static void test_writer_sizes(void **state)
{
    fx *f = *state;
    for (int variable = 0; variable < 2; variable++) {
        pack_writer_config wc = {.codec = CODEC_RAW, .height = 4, .width = 3,
                                 .channels = 1, .variable = variable};
        pack_writer *w = NULL;
        st_error err = {0};
        uint8_t px[16] = {0};
        assert_int_equal(pack_writer_open(f->path, &wc, &w, &err), 0);
        assert_int_equal(pack_writer_begin_split(w, "train", &err), 0);
        assert_int_equal(pack_writer_add(w, px, 12, 0, 4, 3, &err), 0);
        assert_int_equal(pack_writer_add(w, px, 15, 0, 5, 3, &err), ST_EINVAL);
        assert_non_null(strstr(err.msg, "5x3"));
        st_clearerr(&err);
        assert_int_equal(pack_writer_add(w, px, 2, 0, 2, 1, &err),
                         variable ? 0 : ST_EINVAL);
        st_clearerr(&err);
        assert_int_equal(pack_writer_add(w, px, 1, 0, 0, 1, &err), ST_EINVAL);
        pack_writer_abort(w);
    }
    pack_writer_config wc = {.codec = CODEC_JPEG, .height = 4, .width = 3,
                             .channels = 3, .variable = 1, .format_version = 1};
    pack_writer *w = NULL;
    st_error err = {0};
    assert_int_equal(pack_writer_open(f->path, &wc, &w, &err), ST_EINVAL);
}

/* True when dir holds an entry whose name starts with prefix. */
static int has_entry(const char *dir, const char *prefix)
{
    char cmd[4400];
    snprintf(cmd, sizeof cmd, "ls -A '%s' | grep -q '^%s'", dir, prefix);
    return system(cmd) == 0;
}

static void test_refuses_existing(void **state)
{
    fx *f = *state;
    st_error err = {0};
    assert_int_equal(fx_make_pack(f->dir, "p", NTRAIN, 0, H, W, CODEC_RAW, 1, 0, &err), 0);
    st_clearerr(&err);
    assert_int_equal(fx_make_pack(f->dir, "p", NTRAIN, 0, H, W, CODEC_RAW, 1, 0, &err), ST_EEXIST);
    assert_non_null(strstr(err.msg, "already exists (use --force"));
    /* --force replaces a pack but never a directory that is not one */
    packer_config cfg;
    packer_config_default(&cfg);
    cfg.force = 1;
    packer_stats st;
    char src[4200], other[4200];
    snprintf(src, sizeof src, "%s/src", f->dir);
    assert_int_equal(packer_run(src, f->path, &cfg, &st, &err), 0);
    snprintf(other, sizeof other, "%s/src", f->dir);
    st_clearerr(&err);
    assert_int_equal(packer_run(src, other, &cfg, &st, &err), ST_EEXIST);
    assert_non_null(strstr(err.msg, "which is not part of a pack"));
    /* a MANIFEST alone does not make a pack: the user's files survive */
    char notes[4200], path[4300], link[4200];
    snprintf(notes, sizeof notes, "%s/notes", f->dir);
    assert_int_equal(mkdir(notes, 0755), 0);
    snprintf(path, sizeof path, "%s/MANIFEST", notes);
    assert_int_equal(fs_write_atomic(path, "mine\n", 5, &err), 0);
    st_clearerr(&err);
    assert_int_equal(packer_run(src, notes, &cfg, &st, &err), ST_EEXIST);
    assert_non_null(strstr(err.msg, "not a pack manifest"));
    assert_int_equal(access(path, F_OK), 0);
    /* an OUT that is a symbolic link is refused, --force or not */
    snprintf(link, sizeof link, "%s/link", f->dir);
    assert_int_equal(symlink("p", link), 0);
    st_clearerr(&err);
    assert_int_equal(packer_run(src, link, &cfg, &st, &err), ST_EEXIST);
    assert_non_null(strstr(err.msg, "symbolic link"));
    snprintf(path, sizeof path, "%s/MANIFEST", f->path);
    assert_int_equal(access(path, F_OK), 0);
    assert_false(has_entry(f->dir, ".p.tmp-"));
    assert_false(has_entry(f->dir, ".src.tmp-"));
    assert_false(has_entry(f->dir, ".link.tmp-"));
    assert_false(has_entry(f->dir, ".notes.tmp-"));
}

static volatile sig_atomic_t g_cancel;

static void cancel_after_first(void *ctx, const packer_progress *p)
{
    (void)ctx;
    (void)p;
    g_cancel = 1;
}

static void test_cancel_leaves_nothing(void **state)
{
    fx *f = *state;
    st_error err = {0};
    char src[4200];
    assert_int_equal(fx_make_pack(f->dir, "warm", 9000, 0, H, W, CODEC_RAW, 1, 0, &err), 0);
    snprintf(src, sizeof src, "%s/src", f->dir);
    packer_config cfg;
    packer_config_default(&cfg);
    cfg.threads = 2;
    g_cancel = 0;
    cfg.cancel = &g_cancel;
    cfg.progress = cancel_after_first;
    packer_stats st;
    assert_int_equal(packer_run(src, f->path, &cfg, &st, &err), ST_ECLOSED);
    assert_int_equal(access(f->path, F_OK), -1);
    assert_false(has_entry(f->dir, ".p.tmp-"));
}

static void test_disk_full(void **state)
{
    fx *f = *state;
    st_error err = {0};
    char mnt[4200], out[4300];
    assert_int_equal(fx_make_pack(f->dir, "warm", 4000, 0, 28, 28, CODEC_RAW, 1, 0, &err), 0);
    snprintf(mnt, sizeof mnt, "%s/small", f->dir);
    mkdir(mnt, 0755);
    if (mount("tmpfs", mnt, "tmpfs", 0, "size=512k") != 0) {
        print_message("skipped: cannot mount a small tmpfs here (%s)\n", strerror(errno));
        skip();
    }
    snprintf(out, sizeof out, "%s/p", mnt);
    packer_config cfg;
    packer_config_default(&cfg);
    cfg.codec = CODEC_RAW;
    packer_stats st;
    char src[4200];
    snprintf(src, sizeof src, "%s/src", f->dir);
    int rc = packer_run(src, out, &cfg, &st, &err);
    int leftover = has_entry(mnt, ".") || has_entry(mnt, "p");
    umount(mnt);
    assert_int_equal(rc, ST_ENOSPC);
    assert_non_null(strstr(err.msg, "No space left on device"));
    assert_false(leftover);
}

static void test_bad_options(void **state)
{
    fx *f = *state;
    packer_config cfg;
    packer_config_default(&cfg);
    packer_stats st;
    st_error err = {0};
    cfg.threads = 0;
    assert_int_equal(packer_run(f->dir, f->path, &cfg, &st, &err), ST_EINVAL);
    assert_non_null(strstr(err.msg, "--threads"));
    packer_config_default(&cfg);
    st_clearerr(&err);
    assert_true(packer_run("/nonexistent/dataset", f->path, &cfg, &st, &err) < 0);
    assert_non_null(strstr(err.msg, "/nonexistent/dataset"));
    pack *p = NULL;
    st_clearerr(&err);
    assert_int_equal(pack_open(f->dir, &p, &err), ST_ENOTFOUND);
    assert_non_null(strstr(err.msg, "not a pack directory"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, pkfx_teardown)
        T(test_roundtrip_zstd), T(test_roundtrip_png), T(test_roundtrip_raw),
        T(test_roundtrip_many_shards), cmocka_unit_test(test_huffman_literals), T(test_deterministic),
        T(test_corrupt_header), T(test_corrupt_record), T(test_corrupt_index),
        T(test_corrupt_footer), T(test_corrupt_manifest), T(test_corrupt_dict),
        T(test_truncated_shard), T(test_missing_shard), T(test_shard_version),
        T(test_manifest_version), T(test_refuses_existing),
        T(test_cancel_leaves_nothing), T(test_disk_full), T(test_bad_options),
        T(test_v1_raw), T(test_v1_zstd), T(test_v1_png), T(test_fixed_jpeg),
        T(test_var_raw), T(test_var_zstd), T(test_var_png), T(test_var_jpeg),
        T(test_var_jpeg_gray), T(test_v1_loader), T(test_var_loader_refuses),
        T(test_writer_sizes),
        T(test_verify_corrupt_jpeg), T(test_split_sizes),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
