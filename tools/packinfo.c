/* tools/packinfo.c — packinfo: describes a pack directory (for
 * variable-size splits the min / median / max of H, W and pixels, from
 * the index alone), its channel statistics, and with --verify checks every
 * checksum and decodes every sample. */
#include "datasets/fsutil.h"
#include "datasets/pack.h"
#include "datasets/units.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

static void usage(FILE *f)
{
    fprintf(f,
"usage: packinfo [--verify] DIR\n"
"\n"
"Prints a pack directory's splits, sample counts, classes, shape, codec,\n"
"bytes on disk and compression ratio; for splits of images of different\n"
"sizes the min / median / max of height, width and pixels per image (from\n"
"the index); the per-channel mean and std the manifest holds.\n"
"  --verify   also check every file and record checksum and decode every\n"
"             sample; exits 1 at the first fault, naming split, shard and\n"
"             record\n");
}

/* Size of the pack's MANIFEST, counted in "on disk" as packdata counts it. */
static uint64_t manifest_bytes(const pack *p)
{
    char path[4200];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", pack_dir(p), MANIFEST_NAME);
    return stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
}

static void describe_sizes(const pack *p)
{
    const manifest *m = pack_manifest(p);
    static const char *const what[3] = {"H", "W", "pixels"};
    for (uint32_t s = 0; s < m->nsplits; s++) {
        pack_size_summary z;
        st_error err = {0};
        if (pack_split_sizes(p, (int)s, &z, &err) != 0) {
            printf("sizes    %s: %s\n", m->splits[s].name, err.msg);
            continue;
        }
        printf("sizes    %-8s", m->splits[s].name);
        for (int j = 0; j < 3; j++)
            printf("%s %s min %u median %u max %u", j ? ";" : "", what[j],
                   z.min[j], z.med[j], z.max[j]);
        printf("\n");
    }
}

static void describe_stats(const manifest *m)
{
    if (!m->has_stats) {
        printf("stats    none (a version-1 pack, or written without them)\n");
        return;
    }
    printf("stats    %s, per channel (0..255): mean", m->stats_split);
    for (uint32_t c = 0; c < m->channels; c++) printf(" %.4f", m->mean[c]);
    printf(", std");
    for (uint32_t c = 0; c < m->channels; c++) printf(" %.4f", m->std[c]);
    printf("\n");
}

/* Decoded bytes of a split: H*W*C summed over its records' entries. */
static uint64_t split_raw_bytes(const pack *p, int s)
{
    uint64_t raw = 0, c = pack_manifest(p)->channels;
    for (uint32_t k = 0; k < pack_split_nshards(p, s); k++) {
        const shard *sh = pack_shard(p, s, k);
        for (uint64_t r = 0; r < shard_count(sh); r++) {
            const shard_entry *e = shard_entry_at(sh, r);
            raw += (uint64_t)e->height * e->width * c;
        }
    }
    return raw;
}

static void describe(const pack *p)
{
    const manifest *m = pack_manifest(p);
    char a[32], b[32], c[32];
    uint64_t raw_total = 0, disk_total = 0;
    printf("pack     %s (format version %u)\n", pack_dir(p), m->version);
    if (m->variable)
        printf("shape    variable, up to %u x %u x %u uint8 (H x W x C; "
               "largest record %llu bytes), int32 labels\n", m->max_h,
               m->max_w, m->channels, (unsigned long long)pack_max_record(p));
    else
        printf("shape    %u x %u x %u uint8 (H x W x C), int32 labels\n",
               m->height, m->width, m->channels);
    printf("codec    %s", manifest_codec_name(m->codec));
    if (m->codec == CODEC_ZSTD) {
        printf(" level %d, ", m->level);
        if (m->dict_file[0])
            printf("dictionary %s (id %u)", units_format_bytes(m->dict_bytes, a, sizeof a),
                   m->dict_id);
        else
            printf("no dictionary");
    }
    printf("\nclasses  %u:", m->nclasses);
    for (uint32_t i = 0; i < m->nclasses && i < 20; i++)
        printf("%s %u=%s", i ? "," : "", i, m->classes[i]);
    printf("%s\n", m->nclasses > 20 ? ", ..." : "");
    uint64_t rec_total = 0;
    printf("%-8s %10s %7s %11s %11s %7s %11s %7s\n", "split", "samples",
           "shards", "raw", "records", "ratio", "on disk", "ratio");
    for (uint32_t s = 0; s < m->nsplits; s++) {
        uint64_t disk = 0, rec = 0, raw = split_raw_bytes(p, (int)s);
        for (uint32_t k = 0; k < m->splits[s].nshards; k++) {
            const shard *sh = pack_shard(p, (int)s, k);
            disk += m->splits[s].shards[k].bytes;
            for (uint64_t r = 0; r < shard_count(sh); r++)
                rec += shard_entry_at(sh, r)->length;
        }
        printf("%-8s %10llu %7u %11s %11s %7.3f %11s %7.3f\n",
               m->splits[s].name, (unsigned long long)m->splits[s].samples,
               m->splits[s].nshards, units_format_bytes(raw, a, sizeof a),
               units_format_bytes(rec, c, sizeof c), (double)raw / (double)rec,
               units_format_bytes(disk, b, sizeof b),
               (double)raw / (double)disk);
        raw_total += raw;
        rec_total += rec;
        disk_total += disk;
    }
    disk_total += m->dict_bytes + manifest_bytes(p);
    printf("total    %s raw; records %s (ratio %.3f); on disk %s with index, "
           "headers, dictionary and MANIFEST (ratio %.3f)\n",
           units_format_bytes(raw_total, a, sizeof a),
           units_format_bytes(rec_total, c, sizeof c),
           (double)raw_total / (double)rec_total,
           units_format_bytes(disk_total, b, sizeof b),
           (double)raw_total / (double)disk_total);
    if (m->variable) describe_sizes(p);
    describe_stats(m);
}

int main(int argc, char **argv)
{
    fs_raise_open_files(); /* every shard stays open */
    int verify = 0;
    const char *dir = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--verify") == 0) verify = 1;
        else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 0;
        } else if (argv[i][0] == '-' || dir != NULL) {
            fprintf(stderr, "packinfo: unexpected argument '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        } else dir = argv[i];
    }
    if (dir == NULL) {
        usage(stderr);
        return 2;
    }
    pack *p = NULL;
    st_error err = {0};
    if (pack_open(dir, &p, &err) != 0) {
        fprintf(stderr, "packinfo: %s\n", err.msg);
        return 1;
    }
    describe(p);
    int rc = 0;
    if (verify) {
        pack_verify_stats vs;
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        if (pack_verify(p, &vs, &err) != 0) {
            fprintf(stderr, "packinfo: verify failed: %s\n", err.msg);
            rc = 1;
        } else {
            clock_gettime(CLOCK_MONOTONIC, &t1);
            printf("verify   OK: %llu files, %llu records checked and decoded "
                   "in %.2f s\n", (unsigned long long)vs.files,
                   (unsigned long long)vs.records,
                   (double)(t1.tv_sec - t0.tv_sec) +
                       (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9);
        }
    }
    pack_close(p);
    return rc;
}
