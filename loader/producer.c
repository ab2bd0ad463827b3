/* loader/producer.c — the producer thread: claim a batch, work out its
 * samples from the epoch's order, pread + check + decode each one straight
 * into its place in the slot, publish. Read-ahead hints go to the kernel
 * with posix_fadvise on the known future order.
 */
#include "loader/producer.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#define ZSTD_STATIC_LINKING_ONLY /* ZSTD_estimateDCtxSize */
#include <zstd.h>

/* Decoder handle and libpng's per-image state, beside the zstd DCtx. */
#define DECODER_SLACK (64u << 10)

static inline uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

size_t producer_scratch_bytes(size_t max_record, uint32_t batch)
{
    return max_record + (size_t)batch * (sizeof(uint32_t) + sizeof(uint64_t)) +
           ZSTD_estimateDCtxSize() + DECODER_SLACK;
}

int producer_init(producer *p, const producer_shared *sh, st_error *err)
{
    p->sh = sh;
    p->last_window = UINT64_MAX;
    atomic_init(&p->read_ns, 0);
    atomic_init(&p->decode_ns, 0);
    atomic_init(&p->blocked_ns, 0);
    atomic_init(&p->skipped, 0);
    atomic_init(&p->resize_ns, 0);
    atomic_init(&p->jpeg_rows, 0);
    atomic_init(&p->jpeg_rows_skipped, 0);
    const manifest *m = pack_manifest(sh->pack);
    codec_shape shape = {m->codec, m->height, m->width, m->channels};
    int rc = codec_dec_create(&shape, pack_ddict(sh->pack), &p->dec, err);
    if (rc) goto fail;
    if (sh->fused_on && (rc = fused_create(&sh->fused_cfg, &p->fused, err)))
        goto fail_dec;
    rc = order_cursor_create(sh->order, &p->cur, err);
    if (rc) goto fail_dec;
    p->scratch_cap = pack_max_record(sh->pack);
    p->scratch = malloc(p->scratch_cap ? p->scratch_cap : 1);
    uint32_t cap = order_batch_cap(sh->order);
    p->loc_shard = malloc(cap * sizeof *p->loc_shard);
    p->loc_rec = malloc(cap * sizeof *p->loc_rec);
    if (p->scratch == NULL || p->loc_shard == NULL || p->loc_rec == NULL) {
        rc = st_seterr(err, ST_ENOMEM, "loader: no memory for a %zu-byte "
                       "record buffer", p->scratch_cap);
        goto fail_mem;
    }
    return 0;
fail_mem:
    free(p->loc_rec);
    free(p->loc_shard);
    free(p->scratch);
    p->loc_rec = NULL;
    p->loc_shard = NULL;
    p->scratch = NULL;
    order_cursor_destroy(p->cur);
    p->cur = NULL;
fail_dec:
    fused_destroy(p->fused);
    p->fused = NULL;
    codec_dec_destroy(p->dec);
    p->dec = NULL;
fail:
    return rc;
}

void producer_destroy(producer *p)
{
    free(p->loc_rec);
    free(p->loc_shard);
    free(p->scratch);
    p->loc_rec = NULL;
    p->loc_shard = NULL;
    order_cursor_destroy(p->cur);
    fused_destroy(p->fused);
    codec_dec_destroy(p->dec);
    p->fused = NULL;
    p->scratch = NULL;
    p->cur = NULL;
    p->dec = NULL;
}

/* ---- one sample ------------------------------------------------------------- */

/* Points *src at record rec of shard s, checked against its XXH3. */
static int read_record(producer *p, uint32_t shard_no, const shard *s,
                       uint64_t rec, const shard_entry *e,
                       const uint8_t **src)
{
    const producer_shared *sh = p->sh;
    if (sh->maps == NULL) {
        *src = p->scratch;
        return shard_read_record(s, rec, p->scratch, p->scratch_cap, &p->err);
    }
    *src = sh->maps[shard_no] + e->offset;
    if (shard_record_check(*src, e->length) != e->check)
        return st_seterr(&p->err, ST_ECHECKSUM, "%s: record %llu checksum "
                         "mismatch", shard_path(s), (unsigned long long)rec);
    return 0;
}

/* Reads, checks and decodes sample id into dst. Times are chained to save
 * a clock read per sample: t[2] is the last timestamp; the span up to the
 * end of the read (locating the record included) adds to t[0], the decode
 * to t[1]. On failure p->err names split, shard and record. */
static int load_at(producer *p, uint64_t epoch, uint64_t id,
                   uint32_t shard_no, uint64_t rec, uint8_t *dst,
                   int32_t *label, uint64_t t[3])
{
    const producer_shared *sh = p->sh;
    const shard *s = pack_shard(sh->pack, sh->split, shard_no);
    const shard_entry *e = shard_entry_at(s, rec);
    const uint8_t *src;
    int rc = read_record(p, shard_no, s, rec, e, &src);
    uint64_t t1 = now_ns();
    t[0] += t1 - t[2];
    t[2] = t1;
    if (rc == 0 && p->fused) {
        /* the fused path times decode and resize itself */
        rc = fused_sample(p->fused, p->dec, src, e->length, e->width,
                          e->height, epoch, id, dst, &p->fst, &p->err);
        t[2] = now_ns();
    } else if (rc == 0) {
        rc = codec_decode(p->dec, src, e->length, e->height, e->width, dst,
                          &p->err);
        t[2] = now_ns();
        t[1] += t[2] - t1;
    }
    if (rc == 0) {
        *label = e->label;
        return 0;
    }
    char inner[sizeof p->err.msg];
    memcpy(inner, p->err.msg, sizeof inner);
    return st_seterr_force(&p->err, rc, "loader: split '%s', shard %u (%s), "
                           "record %llu (sample %llu): %s", sh->split_name,
                           shard_no, shard_path(s), (unsigned long long)rec,
                           (unsigned long long)id, inner);
}

static int load_sample(producer *p, uint64_t epoch, uint64_t id,
                       uint8_t *dst, int32_t *label, uint64_t t[3])
{
    uint32_t shard_no;
    uint64_t rec;
    pack_locate(p->sh->pack, p->sh->split, id, &shard_no, &rec);
    return load_at(p, epoch, id, shard_no, rec, dst, label, t);
}

static int skippable(int rc)
{
    return rc == ST_ECHECKSUM || rc == ST_EDECODE || rc == ST_EFORMAT;
}

/* Fills one place of a batch with the first valid sample at epoch
 * positions pos, pos+1, ... (wrapping): with policy skip, a corrupt record
 * is replaced by the next valid sample of the order, so the stream stays a
 * pure function of (seed, epoch, position). */
static int fill_sample(producer *p, uint64_t epoch, uint64_t pos, uint8_t *dst,
                       int32_t *label, uint64_t *id_out, uint64_t t[3],
                       uint64_t *skipped)
{
    const producer_shared *sh = p->sh;
    uint64_t n = order_samples(sh->order);
    for (uint64_t tries = 0; tries < n; tries++) {
        uint64_t id = order_sample(sh->order, p->cur, epoch, pos);
        int rc = load_sample(p, epoch, id, dst, label, t);
        if (rc == 0) {
            *id_out = id;
            return 0;
        }
        if (sh->cfg.on_corrupt != LOADER_CORRUPT_SKIP || !skippable(rc))
            return rc;
        (*skipped)++;
        st_clearerr(&p->err);
        if (++pos == n) pos = 0;
    }
    return st_seterr(&p->err, ST_EDECODE, "loader: split '%s': all %llu "
                     "records are corrupt", sh->split_name,
                     (unsigned long long)n);
}

/* ---- read-ahead ------------------------------------------------------------ */

static void advise_window(producer *p, uint64_t epoch, uint64_t w)
{
    const producer_shared *sh = p->sh;
    const uint32_t *shards = NULL;
    uint32_t k = order_window_shards(sh->order, p->cur, epoch, w, &shards);
    for (uint32_t i = 0; i < k; i++) {
        const shard *s = pack_shard(sh->pack, sh->split, shards[i]);
        /* A hint: its failure changes nothing but speed. */
        (void)posix_fadvise(shard_fd(s), 0, 0, POSIX_FADV_WILLNEED);
    }
}

/* Window mode: when a batch enters a new window, prefetch the next one
 * (and this one at the start). Global mode with cfg.readahead: prefetch the
 * records of the batch readahead batches ahead. */
static void prefetch(producer *p, uint64_t g)
{
    const producer_shared *sh = p->sh;
    uint64_t nb = sh->nbatches;
    if (sh->cfg.shuffle == LOADER_SHUFFLE_WINDOW) {
        uint64_t epoch = g / nb, b = g % nb;
        uint64_t w = order_window_of(sh->order, p->cur, epoch,
                                     order_position(sh->order, b, 0));
        uint64_t key = epoch * 0x100000000ull + w;
        if (key == p->last_window) return;
        if (p->last_window == UINT64_MAX || b == 0) advise_window(p, epoch, w);
        advise_window(p, epoch, w + 1);
        p->last_window = key;
        return;
    }
    if (sh->cfg.shuffle != LOADER_SHUFFLE_GLOBAL || sh->cfg.readahead == 0 ||
        sh->maps != NULL)
        return;
    uint64_t g2 = g + sh->cfg.readahead;
    if (g2 - sh->start_g >= sh->limit) return;
    uint64_t epoch = g2 / nb, b = g2 % nb;
    uint32_t n = order_batch_len(sh->order, b);
    for (uint32_t i = 0; i < n; i++) {
        uint64_t id = order_sample(sh->order, p->cur, epoch,
                                   order_position(sh->order, b, i));
        uint32_t shard_no;
        uint64_t rec;
        pack_locate(sh->pack, sh->split, id, &shard_no, &rec);
        const shard *s = pack_shard(sh->pack, sh->split, shard_no);
        const shard_entry *e = shard_entry_at(s, rec);
        (void)posix_fadvise(shard_fd(s), (off_t)e->offset, e->length,
                            POSIX_FADV_WILLNEED);
    }
}

/* ---- one batch --------------------------------------------------------------- */

/* The batch's sample ids (into the slot) and their (shard, record). */
static void locate_batch(producer *p, uint64_t epoch, uint64_t b, uint32_t n,
                         uint64_t *ids)
{
    const producer_shared *sh = p->sh;
    for (uint32_t i = 0; i < n; i++) {
        ids[i] = order_sample(sh->order, p->cur, epoch,
                              order_position(sh->order, b, i));
        pack_locate(sh->pack, sh->split, ids[i], &p->loc_shard[i],
                    &p->loc_rec[i]);
    }
}

/* Shuffled access defeats the hardware prefetcher: fetch the index entry
 * 4 samples ahead and, from a mapping, the record 2 samples ahead while
 * this one decodes. */
static void prefetch_ahead(const producer *p, uint32_t i, uint32_t n)
{
    const producer_shared *sh = p->sh;
    if (i + 4 < n)
        __builtin_prefetch(shard_entry_at(
            pack_shard(sh->pack, sh->split, p->loc_shard[i + 4]),
            p->loc_rec[i + 4]));
    if (sh->maps == NULL || i + 2 >= n) return;
    uint32_t k = p->loc_shard[i + 2];
    const shard_entry *e =
        shard_entry_at(pack_shard(sh->pack, sh->split, k), p->loc_rec[i + 2]);
    const uint8_t *r = sh->maps[k] + e->offset;
    for (uint32_t off = 0; off < e->length; off += 64)
        __builtin_prefetch(r + off);
}

static int fill_batch(producer *p, uint32_t slot, uint64_t seq)
{
    const producer_shared *sh = p->sh;
    uint64_t g = sh->start_g + seq;
    uint64_t epoch = g / sh->nbatches, b = g % sh->nbatches;
    uint32_t n = order_batch_len(sh->order, b);
    uint8_t *base = ring_slot(sh->ring, slot);
    int32_t *labels = (int32_t *)(base + sh->labels_off);
    uint64_t *ids = (uint64_t *)(base + sh->ids_off);
    uint64_t t[3] = {0, 0, 0}, skipped = 0, ns = order_samples(sh->order);
    p->fst = (fused_stats){0};
    st_clearerr(&p->err);
    prefetch(p, g);
    t[2] = now_ns();
    locate_batch(p, epoch, b, n, ids);
    int rc = 0;
    for (uint32_t i = 0; i < n && rc == 0; i++) {
        uint8_t *dst = base + i * sh->sample_bytes;
        prefetch_ahead(p, i, n);
        rc = load_at(p, epoch, ids[i], p->loc_shard[i], p->loc_rec[i], dst,
                     &labels[i], t);
        if (rc == 0 || sh->cfg.on_corrupt != LOADER_CORRUPT_SKIP ||
            !skippable(rc))
            continue;
        skipped++;
        st_clearerr(&p->err);
        uint64_t next = order_position(sh->order, b, i) + 1;
        rc = fill_sample(p, epoch, next == ns ? 0 : next, dst, &labels[i],
                         &ids[i], t, &skipped);
    }
    atomic_fetch_add_explicit(&p->read_ns, t[0], memory_order_relaxed);
    atomic_fetch_add_explicit(&p->decode_ns, t[1], memory_order_relaxed);
    atomic_fetch_add_explicit(&p->skipped, skipped, memory_order_relaxed);
    if (p->fused) {
        atomic_fetch_add_explicit(&p->decode_ns, p->fst.decode_ns,
                                  memory_order_relaxed);
        atomic_fetch_add_explicit(&p->resize_ns, p->fst.resize_ns,
                                  memory_order_relaxed);
        atomic_fetch_add_explicit(&p->jpeg_rows, p->fst.rows_total,
                                  memory_order_relaxed);
        atomic_fetch_add_explicit(&p->jpeg_rows_skipped, p->fst.rows_skipped,
                                  memory_order_relaxed);
    }
    return rc;
}

static void sleep_us(uint32_t us)
{
    struct timespec ts = {us / 1000000u, (long)(us % 1000000u) * 1000L};
    nanosleep(&ts, NULL);
}

void *producer_main(void *arg)
{
    producer *p = arg;
    const producer_shared *sh = p->sh;
    for (;;) {
        uint32_t slot;
        uint64_t seq, blocked = 0;
        int rc = ring_claim(sh->ring, &slot, &seq, &blocked, &p->err);
        atomic_fetch_add_explicit(&p->blocked_ns, blocked,
                                  memory_order_relaxed);
        if (rc == ST_EEND || rc == ST_ECLOSED) break;
        if (rc) {
            /* The ring's own lock failed: nothing can be delivered safely.
             * Shutting down wakes the consumer instead of leaving it. */
            ring_shutdown(sh->ring);
            break;
        }
        if (sh->cfg.producer_delay_us) sleep_us(sh->cfg.producer_delay_us);
        int status = fill_batch(p, slot, seq);
        if (status) sh->slot_err[slot] = p->err;
        rc = ring_publish(sh->ring, slot, status, &p->err);
        if (status) {
            /* Nothing past a failed batch is ever delivered. */
            ring_limit(sh->ring, seq + 1);
            break;
        }
        if (rc) {
            ring_shutdown(sh->ring);
            break;
        }
    }
    return NULL;
}
