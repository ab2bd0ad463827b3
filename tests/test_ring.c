/* tests/test_ring.c — loader/ring: slot states, allocator hook, in-order
 * delivery, backpressure, timed waits, limits and shutdown. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "loader/ring.h"

static void sleep_us(long us)
{
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    nanosleep(&ts, NULL);
}

/* ---- allocator hook ----------------------------------------------------- */
typedef struct counting {
    int allocs, frees;
    size_t bytes;
} counting;

static void *count_alloc(size_t bytes, void *ctx)
{
    counting *c = ctx;
    c->allocs++;
    c->bytes = bytes;
    return aligned_alloc(64, bytes);
}

static void count_free(void *p, size_t bytes, void *ctx)
{
    counting *c = ctx;
    assert_int_equal(bytes, c->bytes);
    c->frees++;
    free(p);
}

static void test_allocator_hook(void **state)
{
    (void)state;
    counting c = {0};
    ring_allocator a = {count_alloc, count_free, &c};
    ring *r = NULL;
    assert_int_equal(ring_create(3, 5000, UINT64_MAX, &a, &r, NULL), 0);
    assert_int_equal(c.allocs, 1);
    assert_int_equal(c.bytes, 3 * 8192);
    assert_int_equal(ring_slots(r), 3);
    assert_int_equal(ring_slot_bytes(r), 5000);
    for (uint32_t i = 0; i < 3; i++) {
        uint8_t *p = ring_slot(r, i);
        assert_int_equal((uintptr_t)p % 64, 0);
        memset(p, (int)i, 5000);
    }
    ring_destroy(r);
    assert_int_equal(c.frees, 1);
    ring_destroy(NULL);

    st_error err = {0};
    assert_int_equal(ring_create(0, 10, UINT64_MAX, NULL, &r, &err),
                     ST_EINVAL);
    assert_null(r);
}

static void *fail_alloc(size_t bytes, void *ctx)
{
    (void)bytes;
    (void)ctx;
    return NULL;
}

static void test_allocator_failure(void **state)
{
    (void)state;
    ring_allocator a = {fail_alloc, count_free, NULL};
    ring *r = NULL;
    st_error err = {0};
    assert_int_equal(ring_create(2, 100, UINT64_MAX, &a, &r, &err),
                     ST_ENOMEM);
    assert_null(r);
    assert_non_null(strstr(err.msg, "8192"));
}

/* ---- single-threaded protocol ------------------------------------------- */
static void test_states_and_order(void **state)
{
    (void)state;
    ring *r = NULL;
    st_error err = {0};
    assert_int_equal(ring_create(3, 64, UINT64_MAX, NULL, &r, &err), 0);
    uint32_t s[3];
    uint64_t seq, ns;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(ring_claim(r, &s[i], &seq, &ns, &err), 0);
        assert_int_equal(seq, (uint64_t)i);
        assert_int_equal(ns, 0);
    }
    /* nothing READY: a timed wait gives up and says so */
    uint32_t got;
    int status;
    assert_int_equal(ring_next(r, 30, &got, &seq, &status, &ns, &err),
                     ST_ETIMEDOUT);
    assert_true(ns >= 25000000ull);
    assert_non_null(strstr(err.msg, "batch 0"));
    st_clearerr(&err);
    /* publish out of order; delivery is still 0, 1, 2 */
    assert_int_equal(ring_publish(r, s[2], 0, &err), 0);
    assert_int_equal(ring_publish(r, s[1], ST_EDECODE, &err), 0);
    assert_int_equal(ring_next(r, 10, &got, &seq, &status, &ns, &err),
                     ST_ETIMEDOUT);
    st_clearerr(&err);
    assert_int_equal(ring_publish(r, s[0], 0, &err), 0);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(ring_next(r, 0, &got, &seq, &status, &ns, &err), 0);
        assert_int_equal(seq, (uint64_t)i);
        assert_int_equal(got, s[i]);
        assert_int_equal(status, i == 1 ? ST_EDECODE : 0);
    }
    /* misuse is refused */
    assert_int_equal(ring_publish(r, s[0], 0, &err), ST_EINVAL);
    st_clearerr(&err);
    assert_int_equal(ring_release(r, s[1], &err), 0);
    assert_int_equal(ring_release(r, s[1], &err), ST_EINVAL);
    st_clearerr(&err);
    assert_int_equal(ring_release(r, 7, &err), ST_EINVAL);
    st_clearerr(&err);
    /* a freed slot is reused with the next sequence number */
    assert_int_equal(ring_claim(r, &got, &seq, &ns, &err), 0);
    assert_int_equal(got, s[1]);
    assert_int_equal(seq, 3);
    ring_destroy(r);
}

static void test_limit(void **state)
{
    (void)state;
    ring *r = NULL;
    assert_int_equal(ring_create(4, 8, 2, NULL, &r, NULL), 0);
    uint32_t s;
    uint64_t seq, ns;
    int status;
    assert_int_equal(ring_claim(r, &s, &seq, &ns, NULL), 0);
    assert_int_equal(ring_publish(r, s, 0, NULL), 0);
    assert_int_equal(ring_claim(r, &s, &seq, &ns, NULL), 0);
    assert_int_equal(ring_publish(r, s, 0, NULL), 0);
    assert_int_equal(ring_claim(r, &s, &seq, &ns, NULL), ST_EEND);
    assert_int_equal(ring_next(r, 0, &s, &seq, &status, &ns, NULL), 0);
    ring_limit(r, 1); /* lowering: seq 1 is no longer delivered */
    assert_int_equal(ring_next(r, 0, &s, &seq, &status, &ns, NULL), ST_EEND);
    ring_limit(r, 100); /* never raised */
    assert_int_equal(ring_claim(r, &s, &seq, &ns, NULL), ST_EEND);
    ring_destroy(r);
}

/* ---- threads ---------------------------------------------------------------- */
typedef struct stress {
    ring *r;
    int slow_producer;      /* sleep while filling */
    uint64_t produced;      /* guarded by mu */
    int bad;                /* failed ring calls in producers; mu */
    pthread_mutex_t mu;
} stress;

static void *producer(void *arg)
{
    stress *st = arg;
    uint32_t s;
    uint64_t seq, ns;
    unsigned seed = (unsigned)(uintptr_t)&s;
    int rc;
    while ((rc = ring_claim(st->r, &s, &seq, &ns, NULL)) == 0) {
        uint64_t *p = ring_slot(st->r, s);
        size_t words = ring_slot_bytes(st->r) / 8;
        for (size_t i = 0; i < words; i++) p[i] = seq * 1000 + i;
        if (st->slow_producer || rand_r(&seed) % 16 == 0)
            sleep_us(rand_r(&seed) % 300);
        int prc = ring_publish(st->r, s, 0, NULL);
        pthread_mutex_lock(&st->mu);
        st->produced++;
        st->bad += prc != 0;
        pthread_mutex_unlock(&st->mu);
    }
    /* cmocka asserts belong to the main thread: report through st->bad */
    pthread_mutex_lock(&st->mu);
    st->bad += rc != ST_EEND && rc != ST_ECLOSED;
    pthread_mutex_unlock(&st->mu);
    return NULL;
}

static void run_stress(uint32_t nslots, int nproducers, uint64_t n,
                       int slow_producer, int slow_consumer)
{
    stress st = {.slow_producer = slow_producer};
    pthread_mutex_init(&st.mu, NULL);
    assert_int_equal(ring_create(nslots, 256, n, NULL, &st.r, NULL), 0);
    pthread_t th[8];
    for (int i = 0; i < nproducers; i++)
        assert_int_equal(pthread_create(&th[i], NULL, producer, &st), 0);
    uint32_t held[2];
    int nheld = 0;
    for (uint64_t k = 0; k < n; k++) {
        uint32_t s;
        uint64_t seq, ns;
        int status;
        assert_int_equal(ring_next(st.r, 10000, &s, &seq, &status, &ns, NULL),
                         0);
        assert_int_equal(seq, k);
        const uint64_t *p = ring_slot(st.r, s);
        for (size_t i = 0; i < 32; i++) assert_int_equal(p[i], k * 1000 + i);
        if (slow_consumer) sleep_us(200);
        /* hold up to two batches when the ring allows, release oldest */
        held[nheld++] = s;
        if (nheld == 2 || nslots == 1) {
            assert_int_equal(ring_release(st.r, held[0], NULL), 0);
            held[0] = held[1];
            nheld--;
        }
    }
    while (nheld > 0) assert_int_equal(ring_release(st.r, held[--nheld], NULL), 0);
    uint32_t s;
    uint64_t seq, ns;
    int status;
    assert_int_equal(ring_next(st.r, 0, &s, &seq, &status, &ns, NULL),
                     ST_EEND);
    for (int i = 0; i < nproducers; i++) pthread_join(th[i], NULL);
    assert_int_equal(st.produced, n);
    assert_int_equal(st.bad, 0);
    ring_destroy(st.r);
    pthread_mutex_destroy(&st.mu);
}

static void test_stress_in_order(void **state)
{
    (void)state;
    run_stress(3, 4, 3000, 0, 0);
    run_stress(8, 8, 3000, 0, 0);
    run_stress(2, 2, 500, 0, 0);
}

static void test_one_slot(void **state)
{
    (void)state;
    run_stress(1, 3, 500, 0, 0);
}

static void test_slow_sides(void **state)
{
    (void)state;
    run_stress(2, 2, 200, 1, 0);  /* consumer waits */
    run_stress(2, 3, 200, 0, 1);  /* producers block */
}

/* ---- shutdown wakes every waiter ------------------------------------------ */
typedef struct blocked {
    ring *r;
    int rc;
} blocked;

static void *blocked_claim(void *arg)
{
    blocked *b = arg;
    uint32_t s;
    uint64_t seq, ns;
    b->rc = ring_claim(b->r, &s, &seq, &ns, NULL);
    return NULL;
}

static void *blocked_next(void *arg)
{
    blocked *b = arg;
    uint32_t s;
    uint64_t seq, ns;
    int status;
    b->rc = ring_next(b->r, 0, &s, &seq, &status, &ns, NULL);
    return NULL;
}

static void test_shutdown_wakes(void **state)
{
    (void)state;
    ring *r = NULL;
    assert_int_equal(ring_create(1, 8, UINT64_MAX, NULL, &r, NULL), 0);
    uint32_t s;
    uint64_t seq, ns;
    assert_int_equal(ring_claim(r, &s, &seq, &ns, NULL), 0); /* ring full */
    blocked b[3] = {{r, 1}, {r, 1}, {r, 1}};
    pthread_t th[3];
    assert_int_equal(pthread_create(&th[0], NULL, blocked_claim, &b[0]), 0);
    assert_int_equal(pthread_create(&th[1], NULL, blocked_claim, &b[1]), 0);
    assert_int_equal(pthread_create(&th[2], NULL, blocked_next, &b[2]), 0);
    sleep_us(50000);
    ring_shutdown(r);
    for (int i = 0; i < 3; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(b[i].rc, ST_ECLOSED);
    }
    ring_shutdown(r); /* idempotent */
    ring_destroy(r);
}

static void test_limit_wakes_producers(void **state)
{
    (void)state;
    ring *r = NULL;
    assert_int_equal(ring_create(1, 8, UINT64_MAX, NULL, &r, NULL), 0);
    uint32_t s;
    uint64_t seq, ns;
    assert_int_equal(ring_claim(r, &s, &seq, &ns, NULL), 0);
    blocked b = {r, 1};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, blocked_claim, &b), 0);
    sleep_us(20000);
    ring_limit(r, 1);
    pthread_join(th, NULL);
    assert_int_equal(b.rc, ST_EEND);
    ring_destroy(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_allocator_hook),
        cmocka_unit_test(test_allocator_failure),
        cmocka_unit_test(test_states_and_order),
        cmocka_unit_test(test_limit),
        cmocka_unit_test(test_stress_in_order),
        cmocka_unit_test(test_one_slot),
        cmocka_unit_test(test_slow_sides),
        cmocka_unit_test(test_shutdown_wakes),
        cmocka_unit_test(test_limit_wakes_producers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
