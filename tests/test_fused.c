/* tests/test_fused.c — loader/fused: the producers' fused decode, crop,
 * resize and flip. A crop-aware JPEG decode equals a full decode followed
 * by transform_apply byte for byte on unscaled paths and stays within a
 * tolerance on DCT-scaled ones; the loader with a transform gives the same
 * batches for any thread count, batch size and resume; variable-size
 * splits without a size-making transform are refused; corrupt records
 * follow both policies; the steady state allocates nothing of ours; the
 * stats count resize time and skipped JPEG rows. Every fixture (JPEGs of
 * many sizes, samplings, progressive, smooth content plus noise; variable
 * and fixed packs) is made at test time.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#include "datasets/bytes.h"
#include "datasets/codec.h"
#include "datasets/fsutil.h"
#include "datasets/jpegio.h"
#include "datasets/manifest.h"
#include "datasets/pack.h"
#include "datasets/resample.h"
#include "datasets/shard.h"
#include "loader/fused.h"
#include "loader/loader.h"
#include "loader/transform.h"

#include "jpeg_fixture.h"
#include "loader_fixture.h"
#include "pack_fixture.h"

/* ---- the counting allocator (not under the sanitizers, which interpose
 * malloc themselves; test_no_alloc is skipped there) ------------------------ */

static atomic_int g_armed;
static atomic_long g_allocs;

#if !UNDER_SANITIZER
extern void *__libc_malloc(size_t n);
extern void *__libc_calloc(size_t n, size_t size);
extern void *__libc_realloc(void *p, size_t n);
extern void *__libc_memalign(size_t align, size_t n);

static void count(void)
{
    if (atomic_load_explicit(&g_armed, memory_order_relaxed))
        atomic_fetch_add_explicit(&g_allocs, 1, memory_order_relaxed);
}

void *malloc(size_t n) { count(); return __libc_malloc(n); }
void *calloc(size_t n, size_t s) { count(); return __libc_calloc(n, s); }
void *realloc(void *p, size_t n) { count(); return __libc_realloc(p, n); }
void *aligned_alloc(size_t a, size_t n) { count(); return __libc_memalign(a, n); }
void *memalign(size_t a, size_t n) { count(); return __libc_memalign(a, n); }

int posix_memalign(void **out, size_t align, size_t n)
{
    count();
    void *p = __libc_memalign(align, n);
    if (p == NULL) return ENOMEM;
    *out = p;
    return 0;
}
#endif

static void arm(void)
{
    atomic_store(&g_allocs, 0);
    atomic_store(&g_armed, 1);
}

static long disarm(void)
{
    atomic_store(&g_armed, 0);
    return atomic_load(&g_allocs);
}

/* ---- images ----------------------------------------------------------------- */

/* jfx_pattern's smooth picture plus uniform noise in [-8, 8]: (h, w, 3). */
static void picture(uint8_t *px, uint32_t w, uint32_t h, uint32_t seed)
{
    jfx_pattern(px, w, h, 3, seed);
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < (size_t)w * h * 3; i++) {
        x = x * 1103515245u + 12345u;
        int v = px[i] + (int)((x >> 16) % 17) - 8;
        px[i] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
    }
}

typedef struct img_case {
    uint32_t w, h;
    int hs, vs;          /* luma sampling: 2 2 = 4:2:0, 1 1 = 4:4:4 */
    int progressive;
    int channels;        /* decoded channels (1: luma from colour) */
} img_case;

/* A malloc'd JPEG of c's picture (seed picks the content). */
static uint8_t *make_jpeg(const img_case *c, uint32_t seed, size_t *len)
{
    uint8_t *px = malloc((size_t)c->w * c->h * 3);
    assert_non_null(px);
    picture(px, c->w, c->h, seed);
    jfx_opt o = {.w = c->w, .h = c->h, .cs = JPEGIO_CS_YCBCR, .hs = c->hs,
                 .vs = c->vs, .progressive = c->progressive, .quality = 90};
    uint8_t *j = jfx_encode(&o, px, len);
    free(px);
    return j;
}

static void desc(const img_case *c, char *buf, size_t n)
{
    snprintf(buf, n, "%ux%u %s%s C=%d", c->w, c->h,
             c->hs == 2 && c->vs == 2 ? "4:2:0" : c->hs == 2 ? "4:2:2" : "4:4:4",
             c->progressive ? " progressive" : "", c->channels);
}

/* ---- fused_sample against a full decode + transform_apply ------------------ */

typedef struct cmp_result {
    long cases, equal;
    long by_scale[9];     /* cases at DCT scale 1, 2, 4, 8 */
    double worst_mae;     /* over the scaled cases */
    int worst_max;
    int printed;
} cmp_result;

/* For sample ids 0..nid-1 of epochs 0 and 1: the fused output and the
 * reference. Unscaled cases (scale 1) must be equal (counted; the first
 * few differences printed in full); scaled ones (scale > 1, when
 * want_scaled) must have a mean absolute difference <= mae_tol and a
 * largest one <= max_tol. Cases whose scale is not wanted are left out. */
static void compare(const img_case *ic, const char *tf, int want_scaled,
                    uint32_t nid, double mae_tol, int max_tol, cmp_result *res)
{
    st_error err = {0};
    transform_spec t;
    if (transform_parse(tf, &t, &err)) fail_msg("%s", err.msg);
    size_t len;
    uint8_t *jpg = make_jpeg(ic, ic->w * 7 + ic->h, &len);
    int C = ic->channels;
    size_t full_bytes = (size_t)ic->w * ic->h * C;
    uint8_t *full = malloc(full_bytes);
    jpegio_dec *d = NULL;
    uint32_t fw, fh;
    assert_int_equal(jpegio_dec_create(&d, &err), 0);
    if (jpegio_decode(d, jpg, len, 1, C, full, (size_t)ic->w * C, full_bytes,
                      &fw, &fh, &err))
        fail_msg("decode: %s", err.msg);
    fused_config fc = {.t = t, .codec = CODEC_JPEG, .channels = (uint32_t)C,
                       .max_w = ic->w, .max_h = ic->h, .seed = 1234};
    transform_out_size(&t, ic->w, ic->h, &fc.out_w, &fc.out_h);
    size_t ob = (size_t)fc.out_w * fc.out_h * C;
    uint8_t *got = malloc(ob), *ref = malloc(ob);
    fused *f = NULL;
    resample *r = NULL;
    if (fused_create(&fc, &f, &err) ||
        resample_create(ic->w, ic->h, fc.out_w, fc.out_h, C, &r, &err))
        fail_msg("create: %s", err.msg);
    char what[64];
    desc(ic, what, sizeof what);
    for (uint64_t e = 0; e < 2; e++)
        for (uint64_t id = 0; id < nid; id++) {
            transform_box bx;
            transform_params(&t, fc.seed, e, id, ic->w, ic->h, &bx);
            int s = transform_dct_scale(bx.x1 - bx.x0, bx.y1 - bx.y0,
                                        fc.out_w, fc.out_h);
            if ((s > 1) != (want_scaled != 0)) continue;
            fused_stats st = {0};
            if (fused_sample(f, NULL, jpg, len, ic->w, ic->h, e, id, got, &st,
                             &err))
                fail_msg("%s, '%s', id %llu: %s", what, tf,
                         (unsigned long long)id, err.msg);
            if (transform_apply(&t, &bx, r, C, full, ic->w, ic->h,
                                (size_t)ic->w * C, ref, &err))
                fail_msg("apply: %s", err.msg);
            res->cases++;
            res->by_scale[s]++;
            long ndiff = 0;
            int mx = 0;
            double sum = 0;
            for (size_t i = 0; i < ob; i++) {
                int dv = abs((int)got[i] - (int)ref[i]);
                ndiff += dv != 0;
                mx = dv > mx ? dv : mx;
                sum += dv;
            }
            double mae = sum / (double)ob;
            if (s == 1) {
                res->equal += ndiff == 0;
                if (ndiff && res->printed++ < 6)
                    print_message("DIFFER: %s, '%s', epoch %llu id %llu: box "
                                  "[%.17g, %.17g) x [%.17g, %.17g) flip %d -> "
                                  "%ux%u: %ld of %zu bytes differ, max %d\n",
                                  what, tf, (unsigned long long)e,
                                  (unsigned long long)id, bx.x0, bx.x1, bx.y0,
                                  bx.y1, bx.flip, fc.out_w, fc.out_h, ndiff,
                                  ob, mx);
                continue;
            }
            res->worst_mae = mae > res->worst_mae ? mae : res->worst_mae;
            res->worst_max = mx > res->worst_max ? mx : res->worst_max;
            if (mae > mae_tol || mx > max_tol)
                fail_msg("%s, '%s', epoch %llu id %llu, scale %d: mean "
                         "absolute difference %.3f (max %d) over %.1f (%d)",
                         what, tf, (unsigned long long)e,
                         (unsigned long long)id, s, mae, mx, mae_tol, max_tol);
        }
    fused_destroy(f);
    resample_destroy(r);
    jpegio_dec_destroy(d);
    free(got);
    free(ref);
    free(full);
    free(jpg);
}

/* 1. Unscaled paths: the crop-aware decode of the resampler's footprint,
 * resampled with resample_run_at, gives the bytes of a whole decode
 * followed by transform_apply, for RRC (crop first), center-crop and
 * resize (the filter reads past the box), with and without flip, both
 * filters, odd sizes, 4:2:0 / 4:2:2 / 4:4:4, progressive, 1 and 3
 * channels, upscaling included. */
static void test_unscaled_equal(void **state)
{
    (void)state;
    static const img_case imgs[] = {
        {97, 75, 2, 2, 0, 3}, {64, 81, 1, 1, 0, 3}, {123, 57, 2, 2, 1, 3},
        {33, 130, 2, 1, 0, 3}, {81, 97, 1, 1, 1, 3}, {101, 67, 2, 2, 0, 1},
    };
    static const char *const tfs[] = {
        "random-resized-crop 40", "random-resized-crop 40 flip",
        "random-resized-crop 24 flip interp=area",
        "random-resized-crop 96 flip", "center-crop 40",
        "center-crop 40 flip interp=area", "resize 50x30 flip",
        "resize 50x30 interp=area", "resize 150x110 flip",
    };
    cmp_result res = {0};
    for (size_t i = 0; i < sizeof imgs / sizeof imgs[0]; i++)
        for (size_t k = 0; k < sizeof tfs / sizeof tfs[0]; k++)
            compare(&imgs[i], tfs[k], 0, 40, 0, 0, &res);
    print_message("unscaled: %ld of %ld cases byte-equal\n", res.equal,
                  res.cases);
    assert_true(res.cases > 1000);
    assert_int_equal(res.equal, res.cases);
}

/* 2. DCT-scaled paths: big images, small outputs. libjpeg's scaled IDCT
 * (an 8 / s point IDCT of the block's low frequencies, roughly an s x s
 * box prefilter) stands in for part of the resampler's own low-pass, so
 * the bytes differ; the content (+-8 noise on waves of period ~30 px,
 * i.e. near the output's Nyquist rate at 1/8) makes that difference as
 * large as natural images get.
 * - bilinear: the triangle filter still spans >= 2 scaled pixels a side
 *   and hides the prefilter: measured worst mean 1.5 (max 13) over
 *   scales 2, 4, 8; bound 2, the bound against PIL.
 * - area: the box filter at a ratio near 1 (box / s just above the
 *   output) mixes one or two whole DCT blocks where a full decode
 *   averages exactly its window: it measured a worst mean of 6.0 (max 44,
 *   scale 8: 517x389 resized to 64x48) until loader/fused.c gave area two
 *   DCT steps less (box / s >= 4 x output); bound 2, as bilinear. */
static void test_scaled_close(void **state)
{
    (void)state;
    static const img_case imgs[] = {
        {640, 480, 2, 2, 0, 3}, {517, 389, 1, 1, 1, 3}, {355, 611, 2, 2, 1, 3},
    };
    static const struct { const char *tf; double mae; int max; } tfs[] = {
        {"random-resized-crop 32 flip", 2, 24}, {"center-crop 56", 2, 24},
        {"resize 40x70", 2, 24}, {"random-resized-crop 48 interp=area", 2, 24},
        {"resize 64x48 flip interp=area", 2, 24},
    };
    cmp_result res = {0};
    for (size_t i = 0; i < sizeof imgs / sizeof imgs[0]; i++)
        for (size_t k = 0; k < sizeof tfs / sizeof tfs[0]; k++)
            compare(&imgs[i], tfs[k].tf, 1, 16, tfs[k].mae, tfs[k].max, &res);
    print_message("scaled: %ld cases (scale 2: %ld, 4: %ld, 8: %ld), worst "
                  "mean absolute difference %.3f, worst max %d\n", res.cases,
                  res.by_scale[2], res.by_scale[4], res.by_scale[8],
                  res.worst_mae, res.worst_max);
    assert_true(res.by_scale[2] > 0);
    assert_true(res.by_scale[4] > 0);
    assert_true(res.by_scale[8] > 0);
}

/* ---- packs -------------------------------------------------------------------- */

enum { NV = 72, VMAX_W = 300, VMAX_H = 240 };

static char g_dir[256];

/* Sample i of the variable packs: its size, sampling, progressive. */
static img_case v_case(uint64_t i)
{
    img_case c = {40 + (uint32_t)(i * 37 % 90), 36 + (uint32_t)(i * 53 % 80),
                  i % 3 ? 2 : 1, i % 3 ? 2 : 1, i % 4 == 1, 3};
    if (i % 12 == 5) c.w = VMAX_W, c.h = VMAX_H - (uint32_t)(i % 7);
    if (i == 0) c.w = VMAX_W, c.h = VMAX_H;
    return c;
}

/* A variable-size pack of NV train samples (label i % 10) in one shard:
 * JPEG records (jfx_encode) or zstd pixels of the same pictures. */
static void write_var(const char *out, uint32_t codec)
{
    static const char *const names[NCLASSES] = {"0", "1", "2", "3", "4",
                                                "5", "6", "7", "8", "9"};
    pack_writer_config wc = {
        .codec = codec, .level = codec == CODEC_ZSTD ? 3 : 0, .height = VMAX_H,
        .width = VMAX_W, .channels = 3, .variable = 1, .shard_bytes = 64 << 20,
        .nclasses = NCLASSES, .classes = names, .force = 1};
    codec_shape shape = {codec, VMAX_H, VMAX_W, 3};
    codec_enc *enc = NULL;
    pack_writer *w = NULL;
    st_error err = {0};
    uint8_t *px = malloc((size_t)VMAX_W * VMAX_H * 3);
    if ((codec == CODEC_ZSTD && codec_enc_create(&shape, 3, NULL, &enc, &err)) ||
        pack_writer_open(out, &wc, &w, &err) ||
        pack_writer_begin_split(w, "train", &err))
        fail_msg("writer: %s", err.msg);
    for (uint64_t i = 0; i < NV; i++) {
        img_case c = v_case(i);
        const uint8_t *rec;
        size_t len;
        uint8_t *jpg = NULL;
        if (codec == CODEC_JPEG) {
            rec = jpg = make_jpeg(&c, (uint32_t)i, &len);
        } else {
            picture(px, c.w, c.h, (uint32_t)i);
            if (codec_encode(enc, px, c.h, c.w, &rec, &len, &err))
                fail_msg("encode: %s", err.msg);
        }
        if (pack_writer_add(w, rec, len, sample_label(i), c.h, c.w, &err))
            fail_msg("add %llu: %s", (unsigned long long)i, err.msg);
        free(jpg);
    }
    if (pack_writer_end_split(w, &err) || pack_writer_commit(w, &err))
        fail_msg("commit: %s", err.msg);
    codec_enc_destroy(enc);
    free(px);
}

static void path_of(char *out, const char *name)
{
    snprintf(out, 512, "%s/%s", g_dir, name);
}

static int setup(void **state)
{
    (void)state;
    const char *base = getenv("TMPDIR");
    snprintf(g_dir, sizeof g_dir, "%s/st-fused-XXXXXX",
             base && *base ? base : "/tmp");
    if (mkdtemp(g_dir) == NULL) return -1;
    char p[512];
    path_of(p, "jpeg");
    write_var(p, CODEC_JPEG);
    path_of(p, "zstd");
    write_var(p, CODEC_ZSTD);
    spec fx = {CODEC_RAW, 12, 10, 3, 50, 0, 1 << 20, NONE};
    path_of(p, "fixed");
    st_error err = {0};
    if (write_pack(p, &fx, &err)) {
        fprintf(stderr, "fixture: %s\n", err.msg);
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    fs_rmtree(g_dir, NULL);
    return 0;
}

/* ---- loader runs --------------------------------------------------------------- */

enum { MAXB = 64 };

/* What a run delivered: a hash per batch (pixels, labels, ids, in order)
 * and per (epoch, id) of the sample's pixels. */
typedef struct trace {
    uint64_t batch[2][MAXB];
    uint32_t nbatch[2];
    uint64_t sample[2][NV];
    uint32_t seen[2][NV];
    uint64_t first_epoch, first_batch;
    loader_stats stats;
} trace;

static void cfg_of(loader_config *c, const char *tf, transform_spec *t,
                   uint32_t threads, uint32_t batch)
{
    loader_config_default(c);
    c->batch_size = batch;
    c->threads = threads;
    c->slots = 3;
    c->seed = 99;
    c->epochs = 2;
    c->timeout_ms = 60000;
    st_error err = {0};
    if (tf && transform_parse(tf, t, &err)) fail_msg("%s", err.msg);
    c->transform = tf ? t : NULL;
}

/* Runs cfg on pack name from its start position until the end, or until
 * stop_after batches (then *state gets the position). @return the
 * first non-batch return code (ST_EEND at the end). */
static int run(const char *name, const loader_config *cfg, trace *tr,
               uint32_t stop_after, loader_state *state, st_error *err)
{
    char dir[512];
    path_of(dir, name);
    memset(tr, 0, sizeof *tr);
    loader *l = NULL;
    ST_TRY(loader_open(dir, cfg, &l, err));
    int rc = 0;
    uint32_t got = 0;
    for (uint64_t e = cfg->start_epoch; e < 2 && rc == 0; e++) {
        loader_batch b;
        while ((rc = loader_next_batch(l, &b, err)) == 0) {
            assert_int_equal(b.epoch, e);
            if (got++ == 0) tr->first_epoch = e, tr->first_batch = b.index;
            size_t ss = (size_t)b.height * b.width * b.channels;
            XXH3_state_t *x = XXH3_createState();
            XXH3_64bits_reset(x);
            XXH3_64bits_update(x, b.pixels, ss * b.n);
            XXH3_64bits_update(x, b.labels, b.n * sizeof *b.labels);
            XXH3_64bits_update(x, b.ids, b.n * sizeof *b.ids);
            assert_true(b.index < MAXB);
            tr->batch[e][b.index] = XXH3_64bits_digest(x);
            XXH3_freeState(x);
            tr->nbatch[e] = (uint32_t)b.index + 1;
            for (uint32_t i = 0; i < b.n; i++) {
                assert_true(b.ids[i] < NV);
                assert_int_equal(b.labels[i], sample_label(b.ids[i]));
                tr->sample[e][b.ids[i]] = XXH3_64bits(b.pixels + i * ss, ss);
                tr->seen[e][b.ids[i]]++;
            }
            assert_int_equal(loader_release(l, &b, err), 0);
            if (stop_after && got == stop_after) {
                *state = loader_get_state(l);
                loader_get_stats(l, &tr->stats);
                loader_close(l);
                return 0;
            }
        }
        if (rc == ST_EEND) rc = e + 1 < 2 ? 0 : ST_EEND;
    }
    loader_get_stats(l, &tr->stats);
    loader_close(l);
    return rc;
}

/* 3. One thread and four give the same batches over two epochs; a resume
 * from mid-epoch continues with exactly the uninterrupted run's batches;
 * the transform differs between epochs; the same (seed, epoch, id) gives
 * the same pixels whatever the batch size. */
static void test_determinism(void **state)
{
    (void)state;
    static trace a, b, c, r;
    loader_config cfg;
    transform_spec t;
    st_error err = {0};
    loader_state st;
    cfg_of(&cfg, "random-resized-crop 32 flip", &t, 1, 8);
    if (run("jpeg", &cfg, &a, 0, NULL, &err) != ST_EEND) fail_msg("%s", err.msg);
    cfg.threads = 4;
    if (run("jpeg", &cfg, &b, 0, NULL, &err) != ST_EEND) fail_msg("%s", err.msg);
    assert_int_equal(a.nbatch[0], NV / 8);
    assert_int_equal(a.nbatch[1], NV / 8);
    for (int e = 0; e < 2; e++) {
        assert_int_equal(a.nbatch[e], b.nbatch[e]);
        assert_memory_equal(a.batch[e], b.batch[e], sizeof a.batch[e]);
    }
    /* stop after batch 4 of epoch 0, resume there */
    assert_int_equal(run("jpeg", &cfg, &c, 5, &st, &err), 0);
    assert_int_equal(st.epoch, 0);
    assert_int_equal(st.batch, 5);
    loader_config_resume(&cfg, &st);
    cfg.threads = 2;
    if (run("jpeg", &cfg, &r, 0, NULL, &err) != ST_EEND) fail_msg("%s", err.msg);
    assert_int_equal(r.first_epoch, 0);
    assert_int_equal(r.first_batch, 5);
    for (uint32_t k = 5; k < a.nbatch[0]; k++)
        assert_true(r.batch[0][k] == a.batch[0][k]);
    assert_memory_equal(r.batch[1], a.batch[1], sizeof a.batch[1]);
    /* per epoch: every id once, different pixels in epoch 1 */
    int differ = 0;
    for (uint64_t id = 0; id < NV; id++) {
        assert_int_equal(a.seen[0][id], 1);
        assert_int_equal(a.seen[1][id], 1);
        differ += a.sample[0][id] != a.sample[1][id];
    }
    print_message("%d of %d samples differ between epochs 0 and 1\n", differ,
                  NV);
    assert_int_equal(differ, NV);
    /* batch size 5 (a partial last batch): the same pixels per id */
    cfg_of(&cfg, "random-resized-crop 32 flip", &t, 3, 5);
    if (run("jpeg", &cfg, &c, 0, NULL, &err) != ST_EEND) fail_msg("%s", err.msg);
    assert_memory_equal(c.sample, a.sample, sizeof a.sample);
}

/* ---- refusals and fixed-size transforms --------------------------------------- */

static void expect_refused(const char *tf)
{
    loader_config cfg;
    transform_spec t;
    cfg_of(&cfg, tf, &t, 1, 8);
    char dir[512];
    path_of(dir, "jpeg");
    loader *l = NULL;
    st_error err = {0};
    int rc = loader_open(dir, &cfg, &l, &err);
    loader_close(l);
    assert_int_equal(rc, ST_EINVAL);
    print_message("'%s': %s\n", tf ? tf : "(no transform)", err.msg);
    if (strstr(err.msg, "split 'train'") == NULL ||
        strstr(err.msg, "random-resized-crop S") == NULL ||
        strstr(err.msg, "center-crop S") == NULL ||
        strstr(err.msg, tf ? tf : "no transform") == NULL)
        fail_msg("message: %s", err.msg);
}

/* 4. A variable-size split without a size-making transform is refused; a
 * fixed-size pack takes pad-crop (the pixels of transform_apply on the
 * known samples) and none + flip (the plain batch, mirrored where the
 * sample's flip says so). */
static void test_refusals_and_fixed(void **state)
{
    (void)state;
    expect_refused(NULL);
    expect_refused("none");
    expect_refused("pad-crop 4");
    loader_config cp, cn, c0;
    transform_spec tp, tn, t0;
    cfg_of(&cp, "pad-crop 4 flip", &tp, 2, 7);
    cfg_of(&cn, "none flip", &tn, 2, 7);
    cfg_of(&c0, NULL, &t0, 2, 7);
    char dir[512];
    path_of(dir, "fixed");
    loader *lp = NULL, *ln = NULL, *l0 = NULL;
    st_error err = {0};
    if (loader_open(dir, &cp, &lp, &err) || loader_open(dir, &cn, &ln, &err) ||
        loader_open(dir, &c0, &l0, &err))
        fail_msg("open: %s", err.msg);
    enum { H = 12, W = 10, C = 3, SS = H * W * C };
    uint8_t src[SS], ref[SS];
    int flips = 0, changed = 0, n = 0;
    loader_batch bp, bn, b0;
    while (loader_next_batch(l0, &b0, &err) == 0) {
        assert_int_equal(loader_next_batch(lp, &bp, &err), 0);
        assert_int_equal(loader_next_batch(ln, &bn, &err), 0);
        assert_int_equal(bp.height, H);
        assert_int_equal(bp.width, W);
        assert_int_equal(bp.n, b0.n);
        assert_memory_equal(bp.ids, b0.ids, b0.n * sizeof *b0.ids);
        assert_memory_equal(bn.ids, b0.ids, b0.n * sizeof *b0.ids);
        for (uint32_t i = 0; i < b0.n; i++, n++) {
            const uint8_t *plain = b0.pixels + (size_t)i * SS;
            sample_pixels(b0.ids[i], src, SS);
            assert_memory_equal(plain, src, SS);
            transform_box bx;
            transform_params(&tn, 99, b0.epoch, b0.ids[i], W, H, &bx);
            flips += bx.flip;
            for (uint32_t y = 0; y < H; y++)
                for (uint32_t x = 0; x < W; x++)
                    memcpy(ref + (y * W + x) * C,
                           plain + (y * W + (bx.flip ? W - 1 - x : x)) * C, C);
            assert_memory_equal(bn.pixels + (size_t)i * SS, ref, SS);
            transform_params(&tp, 99, b0.epoch, b0.ids[i], W, H, &bx);
            assert_int_equal(transform_apply(&tp, &bx, NULL, C, src, W, H,
                                             W * C, ref, &err), 0);
            assert_memory_equal(bp.pixels + (size_t)i * SS, ref, SS);
            changed += memcmp(ref, src, SS) != 0;
        }
        assert_int_equal(loader_release(l0, &b0, &err), 0);
        assert_int_equal(loader_release(lp, &bp, &err), 0);
        assert_int_equal(loader_release(ln, &bn, &err), 0);
    }
    print_message("fixed pack: %d samples, %d flipped, %d changed by "
                  "pad-crop\n", n, flips, changed);
    assert_int_equal(n, 50);
    assert_true(flips > 10 && flips < 40);
    assert_true(changed > 40);
    loader_close(lp);
    loader_close(ln);
    loader_close(l0);
}

/* ---- corrupt records -------------------------------------------------------------- */

/* 5. One damaged JPEG record in a variable pack: policy fail names split,
 * shard and record; policy skip completes the epoch with it replaced. */
static void test_corrupt_policies(void **state)
{
    (void)state;
    enum { BAD = 13 };
    char dir[512];
    path_of(dir, "bad");
    write_var(dir, CODEC_JPEG);
    /* the EOI goes 6 bytes into the first scan, so every crop's decode
     * meets it: rows above a crop are still entropy-decoded by
     * jpeg_skip_scanlines, rows below it are not */
    pkfx_corrupt_jpeg(dir, "train-00000.shard", BAD, 6);
    loader_config cfg;
    transform_spec t;
    static trace tr;
    st_error err = {0};
    cfg_of(&cfg, "random-resized-crop 32 flip", &t, 2, 8);
    int rc = run("bad", &cfg, &tr, 0, NULL, &err);
    print_message("policy fail: %s\n", err.msg);
    assert_int_equal(rc, ST_EDECODE);
    char want[64];
    snprintf(want, sizeof want, "record %d (sample %d)", BAD, BAD);
    if (strstr(err.msg, "split 'train', shard 0 (") == NULL ||
        strstr(err.msg, "train-00000.shard") == NULL ||
        strstr(err.msg, want) == NULL)
        fail_msg("message: %s", err.msg);
    cfg.on_corrupt = LOADER_CORRUPT_SKIP;
    cfg.epochs = 1;
    rc = run("bad", &cfg, &tr, 0, NULL, &err);
    assert_true(rc == ST_EEND || rc == 0);
    assert_int_equal(tr.stats.skipped, 1);
    assert_int_equal(tr.stats.samples, NV);
    assert_int_equal(tr.seen[0][BAD], 0);
    int twice = 0;
    for (uint64_t id = 0; id < NV; id++) {
        assert_true(tr.seen[0][id] <= 2);
        twice += tr.seen[0][id] == 2;
    }
    assert_int_equal(twice, 1);
}

/* ---- allocation and stats -------------------------------------------------------- */

/* Allocation calls made by fused_sample over ids [0, n) of pack name's
 * records, decoded in a single thread (epoch 1, after a warm-up pass;
 * epoch 2, other crops, must stay within the same per-image bound). */
static long fused_allocs(const char *name, uint32_t codec, uint64_t n)
{
    char dir[512];
    path_of(dir, name);
    pack *p = NULL;
    st_error err = {0};
    if (pack_open(dir, &p, &err)) fail_msg("%s", err.msg);
    transform_spec t;
    assert_int_equal(transform_parse("random-resized-crop 32 flip", &t, &err), 0);
    fused_config fc;
    fused_config_of(pack_manifest(p), &t, 5, &fc);
    assert_int_equal(fc.codec, codec);
    codec_shape shape = {codec, VMAX_H, VMAX_W, 3};
    codec_dec *dec = NULL;
    fused *f = NULL;
    if (codec_dec_create(&shape, pack_ddict(p), &dec, &err) ||
        fused_create(&fc, &f, &err))
        fail_msg("%s", err.msg);
    const shard *s = pack_shard(p, 0, 0);
    size_t cap = pack_max_record(p);
    uint8_t *rec = malloc(cap), *dst = malloc(32 * 32 * 3);
    fused_stats st = {0};
    long total[3] = {0};
    for (uint64_t pass = 0; pass < 3; pass++)  /* pass 0 warms up */
        for (uint64_t id = 0; id < n; id++) {
            const shard_entry *e = shard_entry_at(s, id);
            if (shard_read_record(s, id, rec, cap, &err)) fail_msg("%s", err.msg);
            arm();
            int rc = fused_sample(f, dec, rec, e->length, e->width, e->height,
                                  pass, id, dst, &st, &err);
            long k = disarm();
            if (rc) fail_msg("%s", err.msg);
            total[pass] += k;
        }
    /* libjpeg's count depends on the scale and crop, not on the rows */
    assert_true(total[1] <= 12 * (long)n && total[2] <= 12 * (long)n);
    fused_destroy(f);
    codec_dec_destroy(dec);
    free(rec);
    free(dst);
    pack_close(p);
    return total[1];
}

/* Allocation calls of a whole loader run (open, epochs, close). */
static long loader_allocs(const char *name, uint64_t epochs)
{
    loader_config cfg;
    transform_spec t;
    cfg_of(&cfg, "random-resized-crop 32 flip", &t, 2, 8);
    cfg.epochs = epochs;
    char dir[512];
    path_of(dir, name);
    st_error err = {0};
    loader *l = NULL;
    arm();
    int rc = loader_open(dir, &cfg, &l, &err);
    loader_batch b;
    while (rc == 0) {
        while ((rc = loader_next_batch(l, &b, &err)) == 0)
            rc = loader_release(l, &b, &err);
        if (rc == ST_EEND && --epochs > 0) rc = 0;
    }
    loader_close(l);
    long k = disarm();
    if (rc != ST_EEND) fail_msg("%s", err.msg);
    return k;
}

/* 6. Nothing of ours is allocated per sample: fused_sample on zstd
 * records allocates nothing, and a whole loader run on the zstd pack
 * makes as many calls for three epochs as for one. On JPEG records only
 * libjpeg allocates: its per-image pools (jpeg_start_decompress's
 * alloc_small / alloc_large / alloc_sarray, released by jpeg_abort) take
 * a fixed handful of malloc calls per image, printed here (466 for the
 * 72 images: 6.5 an image, more for progressive ones, whose coefficient
 * buffer is a pool of its own; 476 for the next epoch's crops: the
 * count depends on the DCT scale and the crop, never on the rows), at
 * most 12 an image. */
static void test_no_alloc(void **state)
{
    (void)state;
    if (UNDER_SANITIZER) {
        print_message("skipped: the sanitizer interposes malloc itself\n");
        skip();
        return;
    }
    long z = fused_allocs("zstd", CODEC_ZSTD, NV);
    long j = fused_allocs("jpeg", CODEC_JPEG, NV);
    print_message("fused_sample: %ld allocation calls for %d zstd samples, "
                  "%ld for %d JPEG samples (libjpeg's pools: %.1f an image)\n",
                  z, NV, j, NV, (double)j / NV);
    assert_int_equal(z, 0);
    assert_true(j > 0); /* the counter works */
    long one = loader_allocs("zstd", 1), three = loader_allocs("zstd", 3);
    print_message("loader on the zstd pack: %ld allocation calls with 1 "
                  "epoch, %ld with 3\n", one, three);
    assert_true(one > 0);
    assert_int_equal(one, three);
}

/* 7. resize time and skipped JPEG rows in the loader's stats. */
static void test_stats(void **state)
{
    (void)state;
    loader_config cfg;
    transform_spec t;
    static trace tr;
    st_error err = {0};
    cfg_of(&cfg, "random-resized-crop 32 flip", &t, 2, 8);
    cfg.epochs = 1;
    assert_int_equal(run("jpeg", &cfg, &tr, 0, NULL, &err), ST_EEND);
    print_message("jpeg: resize %.6f s, decode %.6f s, rows %llu, skipped "
                  "%llu\n", tr.stats.resize_s, tr.stats.decode_s,
                  (unsigned long long)tr.stats.jpeg_rows,
                  (unsigned long long)tr.stats.jpeg_rows_skipped);
    assert_true(tr.stats.resize_s > 0);
    assert_true(tr.stats.decode_s > 0);
    assert_true(tr.stats.jpeg_rows_skipped > 0);
    assert_true(tr.stats.jpeg_rows > tr.stats.jpeg_rows_skipped);
    assert_int_equal(run("zstd", &cfg, &tr, 0, NULL, &err), ST_EEND);
    assert_true(tr.stats.resize_s > 0);
    assert_int_equal(tr.stats.jpeg_rows, 0);
    assert_int_equal(tr.stats.jpeg_rows_skipped, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unscaled_equal),
        cmocka_unit_test(test_scaled_close),
        cmocka_unit_test(test_determinism),
        cmocka_unit_test(test_refusals_and_fixed),
        cmocka_unit_test(test_corrupt_policies),
        cmocka_unit_test(test_no_alloc),
        cmocka_unit_test(test_stats),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
