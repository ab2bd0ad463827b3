/* tests/test_order.c — loader/order: bijections, window locality, purity,
 * rank slices and batch counts. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "loader/order.h"

static void check_bijection(uint64_t n, uint64_t seed, uint64_t epoch)
{
    order_perm p;
    order_perm_init(&p, n, seed, epoch, 7);
    uint8_t *seen = calloc(n, 1);
    assert_non_null(seen);
    for (uint64_t x = 0; x < n; x++) {
        uint64_t y = order_perm_apply(&p, x);
        assert_true(y < n);
        assert_int_equal(seen[y], 0);
        seen[y] = 1;
    }
    free(seen);
}

static void test_perm_is_bijection(void **state)
{
    (void)state;
    const uint64_t sizes[] = {1, 2, 3, 4, 5, 7, 8, 15, 16, 17, 255, 256, 257,
                              1000, 4095, 4097, 65537, 100003};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        for (uint64_t e = 0; e < 3; e++) check_bijection(sizes[i], 42, e);
}

static void test_perm_depends_on_key(void **state)
{
    (void)state;
    const uint64_t n = 10000;
    order_perm a, b, c;
    order_perm_init(&a, n, 1, 0, 1);
    order_perm_init(&b, n, 1, 1, 1); /* next epoch */
    order_perm_init(&c, n, 2, 0, 1); /* other seed */
    uint64_t same_ab = 0, same_ac = 0, fixed = 0;
    for (uint64_t x = 0; x < n; x++) {
        uint64_t ya = order_perm_apply(&a, x);
        same_ab += ya == order_perm_apply(&b, x);
        same_ac += ya == order_perm_apply(&c, x);
        fixed += ya == x;
        /* pure: same key, same answer */
        order_perm a2;
        order_perm_init(&a2, n, 1, 0, 1);
        assert_int_equal(ya, order_perm_apply(&a2, x));
    }
    /* A random permutation agrees with another on ~1 point. */
    assert_true(same_ab < 20);
    assert_true(same_ac < 20);
    assert_true(fixed < 20);
}

/* Loose uniformity: where sample 0 lands over many epochs, in 10 bins. */
static void test_perm_spreads(void **state)
{
    (void)state;
    const uint64_t n = 1000, epochs = 20000;
    uint64_t bins[10] = {0};
    for (uint64_t e = 0; e < epochs; e++) {
        order_perm p;
        order_perm_init(&p, n, 99, e, 1);
        bins[order_perm_apply(&p, 0) / 100]++;
    }
    for (int i = 0; i < 10; i++) {
        /* expected 2000, sd ~42: allow 6 sd */
        assert_true(bins[i] > 1750 && bins[i] < 2250);
    }
}

static order *make(order_mode mode, uint64_t seed, uint32_t batch,
                   int drop_last, uint32_t rank, uint32_t world,
                   const uint64_t *shards, uint32_t nshards, uint32_t window)
{
    order_config cfg = {.mode = mode, .seed = seed, .window = window,
                        .batch = batch, .drop_last = drop_last,
                        .rank = rank, .world = world};
    order *o = NULL;
    st_error err = {0};
    int rc = order_create(&cfg, shards, nshards, &o, &err);
    if (rc != 0) fail_msg("order_create: %s", err.msg);
    return o;
}

/* Every mode is a permutation of the split for every epoch. */
static void test_modes_exactly_once(void **state)
{
    (void)state;
    const uint64_t shards[] = {100, 37, 0, 250, 1, 99, 64};
    const uint32_t ns = 7;
    const uint64_t n = 551;
    for (int mode = ORDER_NONE; mode <= ORDER_WINDOW; mode++) {
        for (uint32_t W = 1; W <= 8; W += 3) {
            order *o = make(mode, 5, 32, 0, 0, 1, shards, ns, W);
            order_cursor *c = NULL;
            assert_int_equal(order_cursor_create(o, &c, NULL), 0);
            assert_int_equal(order_samples(o), n);
            for (uint64_t e = 0; e < 4; e++) {
                uint8_t seen[551] = {0};
                for (uint64_t p = 0; p < n; p++) {
                    uint64_t id = order_sample(o, c, e, p);
                    assert_true(id < n);
                    assert_int_equal(seen[id], 0);
                    seen[id] = 1;
                }
            }
            order_cursor_destroy(c);
            order_destroy(o);
        }
    }
}

static uint32_t shard_of(const uint64_t *shards, uint32_t ns, uint64_t id)
{
    for (uint32_t s = 0; s < ns; s++) {
        if (id < shards[s]) return s;
        id -= shards[s];
    }
    fail_msg("id out of range");
    return 0;
}

/* Window mode: consecutive positions stay inside W shards, and the result
 * never depends on the cursor's history. */
static void test_window_locality(void **state)
{
    (void)state;
    uint64_t shards[40];
    uint64_t n = 0;
    for (uint32_t s = 0; s < 40; s++) n += shards[s] = 50 + s % 7;
    const uint32_t W = 4;
    order *o = make(ORDER_WINDOW, 11, 16, 0, 0, 1, shards, 40, W);
    order_cursor *c1 = NULL, *c2 = NULL;
    assert_int_equal(order_cursor_create(o, &c1, NULL), 0);
    assert_int_equal(order_cursor_create(o, &c2, NULL), 0);
    for (uint64_t e = 0; e < 3; e++) {
        uint64_t cur_w = UINT64_MAX;
        uint32_t in_window[40] = {0};
        for (uint64_t p = 0; p < n; p++) {
            uint64_t id = order_sample(o, c1, e, p);
            /* c2 jumps between epochs: same answer */
            (void)order_sample(o, c2, e + 1, (p * 7) % n);
            assert_int_equal(id, order_sample(o, c2, e, p));
            uint64_t w = order_window_of(o, c1, e, p);
            if (w != cur_w) {
                assert_true(cur_w == UINT64_MAX || w == cur_w + 1);
                cur_w = w;
                memset(in_window, 0, sizeof in_window);
                const uint32_t *ws = NULL;
                uint32_t k = order_window_shards(o, c1, e, w, &ws);
                assert_true(k >= 1 && k <= W);
                for (uint32_t i = 0; i < k; i++) in_window[ws[i]] = 1;
            }
            assert_int_equal(in_window[shard_of(shards, 40, id)], 1);
        }
        assert_int_equal(cur_w, 9);
    }
    const uint32_t *ws = NULL;
    assert_int_equal(order_window_shards(o, c1, 0, 10, &ws), 0);
    order_cursor_destroy(c1);
    order_cursor_destroy(c2);
    order_destroy(o);
}

static void test_none_is_identity(void **state)
{
    (void)state;
    const uint64_t shards[] = {10, 20};
    order *o = make(ORDER_NONE, 1, 7, 0, 0, 1, shards, 2, 1);
    for (uint64_t p = 0; p < 30; p++)
        assert_int_equal(order_sample(o, NULL, 3, p), p);
    assert_int_equal(order_batches(o), 5);
    assert_int_equal(order_batch_len(o, 4), 2);
    order_destroy(o);
}

static void test_batches_and_drop_last(void **state)
{
    (void)state;
    const uint64_t shards[] = {1000};
    order *o = make(ORDER_GLOBAL, 1, 64, 0, 0, 1, shards, 1, 1);
    assert_int_equal(order_batches(o), 16);
    assert_int_equal(order_batch_len(o, 15), 1000 - 15 * 64);
    order_destroy(o);
    o = make(ORDER_GLOBAL, 1, 64, 1, 0, 1, shards, 1, 1);
    assert_int_equal(order_batches(o), 15);
    assert_int_equal(order_batch_len(o, 14), 64);
    order_destroy(o);
    /* batch larger than the split: one short batch, or refused */
    o = make(ORDER_GLOBAL, 1, 4096, 0, 0, 1, shards, 1, 1);
    assert_int_equal(order_batches(o), 1);
    assert_int_equal(order_batch_len(o, 0), 1000);
    order_destroy(o);
    order_config cfg = {.mode = ORDER_GLOBAL, .batch = 4096, .drop_last = 1,
                        .world = 1};
    st_error err = {0};
    assert_int_equal(order_create(&cfg, shards, 1, &o, &err), ST_EINVAL);
    assert_null(o);
    assert_non_null(strstr(err.msg, "1000"));
    cfg = (order_config){.mode = ORDER_GLOBAL, .batch = 1, .world = 2,
                         .rank = 2};
    assert_int_equal(order_create(&cfg, shards, 1, &o, NULL), ST_EINVAL);
    const uint64_t empty[] = {0};
    cfg.rank = 0;
    assert_int_equal(order_create(&cfg, empty, 1, &o, NULL), ST_EINVAL);
}

/* The one-stream rule: for every global batch, the ranks' parts in rank
 * order are exactly the positions of the 1-rank batch, each part is
 * B/w or within one of the others, and every rank has the same count. */
static void check_ranks(order_mode mode, uint64_t n, uint32_t world,
                        uint32_t batch, int drop_last)
{
    uint64_t shards[3] = {n / 3, n / 3, n - 2 * (n / 3)};
    order *one = make(mode, 77, batch, drop_last, 0, 1, shards, 3, 2);
    order *o[16];
    assert_true(world <= 16);
    for (uint32_t r = 0; r < world; r++)
        o[r] = make(mode, 77, batch, drop_last, r, world, shards, 3, 2);
    uint64_t nb = order_batches(one);
    assert_int_equal(nb, drop_last ? n / batch : (n + batch - 1) / batch);
    uint64_t total = 0;
    for (uint64_t b = 0; b < nb; b++) {
        uint32_t L = order_global_batch_len(one, b), k = 0;
        assert_int_equal(order_batch_len(one, b), L);
        for (uint32_t r = 0; r < world; r++) {
            assert_int_equal(order_batches(o[r]), nb);
            assert_int_equal(order_global_batch_len(o[r], b), L);
            uint32_t len = order_batch_len(o[r], b);
            assert_true(len <= order_batch_cap(o[r]));
            assert_true(len == L / world || len == L / world + 1);
            assert_true(len == L / world + (r < L % world));
            for (uint32_t i = 0; i < len; i++, k++)
                assert_int_equal(order_position(o[r], b, i),
                                 order_position(one, b, k));
        }
        assert_int_equal(k, L);
        total += L;
    }
    uint64_t rank_total = 0;
    for (uint32_t r = 0; r < world; r++) {
        rank_total += order_rank_samples(o[r]);
        order_destroy(o[r]);
    }
    assert_int_equal(rank_total, total);
    assert_int_equal(total, drop_last ? n - n % batch : n);
    order_destroy(one);
}

static void test_rank_slices(void **state)
{
    (void)state;
    for (int mode = ORDER_NONE; mode <= ORDER_WINDOW; mode++) {
        check_ranks(mode, 1200, 4, 48, 0);  /* exact */
        check_ranks(mode, 1200, 4, 48, 1);
        check_ranks(mode, 1203, 4, 64, 0);  /* last batch 51: 13,13,13,12 */
        check_ranks(mode, 1203, 4, 64, 1);  /* last 51 dropped */
        check_ranks(mode, 999, 8, 56, 0);
        check_ranks(mode, 1203, 8, 8, 0);   /* last batch 3 < 8 ranks */
        check_ranks(mode, 5, 8, 8, 0);      /* fewer samples than ranks */
        check_ranks(mode, 700, 3, 9, 0);
    }
}

/* A global batch that does not split over the ranks is refused with the
 * numbers; the rank's part of a short last batch is as even as possible. */
static void test_rank_refusals(void **state)
{
    (void)state;
    const uint64_t shards[] = {1000};
    order *o = NULL;
    st_error err = {0};
    order_config cfg = {.mode = ORDER_GLOBAL, .batch = 50, .world = 4,
                        .rank = 1};
    assert_int_equal(order_create(&cfg, shards, 1, &o, &err), ST_EINVAL);
    assert_null(o);
    assert_non_null(strstr(err.msg, "50"));
    assert_non_null(strstr(err.msg, "4 ranks"));
    /* 1000 = 7*128 + 104: the last batch is 52 + 52 on 2 ranks */
    o = make(ORDER_GLOBAL, 3, 128, 0, 1, 2, shards, 1, 1);
    assert_int_equal(order_batches(o), 8);
    assert_int_equal(order_batch_len(o, 0), 64);
    assert_int_equal(order_batch_len(o, 7), 52);
    assert_int_equal(order_position(o, 7, 0), 7 * 128 + 52);
    assert_int_equal(order_rank_samples(o), 7 * 64 + 52);
    order_destroy(o);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_perm_is_bijection),
        cmocka_unit_test(test_perm_depends_on_key),
        cmocka_unit_test(test_perm_spreads),
        cmocka_unit_test(test_modes_exactly_once),
        cmocka_unit_test(test_window_locality),
        cmocka_unit_test(test_none_is_identity),
        cmocka_unit_test(test_batches_and_drop_last),
        cmocka_unit_test(test_rank_slices),
        cmocka_unit_test(test_rank_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
