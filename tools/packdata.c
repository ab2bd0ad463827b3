/* tools/packdata.c — packdata: converts a dataset (MNIST-style IDX, a
 * folder of JPEG/PNG images, CIFAR-10 binaries) into a streamtrain pack
 * directory.
 * Parses arguments and calls datasets/packer; everything else lives there.
 */
#include "datasets/codec.h"
#include "datasets/fsutil.h"
#include "datasets/manifest.h"
#include "datasets/packer.h"
#include "datasets/shard.h"
#include "datasets/units.h"

#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static volatile sig_atomic_t g_cancel;
static volatile sig_atomic_t g_signal; /* the first signal received */

static void on_signal(int sig)
{
    if (g_signal == 0) g_signal = sig;
    g_cancel = 1;
}

static void usage(FILE *f)
{
    fprintf(f,
"usage: packdata SRC -o OUT [options]\n"
"\n"
"Converts SRC into a pack directory OUT (written atomically).\n"
"SRC: a directory of MNIST-style IDX files (.gz or plain), one IDX images\n"
"     file, a folder of JPEG and PNG images (one subfolder per class;\n"
"     optional train/, test/ or val/ splits), or a CIFAR-10 binary\n"
"     directory.\n"
"\n"
"  -o, --output OUT       output pack directory (required)\n"
"      --format F         idx | folder | cifar10 (default: detected)\n"
"      --codec C          zstd | png | jpeg | raw (default: jpeg for a folder\n"
"                         of JPEG files, else zstd)\n"
"      --quality Q        jpeg codec quality 1..100 (default: %d)\n"
"      --level N          zstd level 1..22 (default: %d)\n"
"      --dict-size BYTES  zstd dictionary size: 0 for none, else at least\n"
"                         %u (default: 64K)\n"
"      --huffman-literals zstd: Huffman-code literals: ~5%% smaller, ~1.7x\n"
"                         slower to decode (default: off)\n"
"      --shard-size BYTES target shard size, e.g. 64M (default: 64M)\n"
"      --threads N        encoder threads (default: online CPUs)\n"
"      --resize WxH       resize every image to W x H (folder sources;\n"
"                         each side 1..%u)\n"
"      --max-side N       downscale images whose longer side is over N to\n"
"                         exactly N, keeping the aspect (area filter);\n"
"                         sizes may then differ (not with --resize)\n"
"      --max-pixels N     refuse images of more than N pixels, 0 for no\n"
"                         limit (default: %u, PIL's)\n"
"      --no-exif-rotate   keep JPEGs as stored instead of applying their\n"
"                         EXIF orientation\n"
"      --channels N       1, 3 or 4 output channels (default: the source's;\n"
"                         folders: 3 if any image has colour, else 1)\n"
"  -f, --force            replace an existing OUT pack\n"
"  -q, --quiet            no progress line\n"
"  -h, --help             this help\n", PACKER_DEFAULT_QUALITY,
            PACKER_DEFAULT_LEVEL, CODEC_DICT_MIN_BYTES, SOURCE_MAX_SIDE,
            SOURCE_DEFAULT_MAX_PIXELS);
}

static int die_usage(const char *fmt, const char *arg)
{
    fprintf(stderr, "packdata: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, " (see packdata --help)\n");
    return 2;
}

static int die_dict_size(const char *arg)
{
    fprintf(stderr, "packdata: --dict-size %s: expected 0 (no dictionary) "
            "or %u..16M (zstd trains no smaller dictionary) (see packdata "
            "--help)\n", arg, CODEC_DICT_MIN_BYTES);
    return 2;
}

static int die_resize(const char *arg)
{
    fprintf(stderr, "packdata: --resize %s: expected WxH with each side "
            "1..%u, e.g. 32x32 (see packdata --help)\n", arg,
            SOURCE_MAX_SIDE);
    return 2;
}

static int die_max_side(const char *arg)
{
    fprintf(stderr, "packdata: --max-side %s: expected 1..%u (see packdata "
            "--help)\n", arg, SOURCE_MAX_SIDE);
    return 2;
}

typedef struct progress_ctx {
    int tty;
    double last;
} progress_ctx;

static void on_progress(void *ctx, const packer_progress *p)
{
    progress_ctx *pc = ctx;
    if (!pc->tty || (p->seconds - pc->last < 0.2 && p->done < p->total)) return;
    pc->last = p->seconds;
    double rate = p->seconds > 0 ? (double)p->done / p->seconds : 0;
    double eta = rate > 0 ? (double)(p->total - p->done) / rate : 0;
    fprintf(stderr, "\r\033[Kpacking %s: %llu/%llu (%.0f%%)  %.0f samples/s  "
            "ETA %.1f s", p->split, (unsigned long long)p->done,
            (unsigned long long)p->total,
            100.0 * (double)p->done / (double)(p->total ? p->total : 1), rate,
            eta);
    if (p->done == p->total) fprintf(stderr, "\r\033[K");
}

static int parse_resize(const char *s, source_options *o)
{
    unsigned w, h;
    char extra;
    if (sscanf(s, "%ux%u%c", &w, &h, &extra) != 2 || w == 0 || h == 0 ||
        w > SOURCE_MAX_SIDE || h > SOURCE_MAX_SIDE)
        return -1;
    o->resize_w = w;
    o->resize_h = h;
    return 0;
}

/* A whole decimal count: digits only. @return 0 or -1. */
static int parse_count(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    if (*s == '\0') return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || v > (UINT64_MAX - 9) / 10) return -1;
        v = v * 10 + (uint64_t)(*s - '0');
    }
    *out = v;
    return 0;
}

static int parse_format(const char *s, source_format *f)
{
    if (strcmp(s, "idx") == 0) *f = SOURCE_IDX;
    else if (strcmp(s, "folder") == 0) *f = SOURCE_FOLDER;
    else if (strcmp(s, "cifar10") == 0) *f = SOURCE_CIFAR10;
    else return -1;
    return 0;
}

/* @return 0, or 2 after printing a usage error. */
static int parse_args(int argc, char **argv, packer_config *cfg,
                      const char **src, const char **out, int *quiet)
{
    static const struct option opts[] = {
        {"output", required_argument, 0, 'o'}, {"format", required_argument, 0, 'F'},
        {"codec", required_argument, 0, 'c'}, {"level", required_argument, 0, 'l'},
        {"dict-size", required_argument, 0, 'd'},
        {"huffman-literals", no_argument, 0, 'H'},
        {"shard-size", required_argument, 0, 's'},
        {"threads", required_argument, 0, 't'}, {"resize", required_argument, 0, 'r'},
        {"channels", required_argument, 0, 'C'}, {"force", no_argument, 0, 'f'},
        {"max-side", required_argument, 0, 'M'},
        {"max-pixels", required_argument, 0, 'P'},
        {"no-exif-rotate", no_argument, 0, 'E'},
        {"quality", required_argument, 0, 'Q'},
        {"quiet", no_argument, 0, 'q'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    int c;
    long v;
    uint64_t b;
    opterr = 0; /* one line of our own instead of getopt's */
    while ((c = getopt_long(argc, argv, "o:fqh", opts, NULL)) != -1) {
        switch (c) {
        case 'o':
            if (optarg[0] == '\0') return die_usage("%s", "-o: empty path");
            *out = optarg;
            break;
        case 'F':
            if (parse_format(optarg, &cfg->source.format))
                return die_usage("--format %s: expected idx, folder or cifar10", optarg);
            break;
        case 'c':
            /* jpeg: until the manifest knows its name */
            cfg->codec = strcmp(optarg, "jpeg") == 0
                             ? CODEC_JPEG : manifest_codec_parse(optarg);
            if (cfg->codec < 0)
                return die_usage("--codec %s: expected zstd, png, jpeg or raw",
                                 optarg);
            break;
        case 'Q':
            if (units_parse_int(optarg, 1, 100, &v))
                return die_usage("--quality %s: expected 1..100", optarg);
            cfg->quality = (int)v;
            break;
        case 'M':
            if (units_parse_int(optarg, 1, SOURCE_MAX_SIDE, &v))
                return die_max_side(optarg);
            cfg->source.max_side = (uint32_t)v;
            break;
        case 'P':
            if (parse_count(optarg, &b))
                return die_usage("--max-pixels %s: expected a pixel count, "
                                 "0 for no limit", optarg);
            cfg->source.max_pixels = b;
            break;
        case 'E': cfg->source.no_exif_rotate = 1; break;
        case 'l':
            if (units_parse_int(optarg, 1, 22, &v))
                return die_usage("--level %s: expected 1..22", optarg);
            cfg->level = (int)v;
            break;
        case 'd':
            if (units_parse_bytes(optarg, &b) || b > (16u << 20) ||
                (b > 0 && b < CODEC_DICT_MIN_BYTES))
                return die_dict_size(optarg);
            cfg->dict_bytes = (size_t)b;
            break;
        case 's':
            if (units_parse_bytes(optarg, &b) || b < 4096)
                return die_usage("--shard-size %s: expected a size of at least 4K", optarg);
            cfg->shard_bytes = b;
            break;
        case 't':
            if (units_parse_int(optarg, 1, 256, &v))
                return die_usage("--threads %s: expected 1..256", optarg);
            cfg->threads = (int)v;
            break;
        case 'r':
            if (parse_resize(optarg, &cfg->source))
                return die_resize(optarg);
            break;
        case 'C':
            if (units_parse_int(optarg, 1, 4, &v) || v == 2)
                return die_usage("--channels %s: expected 1, 3 or 4", optarg);
            cfg->source.channels = (int)v;
            break;
        case 'f': cfg->force = 1; break;
        case 'H': cfg->huffman_literals = 1; break;
        case 'q': *quiet = 1; break;
        case 'h': usage(stdout); exit(0);
        default:
            return die_usage("unknown option or missing value: '%s'",
                             argv[optind - 1]);
        }
    }
    if (optind != argc - 1)
        return die_usage("%s", optind >= argc ? "missing SRC" : "more than one SRC");
    *src = argv[optind];
    if (*out == NULL) return die_usage("%s", "missing -o OUT");
    if (cfg->source.max_side != 0 && cfg->source.resize_w != 0)
        return die_usage("%s", "--max-side and --resize do not combine "
                         "(--resize makes every image exactly W x H)");
    return 0;
}

/* An OUT inside a SRC directory would be read back as input by the next
 * run (its MANIFEST is not a PNG): refused up front. Compares the real
 * path of SRC with that of OUT's parent. @return 0, or 2 after a message. */
static int check_out_outside_src(const char *src, const char *out)
{
    char s[PATH_MAX], o[PATH_MAX], parent[PATH_MAX], p[PATH_MAX];
    struct stat st;
    if (stat(src, &st) != 0 || !S_ISDIR(st.st_mode) || !realpath(src, s))
        return 0; /* the source reports its own problems */
    size_t n = strlen(out);
    while (n > 1 && out[n - 1] == '/') n--;
    snprintf(o, sizeof o, "%.*s", (int)n, out);
    fs_parent_dir(o, parent, sizeof parent);
    if (!realpath(parent, p)) return 0; /* the writer names it */
    size_t k = strlen(s);
    if (strcmp(s, "/") == 0 ||
        (strncmp(p, s, k) == 0 && (p[k] == '\0' || p[k] == '/'))) {
        fprintf(stderr, "packdata: %s: OUT is inside SRC %s (the next run "
                "would read the pack as input); choose an OUT outside it "
                "(see packdata --help)\n", out, src);
        return 2;
    }
    return 0;
}

static void summary(const char *src, const char *out, const packer_config *cfg,
                    const packer_stats *st)
{
    char a[32], b[32], c[32], d[32];
    const source_info *in = &st->info;
    int codec = (int)st->codec; /* the packer's choice when cfg->codec < 0 */
    printf("packdata: %s (%s) -> %s\n", src, source_format_name(in->format), out);
    printf("  samples  %llu (", (unsigned long long)st->samples);
    for (uint32_t s = 0; s < in->nsplits; s++)
        printf("%s%s %llu", s ? ", " : "", in->splits[s].name,
               (unsigned long long)in->splits[s].count);
    printf("), shape %s%ux%ux%u uint8, %u classes\n",
           in->variable ? "variable, up to " : "", in->height, in->width,
           in->channels, in->nclasses);
    printf("  codec    %s", manifest_codec_name((uint32_t)codec));
    if (codec == CODEC_ZSTD)
        printf(" level %d%s, dictionary %s (trained in %.2f s)", cfg->level,
               cfg->huffman_literals ? " (Huffman literals)" : "",
               st->dict_bytes ? units_format_bytes(st->dict_bytes, d, sizeof d)
                              : "none", st->dict_seconds);
    if (codec == CODEC_JPEG)
        printf(" quality %d, %llu of %llu records the files' own bytes",
               cfg->quality, (unsigned long long)st->passthrough,
               (unsigned long long)st->samples);
    printf("\n  size     raw %s, records %s (ratio %.3f), on disk %s (ratio %.3f)\n",
           units_format_bytes(st->raw_bytes, a, sizeof a),
           units_format_bytes(st->record_bytes, b, sizeof b),
           st->record_bytes ? (double)st->raw_bytes / (double)st->record_bytes : 0,
           units_format_bytes(st->disk_bytes, c, sizeof c),
           st->disk_bytes ? (double)st->raw_bytes / (double)st->disk_bytes : 0);
    printf("  time     %.2f s, %.0f samples/s, %d thread%s\n", st->seconds,
           st->seconds > 0 ? (double)st->samples / st->seconds : 0,
           cfg->threads, cfg->threads == 1 ? "" : "s");
}

/* Packs that work but that streamtrain or the loader will stumble on. */
#define SHARDS_WARN 1000

static void warnings(const char *out, const packer_config *cfg,
                     const packer_stats *st)
{
    if (st->info.nclasses == 1)
        fprintf(stderr, "packdata: warning: %s has 1 class; streamtrain needs "
                "at least 2 to train\n", out);
    if (st->shards > SHARDS_WARN) {
        char a[32];
        fprintf(stderr, "packdata: warning: %s has %u shards and a reader "
                "keeps one file open per shard (ulimit -n is often 1024); a "
                "larger --shard-size than %s gives fewer\n", out, st->shards,
                units_format_bytes(cfg->shard_bytes, a, sizeof a));
    }
}

int main(int argc, char **argv)
{
    packer_config cfg;
    packer_config_default(&cfg);
    cfg.source.max_pixels = SOURCE_DEFAULT_MAX_PIXELS;
    const char *src = NULL, *out = NULL;
    int quiet = 0;
    int rc = parse_args(argc, argv, &cfg, &src, &out, &quiet);
    if (rc == 0) rc = check_out_outside_src(src, out);
    if (rc) return rc;
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGXFSZ, SIG_IGN); /* a file-size limit fails the write instead */
    progress_ctx pc = {.tty = !quiet && isatty(2)};
    cfg.progress = on_progress;
    cfg.progress_ctx = &pc;
    cfg.cancel = &g_cancel;
    packer_stats st;
    st_error err = {0};
    int prc = packer_run(src, out, &cfg, &st, &err);
    if (prc != 0) {
        if (pc.tty) fprintf(stderr, "\r\033[K");
        fprintf(stderr, "packdata: %s\n", err.msg);
        /* cancelled: 128 + the signal, as a shell reports it (SIGINT 130,
         * SIGTERM 143, SIGHUP 129) */
        if (prc == ST_ECLOSED) return 128 + (g_signal ? g_signal : SIGINT);
        return 1;
    }
    summary(src, out, &cfg, &st);
    warnings(out, &cfg, &st);
    return 0;
}
