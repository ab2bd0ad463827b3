/* bench/stream.c — the loader alone, for the scaling benchmark
 * (bench/scaling.sh builds it into build/bench/stream).
 *
 * Like loadbench (tools/loadbench.c) but without its one-thread baseline
 * epoch, which reads the whole split first: after a page-cache drop, this
 * program's first epoch is truly cold. It streams EPOCHS epochs of the
 * train split with global shuffle, touches every byte of every batch (an
 * XXH3 over pixels and labels, as loadbench's consumer does), and prints
 * one parseable line per epoch and one for memory:
 *
 *   stream epoch=0 threads=2 io=pread samples=349525 secs=4.101
 *          samples_per_s=85230 us_per_sample_thread=23.47 read_pct=4.1
 *          decode_pct=93.0 blocked_pct=0.2 wait_pct=90.3
 *   stream memory ring=12615680 scratch=... index=... index_resident=...
 *          peak_rss=... rss_anon=... rss_file=...
 *
 * usage: stream DIR THREADS EPOCHS [pread|mmap|auto] [READAHEAD]
 * read/decode/blocked % are of the producers' thread time, wait % of the
 * consumer's epoch time; peak_rss is the process's ru_maxrss in bytes.
 * ring, scratch and index are loader_memory_of's figures; index_resident
 * is the index as pack_open holds it: records x sizeof(shard_entry).
 * rss_anon and rss_file are /proc/self/status's RssAnon and RssFile in
 * bytes, the largest of each read at the end of every epoch while the
 * loader is open (anonymous memory grows with a copied index; mapped
 * index and shard pages are file pages the kernel can drop); -1 where
 * /proc/self/status lacks them.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <xxhash.h>

#include "datasets/pack.h"
#include "datasets/shard.h"
#include "loader/loader.h"

/* The largest RssAnon and RssFile seen so far, in bytes (-1: unknown). */
static long long rss_anon_max = -1, rss_file_max = -1;

/* Reads RssAnon and RssFile from /proc/self/status into the maxima. */
static void sample_rss(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return;
    char line[256];
    long long kib;
    while (fgets(line, sizeof line, f)) {
        if (sscanf(line, "RssAnon: %lld kB", &kib) == 1 && kib * 1024 > rss_anon_max)
            rss_anon_max = kib * 1024;
        else if (sscanf(line, "RssFile: %lld kB", &kib) == 1 &&
                 kib * 1024 > rss_file_max)
            rss_file_max = kib * 1024;
    }
    fclose(f);
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* The loader's own memory figures for cfg on this pack; *records. */
static int memory_of(const char *dir, const loader_config *cfg,
                     loader_memory *m, uint64_t *records, st_error *err)
{
    pack *p = NULL;
    ST_TRY(pack_open(dir, &p, err));
    int s = pack_split_find(p, cfg->split);
    if (s < 0) {
        pack_close(p);
        return st_seterr(err, ST_ENOTFOUND, "%s: no split '%s'", dir, cfg->split);
    }
    *records = pack_split_samples(p, s);
    *m = loader_memory_of(cfg, pack_sample_bytes(p), pack_max_record(p),
                          *records, 0);
    pack_close(p);
    return 0;
}

static void print_epoch(uint64_t e, const loader_config *cfg,
                        const loader_stats *a, const loader_stats *b,
                        double secs)
{
    uint64_t n = b->samples - a->samples;
    double busy = cfg->threads * secs / 100, sps = n / secs;
    printf("stream epoch=%llu threads=%u io=%s samples=%llu secs=%.3f "
           "samples_per_s=%.0f us_per_sample_thread=%.3f read_pct=%.1f "
           "decode_pct=%.1f blocked_pct=%.1f wait_pct=%.1f\n",
           (unsigned long long)e, cfg->threads,
           b->io == LOADER_IO_MMAP ? "mmap" : "pread", (unsigned long long)n,
           secs, sps, 1e6 * cfg->threads / sps, (b->read_s - a->read_s) / busy,
           (b->decode_s - a->decode_s) / busy,
           (b->blocked_s - a->blocked_s) / busy,
           100 * (b->wait_s - a->wait_s) / secs);
    fflush(stdout);
}

static int stream(const char *dir, const loader_config *cfg, st_error *err)
{
    loader *l = NULL;
    ST_TRY(loader_open(dir, cfg, &l, err));
    loader_stats prev = {0}, cur;
    loader_batch b;
    uint64_t sum = 0, e = 0;
    double t0 = now_s();
    int rc = 0;
    while (e < cfg->epochs) {
        rc = loader_next_batch(l, &b, err);
        if (rc == ST_EEND) {
            loader_get_stats(l, &cur);
            sample_rss();
            print_epoch(e++, cfg, &prev, &cur, now_s() - t0);
            prev = cur;
            t0 = now_s();
            rc = 0;
            continue;
        }
        if (rc) break;
        size_t sb = (size_t)b.height * b.width * b.channels;
        sum = XXH3_64bits_withSeed(b.pixels, b.n * sb, sum);
        sum = XXH3_64bits_withSeed(b.labels, b.n * sizeof *b.labels, sum);
        if ((rc = loader_release(l, &b, err)) != 0) break;
    }
    loader_close(l);
    if (rc == 0) printf("stream checksum=%016llx\n", (unsigned long long)sum);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 4 || argc > 6) {
        fprintf(stderr, "usage: stream DIR THREADS EPOCHS [pread|mmap|auto] "
                "[READAHEAD]\n");
        return 2;
    }
    loader_config cfg;
    loader_config_default(&cfg);
    cfg.threads = (uint32_t)atoi(argv[2]);
    cfg.epochs = (uint64_t)atoi(argv[3]);
    const char *io = argc > 4 ? argv[4] : "pread";
    cfg.io = strcmp(io, "mmap") == 0   ? LOADER_IO_MMAP
             : strcmp(io, "auto") == 0 ? LOADER_IO_AUTO
                                       : LOADER_IO_PREAD;
    if (argc > 5) cfg.readahead = (uint32_t)atoi(argv[5]); /* else default */
    if (cfg.threads < 1 || cfg.epochs < 1) {
        fprintf(stderr, "stream: THREADS and EPOCHS must be >= 1\n");
        return 2;
    }
    st_error err = {0};
    loader_memory m = {0};
    uint64_t records = 0;
    if (stream(argv[1], &cfg, &err) != 0 ||
        memory_of(argv[1], &cfg, &m, &records, &err) != 0) {
        fprintf(stderr, "stream: %s\n", err.msg);
        return 1;
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("stream memory ring=%zu scratch=%zu index=%zu index_resident=%zu "
           "peak_rss=%lld rss_anon=%lld rss_file=%lld\n", m.ring, m.scratch,
           m.index, (size_t)records * sizeof(shard_entry),
           (long long)ru.ru_maxrss * 1024, rss_anon_max, rss_file_max);
    return 0;
}
