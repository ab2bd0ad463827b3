/* tools/loadbench.c — loadbench: throughput of the loader alone.
 *
 * For each thread count it streams the split for N epochs, touching every
 * byte of every batch (an XXH3 over pixels and labels) and releasing it, and
 * prints samples/s, decoded MB/s, the per-stage time split and the consumer
 * wait, epoch by epoch (so the page-cache effect shows). In the same run a
 * baseline decodes the first epoch's samples with one thread into one plain
 * buffer, without ring or threads. The stream checksum of the pipeline's
 * first epoch must equal the baseline's. The last lines, one per thread
 * count, are parseable:
 *   loadbench threads=2 samples_per_s=712345 mb_per_s=558.5 wait_pct=0.4
 * (figures of the last epoch: warm page cache).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <xxhash.h>

#include "datasets/fsutil.h"
#include "datasets/codec.h"
#include "datasets/pack.h"
#include "loader/fused.h"
#include "loader/loader.h"
#include "loader/order.h"
#include "loader/transform.h"

#define MAX_RUNS 16
#define MAX_EPOCHS 64

typedef struct opts {
    const char *data, *split;
    uint32_t threads[MAX_RUNS];
    int nruns;
    uint32_t batch, epochs, slots, readahead, consumer_us, window;
    uint64_t seed;
    loader_shuffle shuffle;
    loader_io io;
    int codec_check;
    uint32_t image_size;   /* --image-size: the default transform's S */
    const char *tf_text;   /* --transform / --train-transform, or NULL */
    transform_spec tf;     /* valid when has_tf */
    int has_tf;
} opts;

typedef struct epoch_row {
    uint64_t samples;
    double secs, read_s, decode_s, resize_s, blocked_s, wait_s;
    uint64_t rows, rows_skipped;   /* JPEG rows decoded-scale / skipped */
    uint64_t rss_anon_kib, rss_file_kib; /* at the epoch's end, loader open */
    uint64_t checksum;
} epoch_row;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void usage(FILE *f)
{
    fprintf(f,
"usage: loadbench --data DIR [options]\n"
"\n"
"  --data DIR          pack directory (required)\n"
"  --split NAME        split to stream (default: train)\n"
"  --threads LIST      producer thread counts, e.g. 1,2,4 (default: 1,2)\n"
"  --batch N           batch size (default: 256)\n"
"  --epochs N          epochs per thread count (default: 2)\n"
"  --shuffle MODE      global | window | none (default: global)\n"
"  --window N          shards per window for --shuffle window (default: 4)\n"
"  --slots N           ring slots (default: 4)\n"
"  --seed N            order seed (default: 0)\n"
"  --io MODE           auto | pread | mmap (default: auto: mmap for splits\n"
"                      up to 256 MiB)\n"
"  --readahead N       fadvise the batch N ahead (global shuffle with\n"
"                      pread; 0 off; default 4)\n"
"  --consumer-us N     simulated consumer work per sample, microseconds\n"
"  --codec-check       check every sample of every epoch against the\n"
"                      baseline's decode (per-sample XXH3; epoch 0 only\n"
"                      under a random transform)\n"
"  --image-size S      crop/resize every sample to S x S with the default\n"
"                      training transform, random-resized-crop S flip\n"
"                      (required for packs of variable-size images)\n"
"  --transform T       the transform instead (also --train-transform), as\n"
"                      streamtrain takes it: 'random-resized-crop S [flip]\n"
"                      [scale=A,B] [ratio=A,B]', 'center-crop S\n"
"                      [crop-frac=F]', 'resize WxH', 'pad-crop P [flip]',\n"
"                      'none [flip]'; [interp=bilinear|area]\n"
"  -h, --help          this help\n");
}

static int parse_u32(const char *s, uint32_t lo, uint32_t hi, uint32_t *out)
{
    char *end;
    unsigned long v = strtoul(s, &end, 10);
    if (end == s || *end || v < lo || v > hi) return -1;
    *out = (uint32_t)v;
    return 0;
}

static int parse_threads(char *s, opts *o)
{
    o->nruns = 0;
    for (char *tok = strtok(s, ","); tok; tok = strtok(NULL, ",")) {
        if (o->nruns == MAX_RUNS ||
            parse_u32(tok, 1, 256, &o->threads[o->nruns]) != 0)
            return -1;
        o->nruns++;
    }
    return o->nruns ? 0 : -1;
}

static int parse_mode(const char *s, opts *o)
{
    if (strcmp(s, "global") == 0) o->shuffle = LOADER_SHUFFLE_GLOBAL;
    else if (strcmp(s, "window") == 0) o->shuffle = LOADER_SHUFFLE_WINDOW;
    else if (strcmp(s, "none") == 0) o->shuffle = LOADER_SHUFFLE_NONE;
    else return -1;
    return 0;
}

/* --transform, else random-resized-crop S flip for --image-size S.
 * @return 0 or 2 (message printed). */
static int resolve_transform(opts *o)
{
    if (o->tf_text) {
        st_error err = {0};
        if (transform_parse(o->tf_text, &o->tf, &err) != 0) {
            fprintf(stderr, "loadbench: --transform: %s\n", err.msg);
            return 2;
        }
        o->has_tf = 1;
    } else if (o->image_size) {
        transform_spec_train_default(&o->tf, o->image_size);
        o->has_tf = 1;
    }
    return 0;
}

/* Does the transform draw random numbers (then epochs differ)? */
static int tf_random(const opts *o)
{
    return o->has_tf && (o->tf.flip || o->tf.kind == TRANSFORM_RRC ||
                         o->tf.kind == TRANSFORM_PAD_CROP);
}

/* @return 0, 1 (help printed) or 2 (bad usage, message printed). */
static int parse_args(int argc, char **argv, opts *o)
{
    static const struct option lo[] = {
        {"data", 1, 0, 'd'}, {"split", 1, 0, 's'}, {"threads", 1, 0, 't'},
        {"batch", 1, 0, 'b'}, {"epochs", 1, 0, 'e'}, {"shuffle", 1, 0, 'm'},
        {"window", 1, 0, 'w'}, {"slots", 1, 0, 'k'}, {"seed", 1, 0, 'S'},
        {"io", 1, 0, 'i'}, {"readahead", 1, 0, 'r'},
        {"consumer-us", 1, 0, 'c'}, {"codec-check", 0, 0, 'C'},
        {"image-size", 1, 0, 'I'}, {"transform", 1, 0, 'T'},
        {"train-transform", 1, 0, 'T'},
        {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
    *o = (opts){.split = "train", .threads = {1, 2}, .nruns = 2, .batch = 256,
                .readahead = LOADER_DEFAULT_READAHEAD,
                .epochs = 2, .slots = 4, .window = 4,
                .shuffle = LOADER_SHUFFLE_GLOBAL, .io = LOADER_IO_AUTO};
    int c, bad = 0, idx = -1;
    const char *unknown = NULL;
    opterr = 0; /* one line of our own instead of getopt's */
    char val[256] = ""; /* optarg as given: parse_threads splits it */
    while (!bad && (c = getopt_long(argc, argv, "h", lo, &idx)) != -1) {
        snprintf(val, sizeof val, "%s", optarg ? optarg : "");
        switch (c) {
        case 'd': o->data = optarg; break;
        case 's': o->split = optarg; break;
        case 't': bad = parse_threads(optarg, o); break;
        case 'b': bad = parse_u32(optarg, 1, 1u << 20, &o->batch); break;
        case 'e': bad = parse_u32(optarg, 1, MAX_EPOCHS, &o->epochs); break;
        case 'm': bad = parse_mode(optarg, o); break;
        case 'w': bad = parse_u32(optarg, 1, 1u << 20, &o->window); break;
        case 'k': bad = parse_u32(optarg, 1, 4096, &o->slots); break;
        case 'S': o->seed = strtoull(optarg, NULL, 10); break;
        case 'i':
            if (strcmp(optarg, "auto") == 0) o->io = LOADER_IO_AUTO;
            else if (strcmp(optarg, "pread") == 0) o->io = LOADER_IO_PREAD;
            else if (strcmp(optarg, "mmap") == 0) o->io = LOADER_IO_MMAP;
            else bad = -1;
            break;
        case 'r': bad = parse_u32(optarg, 0, 1u << 20, &o->readahead); break;
        case 'c': bad = parse_u32(optarg, 0, 1u << 20, &o->consumer_us); break;
        case 'C': o->codec_check = 1; break;
        case 'I': bad = parse_u32(optarg, 1, 4096, &o->image_size); break;
        case 'T': o->tf_text = optarg; break;
        case 'h': usage(stdout); return 1;
        default: bad = -1, unknown = argv[optind - 1];
        }
    }
    const char *why = unknown ? "unknown option or missing value"
                      : bad ? "bad value" : optind != argc ? "unexpected argument"
                      : o->data == NULL ? "--data DIR is required" : NULL;
    if (why) {
        const char *arg = unknown ? unknown : bad ? optarg
                          : optind != argc ? argv[optind] : NULL;
        if (bad && !unknown && idx >= 0)
            fprintf(stderr, "loadbench: --%s %s: bad value (see loadbench --help)\n",
                    lo[idx].name, val);
        else if (arg)
            fprintf(stderr, "loadbench: %s: '%s' (see loadbench --help)\n", why, arg);
        else fprintf(stderr, "loadbench: %s (see loadbench --help)\n", why);
        return 2;
    }
    return resolve_transform(o);
}

/* ---- baseline: one thread, one plain buffer, no ring ---------------------------- */

typedef struct baseline {
    uint64_t samples;
    double secs;
    uint64_t checksum;     /* chained XXH3 of epoch 0's batches */
    uint64_t *hashes;      /* (N) per-sample XXH3 for --codec-check, or NULL */
    size_t sample_bytes;   /* H*W*C */
    char shape[96];        /* "28x28x1, codec zstd+dict" */
} baseline;

typedef struct bl_ctx {
    pack *p;
    int split;
    order *ord;
    order_cursor *cur;
    codec_dec *dec;
    fused *fu;             /* with a transform, the same fused decode */
    uint8_t *buf;          /* (B, H, W, C) the one plain buffer */
    int32_t *labels;       /* (B) */
    uint8_t *rec;          /* (max_record) */
} bl_ctx;

/* Reads and decodes epoch 0 batch by batch into the plain buffer. */
static int baseline_epoch(bl_ctx *c, baseline *bl, st_error *err)
{
    size_t sb = bl->sample_bytes, cap = pack_max_record(c->p);
    fused_stats fs = {0};
    for (uint64_t b = 0; b < order_batches(c->ord); b++) {
        uint32_t n = order_batch_len(c->ord, b);
        for (uint32_t i = 0; i < n; i++) {
            uint64_t id = order_sample(c->ord, c->cur, 0,
                                       order_position(c->ord, b, i));
            uint32_t sh;
            uint64_t r;
            pack_locate(c->p, c->split, id, &sh, &r);
            const shard *s = pack_shard(c->p, c->split, sh);
            const shard_entry *e = shard_entry_at(s, r);
            ST_TRY(shard_read_record(s, r, c->rec, cap, err));
            if (c->fu)
                ST_TRY(fused_sample(c->fu, c->dec, c->rec, e->length,
                                    e->width, e->height, 0, id,
                                    c->buf + i * sb, &fs, err));
            else
                ST_TRY(codec_decode(c->dec, c->rec, e->length, e->height,
                                    e->width, c->buf + i * sb, err));
            c->labels[i] = e->label;
            if (bl->hashes) bl->hashes[id] = XXH3_64bits(c->buf + i * sb, sb);
        }
        bl->checksum = XXH3_64bits_withSeed(c->buf, n * sb, bl->checksum);
        bl->checksum = XXH3_64bits_withSeed(c->labels, n * 4, bl->checksum);
        bl->samples += n;
    }
    return 0;
}

/* The baseline's sample size and, with a transform, its fused decode. */
static int baseline_shape(const opts *o, bl_ctx *c, baseline *bl,
                          st_error *err)
{
    const manifest *m = pack_manifest(c->p);
    char tf[96] = "";
    if (pack_is_variable(c->p) && !o->has_tf)
        return st_seterr(err, ST_EINVAL, "%s: the images are of different "
                         "sizes (up to %ux%u): give --image-size S or "
                         "--transform", o->data, m->width, m->height);
    bl->sample_bytes = pack_sample_bytes(c->p);
    if (o->has_tf) {
        fused_config fc;
        fused_config_of(m, &o->tf, o->seed, &fc);
        ST_TRY(fused_create(&fc, &c->fu, err));
        bl->sample_bytes = (size_t)fc.out_w * fc.out_h * fc.channels;
        char t[64];
        transform_format(&o->tf, t, sizeof t);
        snprintf(tf, sizeof tf, "; transform '%s' to %ux%u", t, fc.out_w,
                 fc.out_h);
    }
    snprintf(bl->shape, sizeof bl->shape, "%s%ux%ux%u, codec %s%s%s",
             pack_is_variable(c->p) ? "up to " : "", m->height, m->width,
             m->channels, manifest_codec_name(m->codec),
             m->dict_file[0] ? "+dict" : "", tf);
    codec_shape shape = {m->codec, m->height, m->width, m->channels};
    return codec_dec_create(&shape, pack_ddict(c->p), &c->dec, err);
}

static int baseline_setup(const opts *o, bl_ctx *c, baseline *bl,
                          st_error *err)
{
    ST_TRY(pack_open(o->data, &c->p, err));
    c->split = pack_split_find(c->p, o->split);
    if (c->split < 0)
        return st_seterr(err, ST_ENOTFOUND, "%s: no split '%s'", o->data,
                         o->split);
    ST_TRY(baseline_shape(o, c, bl, err));
    uint32_t ns = pack_split_nshards(c->p, c->split);
    uint64_t *counts = malloc(ns * sizeof *counts);
    c->buf = malloc((size_t)o->batch * bl->sample_bytes);
    c->labels = malloc((size_t)o->batch * sizeof *c->labels);
    c->rec = malloc(pack_max_record(c->p) + 1);
    if (o->codec_check)
        bl->hashes = calloc(pack_split_samples(c->p, c->split),
                            sizeof *bl->hashes);
    if (!counts || !c->buf || !c->labels || !c->rec ||
        (o->codec_check && !bl->hashes)) {
        free(counts);
        return st_seterr(err, ST_ENOMEM, "loadbench: out of memory");
    }
    for (uint32_t s = 0; s < ns; s++)
        counts[s] = shard_count(pack_shard(c->p, c->split, s));
    order_config oc = {.mode = (order_mode)o->shuffle, .seed = o->seed,
                       .window = o->window, .batch = o->batch, .world = 1};
    int rc = order_create(&oc, counts, ns, &c->ord, err);
    free(counts);
    ST_TRY(rc);
    return order_cursor_create(c->ord, &c->cur, err);
}

static int run_baseline(const opts *o, baseline *bl, st_error *err)
{
    bl_ctx c = {0};
    int rc = baseline_setup(o, &c, bl, err);
    if (rc == 0) {
        double t0 = now_s();
        rc = baseline_epoch(&c, bl, err);
        bl->secs = now_s() - t0;
    }
    fused_destroy(c.fu);
    codec_dec_destroy(c.dec);
    order_cursor_destroy(c.cur);
    order_destroy(c.ord);
    free(c.rec);
    free(c.labels);
    free(c.buf);
    pack_close(c.p);
    return rc;
}

/* ---- the pipeline ------------------------------------------------------------------ */

/* Simulated training step: spins for us microseconds per sample. */
static void consume(uint32_t us, uint32_t n)
{
    if (us == 0) return;
    double until = now_s() + us * 1e-6 * n;
    while (now_s() < until) {
    }
}

/* Touches every byte of the batch; with hashes, checks each sample. */
static int touch_batch(const loader_batch *b, const uint64_t *hashes,
                       uint64_t *checksum, st_error *err)
{
    size_t sb = (size_t)b->height * b->width * b->channels;
    *checksum = XXH3_64bits_withSeed(b->pixels, b->n * sb, *checksum);
    *checksum = XXH3_64bits_withSeed(b->labels, b->n * 4, *checksum);
    for (uint32_t i = 0; hashes && i < b->n; i++)
        if (XXH3_64bits(b->pixels + i * sb, sb) != hashes[b->ids[i]])
            return st_seterr(err, ST_EDECODE, "codec check: epoch %llu batch "
                             "%llu sample %llu differs from the baseline",
                             (unsigned long long)b->epoch,
                             (unsigned long long)b->index,
                             (unsigned long long)b->ids[i]);
    return 0;
}

/* RssAnon and RssFile of this process from /proc/self/status (0 when the
 * file cannot be read). */
static void read_rss(uint64_t *anon_kib, uint64_t *file_kib)
{
    *anon_kib = *file_kib = 0;
    FILE *f = fopen("/proc/self/status", "r");
    if (f == NULL) return;
    char line[256];
    while (fgets(line, sizeof line, f)) {
        unsigned long long v;
        if (sscanf(line, "RssAnon: %llu", &v) == 1) *anon_kib = v;
        else if (sscanf(line, "RssFile: %llu", &v) == 1) *file_kib = v;
    }
    fclose(f);
}

static void close_epoch(const loader *l, const loader_stats *prev,
                        double t0, epoch_row *row)
{
    loader_stats st;
    loader_get_stats(l, &st);
    row->samples = st.samples - prev->samples;
    row->secs = now_s() - t0;
    row->read_s = st.read_s - prev->read_s;
    row->decode_s = st.decode_s - prev->decode_s;
    row->resize_s = st.resize_s - prev->resize_s;
    row->rows = st.jpeg_rows - prev->jpeg_rows;
    row->rows_skipped = st.jpeg_rows_skipped - prev->jpeg_rows_skipped;
    row->blocked_s = st.blocked_s - prev->blocked_s;
    row->wait_s = st.wait_s - prev->wait_s;
    read_rss(&row->rss_anon_kib, &row->rss_file_kib);
}

static int run_pipeline(const opts *o, uint32_t threads, const uint64_t *hashes,
                        epoch_row *rows, loader_stats *st, st_error *err)
{
    loader_config cfg;
    loader_config_default(&cfg);
    cfg.split = o->split;
    cfg.batch_size = o->batch;
    cfg.threads = threads;
    cfg.slots = o->slots;
    cfg.shuffle = o->shuffle;
    cfg.window_shards = o->window;
    cfg.seed = o->seed;
    cfg.epochs = o->epochs;
    cfg.io = o->io;
    cfg.readahead = o->readahead;
    cfg.transform = o->has_tf ? &o->tf : NULL;
    loader *l = NULL;
    ST_TRY(loader_open(o->data, &cfg, &l, err));
    loader_stats prev = {0};
    double t0 = now_s();
    uint32_t e = 0;
    int rc;
    loader_batch b;
    while (e < o->epochs) {
        rc = loader_next_batch(l, &b, err);
        if (rc == ST_EEND) {
            close_epoch(l, &prev, t0, &rows[e++]);
            loader_get_stats(l, &prev);
            t0 = now_s();
            continue;
        }
        if (rc) break;
        /* a random transform makes every epoch's pixels new */
        rc = touch_batch(&b, b.epoch == 0 || !tf_random(o) ? hashes : NULL,
                         &rows[e].checksum, err);
        consume(o->consumer_us, b.n);
        if (rc == 0) rc = loader_release(l, &b, err);
        if (rc) break;
    }
    if (e == o->epochs) rc = 0;
    loader_get_stats(l, st);
    loader_close(l);
    return rc;
}

/* ---- report ---------------------------------------------------------------------- */

static void print_header(const opts *o, const baseline *bl)
{
    static const char *const modes[] = {"none", "global", "window"};
    static const char *const ios[] = {"io auto", "pread", "mmap"};
    printf("loadbench: %s split %s: %llu samples of %s; batch %u, shuffle "
           "%s, %u epochs, %u slots, %s%s\n", o->data, o->split,
           (unsigned long long)bl->samples, bl->shape, o->batch,
           modes[o->shuffle], o->epochs, o->slots,
           ios[o->io],
           o->codec_check ? ", codec check" : "");
    if (o->consumer_us)
        printf("consumer: %u us of simulated work per sample\n",
               o->consumer_us);
    double sps = bl->samples / bl->secs;
    printf("baseline: 1 thread, no ring, one plain buffer, epoch 0: "
           "%.0f samples/s, %.1f MB/s (%.3f s)\n", sps,
           sps * bl->sample_bytes / 1e6, bl->secs);
    printf("\n%7s %5s %5s %11s %8s %7s %6s %7s %7s %8s %6s %6s  %s\n",
           "threads", "epoch", "io", "samples/s", "MB/s", "vs-base", "read%",
           "decode%", "resize%", "blocked%", "wait%", "skip%",
           "stream-xxh3");
}

/* Share of JPEG rows (at the decoded DCT scale) never output: skipped
 * above the crop or never decoded below it. */
static double skipped_pct(const epoch_row *r)
{
    return r->rows ? 100.0 * (double)r->rows_skipped / (double)r->rows : 0;
}

/* read%, decode%, resize%, blocked%: of the producers' thread time; wait%:
 * of the consumer's epoch time; skip%: skipped_pct. */
static void print_rows(uint32_t threads, uint32_t epochs, const epoch_row *rows,
                       const baseline *bl, const char *io)
{
    double base_sps = bl->samples / bl->secs;
    for (uint32_t e = 0; e < epochs; e++) {
        const epoch_row *r = &rows[e];
        double sps = r->samples / r->secs, busy = threads * r->secs / 100;
        printf("%7u %5u %5s %11.0f %8.1f %6.2fx %6.1f %7.1f %7.1f %8.1f "
               "%6.1f %6.1f  %016llx\n", threads, e, io, sps,
               sps * bl->sample_bytes / 1e6, sps / base_sps, r->read_s / busy,
               r->decode_s / busy, r->resize_s / busy, r->blocked_s / busy,
               r->wait_s / r->secs * 100, skipped_pct(r),
               (unsigned long long)r->checksum);
    }
}

int main(int argc, char **argv)
{
    opts o;
    int prc = parse_args(argc, argv, &o);
    if (prc) return prc == 1 ? 0 : 2;
    fs_raise_open_files(); /* every shard stays open */
    st_error err = {0};
    baseline bl = {0};
    if (run_baseline(&o, &bl, &err) != 0) {
        fprintf(stderr, "loadbench: %s\n", err.msg);
        free(bl.hashes);
        return 1;
    }
    print_header(&o, &bl);
    static epoch_row rows[MAX_RUNS][MAX_EPOCHS];
    int status = 0;
    for (int k = 0; k < o.nruns && status == 0; k++) {
        loader_stats st;
        if (run_pipeline(&o, o.threads[k], bl.hashes, rows[k], &st,
                         &err) != 0) {
            fprintf(stderr, "loadbench: %u threads: %s\n", o.threads[k],
                    err.msg);
            status = 1;
            break;
        }
        print_rows(o.threads[k], o.epochs, rows[k], &bl,
                   st.io == LOADER_IO_MMAP ? "mmap" : "pread");
        fflush(stdout);
        if (rows[k][0].checksum != bl.checksum) {
            fprintf(stderr, "loadbench: %u threads: epoch 0 stream checksum "
                    "%016llx differs from the baseline's %016llx\n",
                    o.threads[k], (unsigned long long)rows[k][0].checksum,
                    (unsigned long long)bl.checksum);
            status = 1;
        }
        if (st.skipped)
            fprintf(stderr, "loadbench: %u threads: %llu corrupt records "
                    "skipped\n", o.threads[k], (unsigned long long)st.skipped);
    }
    free(bl.hashes);
    if (status) return status;
    printf("\n");
    for (int k = 0; k < o.nruns; k++) {
        const epoch_row *r = &rows[k][o.epochs - 1];
        double sps = r->samples / r->secs;
        printf("loadbench threads=%u samples_per_s=%.0f mb_per_s=%.1f "
               "wait_pct=%.1f rows_skipped_pct=%.1f rss_anon_kib=%llu "
               "rss_file_kib=%llu\n", o.threads[k], sps,
               sps * bl.sample_bytes / 1e6, r->wait_s / r->secs * 100,
               skipped_pct(r), (unsigned long long)r->rss_anon_kib,
               (unsigned long long)r->rss_file_kib);
    }
    return 0;
}
