/* datasets/packer.c — source → pack: dictionary training, a pool of
 * encoder threads and in-order writing.
 *
 * Pipeline: samples are encoded in chunks. Two chunk buffers alternate:
 * while the workers encode chunk k+1 into one, the calling thread writes
 * chunk k from the other through the pack writer. Each worker owns its
 * source scratch, encoder and pixel buffer; nothing is allocated per
 * sample. Slots are sized for the largest sample; with large images a
 * chunk holds fewer of them (down to one per worker) so that the chunk
 * buffers stay near CHUNK_BUDGET.
 *
 * Channel statistics: each worker adds the values and squares of every
 * pixel of the statistics split into its own uint64 sums; the sums are
 * added at the end. Integer sums are exact and their order does not
 * matter, so the manifest's mean and std do not depend on --threads.
 */
#include "packer.h"
#include "codec.h"
#include "pack.h"
#include "shard.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define CLAIM 16                   /* samples a worker claims at a time */
#define BIG_SLOT (1u << 20)        /* above this, claim one at a time */
#define CHUNK_BUDGET (32u << 20)   /* bytes of encoded slots per chunk */

typedef struct chunk {
    uint8_t *data;      /* (cap, slot) encoded records */
    uint32_t *len;      /* (cap) */
    int32_t *label;     /* (cap) */
    uint16_t *h, *w;    /* (cap) each sample's size */
    uint64_t start, count;
} chunk;


typedef struct worker {
    struct packer *pk;
    pthread_t tid;
    int started;
    source_scratch *sc;
    codec_enc *enc;
    uint8_t *pixels;    /* (max H, max W, C) */
    uint64_t sum[4], sq[4]; /* statistics split: per channel sums of values
                               and squares; the worker's own */
    uint64_t pixels_seen;   /* pixels (per channel) added to sum */
    uint64_t passthrough;   /* records stored as the source's bytes */
    st_error perr;      /* its failed pthread call; written by the worker
                           before it sets pk->broken, read after */
} worker;

typedef struct packer {
    const source *src;
    const source_info *info;
    uint32_t codec;
    int variable;                /* samples of different sizes */
    uint32_t max_h, max_w;       /* largest sample */
    int stats_split;             /* split whose channel statistics we keep */
    size_t sample_bytes, slot;   /* largest decoded bytes; encoded slot */
    uint64_t mean_sample;        /* mean decoded bytes of a sample */
    uint64_t cap;                /* samples per chunk */
    uint64_t claim;              /* samples a worker claims at a time */
    chunk chunks[2];
    worker *workers;
    int nworkers;
    volatile sig_atomic_t *cancel; /* set by a signal handler; read by the
                                      calling thread only */
    atomic_int cancelled;          /* *cancel as the calling thread last saw
                                      it, for the workers */

    pthread_mutex_t mu;
    pthread_cond_t work, finished;
    chunk *job;          /* chunk being encoded, or NULL; guarded by mu */
    int split;           /* split of job; guarded by mu */
    uint64_t next, done; /* claimed/finished samples of job; guarded by mu */
    int shutdown;        /* guarded by mu */
    int failed;          /* guarded by mu */
    st_error err;        /* first worker failure; guarded by mu */
    atomic_int broken;   /* a worker's lock or wait failed and it left;
                            atomic: it holds no lock to say so */
} packer;

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

void packer_config_default(packer_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->codec = -1;
    cfg->level = PACKER_DEFAULT_LEVEL;
    cfg->quality = PACKER_DEFAULT_QUALITY;
    cfg->shard_bytes = 64u << 20;
    cfg->dict_bytes = PACKER_DEFAULT_DICT_BYTES;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    cfg->threads = n > 0 ? (int)n : 1;
}

/* ---- workers ----------------------------------------------------------- */

/* ---- the source's view of a sample ------------------------------------ */

/* Sample i's size. */
static void sample_size(const packer *pk, int split, uint64_t i, uint32_t *h,
                        uint32_t *w)
{
    source_sample_size(pk->src, split, i, w, h);
}

/* Reads sample i into w->pixels; nat gets the file's own bytes when they
 * are in the pack's codec and decode exactly to these pixels. */
static int read_sample(worker *w, int split, uint64_t i, int32_t *label,
                       source_native *nat, st_error *err)
{
    return source_read(w->pk->src, split, i, w->sc, w->pixels, label, nat,
                       err);
}

/* The default codec: jpeg when some samples are JPEG files, else zstd.
 * Measured on 300 JPEG q90 crops (shorter side 256..512) of the
 * plasma-workspace-wallpapers photographs at --max-side 512: jpeg packs
 * them in 8.9 MiB (233 passed through) and packinfo --verify decodes them
 * in 0.29 s; zstd level 9 needs 75.1 MiB (8.4x) and 0.15 s; png 48.1 MiB
 * and 1.35 s. 8x fewer bytes to read and cache, no generation loss for
 * the files passed through, and the loader's crop-aware JPEG decode skips
 * most of the full decode's time (README, "The pack format"). */
static uint32_t default_codec(const source_info *in)
{
    return in->jpeg_native ? CODEC_JPEG : CODEC_ZSTD;
}

/* ---- workers ----------------------------------------------------------- */

static void add_stats(worker *w, uint32_t h, uint32_t wd)
{
    uint32_t c = w->pk->info->channels;
    size_t n = (size_t)h * wd;
    const uint8_t *p = w->pixels;
    for (size_t i = 0; i < n; i++, p += c)
        for (uint32_t k = 0; k < c; k++) {
            w->sum[k] += p[k];
            w->sq[k] += (uint64_t)p[k] * p[k];
        }
    w->pixels_seen += n;
}

static int encode_one(worker *w, int split, uint64_t i, uint8_t *slot,
                      uint32_t *len, int32_t *label, uint16_t *hh,
                      uint16_t *ww, st_error *err)
{
    packer *pk = w->pk;
    const uint8_t *out;
    size_t out_len;
    uint32_t h, wd;
    source_native nat;
    sample_size(pk, split, i, &h, &wd);
    ST_TRY(read_sample(w, split, i, label, &nat, err));
    if (split == pk->stats_split) add_stats(w, h, wd);
    if (nat.bytes != NULL && nat.codec == pk->codec && nat.len <= pk->slot) {
        out = nat.bytes; /* byte-exact passthrough */
        out_len = nat.len;
        w->passthrough++;
    } else {
        ST_TRY(codec_encode(w->enc, w->pixels, h, wd, &out, &out_len, err));
    }
    if (out_len > pk->slot)
        return st_seterr(err, ST_EINTERNAL, "sample %llu encodes to %zu bytes,"
                         " more than the %zu reserved", (unsigned long long)i,
                         out_len, pk->slot);
    memcpy(slot, out, out_len);
    *len = (uint32_t)out_len;
    *hh = (uint16_t)h;
    *ww = (uint16_t)wd;
    return 0;
}

/* A worker whose pthread call failed leaves, holding nothing; wait_job
 * sees `broken` and reports w->perr. */
static void *worker_broken(worker *w)
{
    atomic_store_explicit(&w->pk->broken, 1, memory_order_release);
    return NULL;
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    packer *pk = w->pk;
    st_error err = {0};
    if (ST_PTHREAD(&w->perr, pthread_mutex_lock(&pk->mu))) return worker_broken(w);
    while (!pk->shutdown) {
        chunk *c = pk->job;
        if (c == NULL || pk->next >= c->count) {
            if (ST_PTHREAD(&w->perr, pthread_cond_wait(&pk->work, &pk->mu)))
                return worker_broken(w);
            continue;
        }
        uint64_t i0 = pk->next,
                 n = c->count - i0 < pk->claim ? c->count - i0 : pk->claim;
        int split = pk->split, failed = pk->failed;
        pk->next += n;
        if (ST_PTHREAD(&w->perr, pthread_mutex_unlock(&pk->mu)))
            return worker_broken(w);
        int rc = 0;
        for (uint64_t i = i0; i < i0 + n && rc == 0 && !failed; i++) {
            if (atomic_load_explicit(&pk->cancelled, memory_order_relaxed))
                break;
            rc = encode_one(w, split, c->start + i, c->data + i * pk->slot,
                            &c->len[i], &c->label[i], &c->h[i], &c->w[i],
                            &err);
        }
        if (ST_PTHREAD(&w->perr, pthread_mutex_lock(&pk->mu)))
            return worker_broken(w);
        if (rc != 0 && !pk->failed) {
            pk->failed = 1;
            pk->err = err;
        }
        pk->done += n;
        if (pk->done == c->count &&
            ST_PTHREAD(&w->perr, pthread_cond_broadcast(&pk->finished))) {
            (void)pthread_mutex_unlock(&pk->mu); /* already failing */
            return worker_broken(w);
        }
    }
    if (ST_PTHREAD(&w->perr, pthread_mutex_unlock(&pk->mu))) return worker_broken(w);
    return NULL;
}

/* Passes a cancel request (a signal handler's flag) on to the workers. */
static void relay_cancel(packer *pk)
{
    if (pk->cancel && *pk->cancel)
        atomic_store_explicit(&pk->cancelled, 1, memory_order_relaxed);
}

static int post_job(packer *pk, chunk *c, int split, st_error *err)
{
    relay_cancel(pk);
    ST_TRY(ST_PTHREAD(err, pthread_mutex_lock(&pk->mu)));
    pk->job = c;
    pk->split = split;
    pk->next = pk->done = 0;
    int rc = ST_PTHREAD(err, pthread_cond_broadcast(&pk->work));
    int u = ST_PTHREAD(err, pthread_mutex_unlock(&pk->mu));
    return rc ? rc : u;
}

/* The first broken worker's pthread failure, as err. */
static int broken_error(packer *pk, st_error *err)
{
    for (int t = 0; t < pk->nworkers; t++)
        if (pk->workers[t].perr.code)
            return st_seterr(err, pk->workers[t].perr.code, "encoder thread: "
                             "%s", pk->workers[t].perr.msg);
    return st_seterr(err, ST_EINTERNAL, "an encoder thread failed");
}

/* Waits for the posted chunk, waking every 100 ms to see whether a worker
 * broke (and so will never finish it). @return 0 or the first error. */
static int wait_job(packer *pk, st_error *err)
{
    ST_TRY(ST_PTHREAD(err, pthread_mutex_lock(&pk->mu)));
    int rc = 0;
    while (rc == 0 && pk->job && pk->done < pk->job->count &&
           !atomic_load_explicit(&pk->broken, memory_order_acquire)) {
        relay_cancel(pk);
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_nsec += 100000000;
        if (until.tv_nsec >= 1000000000) until.tv_sec++, until.tv_nsec -= 1000000000;
        int w = pthread_cond_timedwait(&pk->finished, &pk->mu, &until);
        if (w != ETIMEDOUT) rc = ST_PTHREAD(err, w);
    }
    if (rc == 0 && atomic_load_explicit(&pk->broken, memory_order_acquire))
        rc = broken_error(pk, err);
    pk->job = NULL;
    if (rc == 0 && pk->failed) {
        if (err) *err = pk->err;
        rc = pk->err.code ? pk->err.code : ST_EINTERNAL;
    }
    int u = ST_PTHREAD(err, pthread_mutex_unlock(&pk->mu));
    if (rc == 0) rc = u;
    if (rc == 0 && pk->cancel && *pk->cancel)
        rc = st_seterr(err, ST_ECLOSED, "interrupted");
    return rc;
}

/* ---- set-up and tear-down --------------------------------------------- */

static int pool_start(packer *pk, int nthreads, const codec_cdict *cdict,
                      int level, int huffman, st_error *err)
{
    codec_shape shape = {pk->codec, pk->max_h, pk->max_w, pk->info->channels};
    for (int c = 0; c < 2; c++) {
        chunk *ch = &pk->chunks[c];
        ch->data = malloc(pk->cap * pk->slot);
        ch->len = malloc(pk->cap * sizeof *ch->len);
        ch->label = malloc(pk->cap * sizeof *ch->label);
        ch->h = malloc(pk->cap * sizeof *ch->h);
        ch->w = malloc(pk->cap * sizeof *ch->w);
        if (!ch->data || !ch->len || !ch->label || !ch->h || !ch->w)
            return st_seterr(err, ST_ENOMEM, "packer: out of memory for %llu "
                             "x %zu-byte slots", (unsigned long long)pk->cap,
                             pk->slot);
    }
    pk->workers = calloc((size_t)nthreads, sizeof *pk->workers);
    if (pk->workers == NULL) return st_seterr(err, ST_ENOMEM, "out of memory");
    for (int t = 0; t < nthreads; t++) {
        worker *w = &pk->workers[t];
        w->pk = pk;
        pk->nworkers = t + 1;
        ST_TRY(source_scratch_create(pk->src, &w->sc, err));
        ST_TRY(codec_enc_create(&shape, level, cdict, &w->enc, err));
        ST_TRY(codec_enc_huffman_literals(w->enc, huffman, err));
        if ((w->pixels = malloc(pk->sample_bytes)) == NULL)
            return st_seterr(err, ST_ENOMEM, "out of memory");
        ST_TRY(ST_PTHREAD(err, pthread_create(&w->tid, NULL, worker_main, w)));
        w->started = 1;
    }
    return 0;
}

static void pool_stop(packer *pk)
{
    st_error ignored = {0}; /* teardown: nothing left to report to */
    int locked = ST_PTHREAD(&ignored, pthread_mutex_lock(&pk->mu)) == 0;
    pk->shutdown = 1;
    (void)ST_PTHREAD(&ignored, pthread_cond_broadcast(&pk->work));
    if (locked) (void)ST_PTHREAD(&ignored, pthread_mutex_unlock(&pk->mu));
    for (int t = 0; t < pk->nworkers; t++) {
        worker *w = &pk->workers[t];
        if (w->started) (void)ST_PTHREAD(&ignored, pthread_join(w->tid, NULL));
        source_scratch_destroy(w->sc);
        codec_enc_destroy(w->enc);
        free(w->pixels);
    }
    free(pk->workers);
    for (int c = 0; c < 2; c++) {
        free(pk->chunks[c].data);
        free(pk->chunks[c].len);
        free(pk->chunks[c].label);
        free(pk->chunks[c].h);
        free(pk->chunks[c].w);
    }
}

/* Most bytes of samples held for dictionary training. */
#define DICT_TRAIN_BUDGET (64u << 20)

/* No dictionary for samples averaging more than this. A dictionary pays
 * for small images (Fashion-MNIST: 784-byte samples, ratio 1.70 with one)
 * but not for photos: on 300 crops of the plasma-workspace-wallpapers
 * photographs (shorter side 256..512, 270 KB zstd-9 records) a 64 KiB
 * dictionary trained on 100 of them made the other 200 0.84 % smaller,
 * not worth its training time and the memory it holds. */
#define DICT_MAX_MEAN_SAMPLE (64u << 10)

/* Trains the dictionary on samples at an even stride over split 0, each
 * at its own size: up to CODEC_DICT_SAMPLES of them within
 * DICT_TRAIN_BUDGET bytes. */
static int train_dict(packer *pk, size_t cap, void **dict, size_t *len,
                      st_error *err)
{
    uint64_t n = pk->info->splits[0].count, take = n < CODEC_DICT_SAMPLES ? n : CODEC_DICT_SAMPLES;
    if (take * pk->sample_bytes > DICT_TRAIN_BUDGET)
        take = DICT_TRAIN_BUDGET / pk->sample_bytes;
    worker tw = {.pk = pk};
    size_t *sizes = malloc((take ? take : 1) * sizeof *sizes);
    uint8_t *buf = malloc(take * pk->sample_bytes + 1);
    int32_t label;
    source_native nat;
    *dict = malloc(cap);
    int rc = buf && sizes && *dict ? source_scratch_create(pk->src, &tw.sc, err)
                                   : st_seterr(err, ST_ENOMEM, "out of memory");
    size_t at = 0;
    for (uint64_t i = 0; rc == 0 && i < take; i++) {
        uint32_t h, w;
        sample_size(pk, 0, i * n / take, &h, &w);
        tw.pixels = buf + at;
        rc = read_sample(&tw, 0, i * n / take, &label, &nat, err);
        sizes[i] = (size_t)h * w * pk->info->channels;
        at += sizes[i];
    }
    if (rc == 0)
        rc = codec_train_dict_sizes(buf, sizes, take, *dict, cap, len, err);
    source_scratch_destroy(tw.sc);
    free(sizes);
    free(buf);
    return rc;
}

/* Writes chunk c's records. */
static int write_chunk(packer *pk, pack_writer *pw, const chunk *c,
                       st_error *err)
{
    for (uint64_t i = 0; i < c->count; i++)
        ST_TRY(pack_writer_add(pw, c->data + i * pk->slot, c->len[i],
                               c->label[i], c->h[i], c->w[i], err));
    return 0;
}

static int pack_split(packer *pk, pack_writer *pw, int s, uint64_t *done,
                      uint64_t total, const packer_config *cfg, double t0,
                      st_error *err)
{
    uint64_t n = pk->info->splits[s].count, pos = 0;
    ST_TRY(pack_writer_begin_split(pw, pk->info->splits[s].name, err));
    int cur = 0;
    chunk *c = &pk->chunks[cur];
    c->start = 0;
    c->count = n < pk->cap ? n : pk->cap;
    ST_TRY(post_job(pk, c, s, err));
    while (pos < n) {
        ST_TRY(wait_job(pk, err));
        pos += c->count;
        chunk *nx = &pk->chunks[cur ^ 1];
        if (pos < n) {
            nx->start = pos;
            nx->count = n - pos < pk->cap ? n - pos : pk->cap;
            ST_TRY(post_job(pk, nx, s, err));
        }
        int rc = write_chunk(pk, pw, c, err);
        if (rc) {
            if (pos < n) wait_job(pk, NULL);
            return rc;
        }
        *done += c->count;
        if (cfg->progress) {
            packer_progress p = {pk->info->splits[s].name, *done, total,
                                 now_s() - t0};
            cfg->progress(cfg->progress_ctx, &p);
        }
        cur ^= 1;
        c = nx;
    }
    return pack_writer_end_split(pw, err);
}

/* Bytes of every file in the finished pack; *shards gets the *.shard count. */
static uint64_t dir_bytes(const char *dir, uint32_t *shards)
{
    DIR *d = opendir(dir);
    uint64_t total = 0;
    struct dirent *e;
    char path[PATH_MAX];
    struct stat st;
    *shards = 0;
    while (d && (e = readdir(d)) != NULL) {
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (e->d_name[0] == '.' || stat(path, &st) != 0 || !S_ISREG(st.st_mode))
            continue;
        total += (uint64_t)st.st_size;
        size_t n = strlen(e->d_name);
        if (n > 6 && strcmp(e->d_name + n - 6, ".shard") == 0) (*shards)++;
    }
    if (d) closedir(d);
    return total;
}

static int check_config(const packer_config *cfg, st_error *err)
{
    if (cfg->threads < 1 || cfg->threads > 256)
        return st_seterr(err, ST_EINVAL, "--threads %d: must be 1..256",
                         cfg->threads);
    if (cfg->level < 1 || cfg->level > 22)
        return st_seterr(err, ST_EINVAL, "--level %d: must be 1..22",
                         cfg->level);
    if (cfg->shard_bytes != 0 && cfg->shard_bytes < 4096)
        return st_seterr(err, ST_EINVAL, "--shard-size %llu: must be at least "
                         "4096 bytes", (unsigned long long)cfg->shard_bytes);
    if (cfg->codec < -1 || cfg->codec > CODEC_JPEG)
        return st_seterr(err, ST_EINVAL, "unknown codec %d", cfg->codec);
    if (cfg->quality < 1 || cfg->quality > 100)
        return st_seterr(err, ST_EINVAL, "--quality %d: must be 1..100",
                         cfg->quality);
    return 0;
}

/* The lock and conditions; `finished` runs on CLOCK_MONOTONIC for
 * wait_job's timed waits. On failure nothing is left initialized. */
static int init_sync(packer *pk, st_error *err)
{
    pthread_condattr_t ca;
    ST_TRY(ST_PTHREAD(err, pthread_condattr_init(&ca)));
    int a = ST_PTHREAD(err, pthread_condattr_setclock(&ca, CLOCK_MONOTONIC));
    int m = a ? a : ST_PTHREAD(err, pthread_mutex_init(&pk->mu, NULL));
    int w = m ? m : ST_PTHREAD(err, pthread_cond_init(&pk->work, NULL));
    int f = w ? w : ST_PTHREAD(err, pthread_cond_init(&pk->finished, &ca));
    st_error ignored = {0};
    (void)ST_PTHREAD(&ignored, pthread_condattr_destroy(&ca));
    if (f && !w) (void)ST_PTHREAD(&ignored, pthread_cond_destroy(&pk->work));
    if (f && !m) (void)ST_PTHREAD(&ignored, pthread_mutex_destroy(&pk->mu));
    return f;
}

static void destroy_sync(packer *pk)
{
    st_error ignored = {0}; /* teardown: nothing left to report to */
    (void)ST_PTHREAD(&ignored, pthread_cond_destroy(&pk->finished));
    (void)ST_PTHREAD(&ignored, pthread_cond_destroy(&pk->work));
    (void)ST_PTHREAD(&ignored, pthread_mutex_destroy(&pk->mu));
}

/* Adds up the workers' sums into the manifest's channel statistics, and
 * the raw and passthrough counts into stats. */
static int finish_stats(packer *pk, pack_writer *pw, packer_stats *stats,
                        st_error *err)
{
    uint32_t c = pk->info->channels;
    uint64_t n = 0;
    unsigned __int128 sum[4] = {0}, sq[4] = {0};
    for (int t = 0; t < pk->nworkers; t++) {
        const worker *w = &pk->workers[t];
        n += w->pixels_seen;
        stats->passthrough += w->passthrough;
        for (uint32_t k = 0; k < c; k++) sum[k] += w->sum[k], sq[k] += w->sq[k];
    }
    stats->raw_bytes = 0;
    for (uint32_t s = 0; s < pk->info->nsplits; s++)
        for (uint64_t i = 0; i < pk->info->splits[s].count; i++) {
            uint32_t h, w;
            sample_size(pk, (int)s, i, &h, &w);
            stats->raw_bytes += (uint64_t)h * w * c;
        }
    if (n == 0) return 0;
    for (uint32_t k = 0; k < c; k++) {
        /* var = (n sq - sum^2) / n^2, exact in 128 bits until the divide */
        unsigned __int128 num = (unsigned __int128)n * sq[k] - sum[k] * sum[k];
        double nn = (double)n;
        stats->mean[k] = (double)sum[k] / nn;
        stats->std[k] = sqrt((double)num / (nn * nn));
    }
    stats->has_stats = 1;
    snprintf(stats->stats_split, sizeof stats->stats_split, "%s",
             pk->info->splits[pk->stats_split].name);
    return pack_writer_set_stats(pw, stats->stats_split, stats->mean,
                                 stats->std, err);
}

static int run(packer *pk, const char *out, const packer_config *cfg,
               double t0, packer_stats *stats, st_error *err)
{
    void *dict = NULL;
    size_t dict_len = 0;
    codec_cdict *cdict = NULL;
    pack_writer *pw = NULL;
    double td = now_s();
    int rc = 0;
    if (pk->codec == CODEC_ZSTD && cfg->dict_bytes > 0 &&
        pk->mean_sample <= DICT_MAX_MEAN_SAMPLE) {
        rc = train_dict(pk, cfg->dict_bytes, &dict, &dict_len, err);
        if (rc == 0 && dict_len > 0)
            rc = codec_cdict_create(dict, dict_len, cfg->level, &cdict, err);
    }
    stats->dict_seconds = now_s() - td;
    pack_writer_config wc = {
        .codec = pk->codec, .level = pk->codec == CODEC_ZSTD ? cfg->level : 0,
        .height = pk->max_h, .width = pk->max_w, .variable = pk->variable,
        .channels = pk->info->channels, .shard_bytes = cfg->shard_bytes,
        .nclasses = pk->info->nclasses,
        .classes = (const char *const *)pk->info->classes,
        .dict = dict_len ? dict : NULL, .dict_len = dict_len,
        .force = cfg->force};
    if (rc == 0) rc = pack_writer_open(out, &wc, &pw, err);
    int level = pk->codec == CODEC_JPEG ? cfg->quality : cfg->level;
    if (rc == 0) rc = pool_start(pk, cfg->threads, cdict, level,
                                cfg->huffman_literals, err);
    uint64_t total = 0, done = 0;
    for (uint32_t s = 0; s < pk->info->nsplits; s++)
        total += pk->info->splits[s].count;
    for (uint32_t s = 0; rc == 0 && s < pk->info->nsplits; s++)
        rc = pack_split(pk, pw, (int)s, &done, total, cfg, t0, err);
    if (rc == 0) stats->record_bytes = pack_writer_record_bytes(pw);
    if (rc == 0) rc = finish_stats(pk, pw, stats, err);
    pool_stop(pk);
    if (rc == 0) {
        rc = pack_writer_commit(pw, err);
        pw = NULL;
    }
    pack_writer_abort(pw);
    codec_cdict_destroy(cdict);
    free(dict);
    stats->samples = total;
    stats->codec = pk->codec;
    stats->max_h = pk->max_h;
    stats->max_w = pk->max_w;
    stats->dict_bytes = dict_len;
    stats->seconds = now_s() - t0;
    if (rc == 0) stats->disk_bytes = dir_bytes(out, &stats->shards);
    return rc;
}

/* The pack's codec, shape, statistics split and chunk sizes. */
static int plan(packer *pk, const packer_config *cfg, st_error *err)
{
    const source_info *in = pk->info;
    pk->codec = cfg->codec >= 0 ? (uint32_t)cfg->codec : default_codec(in);
    if (pk->codec == CODEC_JPEG && in->channels != 1 && in->channels != 3)
        return st_seterr(err, ST_EINVAL, "--codec jpeg holds 1 or 3 "
                         "channels; this source has %u (give --channels 1 "
                         "or 3, or another codec)", in->channels);
    pk->max_h = pk->max_w = 0;
    uint64_t total = 0, n = 0;
    for (uint32_t s = 0; s < in->nsplits; s++)
        for (uint64_t i = 0; i < in->splits[s].count; i++, n++) {
            uint32_t h, w;
            sample_size(pk, (int)s, i, &h, &w);
            total += (uint64_t)h * w * in->channels;
            if (pk->max_h && (h != pk->max_h || w != pk->max_w))
                pk->variable = 1;
            if (h > pk->max_h) pk->max_h = h;
            if (w > pk->max_w) pk->max_w = w;
        }
    if (pk->max_h == 0) pk->max_h = in->height, pk->max_w = in->width;
    pk->mean_sample = n ? total / n : 0;
    pk->stats_split = 0;
    for (uint32_t s = 0; s < in->nsplits; s++)
        if (strcmp(in->splits[s].name, "train") == 0) pk->stats_split = (int)s;
    pk->sample_bytes = (size_t)pk->max_h * pk->max_w * in->channels;
    pk->slot = pk->sample_bytes + pk->sample_bytes / 2 + 4096;
    pk->claim = pk->slot > BIG_SLOT ? 1 : CLAIM;
    pk->cap = CHUNK_BUDGET / pk->slot;
    if (pk->cap < (uint64_t)cfg->threads * pk->claim)
        pk->cap = (uint64_t)cfg->threads * pk->claim;
    if (pk->cap > 8192) pk->cap = 8192;
    return 0;
}

int packer_run(const char *src_path, const char *out,
               const packer_config *cfg, packer_stats *stats, st_error *err)
{
    double t0 = now_s(); /* wall time includes reading the source */
    memset(stats, 0, sizeof *stats);
    ST_TRY(check_config(cfg, err));
    source *src = NULL;
    ST_TRY(source_open(src_path, &cfg->source, &src, err));
    packer pk = {.src = src, .info = source_info_of(src), .cancel = cfg->cancel};
    int rc = plan(&pk, cfg, err);
    stats->info = *pk.info;
    if (rc == 0) rc = init_sync(&pk, err);
    if (rc == 0) {
        rc = run(&pk, out, cfg, t0, stats, err);
        destroy_sync(&pk);
    }
    if (rc == ST_ECLOSED)
        st_seterr_force(err, rc, "%s: interrupted; nothing was written", out);
    stats->info.classes = NULL;
    source_close(src);
    return rc;
}
