/* tests/test_cpu_pool.c — the CPU backend's worker threads (gpu/cpu_pool.h)
 * and what they promise the ops that run on them:
 * - cpu_pool_for covers [0, n) exactly once, in at most `threads` blocks
 *   of at least `grain`, for many sizes and thread counts, job after job;
 * - every threaded CPU op (lowering and its adjoint, pooling, batch norm,
 *   activations, axpby, the optimizer updates) gives the same bits at 1,
 *   2 and 3 threads, on shapes large enough to be split, which catches a
 *   block computed at the wrong offset, twice or not at all (breaking
 *   maxpool_bwd's split once made it fail). Batch norm adds its double
 *   sums in fixed row chunks, so their order does not depend on the split
 *   either; an order that did would seldom show after the rounding to
 *   float, so this test cannot prove that part.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "gpu/cpu_pool.h"
#include "gpu/device.h"
#include "device_fixture.h"

/* ---- the pool ------------------------------------------------------------ */

typedef struct cover {
    unsigned char *hits;  /* (n) calls that covered each index (disjoint
                             ranges: each byte has one writer) */
    size_t grain, n;
    int blocks;           /* atomic: blocks run */
    int small;            /* atomic: a block below the grain was run */
} cover;

static void count_range(void *ctx, size_t lo, size_t hi)
{
    cover *c = ctx;
    for (size_t i = lo; i < hi; i++) c->hits[i]++;
    __atomic_add_fetch(&c->blocks, 1, __ATOMIC_SEQ_CST);
    if (hi - lo < c->grain && c->n >= 2 * c->grain)
        __atomic_store_n(&c->small, 1, __ATOMIC_SEQ_CST);
}

static void test_pool_covers_once(void **state)
{
    (void)state;
    static const size_t sizes[] = {1, 2, 3, 7, 64, 100, 1000, 4097};
    static const size_t grains[] = {1, 3, 64, 1000};
    for (int threads = 1; threads <= 4; threads++) {
        cpu_pool *p = NULL;
        st_error err = {0};
        assert_int_equal(cpu_pool_create(threads, &p, &err), 0);
        assert_int_equal(cpu_pool_threads(p), threads);
        for (int rep = 0; rep < 50; rep++)
            for (size_t si = 0; si < sizeof sizes / sizeof *sizes; si++)
                for (size_t gi = 0; gi < sizeof grains / sizeof *grains; gi++) {
                    size_t n = sizes[si];
                    cover c = {.grain = grains[gi], .n = n};
                    c.hits = calloc(n, 1);
                    assert_non_null(c.hits);
                    assert_int_equal(cpu_pool_for(p, n, c.grain, count_range,
                                                  &c, &err), 0);
                    for (size_t i = 0; i < n; i++)
                        if (c.hits[i] != 1)
                            fail_msg("threads %d n %zu grain %zu: index %zu "
                                     "run %d times", threads, n, c.grain, i,
                                     c.hits[i]);
                    assert_true(c.blocks >= 1 && c.blocks <= threads);
                    if (n < 2 * c.grain) assert_int_equal(c.blocks, 1);
                    if (threads > 1 && n >= 2 * c.grain)
                        assert_true(c.blocks > 1); /* it did split */
                    assert_int_equal(c.small, 0);
                    free(c.hits);
                }
        cpu_pool_destroy(p);
    }
    cpu_pool_destroy(NULL);
    cpu_pool *p = NULL;
    st_error err = {0};
    assert_int_equal(cpu_pool_create(0, &p, &err), ST_EINVAL);
    assert_null(p);
}

/* ---- the ops: same bits at any thread count ------------------------------ */

static uint64_t rng = 4242;

static void fill(float *p, size_t n, float lo, float hi)
{
    for (size_t i = 0; i < n; i++) {
        rng = rng * 6364136223846793005ull + 1442695040888963407ull;
        float u = (float)((rng >> 40) & 0xFFFFFF) / 16777216.0f;
        p[i] = lo + (hi - lo) * u;
    }
}

/* Shapes: 40 images of 20x20x24 (9,600 rows of 24 channels for batch
 * norm: more than one row chunk and one block per thread), a 3x3 conv
 * with stride 1 and padding 1, a 3x3 max pool with stride 2 (overlapping
 * windows). */
enum { N = 40, H = 20, W = 20, C = 24 };
#define NX ((size_t)N * H * W * C)

typedef struct outputs {
    float *col, *dxc, *mp, *dmp, *ap, *dap, *bn, *bnev, *bndx, *stats;
    float *act, *dact, *ax, *w, *v, *m;
    int32_t *idx;
} outputs;

static float *falloc(size_t n)
{
    float *p = calloc(n, sizeof *p);
    assert_non_null(p);
    return p;
}

static void run_ops(int threads, const float *x, const float *dy, outputs *o)
{
    gpu_device *d = cpu_dev_threads(threads);
    gpu_conv_geom g = {.n = N, .h = H, .w = W, .c = C, .kh = 3, .kw = 3,
                       .sh = 1, .sw = 1, .ph = 1, .pw = 1, .oh = H, .ow = W};
    size_t ncol = NX * 9;
    o->col = falloc(ncol);
    o->dxc = falloc(NX);
    assert_int_equal(gpu_im2col(d, &g, x, o->col), 0);
    memcpy(o->dxc, dy, NX * sizeof *o->dxc); /* accumulate onto it */
    assert_int_equal(gpu_col2im(d, &g, o->col, o->dxc, 1), 0);
    gpu_conv_geom p = {.n = N, .h = H, .w = W, .c = C, .kh = 3, .kw = 3,
                       .sh = 2, .sw = 2, .ph = 1, .pw = 1, .oh = 10, .ow = 10};
    size_t np = (size_t)N * 10 * 10 * C;
    o->mp = falloc(np), o->dmp = falloc(NX);
    o->idx = calloc(np, sizeof *o->idx);
    assert_non_null(o->idx);
    assert_int_equal(gpu_maxpool_fwd(d, &p, x, o->mp, o->idx), 0);
    assert_int_equal(gpu_maxpool_bwd(d, &p, dy, o->idx, o->dmp), 0);
    o->ap = falloc((size_t)N * C), o->dap = falloc(NX);
    assert_int_equal(gpu_avgpool_fwd(d, x, N, H * W, C, o->ap), 0);
    assert_int_equal(gpu_avgpool_bwd(d, dy, N, H * W, C, o->dap), 0);
    /* batch norm: gamma, beta, running mean/var, saved mean/invstd,
     * dgamma, dbeta */
    o->stats = falloc(8 * C);
    float *gm = o->stats, *bt = gm + C, *rm = bt + C, *rv = rm + C;
    float *sm = rv + C, *si = sm + C, *dg = si + C, *db = dg + C;
    for (int k = 0; k < C; k++) gm[k] = 1.0f + 0.01f * k, bt[k] = 0.1f, rv[k] = 1;
    int rows = N * H * W;
    o->bn = falloc(NX), o->bnev = falloc(NX), o->bndx = falloc(NX);
    assert_int_equal(gpu_bn_fwd_train(d, x, rows, C, gm, bt, 1e-5f, 0.1f, rm,
                                      rv, sm, si, 0, o->bn), 0);
    assert_int_equal(gpu_bn_fwd_eval(d, x, rows, C, gm, bt, 1e-5f, rm, rv, 0,
                                     o->bnev), 0);
    assert_int_equal(gpu_bn_bwd(d, x, dy, rows, C, gm, bt, sm, si, NULL, dg,
                                db, o->bndx, 0), 0);
    o->act = falloc(2 * NX), o->dact = falloc(2 * NX);
    assert_int_equal(gpu_act_fwd(d, GPU_ACT_RELU, x, o->act, NX), 0);
    assert_int_equal(gpu_act_fwd(d, GPU_ACT_GELU, x, o->act + NX, NX), 0);
    assert_int_equal(gpu_act_bwd(d, GPU_ACT_RELU, x, dy, o->dact, NX), 0);
    assert_int_equal(gpu_act_bwd(d, GPU_ACT_GELU, x, dy, o->dact + NX, NX), 0);
    o->ax = falloc(NX);
    memcpy(o->ax, dy, NX * sizeof *o->ax);
    assert_int_equal(gpu_axpby(d, NX, 0.5f, x, -2.0f, o->ax), 0);
    o->w = falloc(NX), o->v = falloc(NX), o->m = falloc(NX);
    memcpy(o->w, x, NX * sizeof *o->w);
    assert_int_equal(gpu_sgd_update(d, o->w, dy, o->v, NX, 0.1f, 0.9f, 1,
                                    5e-4f), 0);
    assert_int_equal(gpu_adamw_update(d, o->w, dy, o->m, o->v, NX, 1e-3f,
                                      0.9f, 0.999f, 1e-8f, 0.01f, 0.1f,
                                      0.001f), 0);
    gpu_device_destroy(d);
}

static void free_outputs(outputs *o)
{
    float *f[] = {o->col, o->dxc, o->mp, o->dmp, o->ap, o->dap, o->bn,
                  o->bnev, o->bndx, o->stats, o->act, o->dact, o->ax,
                  o->w, o->v, o->m};
    for (size_t i = 0; i < sizeof f / sizeof *f; i++) free(f[i]);
    free(o->idx);
}

#define SAME(field, count)                                                 \
    do {                                                                   \
        if (memcmp(a->field, b->field, (count) * sizeof *a->field) != 0)   \
            fail_msg("%s differs between 1 and %d threads", #field,        \
                     threads);                                             \
    } while (0)

static void same_bits(const outputs *a, const outputs *b, int threads)
{
    size_t np = (size_t)N * 10 * 10 * C;
    SAME(col, NX * 9);
    SAME(dxc, NX);
    SAME(mp, np);
    SAME(idx, np);
    SAME(dmp, NX);
    SAME(ap, (size_t)N * C);
    SAME(dap, NX);
    SAME(bn, NX);
    SAME(bnev, NX);
    SAME(bndx, NX);
    SAME(stats, 8 * (size_t)C);
    SAME(act, 2 * NX);
    SAME(dact, 2 * NX);
    SAME(ax, NX);
    SAME(w, NX);
    SAME(v, NX);
    SAME(m, NX);
}

static void test_ops_same_bits_any_threads(void **state)
{
    (void)state;
    float *x = falloc(NX), *dy = falloc(NX);
    /* a mean far from 0, so that the variance's sum is sensitive to order */
    fill(x, NX, 2.0f, 5.0f);
    fill(dy, NX, -1.0f, 1.0f);
    outputs one = {0};
    run_ops(1, x, dy, &one);
    for (int threads = 2; threads <= 3; threads++) {
        outputs t = {0};
        run_ops(threads, x, dy, &t);
        same_bits(&one, &t, threads);
        free_outputs(&t);
    }
    free_outputs(&one);
    free(dy), free(x);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pool_covers_once),
        cmocka_unit_test(test_ops_same_bits_any_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
