/* loader/loader.c — the loader handle: open (validate, size, allocate,
 * start producers), in-order delivery to one consumer, resume state, stats
 * and close at any moment.
 *
 * Arena: everything is allocated in loader_open — the pack (a version-1
 * index is copied, a version-2 one mapped read-only),
 * the order, the ring (slots x stride through the allocator hook; slot
 * layout in producer.h), one st_error per slot, the producers with their
 * decoder and record buffer, and the shard mappings for LOADER_IO_MMAP.
 */
#include "loader/loader.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>

#include "datasets/pack.h"
#include "datasets/units.h"
#include "loader/order.h"
#include "loader/producer.h"

#define MAX_THREADS 256u
#define SLOT_ALIGN 64u

struct loader {
    producer_shared sh;        /* immutable after open (see producer.h) */
    pack *pack;
    order *order;
    ring *ring;
    char split_name[MANIFEST_NAME_MAX];
    producer *prod;            /* (threads) */
    st_error *slot_err;        /* (slots) */
    uint8_t **maps;            /* (nmaps) shard mappings, LOADER_IO_MMAP */
    size_t *map_len;           /* (nmaps) */
    uint32_t nmaps;
    uint32_t height, width, channels;
    uint64_t t_open_ns;
    /* Call gate: close waits until no next_batch/release is in flight. */
    pthread_mutex_t gate_mu;
    pthread_cond_t gate_cv;
    int gate_ok;               /* gate_mu/gate_cv were initialised */
    int in_calls;              /* calls in flight; gate_mu */
    int closing;               /* close has begun; gate_mu */
    /* Consumer thread only. */
    uint64_t next_g;           /* global batch number of the next delivery */
    int end_due;               /* an epoch just ended: report ST_EEND once */
    int failed;                /* a batch failed: fail_err from now on */
    st_error fail_err;
    /* Written by the consumer, read by loader_get_stats from any thread. */
    _Atomic uint64_t batches, samples, wait_ns;
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static size_t align_up(size_t x, size_t a) { return (x + a - 1) / a * a; }

void loader_config_default(loader_config *cfg)
{
    *cfg = (loader_config){
        .split = "train", .batch_size = 256, .threads = 2, .slots = 4,
        .shuffle = LOADER_SHUFFLE_GLOBAL, .window_shards = 4, .world = 1,
        .on_corrupt = LOADER_CORRUPT_FAIL, .io = LOADER_IO_AUTO,
        .readahead = LOADER_DEFAULT_READAHEAD,
    };
}

void loader_config_resume(loader_config *cfg, const loader_state *st)
{
    cfg->seed = st->seed;
    cfg->start_epoch = st->epoch;
    cfg->start_batch = st->batch;
}

/* Slot layout: pixels (B, H, W, C), labels (B) int32, ids (B) uint64. */
static size_t slot_layout(uint32_t batch, size_t sample_bytes,
                          size_t *labels_off, size_t *ids_off)
{
    size_t l = align_up((size_t)batch * sample_bytes, SLOT_ALIGN);
    size_t i = align_up(l + (size_t)batch * sizeof(int32_t), SLOT_ALIGN);
    if (labels_off) *labels_off = l;
    if (ids_off) *ids_off = i;
    return i + (size_t)batch * sizeof(uint64_t);
}

/* Samples of this rank's part of a global batch, at most: B/w. */
static uint32_t rank_cap(const loader_config *cfg)
{
    return cfg->world > 1 ? cfg->batch_size / cfg->world : cfg->batch_size;
}

loader_memory loader_memory_of(const loader_config *cfg, size_t sample_bytes,
                               size_t max_record, uint64_t records,
                               uint64_t mapped_bytes)
{
    loader_memory m;
    m.mapped = (size_t)mapped_bytes;
    uint32_t cap = rank_cap(cfg);
    size_t slot = slot_layout(cap, sample_bytes, NULL, NULL);
    m.ring = (size_t)cfg->slots * align_up(slot, 4096);
    m.scratch = (size_t)cfg->threads * producer_scratch_bytes(max_record, cap);
    m.index = (size_t)records * sizeof(shard_entry); /* as held in memory */
    m.total = m.ring + m.scratch + m.index + m.mapped;
    return m;
}

static int check_config(const loader_config *c, st_error *err)
{
    const char *bad = NULL;
    long v = 0;
    if (c->split == NULL || c->split[0] == '\0') bad = "split";
    else if (c->batch_size == 0) bad = "batch_size", v = c->batch_size;
    else if (c->threads == 0 || c->threads > MAX_THREADS)
        bad = "threads", v = c->threads;
    else if (c->slots == 0) bad = "slots", v = c->slots;
    else if ((unsigned)c->shuffle > LOADER_SHUFFLE_WINDOW)
        bad = "shuffle", v = c->shuffle;
    else if (c->shuffle == LOADER_SHUFFLE_WINDOW && c->window_shards == 0)
        bad = "window_shards", v = 0;
    else if (c->world == 0 || c->rank >= c->world)
        bad = "rank", v = c->rank;
    else if ((unsigned)c->on_corrupt > LOADER_CORRUPT_SKIP)
        bad = "on_corrupt", v = c->on_corrupt;
    else if ((unsigned)c->io > LOADER_IO_MMAP) bad = "io", v = c->io;
    else if (c->epochs && c->start_epoch > c->epochs)
        bad = "start_epoch", v = (long)c->start_epoch;
    if (bad == NULL) return 0;
    return st_seterr(err, ST_EINVAL, "loader: bad config: %s = %ld%s", bad, v,
                     c->world && c->rank >= c->world ? " (>= world)" : "");
}

static uint64_t split_file_bytes(const loader *l)
{
    const manifest_split *ms = &pack_manifest(l->pack)->splits[l->sh.split];
    uint64_t b = 0;
    for (uint32_t k = 0; k < ms->nshards; k++) b += ms->shards[k].bytes;
    return b;
}

/* Resolves LOADER_IO_AUTO, then refuses a config over host_mem_cap with
 * every number in the message. */
static int plan_memory(loader *l, loader_config *cfg, st_error *err)
{
    const manifest *m = pack_manifest(l->pack);
    uint64_t records = 0;
    for (uint32_t s = 0; s < m->nsplits; s++) records += m->splits[s].samples;
    /* only copied (version-1) index entries are the loader's own memory;
     * a version-2 index is mapped read-only (page cache) */
    uint64_t copied = pack_index_memory(l->pack) / sizeof(shard_entry);
    size_t sb = (size_t)l->height * l->width * l->channels;
    size_t mr = pack_max_record(l->pack);
    uint64_t fb = split_file_bytes(l);
    if (cfg->io == LOADER_IO_AUTO) {
        loader_memory with = loader_memory_of(cfg, sb, mr, copied, fb);
        int fits = cfg->host_mem_cap == 0 || with.total <= cfg->host_mem_cap;
        cfg->io = fb <= LOADER_MMAP_AUTO_MAX && fits ? LOADER_IO_MMAP
                                                     : LOADER_IO_PREAD;
    }
    loader_memory mem = loader_memory_of(cfg, sb, mr, copied,
                                         cfg->io == LOADER_IO_MMAP ? fb : 0);
    if (l->sh.fused_on) {
        size_t f = (size_t)cfg->threads * fused_scratch_bytes(&l->sh.fused_cfg);
        mem.scratch += f;
        mem.total += f;
    }
    if (cfg->host_mem_cap == 0 || mem.total <= cfg->host_mem_cap) return 0;
    char cap[32], ring_b[32], slot_b[32], scr[32], idx[32], map[32], tot[32];
    return st_seterr(err, ST_ENOMEM, "loader: host memory cap %s (%zu bytes) "
        "is too small: ring %u slots x %s = %s, scratch %u threads = %s, "
        "index %llu records = %s copied, mapped shards %s; needed %s (%zu "
        "bytes)",
        units_format_bytes(cfg->host_mem_cap, cap, sizeof cap),
        cfg->host_mem_cap, cfg->slots,
        units_format_bytes(mem.ring / cfg->slots, slot_b, sizeof slot_b),
        units_format_bytes(mem.ring, ring_b, sizeof ring_b), cfg->threads,
        units_format_bytes(mem.scratch, scr, sizeof scr),
        (unsigned long long)records,
        units_format_bytes(mem.index, idx, sizeof idx),
        units_format_bytes(mem.mapped, map, sizeof map),
        units_format_bytes(mem.total, tot, sizeof tot), mem.total);
}

static int open_pack_split(loader *l, const char *dir, const loader_config *cfg,
                           st_error *err)
{
    ST_TRY(pack_open(dir, &l->pack, err));
    const manifest *m = pack_manifest(l->pack);
    l->sh.split = pack_split_find(l->pack, cfg->split);
    if (l->sh.split < 0) {
        char names[256] = "";
        for (uint32_t s = 0; s < m->nsplits; s++) {
            size_t len = strlen(names);
            snprintf(names + len, sizeof names - len, "%s%s", s ? ", " : "",
                     m->splits[s].name);
        }
        return st_seterr(err, ST_ENOTFOUND, "loader: pack %s has no split "
                         "'%s' (it has: %s)", dir, cfg->split, names);
    }
    snprintf(l->split_name, sizeof l->split_name, "%s", cfg->split);
    l->height = m->height;
    l->width = m->width;
    l->channels = m->channels;
    return 0;
}

/* Decides the slot's sample shape from the transform, and whether samples
 * go through loader/fused.c. A variable-size split needs a transform that
 * makes every sample one size. */
static int plan_transform(loader *l, const loader_config *cfg, st_error *err)
{
    const manifest *m = pack_manifest(l->pack);
    const transform_spec *t = cfg->transform;
    int sizes = t && (t->kind == TRANSFORM_RRC || t->kind == TRANSFORM_CENTER ||
                      t->kind == TRANSFORM_RESIZE);
    if (pack_is_variable(l->pack) && !sizes) {
        char what[64] = "no transform";
        if (t) transform_format(t, what, sizeof what);
        return st_seterr(err, ST_EINVAL, "loader: split '%s' holds images "
                         "of different sizes (up to %ux%u), which '%s' "
                         "cannot batch: use random-resized-crop S, "
                         "center-crop S or resize WxH", l->split_name,
                         m->width, m->height, what);
    }
    if (t == NULL || (t->kind == TRANSFORM_NONE && !t->flip && !(t->erase > 0)))
        return 0;
    l->sh.fused_on = 1;
    fused_config_of(m, t, cfg->seed, &l->sh.fused_cfg);
    l->width = l->sh.fused_cfg.out_w;
    l->height = l->sh.fused_cfg.out_h;
    return 0;
}

static int make_order(loader *l, const loader_config *cfg, st_error *err)
{
    uint32_t ns = pack_split_nshards(l->pack, l->sh.split);
    uint64_t *counts = malloc((ns + 1ull) * sizeof *counts);
    if (counts == NULL) return st_seterr(err, ST_ENOMEM, "loader: no memory");
    for (uint32_t s = 0; s < ns; s++)
        counts[s] = shard_count(pack_shard(l->pack, l->sh.split, s));
    order_config oc = {
        .mode = (order_mode)cfg->shuffle, .seed = cfg->seed,
        .window = cfg->window_shards ? cfg->window_shards : 1,
        .batch = cfg->batch_size, .drop_last = cfg->drop_last,
        .rank = cfg->rank, .world = cfg->world,
    };
    int rc = order_create(&oc, counts, ns, &l->order, err);
    free(counts);
    if (rc) {
        char inner[sizeof err->msg];
        memcpy(inner, err->msg, sizeof inner);
        return st_seterr_force(err, rc, "loader: split '%s': %s",
                               l->split_name, inner);
    }
    return 0;
}

/* Resolves the start position and how many batches to produce. */
static int plan_stream(loader *l, const loader_config *cfg, st_error *err)
{
    uint64_t nb = order_batches(l->order);
    uint64_t e = cfg->start_epoch, b = cfg->start_batch;
    if (b > nb)
        return st_seterr(err, ST_EINVAL, "loader: start batch %llu is past "
                         "the %llu batches of an epoch of split '%s'",
                         (unsigned long long)b, (unsigned long long)nb,
                         l->split_name);
    if (b == nb) e++, b = 0;
    l->sh.nbatches = nb;
    l->sh.start_g = e * nb + b;
    l->sh.limit = UINT64_MAX;
    if (cfg->epochs) {
        uint64_t end = cfg->epochs * nb;
        l->sh.limit = end > l->sh.start_g ? end - l->sh.start_g : 0;
    }
    l->next_g = l->sh.start_g;
    return 0;
}

/* Kernel hints per shard (failures only cost speed): random access for
 * shuffled orders, sequential for file order; a mapped split is small
 * enough to be read ahead whole; window mode prefetches its next window. */
static void advise_shards(loader *l, const loader_config *cfg)
{
    int advice = cfg->shuffle == LOADER_SHUFFLE_NONE ? POSIX_FADV_SEQUENTIAL
                                                     : POSIX_FADV_RANDOM;
    uint32_t ns = pack_split_nshards(l->pack, l->sh.split);
    for (uint32_t s = 0; s < ns; s++) {
        int fd = shard_fd(pack_shard(l->pack, l->sh.split, s));
        (void)posix_fadvise(fd, 0, 0, advice);
        if (cfg->io == LOADER_IO_MMAP)
            (void)posix_fadvise(fd, 0, 0, POSIX_FADV_WILLNEED);
    }
}

static int map_shards(loader *l, const loader_config *cfg, st_error *err)
{
    if (cfg->io != LOADER_IO_MMAP) return 0;
    uint32_t ns = pack_split_nshards(l->pack, l->sh.split);
    l->maps = calloc(ns, sizeof *l->maps);
    l->map_len = calloc(ns, sizeof *l->map_len);
    if (l->maps == NULL || l->map_len == NULL)
        return st_seterr(err, ST_ENOMEM, "loader: no memory");
    for (uint32_t s = 0; s < ns; s++) {
        const shard *sd = pack_shard(l->pack, l->sh.split, s);
        struct stat st;
        if (fstat(shard_fd(sd), &st) != 0 || st.st_size <= 0)
            return st_seterr(err, ST_EIO, "loader: fstat %s failed",
                             shard_path(sd));
        void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED,
                       shard_fd(sd), 0);
        if (p == MAP_FAILED)
            return st_seterr(err, ST_EIO, "loader: mmap %s failed",
                             shard_path(sd));
        l->maps[s] = p;
        l->map_len[s] = (size_t)st.st_size;
        l->nmaps = s + 1;
        if (cfg->shuffle != LOADER_SHUFFLE_NONE)
            (void)madvise(p, l->map_len[s], MADV_RANDOM);
    }
    l->sh.maps = (const uint8_t *const *)l->maps;
    return 0;
}

static int make_ring_and_producers(loader *l, const loader_config *cfg,
                                   st_error *err)
{
    l->sh.sample_bytes = (size_t)l->height * l->width * l->channels;
    size_t slot = slot_layout(rank_cap(cfg), l->sh.sample_bytes,
                              &l->sh.labels_off, &l->sh.ids_off);
    ST_TRY(ring_create(cfg->slots, slot, l->sh.limit, cfg->alloc, &l->ring,
                       err));
    l->slot_err = calloc(cfg->slots, sizeof *l->slot_err);
    l->prod = calloc(cfg->threads, sizeof *l->prod);
    if (l->slot_err == NULL || l->prod == NULL)
        return st_seterr(err, ST_ENOMEM, "loader: no memory");
    l->sh.pack = l->pack;
    l->sh.split_name = l->split_name;
    l->sh.order = l->order;
    l->sh.ring = l->ring;
    l->sh.cfg = *cfg;
    l->sh.cfg.split = l->split_name;
    l->sh.cfg.transform = NULL; /* the caller's; copied into fused_cfg */
    l->sh.slot_err = l->slot_err;
    for (uint32_t i = 0; i < cfg->threads; i++)
        ST_TRY(producer_init(&l->prod[i], &l->sh, err));
    return 0;
}

static int start_threads(loader *l, st_error *err)
{
    ST_TRY(ST_PTHREAD(err, pthread_mutex_init(&l->gate_mu, NULL)));
    int rc = ST_PTHREAD(err, pthread_cond_init(&l->gate_cv, NULL));
    if (rc) {
        (void)ST_PTHREAD(err, pthread_mutex_destroy(&l->gate_mu));
        return rc;
    }
    l->gate_ok = 1;
    l->t_open_ns = now_ns();
    for (uint32_t i = 0; i < l->sh.cfg.threads; i++) {
        ST_TRY(ST_PTHREAD(err, pthread_create(&l->prod[i].thread, NULL,
                                              producer_main, &l->prod[i])));
        l->prod[i].started = 1;
    }
    return 0;
}

/* Stops and frees whatever exists, in reverse order of creation. pthread
 * failures here are checked into a scratch error: nothing is left to
 * report them to, and the rest must still be freed. */
static void destroy(loader *l)
{
    st_error e = {0};
    if (l->ring) ring_shutdown(l->ring);
    for (uint32_t i = 0; l->prod && i < l->sh.cfg.threads; i++)
        if (l->prod[i].started)
            (void)ST_PTHREAD(&e, pthread_join(l->prod[i].thread, NULL));
    if (l->gate_ok) {
        (void)ST_PTHREAD(&e, pthread_cond_destroy(&l->gate_cv));
        (void)ST_PTHREAD(&e, pthread_mutex_destroy(&l->gate_mu));
    }
    for (uint32_t i = 0; l->prod && i < l->sh.cfg.threads; i++)
        producer_destroy(&l->prod[i]);
    free(l->prod);
    free(l->slot_err);
    ring_destroy(l->ring);
    for (uint32_t s = 0; s < l->nmaps; s++) munmap(l->maps[s], l->map_len[s]);
    free(l->maps);
    free(l->map_len);
    order_destroy(l->order);
    pack_close(l->pack);
    free(l);
}

int loader_open(const char *dir, const loader_config *cfg, loader **out,
                st_error *err)
{
    *out = NULL;
    ST_TRY(check_config(cfg, err));
    loader *l = calloc(1, sizeof *l);
    if (l == NULL) return st_seterr(err, ST_ENOMEM, "loader: no memory");
    l->sh.cfg = *cfg; /* thread count for destroy() until the real copy */
    l->sh.cfg.threads = 0;
    atomic_init(&l->batches, 0);
    atomic_init(&l->samples, 0);
    atomic_init(&l->wait_ns, 0);
    loader_config c = *cfg; /* io resolved by plan_memory */
    int rc = open_pack_split(l, dir, &c, err);
    if (rc == 0) rc = plan_transform(l, &c, err);
    if (rc == 0) rc = plan_memory(l, &c, err);
    if (rc == 0) rc = make_order(l, &c, err);
    if (rc == 0) rc = plan_stream(l, &c, err);
    if (rc == 0) rc = map_shards(l, &c, err);
    if (rc == 0) rc = make_ring_and_producers(l, &c, err);
    if (rc == 0) {
        advise_shards(l, &c);
        rc = start_threads(l, err);
    }
    if (rc) {
        destroy(l);
        return rc;
    }
    *out = l;
    return 0;
}

/* ---- consumer side ------------------------------------------------------------ */

static int gate_enter(loader *l, st_error *err)
{
    ST_TRY(ST_PTHREAD(err, pthread_mutex_lock(&l->gate_mu)));
    int closing = l->closing;
    if (!closing) l->in_calls++;
    ST_TRY(ST_PTHREAD(err, pthread_mutex_unlock(&l->gate_mu)));
    return closing ? st_seterr(err, ST_ECLOSED, "loader: closed") : 0;
}

static int gate_leave(loader *l, int rc, st_error *err)
{
    int e = ST_PTHREAD(err, pthread_mutex_lock(&l->gate_mu));
    if (e) return rc ? rc : e;
    if (--l->in_calls == 0 && l->closing)
        e = ST_PTHREAD(err, pthread_cond_broadcast(&l->gate_cv));
    int u = ST_PTHREAD(err, pthread_mutex_unlock(&l->gate_mu));
    return rc ? rc : e ? e : u;
}

/* Takes the next batch from the ring and fills *b. */
static int deliver(loader *l, loader_batch *b, st_error *err)
{
    uint32_t slot;
    uint64_t seq, wait = 0;
    int status;
    int rc = ring_next(l->ring, l->sh.cfg.timeout_ms, &slot, &seq, &status,
                       &wait, err);
    atomic_fetch_add_explicit(&l->wait_ns, wait, memory_order_relaxed);
    if (rc == ST_EEND)
        return st_seterr(err, ST_EEND, "loader: all %llu epochs delivered",
                         (unsigned long long)l->sh.cfg.epochs);
    if (rc) return rc;
    if (status) {
        l->failed = 1;
        l->fail_err = l->slot_err[slot];
        l->fail_err.code = status;
        (void)ring_release(l->ring, slot, NULL);
        return st_seterr_force(err, status, "%s", l->fail_err.msg);
    }
    uint64_t g = l->sh.start_g + seq, nb = l->sh.nbatches;
    uint8_t *base = ring_slot(l->ring, slot);
    *b = (loader_batch){
        .pixels = base,
        .labels = (int32_t *)(base + l->sh.labels_off),
        .ids = (const uint64_t *)(base + l->sh.ids_off),
        .n = order_batch_len(l->order, g % nb),
        .epoch = g / nb, .index = g % nb, .slot = slot,
        .height = l->height, .width = l->width, .channels = l->channels,
    };
    l->next_g = g + 1;
    l->end_due = b->index == nb - 1;
    atomic_fetch_add_explicit(&l->batches, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&l->samples, b->n, memory_order_relaxed);
    return 0;
}

int loader_next_batch(loader *l, loader_batch *b, st_error *err)
{
    ST_TRY(gate_enter(l, err));
    int rc;
    if (l->failed) {
        rc = st_seterr_force(err, l->fail_err.code, "%s", l->fail_err.msg);
    } else if (l->end_due) {
        l->end_due = 0;
        rc = st_seterr(err, ST_EEND, "loader: end of epoch %llu",
                       (unsigned long long)(l->next_g / l->sh.nbatches - 1));
    } else {
        rc = deliver(l, b, err);
    }
    return gate_leave(l, rc, err);
}

int loader_release(loader *l, const loader_batch *b, st_error *err)
{
    ST_TRY(gate_enter(l, err));
    int rc = ring_release(l->ring, b->slot, err);
    return gate_leave(l, rc, err);
}

loader_state loader_get_state(const loader *l)
{
    return (loader_state){l->sh.cfg.seed, l->next_g / l->sh.nbatches,
                          l->next_g % l->sh.nbatches};
}

void loader_sample_shape(const loader *l, uint32_t *height, uint32_t *width,
                         uint32_t *channels)
{
    *height = l->height;
    *width = l->width;
    *channels = l->channels;
}

void loader_get_stats(const loader *l, loader_stats *st)
{
    memset(st, 0, sizeof *st);
    uint64_t r = 0, d = 0, bl = 0, rs = 0;
    for (uint32_t i = 0; i < l->sh.cfg.threads; i++) {
        const producer *p = &l->prod[i];
        rs += atomic_load_explicit(&p->resize_ns, memory_order_relaxed);
        st->jpeg_rows +=
            atomic_load_explicit(&p->jpeg_rows, memory_order_relaxed);
        st->jpeg_rows_skipped +=
            atomic_load_explicit(&p->jpeg_rows_skipped, memory_order_relaxed);
        r += atomic_load_explicit(&p->read_ns, memory_order_relaxed);
        d += atomic_load_explicit(&p->decode_ns, memory_order_relaxed);
        bl += atomic_load_explicit(&p->blocked_ns, memory_order_relaxed);
        st->skipped += atomic_load_explicit(&p->skipped, memory_order_relaxed);
    }
    st->batches = atomic_load_explicit(&l->batches, memory_order_relaxed);
    st->samples = atomic_load_explicit(&l->samples, memory_order_relaxed);
    st->bytes = st->samples * l->sh.sample_bytes;
    st->batches_per_epoch = l->sh.nbatches;
    st->read_s = r * 1e-9;
    st->decode_s = d * 1e-9;
    st->resize_s = rs * 1e-9;
    st->blocked_s = bl * 1e-9;
    st->wait_s = atomic_load_explicit(&l->wait_ns, memory_order_relaxed) * 1e-9;
    st->elapsed_s = (now_ns() - l->t_open_ns) * 1e-9;
    if (st->elapsed_s > 0) {
        st->samples_per_s = st->samples / st->elapsed_s;
        st->mb_per_s = st->bytes / st->elapsed_s / 1e6;
    }
    st->io = l->sh.cfg.io;
}

void loader_close(loader *l)
{
    if (l == NULL) return;
    /* Refuse new calls, wake the blocked ones, wait for them to leave. */
    st_error e = {0};
    if (ST_PTHREAD(&e, pthread_mutex_lock(&l->gate_mu)) == 0) {
        l->closing = 1;
        ring_shutdown(l->ring);
        while (l->in_calls > 0)
            if (ST_PTHREAD(&e, pthread_cond_wait(&l->gate_cv, &l->gate_mu)))
                break;
        (void)ST_PTHREAD(&e, pthread_mutex_unlock(&l->gate_mu));
    }
    destroy(l);
}
