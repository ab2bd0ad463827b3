/* datasets/pack.c — a pack directory: MANIFEST + optional dictionary +
 * shards per split. pack_open validates all of it up front; pack_writer
 * builds one in a temporary directory and renames it into place only when
 * it is complete and fsynced.
 */
#include "pack.h"
#include "fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>
#include <zstd.h>

#define MANIFEST_MAX_BYTES (64u << 20)

/* ---- reading ----------------------------------------------------------- */

typedef struct pack_split_rt {
    shard **shards;          /* (nshards) */
    uint64_t *first;         /* (nshards + 1) prefix sums of record counts */
} pack_split_rt;

struct pack {
    char *dir;
    manifest *m;
    void *dict;              /* (dict_len) raw dictionary bytes */
    size_t dict_len;
    ZSTD_DDict *ddict;
    size_t max_record;       /* manifest's (version 2) or largest seen */
    size_t index_memory;     /* anonymous bytes of copied (v1) indexes */
    pack_split_rt split[MANIFEST_MAX_SPLITS];
};

static int load_manifest(pack *p, st_error *err)
{
    char path[PATH_MAX];
    struct stat dst;
    if (stat(p->dir, &dst) == 0 && !S_ISDIR(dst.st_mode))
        return st_seterr(err, ST_ENOTFOUND, "%s: not a directory (expected a "
                         "pack directory)", p->dir);
    snprintf(path, sizeof path, "%s/%s", p->dir, MANIFEST_NAME);
    void *text = NULL;
    size_t len = 0;
    int rc = fs_read_file(path, MANIFEST_MAX_BYTES, &text, &len, err);
    if (rc == ST_ENOTFOUND) {
        struct stat st;
        if (stat(p->dir, &st) != 0)
            return st_seterr_force(err, ST_ENOTFOUND, "%s: no such pack "
                                   "directory", p->dir);
        return st_seterr_force(err, ST_ENOTFOUND, "%s: not a pack directory "
                               "(no %s; was packdata interrupted?)", p->dir,
                               MANIFEST_NAME);
    }
    if (rc) return rc;
    rc = manifest_parse(text, len, path, &p->m, err);
    free(text);
    return rc;
}

static int load_dict(pack *p, st_error *err)
{
    const manifest *m = p->m;
    if (m->dict_file[0] == 0) return 0;
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", p->dir, m->dict_file);
    ST_TRY(fs_read_file(path, m->dict_bytes + 1, &p->dict, &p->dict_len, err));
    if (p->dict_len != m->dict_bytes)
        return st_seterr(err, ST_EFORMAT, "%s: %zu bytes, manifest says %llu",
                         path, p->dict_len, (unsigned long long)m->dict_bytes);
    if (XXH3_64bits(p->dict, p->dict_len) != m->dict_xxh3)
        return st_seterr(err, ST_ECHECKSUM, "%s: dictionary checksum "
                         "mismatch", path);
    p->ddict = ZSTD_createDDict(p->dict, p->dict_len);
    if (p->ddict == NULL)
        return st_seterr(err, ST_EDECODE, "%s: zstd cannot load the "
                         "dictionary", path);
    if (ZSTD_getDictID_fromDDict(p->ddict) != m->dict_id)
        return st_seterr(err, ST_EFORMAT, "%s: dictionary id %u, manifest "
                         "says %u", path, ZSTD_getDictID_fromDDict(p->ddict),
                         m->dict_id);
    return 0;
}

static int check_shard(const pack *p, const shard *s, const manifest_shard *ms,
                       st_error *err)
{
    const shard_header *h = shard_header_of(s);
    const manifest *m = p->m;
    const char *path = shard_path(s);
    struct stat st;
    if (fstat(shard_fd(s), &st) != 0 || (uint64_t)st.st_size != ms->bytes)
        return st_seterr(err, ST_EFORMAT, "%s: %lld bytes, manifest says "
                         "%llu", path, (long long)st.st_size,
                         (unsigned long long)ms->bytes);
    if (h->record_count != ms->records)
        return st_seterr(err, ST_EFORMAT, "%s: %llu records, manifest says "
                         "%llu", path, (unsigned long long)h->record_count,
                         (unsigned long long)ms->records);
    if (shard_index_xxh3(s) != ms->index_xxh3)
        return st_seterr(err, ST_ECHECKSUM, "%s: index checksum differs from "
                         "the manifest's", path);
    if (h->version != m->version)
        return st_seterr(err, ST_EFORMAT, "%s: shard format version %u in a "
                         "version-%u pack", path, h->version, m->version);
    if (h->codec != m->codec || h->height != m->height ||
        h->width != m->width || h->channels != m->channels ||
        h->dict_id != m->dict_id)
        return st_seterr(err, ST_EFORMAT, "%s: codec, shape or dictionary id "
                         "differs from the manifest's", path);
    if (!m->variable && !shard_uniform(s))
        return st_seterr(err, ST_EFORMAT, "%s: an index entry's height or "
                         "width differs from the fixed shape %ux%u (corrupt "
                         "index)", path, m->height, m->width);
    if (m->version >= 2 && shard_max_length(s) > m->max_record)
        return st_seterr(err, ST_EFORMAT, "%s: a %u-byte record, manifest "
                         "says at most %llu", path, shard_max_length(s),
                         (unsigned long long)m->max_record);
    return 0;
}

static int open_split(pack *p, int si, st_error *err)
{
    const manifest_split *ms = &p->m->splits[si];
    pack_split_rt *rt = &p->split[si];
    rt->shards = calloc(ms->nshards, sizeof *rt->shards);
    rt->first = calloc(ms->nshards + 1, sizeof *rt->first);
    if (rt->shards == NULL || rt->first == NULL)
        return st_seterr(err, ST_ENOMEM, "%s: out of memory", p->dir);
    char path[PATH_MAX];
    for (uint32_t k = 0; k < ms->nshards; k++) {
        snprintf(path, sizeof path, "%s/%s", p->dir, ms->shards[k].file);
        ST_TRY(shard_open(path, &rt->shards[k], err));
        ST_TRY(check_shard(p, rt->shards[k], &ms->shards[k], err));
        rt->first[k + 1] = rt->first[k] + ms->shards[k].records;
        size_t len = shard_max_length(rt->shards[k]);
        if (len > p->max_record) p->max_record = len;
        p->index_memory += shard_index_memory(rt->shards[k]);
    }
    return 0;
}

int pack_open(const char *dir, pack **out, st_error *err)
{
    *out = NULL;
    pack *p = calloc(1, sizeof *p);
    if (p == NULL || (p->dir = strdup(dir)) == NULL) {
        free(p);
        return st_seterr(err, ST_ENOMEM, "%s: out of memory", dir);
    }
    int rc = load_manifest(p, err);
    if (rc == 0) rc = load_dict(p, err);
    if (rc == 0 && p->m->codec == CODEC_ZSTD && p->m->dict_file[0] == 0 &&
        p->m->dict_id != 0)
        rc = st_seterr(err, ST_EFORMAT, "%s: dictionary id without a "
                       "dictionary", dir);
    for (uint32_t s = 0; rc == 0 && s < p->m->nsplits; s++)
        rc = open_split(p, (int)s, err);
    if (rc == 0 && p->m->version >= 2) p->max_record = (size_t)p->m->max_record;
    if (rc != 0) {
        pack_close(p);
        return rc;
    }
    *out = p;
    return 0;
}

void pack_close(pack *p)
{
    if (p == NULL) return;
    for (uint32_t s = 0; p->m && s < p->m->nsplits; s++) {
        for (uint32_t k = 0; p->split[s].shards && k < p->m->splits[s].nshards;
             k++)
            shard_close(p->split[s].shards[k]);
        free(p->split[s].shards);
        free(p->split[s].first);
    }
    ZSTD_freeDDict(p->ddict);
    free(p->dict);
    manifest_free(p->m);
    free(p->dir);
    free(p);
}

const manifest *pack_manifest(const pack *p) { return p->m; }
const char *pack_dir(const pack *p) { return p->dir; }

int pack_split_find(const pack *p, const char *name)
{
    for (uint32_t s = 0; s < p->m->nsplits; s++)
        if (strcmp(p->m->splits[s].name, name) == 0) return (int)s;
    return -1;
}

uint64_t pack_split_samples(const pack *p, int split)
{
    return p->m->splits[split].samples;
}

uint32_t pack_split_nshards(const pack *p, int split)
{
    return p->m->splits[split].nshards;
}

const shard *pack_shard(const pack *p, int split, uint32_t shard_no)
{
    return p->split[split].shards[shard_no];
}

uint64_t pack_shard_first(const pack *p, int split, uint32_t shard_no)
{
    return p->split[split].first[shard_no];
}

void pack_locate(const pack *p, int split, uint64_t i, uint32_t *shard_no,
                 uint64_t *record)
{
    const uint64_t *first = p->split[split].first;
    uint32_t lo = 0, hi = p->m->splits[split].nshards; /* first[lo] <= i */
    while (hi - lo > 1) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (first[mid] <= i) lo = mid;
        else hi = mid;
    }
    *shard_no = lo;
    *record = i - first[lo];
}

size_t pack_sample_bytes(const pack *p)
{
    return (size_t)p->m->height * p->m->width * p->m->channels;
}

size_t pack_max_sample_bytes(const pack *p)
{
    return (size_t)p->m->max_h * p->m->max_w * p->m->channels;
}

int pack_is_variable(const pack *p) { return p->m->variable; }
size_t pack_index_memory(const pack *p) { return p->index_memory; }

size_t pack_max_record(const pack *p) { return p->max_record; }
const void *pack_ddict(const pack *p) { return p->ddict; }

const void *pack_dict(const pack *p, size_t *len)
{
    *len = p->dict_len;
    return p->dict;
}

/* ---- sizes ------------------------------------------------------------- */

/* Exact min / median / max of a split's H, W and H*W without holding a
 * value per record: H and W are u16, so a histogram each; the pixel count
 * (up to 32 bits) by a two-pass radix select (histogram of the top 16
 * bits, then of the low 16 bits within the median's top bin). The median
 * is the lower one: element (n-1)/2 in sorted order. */
static uint32_t hist_select(const uint64_t *hist, uint64_t rank)
{
    uint64_t seen = 0;
    for (uint32_t v = 0; v < 65536; v++) {
        seen += hist[v];
        if (seen > rank) return v;
    }
    return 65535;
}

int pack_split_sizes(const pack *p, int s, pack_size_summary *out,
                     st_error *err)
{
    uint64_t *hist = calloc(4 * 65536, sizeof *hist); /* H, W, top, low */
    if (hist == NULL)
        return st_seterr(err, ST_ENOMEM, "%s: out of memory for size "
                         "histograms", p->dir);
    uint64_t n = pack_split_samples(p, s), rank = n ? (n - 1) / 2 : 0;
    uint32_t ns = pack_split_nshards(p, s);
    for (int k = 0; k < 3; k++) out->min[k] = UINT32_MAX, out->max[k] = 0;
    for (int pass = 0; pass < 2; pass++) {
        for (uint32_t k = 0; k < ns; k++) {
            const shard *sh = pack_shard(p, s, k);
            for (uint64_t r = 0; r < shard_count(sh); r++) {
                const shard_entry *e = shard_entry_at(sh, r);
                uint32_t v[3] = {e->height, e->width,
                                 (uint32_t)e->height * e->width};
                if (pass == 1) {
                    if (v[2] >> 16 == out->med[2])
                        hist[3 * 65536 + (v[2] & 0xffff)]++;
                    continue;
                }
                for (int j = 0; j < 3; j++) {
                    if (v[j] < out->min[j]) out->min[j] = v[j];
                    if (v[j] > out->max[j]) out->max[j] = v[j];
                }
                hist[v[0]]++;
                hist[65536 + v[1]]++;
                hist[2 * 65536 + (v[2] >> 16)]++;
            }
        }
        if (pass == 0) {
            out->med[0] = hist_select(hist, rank);
            out->med[1] = hist_select(hist + 65536, rank);
            out->med[2] = hist_select(hist + 2 * 65536, rank); /* top bits */
        }
    }
    uint64_t below = 0; /* records whose top bits are under the median's */
    for (uint32_t v = 0; v < out->med[2]; v++) below += hist[2 * 65536 + v];
    out->med[2] = out->med[2] << 16 | hist_select(hist + 3 * 65536, rank - below);
    free(hist);
    return 0;
}
