/* tests/test_folder.c — datasets/folder.c through datasets/source.h: a
 * folder of PNG class folders, with and without train/test/val splits.
 * The PNGs cover every colour type, bit depth, palette with and without
 * tRNS, and Adam7 interlacing (written with libpng directly, see
 * tests/source_fixture.h); every pixel is checked against an independent
 * reference for 1, 3 and 4 channels, as are labels, class order, the
 * offer of a file's own PNG bytes, resizing, concurrent reads and every bad
 * input: non-PNG, corrupt or truncated PNG, unreadable file, empty folder,
 * empty class, class names that are not UTF-8, differing sizes.
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

/* ---- folder of PNGs ----------------------------------------------------- */

static void test_folder_every_png_kind(void **state)
{
    (void)state;
    /* the first image is gray but later ones have colour: the dataset is
     * RGB unless told otherwise */
    static const spec sp[] = {
        {"a_cls", 3, 0},  {"a_cls", 0, 0},  {"a_cls", 1, 0},
        {"a_cls", 2, 0},  {"a_cls", 4, 0},  {"a_cls", 5, 0},
        {"b_cls", 6, 0},  {"b_cls", 7, 0},  {"b_cls", 8, 0},
        {"b_cls", 9, 0},  {"b_cls", 10, 0}, {"b_cls", 11, 0},
        {"c", 12, 0},     {"c", 13, 0},     {"c", 14, 0},
        {"c", 15, 0},     {"c", 16, 0},     {"c", 17, 0},
        {"c", 18, 0},     {"c", 3, 1},      {"c", 8, 1},
        {"c", 14, 1},     {"c", 4, 1},      {"c", 11, 1},
    };
    int n = (int)(sizeof sp / sizeof sp[0]);
    int labels[MAXSPEC];
    for (int i = 0; i < n; i++)
        labels[i] = sp[i].dir[0] == 'a' ? 0 : sp[i].dir[0] == 'b' ? 1 : 2;
    const char *dir = pj("%s/kinds", g_root);
    build_folder(dir, sp, n);
    /* ignored: hidden entries, regular files beside the classes */
    mkdirs(pj("%s/.hidden", dir));
    put(pj("%s/README.txt", dir), "hello", 5, 0);
    put(pj("%s/a_cls/.DS_Store", dir), "junk", 4, 0);

    static const int chans[4] = {0, 1, 3, 4};
    for (int k = 0; k < 4; k++) {
        source_options o = {.channels = chans[k]};
        source *s = open_ok(dir, &o);
        const source_info *in = source_info_of(s);
        assert_int_equal(in->format, SOURCE_FOLDER);
        assert_true(in->png_native);
        assert_int_equal(in->channels, chans[k] ? chans[k] : 3);
        assert_int_equal(in->width, FW);
        assert_int_equal(in->height, FH);
        assert_int_equal(in->nclasses, 3);
        assert_string_equal(in->classes[0], "a_cls");
        assert_string_equal(in->classes[2], "c");
        assert_int_equal(in->nsplits, 1);
        assert_string_equal(in->splits[0].name, "train");
        check_split(s, 0, 0, n, labels);
        source_close(s);
    }
}

/* The default channel count looks at every image, not the first: gray
 * first then one colour image gives 3; gray and gray+alpha only give 1
 * (alpha dropped); RGBA only gives 3 (alpha dropped unless --channels 4). */
static void test_folder_default_channels(void **state)
{
    (void)state;
    static const struct {
        const char *name;
        spec sp[3];
        uint32_t want;
    } cases[] = {
        {"grayfirst", {{"a", 3, 0}, {"a", 0, 0}, {"b", 8, 0}}, 3},
        {"palettelast", {{"a", 3, 0}, {"a", 6, 0}, {"b", 16, 0}}, 3},
        {"grayonly", {{"a", 3, 0}, {"a", 6, 0}, {"b", 5, 0}}, 1},
        {"rgbaonly", {{"a", 11, 0}, {"a", 11, 1}, {"b", 12, 0}}, 3},
    };
    static const int labels[3] = {0, 0, 1};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *dir = pj("%s/chan-%s", g_root, cases[i].name);
        build_folder(dir, cases[i].sp, 3);
        source *s = open_ok(dir, NULL);
        assert_int_equal(source_info_of(s)->channels, cases[i].want);
        check_split(s, 0, 0, 3, labels);
        source_close(s);
    }
}

static void test_folder_splits(void **state)
{
    (void)state;
    /* class union: cat, dog, eel; first image RGB -> 3 channels */
    static const spec sp[] = {
        {"train/cat", 8, 0}, {"train/cat", 3, 0}, {"train/dog", 11, 0},
        {"test/dog", 17, 0}, {"test/eel", 9, 1},  {"val/cat", 16, 0},
    };
    const char *dir = pj("%s/splits", g_root);
    build_folder(dir, sp, 6);
    put(pj("%s/LICENSE", dir), "x", 1, 0);
    source *s = open_ok(dir, NULL);
    const source_info *in = source_info_of(s);
    assert_int_equal(in->channels, 3);
    assert_int_equal(in->nclasses, 3);
    assert_string_equal(in->classes[1], "dog");
    assert_int_equal(in->nsplits, 3);
    assert_string_equal(in->splits[0].name, "train");
    assert_string_equal(in->splits[1].name, "test");
    assert_string_equal(in->splits[2].name, "val");
    static const int ltr[] = {0, 0, 1}, lte[] = {1, 2}, lva[] = {0};
    check_split(s, 0, 0, 3, ltr);
    check_split(s, 1, 3, 2, lte);
    check_split(s, 2, 5, 1, lva);
    source_close(s);
}

static void test_folder_sizes_and_resize(void **state)
{
    (void)state;
    const char *dir = pj("%s/sizes", g_root);
    mkdirs(pj("%s/a", dir));
    mkdirs(pj("%s/b", dir));
    flat_png(pj("%s/a/1.png", dir), 8, 6, 10);
    flat_png(pj("%s/b/1.png", dir), 4, 4, 90);
    flat_png(pj("%s/b/2.png", dir), 5, 5, 200);
    expect_open_err(dir, NULL, ST_EFORMAT, pj("%s/b/1.png", dir),
                    "is 4x4 but");
    expect_open_err(dir, NULL, ST_EFORMAT, pj("%s/a/1.png", dir), "8x6");

    source_options o = {.resize_w = 4, .resize_h = 4};
    source *s = open_ok(dir, &o);
    const source_info *in = source_info_of(s);
    assert_int_equal(in->width, 4);
    assert_int_equal(in->height, 4);
    source_scratch *sc;
    st_error err = {0, ""};
    assert_int_equal(source_scratch_create(s, &sc, &err), 0);
    static const int want[3] = {10, 90, 200};
    for (int i = 0; i < 3; i++) {
        uint8_t px[16];
        int32_t lab;
        const uint8_t *png;
        size_t plen;
        assert_int_equal(source_read(s, 0, (uint64_t)i, sc, px, &lab, &png,
                                     &plen, &err), 0);
        for (int p = 0; p < 16; p++)
            assert_in_range(px[p], want[i] - 1, want[i] + 1);
        assert_int_equal(png != NULL, i == 1); /* only 4x4 is kept as is */
    }
    source_scratch_destroy(sc);
    source_close(s);
}

static void test_folder_bad(void **state)
{
    (void)state;
    const char *d, *f;
    d = pj("%s/fb-notpng", g_root);
    mkdirs(pj("%s/cls", d));
    flat_png(pj("%s/cls/a.png", d), 4, 4, 1);
    f = pj("%s/cls/b.png", d);
    put(f, "GIF89a not a png at all", 23, 0);
    expect_open_err(d, NULL, ST_EFORMAT, f, "not a PNG");

    d = pj("%s/fb-empty", g_root);
    mkdirs(d);
    put(pj("%s/stray.png", d), "x", 1, 0); /* files beside classes: ignored */
    expect_open_err(d, NULL, ST_EFORMAT, d, "no class folders");

    d = pj("%s/fb-emptyclass", g_root);
    mkdirs(pj("%s/full", d));
    mkdirs(pj("%s/void", d));
    flat_png(pj("%s/full/a.png", d), 4, 4, 1);
    put(pj("%s/void/.keep", d), "", 0, 0);
    expect_open_err(d, NULL, ST_EFORMAT, pj("%s/void", d), "empty class");

    d = pj("%s/fb-utf8", g_root);
    f = pj("%s/bad\xff\xfe", d);
    mkdirs(f);
    flat_png(pj("%s/a.png", f), 4, 4, 1);
    /* the message shows the bad bytes escaped, so it stays one clean line */
    expect_open_err(d, NULL, ST_EFORMAT, pj("%s/bad\\xff\\xfe", d),
                    "not valid UTF-8");
    d = pj("%s/fb-ctrl", g_root);
    f = pj("%s/tab\there", d);
    mkdirs(f);
    flat_png(pj("%s/a.png", f), 4, 4, 1);
    expect_open_err(d, NULL, ST_EFORMAT, pj("%s/tab\\x09here", d), "control");

    d = pj("%s/fb-dangling", g_root);
    mkdirs(pj("%s/cls", d));
    f = pj("%s/cls/gone.png", d);
    assert_int_equal(symlink("/nonexistent.png", f), 0);
    expect_open_err(d, NULL, ST_ENOTFOUND, f, "cannot open");

    d = pj("%s/fb-subdir", g_root);
    f = pj("%s/cls/nested", d);
    mkdirs(f);
    expect_open_err(d, NULL, ST_EIO, f, "is a directory");

    d = pj("%s/fb-stray-split", g_root);
    mkdirs(pj("%s/train/x", d));
    mkdirs(pj("%s/test/x", d));
    mkdirs(pj("%s/extra", d));
    flat_png(pj("%s/train/x/a.png", d), 4, 4, 1);
    flat_png(pj("%s/test/x/a.png", d), 4, 4, 1);
    expect_open_err(d, NULL, ST_EFORMAT, pj("%s/extra", d), "unexpected");
    rmdir(pj("%s/extra", d));
    mkdirs(pj("%s/val", d));
    expect_open_err(d, NULL, ST_EFORMAT, pj("%s/val", d), "no class folders");
}

/* Errors found only when the pixels are decoded: named by source_read. */
static void test_folder_corrupt_png(void **state)
{
    (void)state;
    const char *d = pj("%s/fb-corrupt", g_root);
    mkdirs(pj("%s/cls", d));
    static pfx_img im;
    pfx_make(&im, 8, 16, 16, 0, 3);
    uint8_t *png;
    size_t len;
    assert_int_equal(pfx_png_encode(&im.p, &png, &len), 0);
    const char *good = pj("%s/cls/0.png", d);
    const char *trunc = pj("%s/cls/1.png", d);
    const char *flip = pj("%s/cls/2.png", d);
    put(good, png, len, 0);
    put(trunc, png, len / 2, 0);
    png[len / 2] ^= 0xff; /* inside IDAT: CRC and zlib both notice */
    put(flip, png, len, 0);
    free(png);
    source *s = open_ok(d, NULL);
    source_scratch *sc;
    st_error err = {0, ""};
    assert_int_equal(source_scratch_create(s, &sc, &err), 0);
    uint8_t px[16 * 16 * 3];
    int32_t lab;
    assert_int_equal(source_read(s, 0, 0, sc, px, &lab, NULL, NULL, &err), 0);
    assert_int_equal(source_read(s, 0, 1, sc, px, &lab, NULL, NULL, &err),
                     ST_EDECODE);
    assert_non_null(strstr(err.msg, trunc));
    st_clearerr(&err);
    assert_int_equal(source_read(s, 0, 2, sc, px, &lab, NULL, NULL, &err),
                     ST_EDECODE);
    assert_non_null(strstr(err.msg, flip));
    assert_non_null(strstr(err.msg, "libpng"));
    st_clearerr(&err);
    /* the file is replaced by one of another size after open */
    flat_png(good, 5, 5, 1);
    assert_int_equal(source_read(s, 0, 0, sc, px, &lab, NULL, NULL, &err),
                     ST_EFORMAT);
    assert_non_null(strstr(err.msg, good));
    source_scratch_destroy(sc);
    source_close(s);
}

typedef struct th_arg {
    const source *s;
    const uint8_t *want; /* (n, FW*FH*3) */
    int n, bad;
} th_arg;

static void *th_read(void *p)
{
    th_arg *a = p;
    source_scratch *sc;
    st_error err = {0, ""};
    if (source_scratch_create(a->s, &sc, &err) != 0) {
        a->bad++;
        return NULL;
    }
    uint8_t px[FW * FH * 3];
    int32_t lab;
    for (int rep = 0; rep < 20; rep++)
        for (int i = a->n - 1; i >= 0; i--)
            if (source_read(a->s, 0, (uint64_t)i, sc, px, &lab, NULL, NULL,
                            &err) != 0 ||
                memcmp(px, a->want + (size_t)i * sizeof px, sizeof px) != 0)
                a->bad++;
    source_scratch_destroy(sc);
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    static const spec sp[] = {{"x", 8, 0},  {"x", 9, 1},  {"x", 17, 0},
                              {"y", 11, 1}, {"y", 3, 0},  {"y", 2, 1},
                              {"z", 12, 0}, {"z", 14, 1}};
    enum { N = 8 };
    const char *d = pj("%s/threads", g_root);
    build_folder(d, sp, N);
    source *s = open_ok(d, NULL);
    static uint8_t want[N][FW * FH * 3];
    source_scratch *sc;
    st_error err = {0, ""};
    assert_int_equal(source_scratch_create(s, &sc, &err), 0);
    int32_t lab;
    for (int i = 0; i < N; i++)
        assert_int_equal(source_read(s, 0, (uint64_t)i, sc, want[i], &lab,
                                     NULL, NULL, &err), 0);
    source_scratch_destroy(sc);
    pthread_t t[4];
    th_arg a[4];
    for (int i = 0; i < 4; i++) {
        a[i] = (th_arg){s, &want[0][0], N, 0};
        assert_int_equal(pthread_create(&t[i], NULL, th_read, &a[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        assert_int_equal(pthread_join(t[i], NULL), 0);
        assert_int_equal(a[i].bad, 0);
    }
    source_close(s);
}

static void test_unreadable(void **state)
{
    (void)state;
    const char *d = pj("%s/fb-perm", g_root);
    mkdirs(pj("%s/cls", d));
    flat_png(pj("%s/cls/a.png", d), 4, 4, 1);
    flat_png(pj("%s/cls/b.png", d), 4, 4, 1);
    check_unreadable(d, pj("%s/cls/b.png", d));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_folder_every_png_kind),
        cmocka_unit_test(test_folder_default_channels),
        cmocka_unit_test(test_folder_splits),
        cmocka_unit_test(test_folder_sizes_and_resize),
        cmocka_unit_test(test_folder_bad),
        cmocka_unit_test(test_folder_corrupt_png),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_unreadable),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
