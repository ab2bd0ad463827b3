/* tests/test_packer.c — the packer's choices for photos and statistics:
 * the manifest's channel statistics are exact and do not depend on the
 * thread count; a folder of JPEG files packs by default into a
 * variable-shape jpeg pack of the files' own bytes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <sys/stat.h>

#include "datasets/fsutil.h"
#include "datasets/pack.h"
#include "datasets/pngio.h"
#include "fixtures.h"
#include "pack_fixture.h"
#include "jpeg_fixture.h"

#define H 12
#define W 10
#define NTRAIN 900
#define NTEST 150

typedef pkfx fx; /* path: the pack directory under dir */

static int setup(void **state) { return pkfx_setup(state, "packer", "p"); }

/* The manifest's channel statistics are the train split's exact mean and
 * std (printed with 4 decimals), the same for 1 and 3 threads. */
static void test_channel_stats(void **state)
{
    fx *f = *state;
    st_error err = {0};
    double sum = 0, sq = 0, n = (double)NTRAIN * H * W;
    for (uint64_t i = 0; i < NTRAIN; i++)
        for (uint64_t j = 0; j < H * W; j++) {
            double v = fx_pixel(i, j);
            sum += v;
            sq += v * v;
        }
    double mean = sum / n, sd = sqrt(sq / n - mean * mean);
    for (int threads = 1; threads <= 3; threads += 2) {
        char name[8];
        snprintf(name, sizeof name, "t%d", threads);
        assert_int_equal(fx_make_pack(f->dir, name, NTRAIN, NTEST, H, W,
                                      CODEC_ZSTD, threads, 0, &err), 0);
        char dir[4200];
        snprintf(dir, sizeof dir, "%s/%s", f->dir, name);
        pack *p = NULL;
        assert_int_equal(pack_open(dir, &p, &err), 0);
        const manifest *m = pack_manifest(p);
        assert_true(m->has_stats);
        assert_string_equal(m->stats_split, "train");
        if (fabs(m->mean[0] - mean) > 6e-5 || fabs(m->std[0] - sd) > 6e-5)
            fail_msg("stats %.5f %.5f, expected %.5f %.5f", m->mean[0],
                     m->std[0], mean, sd);
        pack_close(p);
    }
}

/* A folder of JPEG files of different sizes (and one PNG) packs, by
 * default, into a variable-shape jpeg pack whose records are the JPEG
 * files' own bytes (byte-exact passthrough); the PNG is encoded. */
static void test_jpeg_folder_passthrough(void **state)
{
    fx *f = *state;
    enum { NJ = 7 };
    char src[4200], path[4300];
    uint8_t *files[NJ];
    size_t lens[NJ];
    uint8_t px[64 * 48 * 3];
    snprintf(src, sizeof src, "%s/photos", f->dir);
    mkdir(src, 0755);
    for (int c = 0; c < 2; c++) {
        snprintf(path, sizeof path, "%s/%c", src, 'a' + c);
        mkdir(path, 0755);
    }
    for (int i = 0; i < NJ; i++) {
        jfx_opt o = {.w = 17 + 7 * (uint32_t)i, .h = 48 - 3 * (uint32_t)i,
                     .cs = JPEGIO_CS_YCBCR, .hs = 2, .vs = 2, .quality = 90};
        jfx_pattern(px, o.w, o.h, 3, (uint32_t)i);
        files[i] = jfx_encode(&o, px, &lens[i]);
        assert_non_null(files[i]);
        snprintf(path, sizeof path, "%s/%c/%d.jpg", src, 'a' + i % 2, i);
        assert_int_equal(fs_write_atomic(path, files[i], lens[i], NULL), 0);
    }
    uint8_t *png = NULL;
    size_t pcap = 0, plen = 0;
    st_error err = {0};
    jfx_pattern(px, 30, 20, 3, 99);
    assert_int_equal(pngio_encode(px, 30, 20, 3, &png, &pcap, &plen, &err), 0);
    snprintf(path, sizeof path, "%s/b/z.png", src);
    assert_int_equal(fs_write_atomic(path, png, plen, NULL), 0);
    free(png);
    packer_config cfg;
    packer_config_default(&cfg);
    cfg.threads = 2;
    packer_stats st;
    if (packer_run(src, f->path, &cfg, &st, &err)) fail_msg("pack: %s", err.msg);
    assert_int_equal(st.codec, CODEC_JPEG);
    assert_int_equal(st.passthrough, NJ);
    pack *p = NULL;
    assert_int_equal(pack_open(f->path, &p, &err), 0);
    const manifest *m = pack_manifest(p);
    assert_int_equal(m->codec, CODEC_JPEG);
    assert_true(m->variable);
    assert_int_equal(m->max_h, 48);
    assert_int_equal(m->max_w, 17 + 7 * (NJ - 1));
    int tr = pack_split_find(p, "train");
    assert_int_equal(pack_split_samples(p, tr), NJ + 1);
    uint8_t rec[65536];
    int exact = 0, png_seen = 0;
    for (uint64_t i = 0; i < NJ + 1; i++) {
        uint32_t k;
        uint64_t r;
        pack_locate(p, tr, i, &k, &r);
        const shard *s = pack_shard(p, tr, k);
        const shard_entry *e = shard_entry_at(s, r);
        assert_int_equal(shard_read_record(s, r, rec, sizeof rec, &err), 0);
        int match = 0;
        for (int j = 0; j < NJ; j++)
            if (e->length == lens[j] && memcmp(rec, files[j], lens[j]) == 0) {
                match = 1;
                assert_int_equal(e->width, 17 + 7 * j);
                assert_int_equal(e->height, 48 - 3 * j);
            }
        exact += match;
        if (!match) {
            png_seen++;
            assert_int_equal(e->width, 30);
            assert_int_equal(e->height, 20);
            assert_true(jpegio_is_jpeg(rec, e->length));
        }
    }
    assert_int_equal(exact, NJ);
    assert_int_equal(png_seen, 1);
    pack_verify_stats vs;
    assert_int_equal(pack_verify(p, &vs, &err), 0);
    pack_close(p);
    for (int i = 0; i < NJ; i++) free(files[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, pkfx_teardown)
        T(test_channel_stats), T(test_jpeg_folder_passthrough),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
