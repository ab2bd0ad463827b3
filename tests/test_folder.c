/* tests/test_folder.c — datasets/folder.c through datasets/source.h: a
 * folder of PNG class folders, with and without train/test/val splits.
 * The PNGs cover every colour type, bit depth, palette with and without
 * tRNS, and Adam7 interlacing (written with libpng directly, see
 * tests/source_fixture.h); every pixel is checked against an independent
 * reference for 1, 3 and 4 channels, as are labels, class order, the
 * offer of a file's own PNG bytes, resizing, concurrent reads and every bad
 * input: non-PNG, corrupt or truncated PNG, unreadable file, empty folder,
 * empty class, class names that are not UTF-8. JPEGs (written with libjpeg,
 * tests/jpeg_fixture.h) mixed with PNGs: variable sizes, every EXIF
 * orientation (and --no-exif-rotate), max_side, the offer of a JPEG's own
 * bytes, and every bad JPEG input: over max_pixels, zero-sized, 12-bit,
 * a .jpg holding HTML, a dangling symlink, a FIFO, truncated at read time.
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

#include "datasets/jpegio.h"
#include "datasets/shard.h"
#include "datasets/source.h"
#include "source_fixture.h"
#include "jpeg_fixture.h"

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
    /* sizes differ: a variable source, its largest sides, each sample's */
    source *v = open_ok(dir, NULL);
    const source_info *vi = source_info_of(v);
    assert_true(vi->variable);
    assert_int_equal(vi->width, 8);
    assert_int_equal(vi->height, 6);
    assert_int_equal(vi->max_sample_bytes, 8 * 6);
    static const uint32_t vw[3] = {8, 4, 5}, vh[3] = {6, 4, 5};
    for (int i = 0; i < 3; i++) {
        uint32_t w, h;
        source_sample_size(v, 0, (uint64_t)i, &w, &h);
        assert_int_equal(w, vw[i]);
        assert_int_equal(h, vh[i]);
    }
    source_close(v);

    source_options o = {.resize_w = 4, .resize_h = 4};
    source *s = open_ok(dir, &o);
    const source_info *in = source_info_of(s);
    assert_int_equal(in->width, 4);
    assert_int_equal(in->height, 4);
    assert_false(in->variable);
    source_scratch *sc;
    st_error err = {0, ""};
    assert_int_equal(source_scratch_create(s, &sc, &err), 0);
    static const int want[3] = {10, 90, 200};
    for (int i = 0; i < 3; i++) {
        uint8_t px[16];
        int32_t lab;
        source_native nat;
        assert_int_equal(source_read(s, 0, (uint64_t)i, sc, px, &lab, &nat,
                                     &err), 0);
        const uint8_t *png = nat.bytes;
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
    expect_open_err(d, NULL, ST_EFORMAT, f,
                    "not a JPEG or PNG file (starts with 47 49 46 38)");

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
    assert_int_equal(source_read(s, 0, 0, sc, px, &lab, NULL, &err), 0);
    assert_int_equal(source_read(s, 0, 1, sc, px, &lab, NULL, &err),
                     ST_EDECODE);
    assert_non_null(strstr(err.msg, trunc));
    st_clearerr(&err);
    assert_int_equal(source_read(s, 0, 2, sc, px, &lab, NULL, &err),
                     ST_EDECODE);
    assert_non_null(strstr(err.msg, flip));
    assert_non_null(strstr(err.msg, "libpng"));
    st_clearerr(&err);
    /* the file is replaced by one of another size after open */
    flat_png(good, 5, 5, 1);
    assert_int_equal(source_read(s, 0, 0, sc, px, &lab, NULL, &err),
                     ST_EFORMAT);
    assert_non_null(strstr(err.msg, good));
    source_scratch_destroy(sc);
    source_close(s);
}

/* ---- JPEGs ---------------------------------------------------------------- */

/* Writes a JPEG of pattern pixels at path; returns its bytes (malloc'd). */
static uint8_t *put_jpeg(const char *path, const jfx_opt *o, uint32_t seed,
                         size_t *len)
{
    int nc = jfx_in_channels(o->cs);
    uint8_t *px = malloc((size_t)o->w * o->h * nc);
    jfx_pattern(px, o->w, o->h, nc, seed);
    uint8_t *j = jfx_encode(o, px, len);
    put(path, j, *len, 0);
    free(px);
    return j;
}

/* What jpegio decodes b to at (stored) full size, c channels. */
static uint8_t *ref_decode(const uint8_t *b, size_t len, int c, uint32_t *w,
                           uint32_t *h)
{
    jpegio_dec *d;
    st_error err = {0, ""};
    jpegio_info in;
    assert_int_equal(jpegio_dec_create(&d, &err), 0);
    assert_int_equal(jpegio_read_info(d, b, len, &in, &err), 0);
    size_t n = (size_t)in.width * in.height * c;
    uint8_t *px = malloc(n);
    assert_int_equal(jpegio_decode(d, b, len, 1, c, px, (size_t)in.width * c,
                                   n, w, h, &err), 0);
    jpegio_dec_destroy(d);
    return px;
}

static void read_sample(source *s, source_scratch *sc, uint64_t i,
                        uint8_t *px, source_native *nat, uint32_t *w,
                        uint32_t *h)
{
    st_error err = {0, ""};
    int32_t lab;
    int rc = source_read(s, 0, i, sc, px, &lab, nat, &err);
    if (rc != 0) fail_msg("read %llu: %s", (unsigned long long)i, err.msg);
    source_sample_size(s, 0, i, w, h);
}

typedef struct th_arg {
    const source *s;
    const uint8_t *want; /* (n, stride): each sample at its own size */
    size_t stride;
    int n, bad;
} th_arg;

static void *th_read(void *p)
{
    th_arg *a = p;
    source_scratch *sc;
    st_error err = {0, ""};
    uint8_t *px = malloc(a->stride);
    if (px == NULL || source_scratch_create(a->s, &sc, &err) != 0) {
        free(px);
        a->bad++;
        return NULL;
    }
    size_t c = source_info_of(a->s)->channels;
    int32_t lab;
    for (int rep = 0; rep < 20; rep++)
        for (int i = a->n - 1; i >= 0; i--) {
            uint32_t w, h;
            source_sample_size(a->s, 0, (uint64_t)i, &w, &h);
            if (source_read(a->s, 0, (uint64_t)i, sc, px, &lab, NULL,
                            &err) != 0 ||
                memcmp(px, a->want + (size_t)i * a->stride,
                       (size_t)w * h * c) != 0)
                a->bad++;
        }
    source_scratch_destroy(sc);
    free(px);
    return NULL;
}

/* Reads every sample of split 0 once, then from 4 threads at once. */
static void read_concurrently(source *s, int n)
{
    size_t stride = source_info_of(s)->max_sample_bytes;
    uint8_t *want = calloc((size_t)n, stride);
    source_scratch *sc;
    st_error err = {0, ""};
    assert_int_equal(source_scratch_create(s, &sc, &err), 0);
    int32_t lab;
    for (int i = 0; i < n; i++)
        assert_int_equal(source_read(s, 0, (uint64_t)i, sc,
                                     want + (size_t)i * stride, &lab, NULL,
                                     &err), 0);
    source_scratch_destroy(sc);
    pthread_t t[4];
    th_arg a[4];
    for (int i = 0; i < 4; i++) {
        a[i] = (th_arg){s, want, stride, n, 0};
        assert_int_equal(pthread_create(&t[i], NULL, th_read, &a[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        assert_int_equal(pthread_join(t[i], NULL), 0);
        assert_int_equal(a[i].bad, 0);
    }
    free(want);
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
    read_concurrently(s, N);
    source_close(s);
    /* JPEGs beside them: DCT-scaled, turned and resized in every thread,
     * each thread with its own decoder */
    for (int o = 1; o <= 8; o++) {
        jfx_opt opt = {23 + o, 17, JPEGIO_CS_YCBCR, 2, 1 + (o & 1), o & 1, 0,
                       90, o, 0};
        size_t len;
        free(put_jpeg(pj("%s/z/j%d.jpg", d, o), &opt, (uint32_t)o, &len));
    }
    source_options ms = {.max_side = 8};
    s = open_ok(d, &ms);
    assert_true(source_info_of(s)->variable);
    read_concurrently(s, N + 8);
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


static void test_folder_mixed_jpeg_png(void **state)
{
    (void)state;
    const char *d = pj("%s/mixed", g_root);
    mkdirs(pj("%s/cat", d));
    mkdirs(pj("%s/dog", d));
    /* cat: a 4:2:0 JPEG named .png, a progressive gray JPEG with no
     * extension, a PNG; dog: an Adobe CMYK JPEG, a 4:4:4 JPEG as .JPEG */
    jfx_opt o0 = {37, 23, JPEGIO_CS_YCBCR, 2, 2, 0, 0, 90, 0, 0};
    jfx_opt o1 = {16, 40, JPEGIO_CS_GRAY, 0, 0, 1, 0, 90, 0, 0};
    jfx_opt o3 = {20, 20, JPEGIO_CS_CMYK, 1, 1, 0, 0, 90, 0, 0};
    jfx_opt o4 = {45, 9, JPEGIO_CS_YCBCR, 1, 1, 0, 2, 90, 0, 0};
    size_t len[5];
    uint8_t *j[5] = {NULL};
    j[0] = put_jpeg(pj("%s/cat/0-really-a-jpeg.png", d), &o0, 1, &len[0]);
    j[1] = put_jpeg(pj("%s/cat/1-noext", d), &o1, 2, &len[1]);
    flat_png(pj("%s/cat/2.png", d), 9, 6, 77);
    j[3] = put_jpeg(pj("%s/dog/3.jpg", d), &o3, 3, &len[3]);
    j[4] = put_jpeg(pj("%s/dog/4.JPEG", d), &o4, 4, &len[4]);
    static const uint32_t ww[5] = {37, 16, 9, 20, 45}, hh[5] = {23, 40, 6, 20, 9};
    source *s = open_ok(d, NULL);
    const source_info *in = source_info_of(s);
    assert_true(in->variable);
    assert_true(in->jpeg_native);
    assert_true(in->png_native);
    assert_int_equal(in->channels, 3);
    assert_int_equal(in->width, 45);
    assert_int_equal(in->height, 40);
    assert_int_equal(in->max_sample_bytes, 37 * 23 * 3);
    assert_int_equal(in->splits[0].count, 5);
    source_scratch *sc;
    st_error err = {0, ""};
    assert_int_equal(source_scratch_create(s, &sc, &err), 0);
    uint8_t *px = malloc(in->max_sample_bytes);
    for (int i = 0; i < 5; i++) {
        source_native nat;
        uint32_t w, h;
        read_sample(s, sc, (uint64_t)i, px, &nat, &w, &h);
        assert_int_equal(w, ww[i]);
        assert_int_equal(h, hh[i]);
        if (i == 2) { /* the gray PNG, replicated to RGB: no native bytes */
            for (size_t k = 0; k < (size_t)w * h * 3; k++)
                assert_int_equal(px[k], 77);
            assert_null(nat.bytes);
            continue;
        }
        uint32_t rw, rh;
        uint8_t *want = ref_decode(j[i], len[i], 3, &rw, &rh);
        assert_memory_equal(px, want, (size_t)w * h * 3);
        free(want);
        /* own bytes: colour JPEGs as they are; not the gray one (3
         * channels asked) nor CMYK (converted) */
        int offered = i == 0 || i == 4;
        if (offered != (nat.bytes != NULL))
            fail_msg("sample %d: native bytes %s", i, nat.bytes ? "offered"
                                                                : "missing");
        if (offered) {
            assert_int_equal(nat.codec, CODEC_JPEG);
            assert_int_equal(nat.len, len[i]);
            assert_memory_equal(nat.bytes, j[i], len[i]);
        }
    }
    source_scratch_destroy(sc);
    source_close(s);
    /* one channel: the gray JPEG is now offered as it is */
    source_options one = {.channels = 1};
    s = open_ok(d, &one);
    assert_int_equal(source_scratch_create(s, &sc, &err), 0);
    source_native nat;
    uint32_t w, h, rw, rh;
    read_sample(s, sc, 1, px, &nat, &w, &h);
    assert_non_null(nat.bytes);
    uint8_t *want = ref_decode(j[1], len[1], 1, &rw, &rh);
    assert_memory_equal(px, want, (size_t)w * h);
    free(want);
    read_sample(s, sc, 0, px, &nat, &w, &h);
    assert_null(nat.bytes);
    want = ref_decode(j[0], len[0], 1, &rw, &rh);
    assert_memory_equal(px, want, (size_t)w * h);
    free(want);
    source_scratch_destroy(sc);
    source_close(s);
    /* four channels: RGB plus opaque alpha */
    source_options four = {.channels = 4};
    s = open_ok(d, &four);
    assert_int_equal(source_scratch_create(s, &sc, &err), 0);
    read_sample(s, sc, 4, px, &nat, &w, &h);
    assert_null(nat.bytes);
    want = ref_decode(j[4], len[4], 3, &rw, &rh);
    for (size_t k = 0; k < (size_t)w * h; k++) {
        assert_memory_equal(px + 4 * k, want + 3 * k, 3);
        assert_int_equal(px[4 * k + 3], 255);
    }
    free(want);
    source_scratch_destroy(sc);
    source_close(s);
    free(px);
    for (int i = 0; i < 5; i++) free(j[i]);
}

static void test_folder_exif(void **state)
{
    (void)state;
    const char *d = pj("%s/exif", g_root);
    mkdirs(pj("%s/x", d));
    uint8_t *j[9];
    size_t len[9];
    for (int o = 1; o <= 8; o++) {
        jfx_opt opt = {29, 13, JPEGIO_CS_YCBCR, 2, 1, o & 1, 0, 90, o, o > 4};
        j[o] = put_jpeg(pj("%s/x/%d.jpg", d, o), &opt, (uint32_t)o, &len[o]);
    }
    for (int keep = 0; keep < 2; keep++) {
        source_options opt = {.no_exif_rotate = keep};
        source *s = open_ok(d, &opt);
        const source_info *in = source_info_of(s);
        assert_int_equal(in->variable, !keep);
        assert_int_equal(in->width, keep ? 29 : 29);
        assert_int_equal(in->height, keep ? 13 : 29);
        source_scratch *sc;
        st_error err = {0, ""};
        assert_int_equal(source_scratch_create(s, &sc, &err), 0);
        uint8_t *px = malloc(in->max_sample_bytes);
        for (int o = 1; o <= 8; o++) {
            source_native nat;
            uint32_t w, h, rw, rh, ow, oh;
            read_sample(s, sc, (uint64_t)(o - 1), px, &nat, &w, &h);
            uint8_t *raw = ref_decode(j[o], len[o], 3, &rw, &rh);
            int eff = keep ? 1 : o;
            jpegio_oriented_size(eff, rw, rh, &ow, &oh);
            assert_int_equal(w, ow);
            assert_int_equal(h, oh);
            uint8_t *want = malloc((size_t)rw * rh * 3);
            jpegio_orient(eff, raw, rw, rh, 3, want);
            if (memcmp(px, want, (size_t)w * h * 3) != 0)
                fail_msg("orientation %d (no_exif_rotate %d): pixels differ",
                         o, keep);
            /* the file's bytes only when nothing turned */
            assert_int_equal(nat.bytes != NULL, eff == 1);
            free(raw);
            free(want);
        }
        free(px);
        source_scratch_destroy(sc);
        source_close(s);
    }
    for (int o = 1; o <= 8; o++) free(j[o]);
}

static void test_folder_max_side(void **state)
{
    (void)state;
    const char *d = pj("%s/maxside", g_root);
    mkdirs(pj("%s/x", d));
    /* landscape (DCT-scaled by 2: 20x15 exactly), portrait 30x61 with
     * EXIF 6 (stored 61x30: turned to 30x61, then 10x20; 30*20/61 = 9.8),
     * a small one left alone, and a PNG */
    jfx_opt a = {40, 30, JPEGIO_CS_YCBCR, 2, 2, 0, 0, 95, 0, 0};
    jfx_opt b = {61, 30, JPEGIO_CS_YCBCR, 2, 2, 1, 0, 95, 6, 0};
    jfx_opt c = {12, 7, JPEGIO_CS_YCBCR, 1, 1, 0, 0, 95, 0, 0};
    size_t la, lb, lc;
    uint8_t *ja = put_jpeg(pj("%s/x/a.jpg", d), &a, 1, &la);
    uint8_t *jb = put_jpeg(pj("%s/x/b.jpg", d), &b, 2, &lb);
    uint8_t *jc = put_jpeg(pj("%s/x/c.jpg", d), &c, 3, &lc);
    flat_png(pj("%s/x/d.png", d), 50, 8, 99);
    source_options opt = {.max_side = 20};
    source *s = open_ok(d, &opt);
    const source_info *in = source_info_of(s);
    static const uint32_t ww[4] = {20, 10, 12, 20}, hh[4] = {15, 20, 7, 3};
    assert_true(in->variable);
    assert_int_equal(in->width, 20);
    assert_int_equal(in->height, 20);
    source_scratch *sc;
    st_error err = {0, ""};
    assert_int_equal(source_scratch_create(s, &sc, &err), 0);
    uint8_t px[20 * 20 * 3];
    const uint8_t *jj[3] = {ja, jb, jc};
    size_t ll[3] = {la, lb, lc};
    for (int i = 0; i < 4; i++) {
        source_native nat;
        uint32_t w, h;
        read_sample(s, sc, (uint64_t)i, px, &nat, &w, &h);
        assert_int_equal(w, ww[i]);
        assert_int_equal(h, hh[i]);
        assert_int_equal(nat.bytes != NULL, i == 2);
        if (i == 3) {
            for (size_t k = 0; k < (size_t)w * h * 3; k++)
                assert_in_range(px[k], 98, 100);
            continue;
        }
        /* against the full decode, turned, area-averaged over the box
         * each output pixel covers */
        uint32_t rw, rh, ow, oh;
        uint8_t *raw = ref_decode(jj[i], ll[i], 3, &rw, &rh);
        int o = i == 1 ? 6 : 1;
        jpegio_oriented_size(o, rw, rh, &ow, &oh);
        uint8_t *up = malloc((size_t)rw * rh * 3);
        jpegio_orient(o, raw, rw, rh, 3, up);
        double mae = 0;
        for (uint32_t y = 0; y < h; y++)
            for (uint32_t x = 0; x < w; x++)
                for (int k = 0; k < 3; k++) {
                    double sum = 0, cnt = 0;
                    for (uint32_t yy = y * oh / h; yy < (y + 1) * oh / h; yy++)
                        for (uint32_t xx = x * ow / w; xx < (x + 1) * ow / w; xx++, cnt++)
                            sum += up[((size_t)yy * ow + xx) * 3 + k];
                    mae += fabs(sum / cnt - px[((size_t)y * w + x) * 3 + k]);
                }
        mae /= (double)w * h * 3;
        if (mae > 3.0) fail_msg("sample %d: mean abs difference %.2f", i, mae);
        free(raw);
        free(up);
    }
    source_scratch_destroy(sc);
    source_close(s);
    source_options both = {.max_side = 20, .resize_w = 4, .resize_h = 4};
    expect_open_err(d, &both, ST_EINVAL, "do not combine", NULL);
    free(ja);
    free(jb);
    free(jc);
}

static void test_folder_bad_jpeg(void **state)
{
    (void)state;
    const char *d = pj("%s/badjpeg", g_root), *f;
    mkdirs(pj("%s/x", d));
    jfx_opt o = {40, 30, JPEGIO_CS_YCBCR, 2, 2, 0, 0, 90, 0, 0};
    size_t len;
    uint8_t *j = put_jpeg(pj("%s/x/a.jpg", d), &o, 1, &len);
    /* over max_pixels: by name, with the numbers */
    source_options lim = {.max_pixels = 1199};
    expect_open_err(d, &lim, ST_EFORMAT, pj("%s/x/a.jpg: 40x30 = 1200 pixels "
                    "is over --max-pixels 1199 (a decompression bomb?)", d),
                    NULL);
    lim.max_pixels = 1200;
    source_close(open_ok(d, &lim));
    /* a huge header is refused from the header alone */
    uint8_t *big = malloc(len);
    memcpy(big, j, len);
    uint8_t *sof = memmem(big, len, "\xff\xc0", 2);
    assert_non_null(sof);
    sof[5] = 0x4e, sof[6] = 0x20, sof[7] = 0x4e, sof[8] = 0x20; /* 20000 */
    f = pj("%s/x/b.jpg", d);
    put(f, big, len, 0);
    source_options def = {.max_pixels = SOURCE_DEFAULT_MAX_PIXELS};
    expect_open_err(d, &def, ST_EFORMAT, pj("%s: 20000x20000 = 400000000 "
                    "pixels is over --max-pixels 89478485", f), NULL);
    /* zero-sized */
    sof[5] = sof[6] = 0;
    put(f, big, len, 0);
    expect_open_err(d, NULL, ST_EFORMAT, f, "zero-sized JPEG (20000x0)");
    /* 12-bit */
    sof[5] = 0, sof[6] = 30, sof[7] = 0, sof[8] = 40, sof[4] = 12;
    put(f, big, len, 0);
    expect_open_err(d, NULL, ST_EFORMAT, f, "12-bit JPEG");
    unlink(f);
    /* a .jpg that is HTML; a text file */
    f = pj("%s/x/c.jpg", d);
    put(f, "<html>", 6, 0);
    expect_open_err(d, NULL, ST_EFORMAT, pj("%s: not a JPEG or PNG file "
                    "(starts with 3c 68 74 6d)", f), NULL);
    unlink(f);
    f = pj("%s/x/notes.txt", d);
    put(f, "", 0, 0);
    expect_open_err(d, NULL, ST_EFORMAT, f, "not a JPEG or PNG file (empty)");
    unlink(f);
    /* unreadable: a dangling symlink, a FIFO */
    f = pj("%s/x/gone.jpg", d);
    assert_int_equal(symlink("/nonexistent.jpg", f), 0);
    expect_open_err(d, NULL, ST_ENOTFOUND, f, "cannot open");
    unlink(f);
    f = pj("%s/x/fifo.jpg", d);
    assert_int_equal(mkfifo(f, 0644), 0);
    expect_open_err(d, NULL, ST_EIO, f, "is a FIFO");
    unlink(f);
    /* a JPEG header far into the file (a 60 KiB APP segment first), and a
     * file cut short after open: "Premature end" at read time */
    uint8_t *pad = malloc(len + 3 * 60004);
    memcpy(pad, j, 2);
    size_t at = 2;
    for (int k = 0; k < 3; k++) {
        pad[at] = 0xff, pad[at + 1] = 0xe2, pad[at + 2] = 0xea,
        pad[at + 3] = 0x62; /* APP2 of 60002 bytes */
        memset(pad + at + 4, 0x11, 60000);
        at += 60004;
    }
    memcpy(pad + at, j + 2, len - 2);
    f = pj("%s/x/d.jpg", d);
    put(f, pad, at + len - 2, 0);
    source *s = open_ok(d, NULL);
    source_scratch *sc;
    st_error err = {0, ""};
    assert_int_equal(source_scratch_create(s, &sc, &err), 0);
    uint8_t px[40 * 30 * 3];
    int32_t lab;
    assert_int_equal(source_read(s, 0, 1, sc, px, &lab, NULL, &err), 0);
    truncate_to(f, (off_t)(at + len / 2));
    assert_int_equal(source_read(s, 0, 1, sc, px, &lab, NULL, &err),
                     ST_EDECODE);
    if (strstr(err.msg, pj("%s: Premature end of JPEG file", f)) == NULL)
        fail_msg("truncated: '%s'", err.msg);
    /* replaced by a PNG after open */
    st_clearerr(&err);
    flat_png(f, 40, 30, 1);
    assert_int_equal(source_read(s, 0, 1, sc, px, &lab, NULL, &err),
                     ST_EFORMAT);
    assert_non_null(strstr(err.msg, f));
    source_scratch_destroy(sc);
    source_close(s);
    free(pad);
    free(big);
    free(j);
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
        cmocka_unit_test(test_folder_mixed_jpeg_png),
        cmocka_unit_test(test_folder_exif),
        cmocka_unit_test(test_folder_max_side),
        cmocka_unit_test(test_folder_bad_jpeg),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
