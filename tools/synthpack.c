/* tools/synthpack.c — synthpack: writes a synthetic pack of N images of
 * H x W x C (default 64x64x3) for the scaling benchmark (bench/run.sh).
 *
 * Every sample is a pure function of (seed, index): a smooth per-channel
 * gradient, one to three filled shapes (discs and rectangles) of random
 * colour, and noise of -3..+4 on one byte in eight, so zstd finds
 * structure (ratio ~2 with a dictionary) but not a trivial one. The
 * encoding defaults are packdata's (zstd, its default level, a 64 KiB
 * dictionary, literals left uncompressed). Labels are random
 * in [0, classes). The output is the same, byte for byte, whatever
 * --threads is.
 *
 * Pipeline: samples are made and encoded in chunks of CHUNK. While T
 * threads encode chunk k+1 into one of two chunk buffers, the calling
 * thread writes chunk k from the other through datasets/pack_writer (which
 * writes to a temporary directory and renames it into place at commit).
 * Each thread owns its encoder and pixel buffer, made once up front.
 */
#include "datasets/codec.h"
#include "datasets/manifest.h"
#include "datasets/pack.h"
#include "datasets/packer.h"
#include "datasets/units.h"

#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define CHUNK 1024          /* samples per chunk */
#define DICT_SAMPLES 2048   /* samples the dictionary is trained on */
#define MAX_THREADS 64

typedef struct opts {
    const char *out;
    uint64_t samples, test_samples;
    uint32_t height, width, channels, classes;
    int codec, level, threads, force, quiet;
    int huffman_literals;      /* zstd: Huffman-code literals (packdata's flag) */
    size_t dict_bytes;
    uint64_t shard_bytes, seed;
} opts;

typedef struct chunk {
    uint8_t *data;      /* (CHUNK, slot) encoded records */
    uint32_t *len;      /* (CHUNK) */
    int32_t *label;     /* (CHUNK) */
    uint64_t start;     /* index of its first sample (gen_sample) */
    uint32_t count;
} chunk;

typedef struct worker {
    const opts *o;
    pthread_t tid;
    codec_enc *enc;
    uint8_t *pixels;    /* (H, W, C) */
    chunk *c;           /* chunk being encoded */
    uint32_t lo, hi;    /* this worker's samples [lo, hi) of c */
    size_t slot;
    int rc;
    st_error err;
} worker;

/* Set by the signal handler, read by the workers: a lock-free atomic is
 * safe in both places (a plain sig_atomic_t would race with the threads). */
_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "g_cancel must be lock-free");
static atomic_int g_cancel;

static void on_signal(int sig)
{
    (void)sig;
    g_cancel = 1;
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* ---- the images ---------------------------------------------------------- */

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static int rnd(uint64_t *s, int lo, int hi) /* uniform in [lo, hi] */
{
    return lo + (int)(splitmix(s) % (uint64_t)(hi - lo + 1));
}

static uint8_t clamp8(int v)
{
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

/* Sample `index` of the stream `seed` into px (H, W, C); its label. */
static int32_t gen_sample(const opts *o, uint64_t index, uint8_t *px)
{
    const int H = (int)o->height, W = (int)o->width, C = (int)o->channels;
    uint64_t s = o->seed * 0xd1342543de82ef95ull ^ (index + 1) * 0x9e3779b97f4a7c15ull;
    int32_t label = (int32_t)(splitmix(&s) % o->classes);
    for (int c = 0; c < C; c++) { /* background: b + (gx x + gy y) / 16 */
        int b = rnd(&s, 48, 208), gx = rnd(&s, -8, 8), gy = rnd(&s, -8, 8);
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++)
                px[((size_t)y * W + x) * C + c] =
                    clamp8(b + (gx * (x - W / 2) + gy * (y - H / 2)) / 16);
    }
    int shapes = rnd(&s, 1, 3);
    for (int k = 0; k < shapes; k++) {
        int disc = rnd(&s, 0, 1), cx = rnd(&s, 0, W - 1), cy = rnd(&s, 0, H - 1);
        int r = rnd(&s, 3, (H < W ? H : W) / 4 + 3);
        uint8_t col[4];
        for (int c = 0; c < C; c++) col[c] = (uint8_t)rnd(&s, 0, 255);
        for (int y = cy - r < 0 ? 0 : cy - r; y <= cy + r && y < H; y++)
            for (int x = cx - r < 0 ? 0 : cx - r; x <= cx + r && x < W; x++)
                if (!disc || (x - cx) * (x - cx) + (y - cy) * (y - cy) <= r * r)
                    memcpy(px + ((size_t)y * W + x) * C, col, (size_t)C);
    }
    size_t n = (size_t)H * W * C;
    uint64_t bits = 0;
    for (size_t i = 0; i < n; i++) { /* noise: -3..+4 on 1 byte in 8 */
        if (i % 10 == 0) bits = splitmix(&s);
        if ((bits & 56) == 0) px[i] = clamp8(px[i] + (int)(bits & 7) - 3);
        bits >>= 6;
    }
    return label;
}

/* ---- encoding threads ---------------------------------------------------- */

static void *worker_main(void *arg)
{
    worker *w = arg;
    chunk *c = w->c;
    for (uint32_t i = w->lo; i < w->hi && w->rc == 0 && !g_cancel; i++) {
        const uint8_t *enc;
        size_t len;
        c->label[i] = gen_sample(w->o, c->start + i, w->pixels);
        w->rc = codec_encode(w->enc, w->pixels, w->o->height, w->o->width, &enc,
                             &len, &w->err);
        if (w->rc == 0 && len > w->slot)
            w->rc = st_seterr(&w->err, ST_EINTERNAL, "sample %llu encodes to "
                              "%zu bytes, more than the %zu reserved",
                              (unsigned long long)(c->start + i), len, w->slot);
        if (w->rc == 0) {
            memcpy(c->data + (size_t)i * w->slot, enc, len);
            c->len[i] = (uint32_t)len;
        }
    }
    return NULL;
}

/* Starts the workers on chunk c (split evenly between them). */
static int start_chunk(worker *ws, int n, chunk *c, st_error *err)
{
    for (int t = 0; t < n; t++) {
        ws[t].c = c;
        ws[t].lo = (uint32_t)((uint64_t)c->count * t / n);
        ws[t].hi = (uint32_t)((uint64_t)c->count * (t + 1) / n);
        int rc = ST_PTHREAD(err, pthread_create(&ws[t].tid, NULL, worker_main,
                                                &ws[t]));
        if (rc) {
            while (t-- > 0) (void)ST_PTHREAD(NULL, pthread_join(ws[t].tid, NULL));
            return rc;
        }
    }
    return 0;
}

/* Joins the workers. @return 0 or the first worker's error. */
static int join_chunk(worker *ws, int n, st_error *err)
{
    int rc = 0;
    for (int t = 0; t < n; t++) {
        int j = ST_PTHREAD(err, pthread_join(ws[t].tid, NULL));
        if (j && rc == 0) rc = j;
        if (ws[t].rc && rc == 0) {
            rc = ws[t].rc;
            st_seterr(err, rc, "%s", ws[t].err.msg);
        }
    }
    if (rc == 0 && g_cancel) rc = st_seterr(err, ST_ECLOSED, "interrupted");
    return rc;
}

static int write_chunk(pack_writer *pw, const opts *o, const chunk *c,
                       size_t slot, st_error *err)
{
    for (uint32_t i = 0; i < c->count; i++)
        ST_TRY(pack_writer_add(pw, c->data + (size_t)i * slot, c->len[i],
                               c->label[i], o->height, o->width, err));
    return 0;
}

/* Writes `count` samples starting at sample index `first` as one split. */
static int write_split(pack_writer *pw, const char *name, uint64_t first,
                       uint64_t count, worker *ws, int nw, chunk *ch,
                       size_t slot, st_error *err)
{
    ST_TRY(pack_writer_begin_split(pw, name, err));
    uint64_t nchunks = (count + CHUNK - 1) / CHUNK;
    int rc = 0;
    for (uint64_t k = 0; k <= nchunks && rc == 0; k++) {
        chunk *cur = &ch[k & 1], *prev = &ch[(k + 1) & 1];
        int started = 0;
        if (k < nchunks) {
            cur->start = first + k * CHUNK;
            cur->count = (uint32_t)(count - k * CHUNK < CHUNK ? count - k * CHUNK
                                                              : CHUNK);
            rc = start_chunk(ws, nw, cur, err);
            started = rc == 0;
        }
        if (rc == 0 && k > 0) rc = write_chunk(pw, ws[0].o, prev, slot, err);
        if (started) {
            int jr = join_chunk(ws, nw, err);
            if (rc == 0) rc = jr;
        }
    }
    ST_TRY(rc);
    return pack_writer_end_split(pw, err);
}

/* Trains the zstd dictionary on DICT_SAMPLES samples spread over the train
 * split. *dict is malloc'ed (NULL, 0 when none). */
static int make_dict(const opts *o, void **dict, size_t *len, st_error *err)
{
    size_t sb = (size_t)o->height * o->width * o->channels;
    uint64_t take = o->samples < DICT_SAMPLES ? o->samples : DICT_SAMPLES;
    uint8_t *buf = malloc(take * sb);
    *dict = malloc(o->dict_bytes);
    *len = 0;
    if (buf == NULL || *dict == NULL) {
        free(buf);
        return st_seterr(err, ST_ENOMEM, "out of memory for the dictionary "
                         "samples (%llu x %zu bytes)", (unsigned long long)take, sb);
    }
    for (uint64_t i = 0; i < take; i++)
        gen_sample(o, i * o->samples / take, buf + i * sb);
    int rc = codec_train_dict(buf, take, sb, *dict, o->dict_bytes, len, err);
    free(buf);
    return rc;
}

/* ---- the run --------------------------------------------------------------- */

typedef struct result {
    uint64_t record_bytes;
    size_t dict_bytes;
    double seconds;
} result;

static int run(const opts *o, result *res, st_error *err)
{
    double t0 = now_s();
    size_t sb = (size_t)o->height * o->width * o->channels;
    size_t slot = sb + sb / 2 + 4096;
    codec_shape shape = {(uint32_t)o->codec, o->height, o->width, o->channels};
    char names[16][4];
    const char *classes[16];
    for (uint32_t c = 0; c < o->classes; c++) {
        snprintf(names[c], sizeof names[c], "%u", c);
        classes[c] = names[c];
    }
    void *dict = NULL;
    size_t dict_len = 0;
    codec_cdict *cdict = NULL;
    pack_writer *pw = NULL;
    worker ws[MAX_THREADS] = {0};
    chunk ch[2] = {0};
    int nw = 0, rc = 0;

    if (o->codec == CODEC_ZSTD && o->dict_bytes > 0) {
        rc = make_dict(o, &dict, &dict_len, err);
        if (rc == 0 && dict_len > 0)
            rc = codec_cdict_create(dict, dict_len, o->level, &cdict, err);
    }
    for (int c = 0; rc == 0 && c < 2; c++) {
        ch[c].data = malloc((size_t)CHUNK * slot);
        ch[c].len = malloc(CHUNK * sizeof *ch[c].len);
        ch[c].label = malloc(CHUNK * sizeof *ch[c].label);
        if (!ch[c].data || !ch[c].len || !ch[c].label)
            rc = st_seterr(err, ST_ENOMEM, "out of memory for chunk buffers");
    }
    for (; rc == 0 && nw < o->threads; nw++) {
        ws[nw] = (worker){.o = o, .slot = slot};
        rc = codec_enc_create(&shape, o->level, cdict, &ws[nw].enc, err);
        if (rc == 0)
            rc = codec_enc_huffman_literals(ws[nw].enc, o->huffman_literals, err);
        if (rc == 0 && (ws[nw].pixels = malloc(sb)) == NULL)
            rc = st_seterr(err, ST_ENOMEM, "out of memory");
    }
    pack_writer_config wc = {
        .codec = (uint32_t)o->codec,
        .level = o->codec == CODEC_ZSTD ? o->level : 0,
        .height = o->height, .width = o->width, .channels = o->channels,
        .shard_bytes = o->shard_bytes, .nclasses = o->classes,
        .classes = classes, .dict = dict_len ? dict : NULL,
        .dict_len = dict_len, .force = o->force};
    if (rc == 0) rc = pack_writer_open(o->out, &wc, &pw, err);
    if (rc == 0)
        rc = write_split(pw, "train", 0, o->samples, ws, nw, ch, slot, err);
    if (rc == 0 && o->test_samples > 0) /* test samples follow the train ones */
        rc = write_split(pw, "test", o->samples, o->test_samples, ws, nw, ch,
                         slot, err);
    if (rc == 0) {
        res->record_bytes = pack_writer_record_bytes(pw);
        rc = pack_writer_commit(pw, err); /* frees pw whatever happens */
        pw = NULL;
    }
    pack_writer_abort(pw);
    for (int t = nw - 1; t >= 0; t--) {
        free(ws[t].pixels);
        codec_enc_destroy(ws[t].enc);
    }
    for (int c = 1; c >= 0; c--) {
        free(ch[c].label);
        free(ch[c].len);
        free(ch[c].data);
    }
    codec_cdict_destroy(cdict);
    free(dict);
    res->dict_bytes = dict_len;
    res->seconds = now_s() - t0;
    return rc;
}

/* ---- arguments --------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f,
"usage: synthpack -o OUT (--samples N | --size BYTES) [options]\n"
"\n"
"Writes a synthetic pack of N images (smooth gradients, shapes and noise,\n"
"random labels), deterministic from --seed, for benchmarks.\n"
"\n"
"  -o, --output OUT       output pack directory (required)\n"
"      --samples N        train samples\n"
"      --size BYTES       train samples to make about BYTES decoded, e.g. 4G\n"
"      --test N           test samples, a split of their own (default: 0)\n"
"      --shape HxWxC      image shape (default: 64x64x3)\n"
"      --classes N        label classes, 1..16 (default: 10)\n"
"      --codec C          zstd | png | raw (default: zstd)\n"
"      --level N          zstd level 1..22 (default: %d)\n"
"      --dict-size BYTES  zstd dictionary size, 0 for none (default: 64K)\n"
"      --huffman-literals zstd: Huffman-code literals, as packdata's flag\n"
"                         (default: off)\n"
"      --shard-size BYTES target shard size (default: 64M)\n"
"      --seed N           content seed (default: 1)\n"
"      --threads N        encoder threads (default: online CPUs)\n"
"  -f, --force            replace an existing OUT pack\n"
"  -q, --quiet            no summary line\n"
"  -h, --help             this help\n", PACKER_DEFAULT_LEVEL);
}

/* Prints "synthpack: " fmt (with arg) and a pointer to --help. @return 2. */
static int die_usage(const char *fmt, const char *arg)
{
    fprintf(stderr, "synthpack: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, " (see synthpack --help)\n");
    return 2;
}

static int parse_shape(const char *s, opts *o)
{
    unsigned h, w, c;
    char extra;
    if (sscanf(s, "%ux%ux%u%c", &h, &w, &c, &extra) != 3 || h == 0 || w == 0 ||
        h > 16384 || w > 16384 || (c != 1 && c != 3 && c != 4))
        return -1;
    o->height = h, o->width = w, o->channels = c;
    return 0;
}

/* @return 0, 1 (help printed) or 2 (usage error printed). */
/* One option with its value a; 0, or die_usage's code. */
static int parse_opt(int c, const char *a, opts *o, uint64_t *size)
{
    uint64_t b;
    long v;
    switch (c) {
    case 'o': o->out = a; return 0;
    case 'n':
        if (units_parse_int(a, 1, 1L << 40, &v))
            return die_usage("--samples %s: expected a count >= 1", a);
        o->samples = (uint64_t)v;
        return 0;
    case 'z':
        if (units_parse_bytes(a, size) || *size == 0)
            return die_usage("--size %s: expected a size, e.g. 256M or 4G", a);
        return 0;
    case 'T':
        if (units_parse_int(a, 0, 1L << 40, &v))
            return die_usage("--test %s: expected a count >= 0", a);
        o->test_samples = (uint64_t)v;
        return 0;
    case 'S':
        if (parse_shape(a, o))
            return die_usage("--shape %s: expected HxWxC with C 1, 3 or 4", a);
        return 0;
    case 'k':
        if (units_parse_int(a, 1, 16, &v))
            return die_usage("--classes %s: expected 1..16", a);
        o->classes = (uint32_t)v;
        return 0;
    case 'c':
        if ((o->codec = manifest_codec_parse(a)) < 0)
            return die_usage("--codec %s: expected zstd, png or raw", a);
        return 0;
    case 'l':
        if (units_parse_int(a, 1, 22, &v))
            return die_usage("--level %s: expected 1..22", a);
        o->level = (int)v;
        return 0;
    case 'd':
        if (units_parse_bytes(a, &b) || b > (16u << 20))
            return die_usage("--dict-size %s: expected 0..16M", a);
        o->dict_bytes = (size_t)b;
        return 0;
    case 's':
        if (units_parse_bytes(a, &b) || b < 4096)
            return die_usage("--shard-size %s: expected a size of at least 4K", a);
        o->shard_bytes = b;
        return 0;
    case 'e':
        if (units_parse_int(a, 0, 0x7fffffffffffffffL, &v))
            return die_usage("--seed %s: expected an integer >= 0", a);
        o->seed = (uint64_t)v;
        return 0;
    case 't':
        if (units_parse_int(a, 1, MAX_THREADS, &v))
            return die_usage("--threads %s: expected 1..64", a);
        o->threads = (int)v;
        return 0;
    case 'H': o->huffman_literals = 1; return 0;
    case 'f': o->force = 1; return 0;
    case 'q': o->quiet = 1; return 0;
    default: return die_usage("%s", "unknown option");
    }
}

static int parse_args(int argc, char **argv, opts *o)
{
    static const struct option lo[] = {
        {"output", 1, 0, 'o'}, {"samples", 1, 0, 'n'}, {"size", 1, 0, 'z'},
        {"test", 1, 0, 'T'}, {"shape", 1, 0, 'S'}, {"classes", 1, 0, 'k'},
        {"codec", 1, 0, 'c'}, {"level", 1, 0, 'l'}, {"dict-size", 1, 0, 'd'},
        {"huffman-literals", 0, 0, 'H'},
        {"shard-size", 1, 0, 's'}, {"seed", 1, 0, 'e'}, {"threads", 1, 0, 't'},
        {"force", 0, 0, 'f'}, {"quiet", 0, 0, 'q'}, {"help", 0, 0, 'h'},
        {0, 0, 0, 0}};
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    *o = (opts){.height = 64, .width = 64, .channels = 3, .classes = 10,
                .codec = CODEC_ZSTD, .level = PACKER_DEFAULT_LEVEL,
                .threads = n < 1 ? 1 : n > MAX_THREADS ? MAX_THREADS : (int)n,
                .dict_bytes = PACKER_DEFAULT_DICT_BYTES,
                .shard_bytes = 64u << 20, .seed = 1};
    uint64_t size = 0;
    int c, rc;
    opterr = 0; /* one line of our own instead of getopt's */
    while ((c = getopt_long(argc, argv, "o:fqh", lo, NULL)) != -1) {
        if (c == 'h') {
            usage(stdout);
            return 1;
        }
        if (c == '?')
            return die_usage("unknown option or missing value: '%s'",
                             argv[optind - 1]);
        if ((rc = parse_opt(c, optarg, o, &size)) != 0) return rc;
    }
    if (optind != argc) return die_usage("unexpected argument '%s'", argv[optind]);
    if (o->out == NULL) return die_usage("%s", "missing -o OUT");
    if ((o->samples != 0) == (size != 0))
        return die_usage("%s", "give exactly one of --samples and --size");
    if (size) {
        o->samples = size / ((uint64_t)o->height * o->width * o->channels);
        if (o->samples == 0)
            return die_usage("%s", "--size: smaller than one sample");
    }
    return 0;
}

int main(int argc, char **argv)
{
    opts o;
    int prc = parse_args(argc, argv, &o);
    if (prc) return prc == 1 ? 0 : 2;
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGXFSZ, SIG_IGN); /* a file-size limit fails the write instead */
    st_error err = {0};
    result res = {0};
    int rc = run(&o, &res, &err);
    if (rc != 0) {
        fprintf(stderr, "synthpack: %s\n", err.msg);
        return rc == ST_ECLOSED ? 130 : 1; /* as packdata */
    }
    if (!o.quiet) {
        char a[32], b[32];
        uint64_t n = o.samples + o.test_samples;
        uint64_t raw = n * o.height * o.width * o.channels;
        printf("synthpack: %s: %llu samples of %ux%ux%u, codec %s, raw %s, "
               "records %s (ratio %.3f), %.1f s, %d threads\n", o.out,
               (unsigned long long)n, o.height, o.width, o.channels,
               manifest_codec_name((uint32_t)o.codec),
               units_format_bytes(raw, a, sizeof a),
               units_format_bytes(res.record_bytes, b, sizeof b),
               res.record_bytes ? (double)raw / (double)res.record_bytes : 0,
               res.seconds, o.threads);
    }
    return 0;
}
