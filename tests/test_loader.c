/* tests/test_loader.c — loader/loader: exactly-once delivery, identical
 * streams for any thread count, resume, ranks, backpressure, tiny rings and
 * splits, close at any moment, corruption policies and the memory cap.
 * Packs are written at test time (tests/loader_fixture.h); the 1 GiB
 * memory-bound stream is tests/test_loader_memory.c. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "datasets/codec.h"
#include "datasets/fsutil.h"
#include "datasets/pack.h"
#include "loader/loader.h"

#include "loader_fixture.h"

typedef struct world {
    char *dir;
    char zstd[4096], png[4096], raw[4096];
} world;

static world W;

static void path_in(char *out, const char *name)
{
    snprintf(out, 4096, "%s/%s", W.dir, name);
}

static int setup(void **state)
{
    (void)state;
    const char *base = getenv("TMPDIR");
    W.dir = malloc(4096);
    snprintf(W.dir, 4096, "%s/st-loader-XXXXXX", base && *base ? base : "/tmp");
    if (mkdtemp(W.dir) == NULL) return -1;
    st_error err = {0};
    spec z = {CODEC_ZSTD, 8, 8, 1, 1000, 5, 4096, NONE};
    spec p = {CODEC_PNG, 8, 8, 3, 300, 0, 8192, NONE};
    spec r = {CODEC_RAW, 8, 8, 1, 1000, 0, 8192, NONE};
    path_in(W.zstd, "zstd");
    path_in(W.png, "png");
    path_in(W.raw, "raw");
    if (write_pack(W.zstd, &z, &err) || write_pack(W.png, &p, &err) ||
        write_pack(W.raw, &r, &err)) {
        fprintf(stderr, "fixture: %s\n", err.msg);
        return -1;
    }
    /* window mode needs several shards to mean anything */
    pack *pk = NULL;
    if (pack_open(W.zstd, &pk, &err) != 0) return -1;
    uint32_t ns = pack_split_nshards(pk, pack_split_find(pk, "train"));
    pack_close(pk);
    printf("fixture: zstd train split in %u shards\n", ns);
    return ns >= 8 ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    fs_rmtree(W.dir, NULL);
    free(W.dir);
    return 0;
}

/* ---- running a loader ------------------------------------------------------------ */

typedef struct stream {
    uint64_t ids[16384];   /* delivery order */
    uint32_t nids;
    uint64_t batches;
    uint64_t batch_epoch[1024], batch_index[1024];
    uint32_t batch_n[1024];
    loader_state state_after[1024]; /* loader_get_state after batch k */
    uint64_t ends;         /* ST_EEND seen */
    loader_stats stats;
} stream;

static loader_config base_cfg(uint32_t threads, loader_shuffle mode)
{
    loader_config c;
    loader_config_default(&c);
    c.threads = threads;
    c.shuffle = mode;
    c.batch_size = 32;
    c.slots = 4;
    c.seed = 1234;
    c.epochs = 2;
    return c;
}

static void check_batch(const loader_batch *b, size_t sample_bytes)
{
    for (uint32_t k = 0; k < b->n; k++) {
        uint8_t want[256];
        sample_pixels(b->ids[k], want, sample_bytes);
        if (memcmp(want, b->pixels + k * sample_bytes, sample_bytes) != 0)
            fail_msg("batch %llu sample %u (id %llu): wrong pixels",
                     (unsigned long long)b->index, k,
                     (unsigned long long)b->ids[k]);
        assert_int_equal(b->labels[k], sample_label(b->ids[k]));
    }
}

/* Streams cfg->epochs epochs (or max_batches) checking every sample. */
static int run(const char *dir, const loader_config *cfg, stream *s,
               uint64_t max_batches, int consumer_sleep_us, st_error *err)
{
    memset(s, 0, sizeof *s);
    loader *l = NULL;
    ST_TRY(loader_open(dir, cfg, &l, err));
    int rc = 0;
    while (s->batches < max_batches) {
        loader_batch b;
        rc = loader_next_batch(l, &b, err);
        if (rc == ST_EEND) {
            rc = 0;
            if (++s->ends == cfg->epochs) break;
            continue;
        }
        if (rc) break;
        check_batch(&b, (size_t)b.height * b.width * b.channels);
        assert_true(s->nids + b.n <= 16384 && s->batches < 1024);
        memcpy(s->ids + s->nids, b.ids, b.n * sizeof *b.ids);
        s->nids += b.n;
        s->batch_epoch[s->batches] = b.epoch;
        s->batch_index[s->batches] = b.index;
        s->batch_n[s->batches] = b.n;
        if (consumer_sleep_us) usleep((useconds_t)consumer_sleep_us);
        rc = loader_release(l, &b, err);
        if (rc) break;
        s->state_after[s->batches++] = loader_get_state(l);
    }
    loader_get_stats(l, &s->stats);
    loader_close(l);
    return rc;
}

static void run_ok(const char *dir, const loader_config *cfg, stream *s)
{
    st_error err = {0};
    int rc = run(dir, cfg, s, NONE, 0, &err);
    if (rc) fail_msg("loader: %s (%s)", err.msg, st_strerror(rc));
}

/* Every id in [0, n) exactly once in ids[from, from + n). */
static void check_once(const uint64_t *ids, uint64_t n)
{
    uint8_t *seen = calloc(n, 1);
    assert_non_null(seen);
    for (uint64_t i = 0; i < n; i++) {
        assert_true(ids[i] < n);
        if (seen[ids[i]]) fail_msg("id %llu twice", (unsigned long long)ids[i]);
        seen[ids[i]] = 1;
    }
    free(seen);
}

static stream S1, S2; /* large: kept out of the stack */

/* ---- exactly once, same stream ------------------------------------------------------ */

static void test_exactly_once_any_threads(void **state)
{
    (void)state;
    const uint32_t threads[] = {1, 2, 3, 8};
    for (int mode = LOADER_SHUFFLE_NONE; mode <= LOADER_SHUFFLE_WINDOW; mode++) {
        for (size_t t = 0; t < 4; t++) {
            loader_config c = base_cfg(threads[t], (loader_shuffle)mode);
            stream *s = t == 0 ? &S1 : &S2;
            run_ok(W.zstd, &c, s);
            assert_int_equal(s->nids, 2000);
            assert_int_equal(s->ends, 2);
            assert_int_equal(s->batches, 64); /* 31 x 32 + 8, twice */
            assert_int_equal(s->batch_n[31], 8);
            check_once(s->ids, 1000);
            check_once(s->ids + 1000, 1000);
            if (mode != LOADER_SHUFFLE_NONE) /* epochs differ */
                assert_true(memcmp(s->ids, s->ids + 1000, 8000) != 0);
            else
                for (uint64_t i = 0; i < 1000; i++)
                    assert_int_equal(s->ids[i], i);
            if (t > 0) /* identical to one thread */
                assert_memory_equal(S1.ids, S2.ids, sizeof S1.ids);
        }
    }
}

static void test_png_and_raw_and_mmap(void **state)
{
    (void)state;
    loader_config c = base_cfg(2, LOADER_SHUFFLE_GLOBAL);
    run_ok(W.png, &c, &S1);
    assert_int_equal(S1.nids, 600);
    check_once(S1.ids, 300);
    run_ok(W.raw, &c, &S1);
    check_once(S1.ids, 1000);
    c.io = LOADER_IO_MMAP;
    run_ok(W.zstd, &c, &S1);
    c.io = LOADER_IO_PREAD;
    c.readahead = 2;
    run_ok(W.zstd, &c, &S2);
    assert_memory_equal(S1.ids, S2.ids, sizeof S1.ids);
}

/* ---- resume ----------------------------------------------------------------------- */

static void test_resume(void **state)
{
    (void)state;
    loader_config c = base_cfg(2, LOADER_SHUFFLE_GLOBAL);
    c.epochs = 3;
    run_ok(W.zstd, &c, &S1);
    assert_int_equal(S1.batches, 96);
    const uint64_t at[] = {1, 17, 31, 32, 33, 63, 64, 69, 95};
    for (size_t k = 0; k < sizeof at / sizeof at[0]; k++) {
        loader_state st = S1.state_after[at[k] - 1];
        assert_int_equal(st.seed, 1234);
        assert_int_equal(st.epoch, at[k] / 32);
        assert_int_equal(st.batch, at[k] % 32);
        loader_config r = base_cfg(3, LOADER_SHUFFLE_GLOBAL);
        r.epochs = 3;
        r.seed = 99; /* overwritten by the state */
        loader_config_resume(&r, &st);
        run_ok(W.zstd, &r, &S2);
        assert_int_equal(S2.batches, 96 - at[k]);
        assert_int_equal(S2.batch_epoch[0], S1.batch_epoch[at[k]]);
        assert_int_equal(S2.batch_index[0], S1.batch_index[at[k]]);
        uint64_t skip = 0;
        for (uint64_t b = 0; b < at[k]; b++) skip += S1.batch_n[b];
        assert_int_equal(S2.nids, S1.nids - skip);
        assert_memory_equal(S2.ids, S1.ids + skip, S2.nids * sizeof(uint64_t));
    }
    /* (epoch 0, batch == batches per epoch) is epoch 1's first batch */
    loader_config r = base_cfg(1, LOADER_SHUFFLE_GLOBAL);
    r.epochs = 3;
    r.start_batch = 32;
    run_ok(W.zstd, &r, &S2);
    assert_memory_equal(S2.ids, S1.ids + 1000, 2000 * sizeof(uint64_t));
    r.start_batch = 33;
    loader *l = NULL;
    st_error err = {0};
    assert_int_equal(loader_open(W.zstd, &r, &l, &err), ST_EINVAL);
    assert_null(l);
}

/* ---- ranks ---------------------------------------------------------------------------- */

static void check_ranks(uint32_t world_size, int drop_last, loader_shuffle mode)
{
    uint32_t count[1000] = {0};
    uint64_t nb = 0, total = 0;
    for (uint32_t r = 0; r < world_size; r++) {
        loader_config c = base_cfg(2, mode);
        c.world = world_size;
        c.rank = r;
        c.batch_size = 8 * world_size; /* B: a multiple of world */
        c.drop_last = drop_last;
        c.epochs = 1;
        run_ok(W.zstd, &c, &S1);
        if (r == 0) nb = S1.batches;
        assert_int_equal(S1.batches, nb);
        for (uint32_t i = 0; i < S1.nids; i++) count[S1.ids[i]]++;
        total += S1.nids;
    }
    uint64_t dup = 0, missing = 0;
    for (int i = 0; i < 1000; i++) {
        dup += count[i] > 1 ? count[i] - 1 : 0;
        missing += count[i] == 0;
    }
    /* one stream whatever the world size: never a repeat, and only the
     * last short global batch goes with drop_last */
    assert_int_equal(dup, 0);
    assert_int_equal(total + missing, 1000);
    assert_int_equal(missing, drop_last ? 1000 % (8 * world_size) : 0);
}

static void test_ranks(void **state)
{
    (void)state;
    for (int mode = LOADER_SHUFFLE_NONE; mode <= LOADER_SHUFFLE_WINDOW; mode++) {
        check_ranks(4, 0, (loader_shuffle)mode); /* disjoint, covering */
        check_ranks(3, 1, (loader_shuffle)mode); /* last short batch dropped */
        check_ranks(3, 0, (loader_shuffle)mode); /* last batch 16 = 6+5+5 */
    }
}

/* The last global batch of 1000 = 999 + 1 has one sample for 3 ranks:
 * ranks 1 and 2 get an empty part of it (n = 0), delivered in order. */
static void test_rank_empty_part(void **state)
{
    (void)state;
    for (uint32_t r = 0; r < 3; r++) {
        loader_config c = base_cfg(2, LOADER_SHUFFLE_GLOBAL);
        c.world = 3;
        c.rank = r;
        c.batch_size = 999;
        c.epochs = 1;
        run_ok(W.zstd, &c, &S1);
        assert_int_equal(S1.batches, 2);
        assert_int_equal(S1.batch_n[0], 333);
        assert_int_equal(S1.batch_n[1], r == 0 ? 1 : 0);
        assert_int_equal(S1.batch_index[1], 1);
        assert_int_equal(S1.nids, 333 + (r == 0));
    }
}

/* ---- backpressure and odd shapes ------------------------------------------------------ */

static void test_slow_consumer(void **state)
{
    (void)state;
    loader_config c = base_cfg(2, LOADER_SHUFFLE_GLOBAL);
    c.slots = 2;
    c.epochs = 1;
    st_error err = {0};
    assert_int_equal(run(W.zstd, &c, &S2, NONE, 3000, &err), 0);
    check_once(S2.ids, 1000);
    assert_true(S2.stats.blocked_s > 0.01); /* producers waited for slots */
}

static void test_slow_producer(void **state)
{
    (void)state;
    loader_config c = base_cfg(2, LOADER_SHUFFLE_WINDOW);
    c.producer_delay_us = 3000;
    c.epochs = 1;
    run_ok(W.zstd, &c, &S2);
    check_once(S2.ids, 1000);
    assert_true(S2.stats.wait_s > 0.01); /* the consumer waited */
}

static void test_one_slot(void **state)
{
    (void)state;
    loader_config c = base_cfg(3, LOADER_SHUFFLE_GLOBAL);
    c.slots = 1;
    run_ok(W.zstd, &c, &S2);
    check_once(S2.ids, 1000);
    check_once(S2.ids + 1000, 1000);
}

static void test_batch_larger_than_split(void **state)
{
    (void)state;
    loader_config c = base_cfg(2, LOADER_SHUFFLE_GLOBAL);
    c.batch_size = 5000;
    c.epochs = 3;
    run_ok(W.zstd, &c, &S2);
    assert_int_equal(S2.batches, 3);
    assert_int_equal(S2.batch_n[0], 1000);
    check_once(S2.ids + 2000, 1000);
    c.drop_last = 1;
    loader *l = NULL;
    st_error err = {0};
    assert_int_equal(loader_open(W.zstd, &c, &l, &err), ST_EINVAL);
    assert_non_null(strstr(err.msg, "5000"));
}

static void test_split_smaller_than_threads(void **state)
{
    (void)state;
    loader_config c = base_cfg(8, LOADER_SHUFFLE_GLOBAL);
    c.split = "test"; /* 5 samples */
    c.batch_size = 2;
    c.epochs = 4;
    run_ok(W.zstd, &c, &S2);
    assert_int_equal(S2.batches, 12);
    for (int e = 0; e < 4; e++) check_once(S2.ids + 5 * e, 5);
}

/* ---- close at any moment -------------------------------------------------------------- */

static void test_close_with_held_batches(void **state)
{
    (void)state;
    loader_config c = base_cfg(3, LOADER_SHUFFLE_GLOBAL);
    c.epochs = 0;
    loader *l = NULL;
    st_error err = {0};
    assert_int_equal(loader_open(W.zstd, &c, &l, &err), 0);
    loader_batch a, b;
    assert_int_equal(loader_next_batch(l, &a, &err), 0);
    assert_int_equal(loader_next_batch(l, &b, &err), 0);
    usleep(20000); /* producers fill the other slots and block */
    loader_close(l);
    /* straight after open, and while producers are mid-batch */
    for (int i = 0; i < 5; i++) {
        c.producer_delay_us = i * 500;
        assert_int_equal(loader_open(W.zstd, &c, &l, &err), 0);
        if (i & 1) usleep(1000);
        loader_close(l);
    }
    loader_close(NULL);
}

typedef struct blocked_consumer {
    loader *l;
    int rc;
} blocked_consumer;

static void *consume_one(void *arg)
{
    blocked_consumer *bc = arg;
    loader_batch b;
    bc->rc = loader_next_batch(bc->l, &b, NULL);
    return NULL;
}

static void test_close_wakes_consumer(void **state)
{
    (void)state;
    loader_config c = base_cfg(1, LOADER_SHUFFLE_GLOBAL);
    c.producer_delay_us = 300000;
    blocked_consumer bc = {NULL, 1};
    assert_int_equal(loader_open(W.zstd, &c, &bc.l, NULL), 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, consume_one, &bc), 0);
    usleep(30000);
    loader_close(bc.l);
    pthread_join(th, NULL);
    assert_int_equal(bc.rc, ST_ECLOSED);
}

static void test_timeout(void **state)
{
    (void)state;
    loader_config c = base_cfg(1, LOADER_SHUFFLE_GLOBAL);
    c.producer_delay_us = 100000;
    c.timeout_ms = 10;
    loader *l = NULL;
    st_error err = {0};
    assert_int_equal(loader_open(W.zstd, &c, &l, &err), 0);
    loader_batch b;
    int rc, tries = 0;
    while ((rc = loader_next_batch(l, &b, &err)) == ST_ETIMEDOUT && tries++ < 100) {
        assert_non_null(strstr(err.msg, "timed out"));
        st_clearerr(&err);
    }
    assert_int_equal(rc, 0);
    assert_true(tries >= 3);
    assert_int_equal(b.index, 0);
    loader_close(l);
}

/* ---- corruption ------------------------------------------------------------------------ */

/* Flips one byte inside sample id's record of the train split. */
static void corrupt_record(const char *dir, uint64_t id)
{
    pack *p = NULL;
    st_error err = {0};
    assert_int_equal(pack_open(dir, &p, &err), 0);
    int split = pack_split_find(p, "train");
    uint32_t sh;
    uint64_t rec;
    pack_locate(p, split, id, &sh, &rec);
    const shard *s = pack_shard(p, split, sh);
    const shard_entry *e = shard_entry_at(s, rec);
    int fd = open(shard_path(s), O_RDWR);
    assert_true(fd >= 0);
    uint8_t byte;
    off_t off = (off_t)(e->offset + e->length / 2);
    assert_int_equal(pread(fd, &byte, 1, off), 1);
    byte ^= 0x40;
    assert_int_equal(pwrite(fd, &byte, 1, off), 1);
    close(fd);
    pack_close(p);
}

static void check_fail_policy(const char *dir, int want_rc, loader_io io)
{
    loader_config c = base_cfg(3, LOADER_SHUFFLE_GLOBAL);
    c.io = io;
    loader *l = NULL;
    st_error err = {0};
    assert_int_equal(loader_open(dir, &c, &l, &err), 0);
    loader_batch b;
    int rc;
    uint64_t good = 0;
    while ((rc = loader_next_batch(l, &b, &err)) == 0) {
        good++;
        assert_int_equal(loader_release(l, &b, &err), 0);
    }
    assert_int_equal(rc, want_rc);
    assert_true(good < 32);
    assert_non_null(strstr(err.msg, "split 'train'"));
    assert_non_null(strstr(err.msg, "shard"));
    assert_non_null(strstr(err.msg, "record"));
    st_error again = {0};
    assert_int_equal(loader_next_batch(l, &b, &again), want_rc); /* sticky */
    assert_string_equal(again.msg, err.msg);
    loader_close(l);
}

static void check_skip_policy(const char *dir, uint64_t bad)
{
    for (uint32_t threads = 1; threads <= 3; threads += 2) {
        loader_config c = base_cfg(threads, LOADER_SHUFFLE_GLOBAL);
        c.io = threads == 1 ? LOADER_IO_PREAD : LOADER_IO_MMAP;
        c.on_corrupt = LOADER_CORRUPT_SKIP;
        stream *s = threads == 1 ? &S1 : &S2;
        run_ok(dir, &c, s);
        assert_int_equal(s->nids, 2000); /* every batch full */
        assert_int_equal(s->stats.skipped, 2);
        for (int e = 0; e < 2; e++) {
            uint32_t count[1000] = {0};
            for (int i = 0; i < 1000; i++) count[s->ids[e * 1000 + i]]++;
            assert_int_equal(count[bad], 0);
            int twice = 0;
            for (int i = 0; i < 1000; i++) twice += count[i] == 2;
            assert_int_equal(twice, 1); /* the replacement */
        }
    }
    assert_memory_equal(S1.ids, S2.ids, sizeof S1.ids); /* still pure */
}

static void test_corrupt_checksum(void **state)
{
    (void)state;
    char dir[4096];
    path_in(dir, "corrupt-sum");
    spec z = {CODEC_ZSTD, 8, 8, 1, 1000, 0, 4096, NONE};
    st_error err = {0};
    assert_int_equal(write_pack(dir, &z, &err), 0);
    corrupt_record(dir, 437);
    check_fail_policy(dir, ST_ECHECKSUM, LOADER_IO_PREAD);
    check_fail_policy(dir, ST_ECHECKSUM, LOADER_IO_MMAP);
    check_skip_policy(dir, 437);
}

static void test_corrupt_decode(void **state)
{
    (void)state;
    char dir[4096];
    path_in(dir, "corrupt-dec");
    spec z = {CODEC_ZSTD, 8, 8, 1, 1000, 0, 4096, 77};
    st_error err = {0};
    assert_int_equal(write_pack(dir, &z, &err), 0);
    check_fail_policy(dir, ST_EDECODE, LOADER_IO_PREAD);
    check_fail_policy(dir, ST_EDECODE, LOADER_IO_MMAP);
    check_skip_policy(dir, 77);
}

static void test_bad_pack_at_open(void **state)
{
    (void)state;
    char dir[4096], path[8192];
    path_in(dir, "missing-shard");
    spec z = {CODEC_ZSTD, 8, 8, 1, 1000, 0, 4096, NONE};
    st_error err = {0};
    assert_int_equal(write_pack(dir, &z, &err), 0);
    snprintf(path, sizeof path, "%s/train-00003.shard", dir);
    loader_config c = base_cfg(2, LOADER_SHUFFLE_GLOBAL);
    loader *l = NULL;
    /* a shard header overwritten */
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, "XXXX", 4, 0), 4);
    close(fd);
    int rc = loader_open(dir, &c, &l, &err);
    assert_true(rc == ST_EFORMAT || rc == ST_ECHECKSUM);
    assert_non_null(strstr(err.msg, "train-00003"));
    assert_null(l);
    /* a missing shard */
    assert_int_equal(unlink(path), 0);
    st_clearerr(&err);
    rc = loader_open(dir, &c, &l, &err);
    assert_true(rc == ST_ENOTFOUND || rc == ST_EIO);
    assert_non_null(strstr(err.msg, "train-00003"));
    /* no such split, no such directory, bad config */
    c.split = "val";
    st_clearerr(&err);
    assert_int_equal(loader_open(W.zstd, &c, &l, &err), ST_ENOTFOUND);
    assert_non_null(strstr(err.msg, "val"));
    c.split = "train";
    c.threads = 0;
    assert_int_equal(loader_open(W.zstd, &c, &l, NULL), ST_EINVAL);
    c.threads = 2;
    c.rank = 2;
    assert_int_equal(loader_open(W.zstd, &c, &l, NULL), ST_EINVAL);
    c.rank = 0;
    assert_true(loader_open("/nonexistent/pack", &c, &l, NULL) < 0);
}

/* ---- memory ------------------------------------------------------------------------------ */

typedef struct counting {
    int allocs, frees;
    size_t bytes;
} counting;

static void *count_alloc(size_t bytes, void *ctx)
{
    counting *c = ctx;
    c->allocs++;
    c->bytes = bytes;
    return aligned_alloc(4096, bytes);
}

static void count_free(void *p, size_t bytes, void *ctx)
{
    counting *c = ctx;
    c->frees += bytes == c->bytes;
    free(p);
}

static void test_allocator_and_cap(void **state)
{
    (void)state;
    counting cnt = {0};
    ring_allocator a = {count_alloc, count_free, &cnt};
    loader_config c = base_cfg(2, LOADER_SHUFFLE_GLOBAL);
    c.alloc = &a;
    c.slots = 3;
    run_ok(W.zstd, &c, &S2);
    assert_int_equal(cnt.allocs, 1);
    assert_int_equal(cnt.frees, 1);
    assert_int_equal(cnt.bytes, 3 * 4096); /* 32 x 64 B + labels + ids */

    c.alloc = NULL;
    c.host_mem_cap = 64 << 10;
    loader *l = NULL;
    st_error err = {0};
    assert_int_equal(loader_open(W.zstd, &c, &l, &err), ST_ENOMEM);
    assert_null(l);
    assert_non_null(strstr(err.msg, "cap 64.0 KiB"));
    assert_non_null(strstr(err.msg, "3 slots"));
    assert_non_null(strstr(err.msg, "2 threads"));
    assert_non_null(strstr(err.msg, "1005 records"));
    c.host_mem_cap = 64 << 20;
    assert_int_equal(loader_open(W.zstd, &c, &l, &err), 0);
    loader_close(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exactly_once_any_threads),
        cmocka_unit_test(test_png_and_raw_and_mmap),
        cmocka_unit_test(test_resume),
        cmocka_unit_test(test_ranks),
        cmocka_unit_test(test_rank_empty_part),
        cmocka_unit_test(test_slow_consumer),
        cmocka_unit_test(test_slow_producer),
        cmocka_unit_test(test_one_slot),
        cmocka_unit_test(test_batch_larger_than_split),
        cmocka_unit_test(test_split_smaller_than_threads),
        cmocka_unit_test(test_close_with_held_batches),
        cmocka_unit_test(test_close_wakes_consumer),
        cmocka_unit_test(test_timeout),
        cmocka_unit_test(test_corrupt_checksum),
        cmocka_unit_test(test_corrupt_decode),
        cmocka_unit_test(test_bad_pack_at_open),
        cmocka_unit_test(test_allocator_and_cap),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
