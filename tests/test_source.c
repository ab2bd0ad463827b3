/* tests/test_source.c — datasets/source: the IDX and CIFAR-10 importers,
 * format auto-detection and argument checks (the folder importer has
 * tests/test_folder.c). Fixtures are made at test time under a mkdtemp
 * directory in /tmp: IDX plain and gzipped (zlib gzopen), CIFAR batches.
 * Every bad input of issue 2 is checked for its error code and for the file
 * it names.
 *
 * Unreadable files: tests run as root, which reads anything, so the EACCES
 * case forks a child that drops to uid/gid 65534 before opening a chmod 000
 * file (skipped when that is impossible); dangling symlinks and directories
 * standing in for files cover the other open/read failures.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "datasets/source.h"
#include "source_fixture.h"

/* ---- IDX -------------------------------------------------------------- */

enum { IR = 4, IC = 3, NTR = 5, NTE = 3 };

/* A small MNIST-like directory: train gzipped, test plain. */
static void make_idx_dir(const char *dir, uint8_t *tr, uint8_t *trl,
                         uint8_t *te, uint8_t *tel)
{
    mkdirs(dir);
    for (int i = 0; i < NTR * IR * IC; i++) tr[i] = (uint8_t)(i * 13 + 1);
    memset(tr, 77, IR * IC); /* image 0 is flat: resizing keeps it flat */
    for (int i = 0; i < NTE * IR * IC; i++) te[i] = (uint8_t)(i * 7 + 5);
    for (int i = 0; i < NTR; i++) trl[i] = (uint8_t)(i % 4);
    for (int i = 0; i < NTE; i++) tel[i] = (uint8_t)(6 - i);
    put_images(pj("%s/train-images-idx3-ubyte.gz", dir), 1, 0x803, NTR, IR,
               IC, tr, NTR * IR * IC);
    put_labels(pj("%s/train-labels-idx1-ubyte.gz", dir), 1, NTR, trl, NTR);
    put_images(pj("%s/t10k-images-idx3-ubyte", dir), 0, 0x803, NTE, IR, IC,
               te, NTE * IR * IC);
    put_labels(pj("%s/t10k-labels-idx1-ubyte", dir), 0, NTE, tel, NTE);
}

static void test_idx_roundtrip(void **state)
{
    (void)state;
    uint8_t tr[NTR * IR * IC], trl[NTR], te[NTE * IR * IC], tel[NTE];
    const char *dir = pj("%s/mnistish", g_root);
    make_idx_dir(dir, tr, trl, te, tel);
    source *s = open_ok(dir, NULL);
    const source_info *in = source_info_of(s);
    assert_int_equal(in->format, SOURCE_IDX);
    assert_int_equal(in->nsplits, 2);
    assert_string_equal(in->splits[0].name, "train");
    assert_string_equal(in->splits[1].name, "test");
    assert_int_equal(in->splits[0].count, NTR);
    assert_int_equal(in->splits[1].count, NTE);
    assert_int_equal(in->height, IR);
    assert_int_equal(in->width, IC);
    assert_int_equal(in->channels, 1);
    assert_int_equal(in->nclasses, 7); /* max label 6 */
    assert_string_equal(in->classes[6], "6");
    assert_false(in->png_native);
    source_scratch *sc;
    st_error err = {0, ""};
    assert_int_equal(source_scratch_create(s, &sc, &err), 0);
    uint8_t px[IR * IC];
    int32_t lab;
    source_native nat = {(const uint8_t *)1, 1, 1};
    for (int i = 0; i < NTR; i++) {
        assert_int_equal(source_read(s, 0, i, sc, px, &lab, &nat, &err),
                         0);
        assert_memory_equal(px, tr + i * IR * IC, IR * IC);
        assert_int_equal(lab, trl[i]);
        assert_null(nat.bytes);
    }
    for (int i = 0; i < NTE; i++) {
        assert_int_equal(source_read(s, 1, i, sc, px, &lab, NULL, &err),
                         0);
        assert_memory_equal(px, te + i * IR * IC, IR * IC);
        assert_int_equal(lab, tel[i]);
    }
    /* out of range */
    assert_int_equal(source_read(s, 1, NTE, sc, px, &lab, NULL, &err),
                     ST_EINVAL);
    st_clearerr(&err);
    assert_int_equal(source_read(s, 2, 0, sc, px, &lab, NULL, &err),
                     ST_EINVAL);
    source_scratch_destroy(sc);
    source_close(s);

    /* gray replicated to RGB, and resized */
    source_options o = {.channels = 3, .resize_w = 6, .resize_h = 8};
    s = open_ok(dir, &o);
    in = source_info_of(s);
    assert_int_equal(in->width, 6);
    assert_int_equal(in->height, 8);
    assert_int_equal(in->channels, 3);
    assert_int_equal(source_scratch_create(s, &sc, &err), 0);
    uint8_t big[8 * 6 * 3];
    assert_int_equal(source_read(s, 0, 0, sc, big, &lab, NULL, &err), 0);
    for (size_t i = 0; i < sizeof big; i++) assert_in_range(big[i], 76, 78);
    source_scratch_destroy(sc);
    source_close(s);
    o = (source_options){.channels = 4};
    s = open_ok(dir, &o);
    assert_int_equal(source_scratch_create(s, &sc, &err), 0);
    uint8_t rgba[IR * IC * 4];
    assert_int_equal(source_read(s, 1, 2, sc, rgba, &lab, NULL, &err),
                     0);
    for (int p = 0; p < IR * IC; p++) {
        uint8_t g = te[2 * IR * IC + p];
        assert_true(rgba[4 * p] == g && rgba[4 * p + 1] == g &&
                    rgba[4 * p + 2] == g && rgba[4 * p + 3] == 255);
    }
    source_scratch_destroy(sc);
    source_close(s);

    /* max_side on fixed-size samples: 4x3 -> 2x2 (round(3 * 2 / 4) = 2),
     * one size for all, area-averaged */
    o = (source_options){.max_side = 2};
    s = open_ok(dir, &o);
    in = source_info_of(s);
    assert_int_equal(in->width, 2);
    assert_int_equal(in->height, 2);
    assert_false(in->variable);
    assert_int_equal(in->max_sample_bytes, 4);
    uint32_t w, h;
    source_sample_size(s, 1, 2, &w, &h);
    assert_true(w == 2 && h == 2);
    source_sample_size(s, 1, NTE, &w, &h); /* no such sample */
    assert_true(w == 0 && h == 0);
    assert_int_equal(source_scratch_create(s, &sc, &err), 0);
    uint8_t small[4];
    assert_int_equal(source_read(s, 0, 0, sc, small, &lab, NULL, &err), 0);
    for (int p = 0; p < 4; p++) assert_int_equal(small[p], 77);
    source_scratch_destroy(sc);
    source_close(s);
    /* max_side at or over the long side changes nothing */
    o = (source_options){.max_side = 4};
    s = open_ok(dir, &o);
    assert_int_equal(source_info_of(s)->width, IC);
    assert_int_equal(source_info_of(s)->height, IR);
    source_close(s);
    o = (source_options){.max_side = 2, .resize_w = 2, .resize_h = 2};
    expect_open_err(dir, &o, ST_EINVAL, "do not combine", NULL);
    o = (source_options){.max_side = SOURCE_MAX_SIDE + 1};
    expect_open_err(dir, &o, ST_EINVAL, "max side", NULL);
}

static void test_idx_file_and_fashion_names(void **state)
{
    (void)state;
    uint8_t tr[NTR * IR * IC], trl[NTR], te[NTE * IR * IC], tel[NTE];
    const char *dir = pj("%s/My-Fashion-set", g_root);
    make_idx_dir(dir, tr, trl, te, tel);
    source *s = open_ok(pj("%s/", dir), NULL); /* trailing slash */
    const source_info *in = source_info_of(s);
    assert_int_equal(in->nclasses, 10);
    assert_string_equal(in->classes[0], "T-shirt/top");
    assert_string_equal(in->classes[9], "Ankle boot");
    source_close(s);
    /* one images file: its labels are found by name; split "train" */
    s = open_ok(pj("%s/t10k-images-idx3-ubyte", dir), NULL);
    in = source_info_of(s);
    assert_int_equal(in->format, SOURCE_IDX);
    assert_int_equal(in->nsplits, 1);
    assert_string_equal(in->splits[0].name, "train");
    assert_int_equal(in->splits[0].count, NTE);
    assert_string_equal(in->classes[1], "Trouser");
    source_close(s);
}

static void test_idx_real_fashion_mnist(void **state)
{
    (void)state;
    const char *dir = "/usr/share/datasets/fashion-mnist";
    if (access(pj("%s/train-images-idx3-ubyte.gz", dir), R_OK) != 0) skip();
    source *s = open_ok(dir, NULL);
    const source_info *in = source_info_of(s);
    assert_int_equal(in->splits[0].count, 60000);
    assert_int_equal(in->splits[1].count, 10000);
    assert_int_equal(in->height, 28);
    assert_int_equal(in->width, 28);
    assert_int_equal(in->nclasses, 10);
    assert_string_equal(in->classes[9], "Ankle boot");
    source_scratch *sc;
    st_error err = {0, ""};
    assert_int_equal(source_scratch_create(s, &sc, &err), 0);
    uint8_t px[784];
    int32_t lab;
    assert_int_equal(source_read(s, 1, 9999, sc, px, &lab, NULL, &err),
                     0);
    assert_in_range(lab, 0, 9);
    source_scratch_destroy(sc);
    source_close(s);
}

/* A pair dir/{train-images,train-labels}; images may be cut or flipped. */
static const char *bad_idx(const char *name, int gz, uint32_t magic,
                           uint32_t n_hdr, uint32_t n_lab)
{
    const char *dir = pj("%s/bad-%s", g_root, name);
    mkdirs(dir);
    uint8_t px[40 * 8 * 8], lab[64] = {0};
    for (size_t i = 0; i < sizeof px; i++)
        px[i] = (uint8_t)((i * i / 7 + (i >> 5)) % 61);
    put_images(pj("%s/train-images-idx3-ubyte%s", dir, gz ? ".gz" : ""), gz,
               magic, n_hdr, 8, 8, px, sizeof px);
    put_labels(pj("%s/train-labels-idx1-ubyte%s", dir, gz ? ".gz" : ""), gz,
               n_lab, lab, n_lab);
    return dir;
}

static void test_idx_bad(void **state)
{
    (void)state;
    const char *d, *f;
    d = bad_idx("trunc", 1, 0x803, 40, 40);
    f = pj("%s/train-images-idx3-ubyte.gz", d);
    truncate_to(f, file_size(f) / 2);
    expect_open_err(d, NULL, ST_EDECODE, f, "truncated or corrupt gzip");

    d = bad_idx("trunc-tail", 1, 0x803, 40, 40);
    f = pj("%s/train-images-idx3-ubyte.gz", d);
    truncate_to(f, file_size(f) - 3); /* only the size trailer is cut */
    expect_open_err(d, NULL, ST_EDECODE, f, "truncated or corrupt gzip");

    d = bad_idx("corrupt", 1, 0x803, 40, 40);
    f = pj("%s/train-images-idx3-ubyte.gz", d);
    flip_byte(f, file_size(f) / 2);
    expect_open_err(d, NULL, ST_EDECODE, f, "truncated or corrupt gzip");

    d = bad_idx("crc", 1, 0x803, 40, 40);
    f = pj("%s/train-labels-idx1-ubyte.gz", d);
    flip_byte(f, file_size(f) - 6); /* inside the CRC32 trailer */
    expect_open_err(d, NULL, ST_EDECODE, f, "truncated or corrupt gzip");

    d = bad_idx("garbage", 1, 0x803, 40, 40);
    f = pj("%s/train-images-idx3-ubyte.gz", d);
    FILE *fp = fopen(f, "ab");
    fputs("junk", fp);
    fclose(fp);
    expect_open_err(d, NULL, ST_EDECODE, f, "trailing");

    d = bad_idx("magic", 0, 0x804, 40, 40);
    expect_open_err(d, NULL, ST_EFORMAT,
                    pj("%s/train-images-idx3-ubyte", d), "magic 0x00000804");

    d = bad_idx("count", 1, 0x803, 41, 41);
    expect_open_err(d, NULL, ST_EFORMAT, pj("%s/train-images-idx3-ubyte.gz", d),
                    "header says 41 images of 8x8 but the file holds 2576");

    d = bad_idx("labcount", 0, 0x803, 40, 39);
    f = pj("%s/train-labels-idx1-ubyte", d);
    truncate_to(f, file_size(f) + 1); /* header says 39, file holds 40 */
    expect_open_err(d, NULL, ST_EFORMAT, f, "header says 39 labels");

    d = bad_idx("mismatch", 0, 0x803, 40, 39);
    expect_open_err(d, NULL, ST_EFORMAT, pj("%s/train-images-idx3-ubyte", d),
                    pj("%s/train-labels-idx1-ubyte holds 39 labels", d));

    d = bad_idx("nolabels", 0, 0x803, 40, 40);
    f = pj("%s/train-labels-idx1-ubyte", d);
    assert_int_equal(unlink(f), 0);
    expect_open_err(d, NULL, ST_ENOTFOUND, f, "no such file");

    d = bad_idx("labdir", 0, 0x803, 40, 40);
    f = pj("%s/train-labels-idx1-ubyte", d);
    assert_int_equal(unlink(f), 0);
    mkdirs(f);
    expect_open_err(d, NULL, ST_EIO, f, "is a directory");

    d = bad_idx("dangling", 0, 0x803, 40, 40);
    f = pj("%s/train-labels-idx1-ubyte", d);
    assert_int_equal(unlink(f), 0);
    assert_int_equal(symlink("/nonexistent/labels", f), 0);
    expect_open_err(d, NULL, ST_ENOTFOUND, f, "cannot open");

    expect_open_err(pj("%s/does-not-exist", g_root), NULL, ST_ENOTFOUND,
                    "does-not-exist", NULL);
}

/* ---- CIFAR-10 ------------------------------------------------------------ */

enum { CREC = 3073 };

/* Record r of a batch: label, then R, G, B planes of 32x32. */
static void cifar_rec(uint8_t *rec, int seed, uint8_t label)
{
    rec[0] = label;
    for (int i = 1; i < CREC; i++)
        rec[i] = (uint8_t)pfx_hash((uint32_t)(seed * 4096 + i));
}

static void put_batch(const char *path, int first, int n)
{
    uint8_t *b = malloc((size_t)n * CREC);
    for (int r = 0; r < n; r++)
        cifar_rec(b + r * CREC, first + r, (uint8_t)((first + r) % 10));
    put(path, b, (size_t)n * CREC, 0);
    free(b);
}

static void test_cifar(void **state)
{
    (void)state;
    const char *d = pj("%s/cifar-10-batches-bin", g_root);
    mkdirs(d);
    put_batch(pj("%s/data_batch_1.bin", d), 0, 3);
    put_batch(pj("%s/data_batch_2.bin", d), 3, 2);
    put_batch(pj("%s/test_batch.bin", d), 100, 2);
    source *s = open_ok(d, NULL);
    const source_info *in = source_info_of(s);
    assert_int_equal(in->format, SOURCE_CIFAR10);
    assert_int_equal(in->nsplits, 2);
    assert_int_equal(in->splits[0].count, 5);
    assert_int_equal(in->splits[1].count, 2);
    assert_int_equal(in->height, 32);
    assert_int_equal(in->width, 32);
    assert_int_equal(in->channels, 3);
    assert_int_equal(in->nclasses, 10);
    assert_string_equal(in->classes[0], "airplane");
    assert_string_equal(in->classes[9], "truck");
    source_scratch *sc;
    st_error err = {0, ""};
    assert_int_equal(source_scratch_create(s, &sc, &err), 0);
    uint8_t rec[CREC], px[32 * 32 * 3];
    int32_t lab;
    for (int sp = 0; sp < 2; sp++)
        for (int i = 0; i < (sp ? 2 : 5); i++) {
            int seed = sp ? 100 + i : i;
            cifar_rec(rec, seed, 0);
            assert_int_equal(source_read(s, sp, (uint64_t)i, sc, px, &lab,
                                         NULL, &err), 0);
            assert_int_equal(lab, seed % 10);
            for (int p = 0; p < 1024; p++) {
                assert_int_equal(px[3 * p], rec[1 + p]);
                assert_int_equal(px[3 * p + 1], rec[1 + 1024 + p]);
                assert_int_equal(px[3 * p + 2], rec[1 + 2048 + p]);
            }
        }
    source_scratch_destroy(sc);
    source_close(s);

    /* gray, with BT.601 weights as PIL; names from batches.meta.txt */
    const char *meta = pj("%s/batches.meta.txt", d);
    put(meta, "a\nb\nc\nd\ne\nf\ng\nh\ni\nj k\r\n\n\n", 24, 0);
    source_options o = {.channels = 1};
    s = open_ok(d, &o);
    in = source_info_of(s);
    assert_string_equal(in->classes[9], "j k");
    assert_int_equal(source_scratch_create(s, &sc, &err), 0);
    assert_int_equal(source_read(s, 1, 1, sc, px, &lab, NULL, &err), 0);
    cifar_rec(rec, 101, 0);
    for (int p = 0; p < 1024; p++) {
        double y = pfx_luma(rec[1 + p], rec[1025 + p], rec[2049 + p]);
        assert_int_equal(px[p], (int)y);
    }
    source_scratch_destroy(sc);
    source_close(s);
    put(meta, "a\nb\n", 4, 0);
    expect_open_err(d, NULL, ST_EFORMAT, meta, "lists 2 class names");
    unlink(meta);

    const char *b = pj("%s/cifar-bad", g_root);
    mkdirs(b);
    const char *f = pj("%s/data_batch_1.bin", b);
    put_batch(f, 0, 2);
    truncate_to(f, 2 * CREC - 5);
    expect_open_err(b, NULL, ST_EFORMAT, f, "multiple of 3073");
    put_batch(f, 0, 2);
    flip_byte(f, CREC); /* record 1's label 1 -> 0x54 */
    expect_open_err(b, NULL, ST_EFORMAT, f, "record 1 has label 84");
    put_batch(f, 0, 2);
    put_batch(pj("%s/data_batch_3.bin", b), 0, 1);
    expect_open_err(b, NULL, ST_ENOTFOUND, pj("%s/data_batch_2.bin", b),
                    "missing");
    /* a sixth batch is refused, not left out silently */
    unlink(pj("%s/data_batch_3.bin", b));
    const char *six = pj("%s/data_batch_6.bin", b);
    put_batch(six, 0, 1);
    expect_open_err(b, NULL, ST_EFORMAT, six, "not a CIFAR-10 file");
    unlink(six);
}

/* ---- detection, arguments, permissions ----------------------------------- */

static void test_detect_and_args(void **state)
{
    (void)state;
    assert_string_equal(source_format_name(SOURCE_IDX), "idx");
    assert_string_equal(source_format_name(SOURCE_FOLDER), "folder");
    assert_string_equal(source_format_name(SOURCE_CIFAR10), "cifar10");
    const char *d = pj("%s/detect-folder", g_root);
    mkdirs(pj("%s/k", d));
    flat_png(pj("%s/k/x.png", d), 3, 3, 9);
    source *s = open_ok(d, NULL);
    assert_int_equal(source_info_of(s)->format, SOURCE_FOLDER);
    source_close(s);
    /* forcing a format that does not fit */
    source_options o = {.format = SOURCE_CIFAR10};
    expect_open_err(d, &o, ST_ENOTFOUND, d, "test_batch.bin");
    o = (source_options){.format = SOURCE_IDX};
    expect_open_err(d, &o, ST_ENOTFOUND, d, "idx3");
    o = (source_options){.channels = 2};
    expect_open_err(d, &o, ST_EINVAL, d, "channels");
    o = (source_options){.resize_w = 4};
    expect_open_err(d, &o, ST_EINVAL, d, "resize");
    source_close(NULL);
    source_scratch_destroy(NULL);
}

static void test_unreadable(void **state)
{
    (void)state;
    const char *d = bad_idx("perm", 1, 0x803, 40, 40);
    check_unreadable(d, pj("%s/train-labels-idx1-ubyte.gz", d));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_idx_roundtrip),
        cmocka_unit_test(test_idx_file_and_fashion_names),
        cmocka_unit_test(test_idx_real_fashion_mnist),
        cmocka_unit_test(test_idx_bad),
        cmocka_unit_test(test_cifar),
        cmocka_unit_test(test_detect_and_args),
        cmocka_unit_test(test_unreadable),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
