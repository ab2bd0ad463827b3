/* datasets/pack_verify.c — full verification of a pack directory: file
 * checksums, record checksums and a decode of every sample. */
#include "pack.h"
#include "codec.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <xxhash.h>
#include <fcntl.h>
#include <unistd.h>

static int hash_file(const char *path, uint64_t *out, uint64_t *bytes,
                     st_error *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return st_seterr(err, ST_EIO, "%s: cannot open", path);
    XXH3_state_t *st = XXH3_createState();
    uint8_t *buf = malloc(1u << 20);
    int rc = 0;
    if (st == NULL || buf == NULL) {
        rc = st_seterr(err, ST_ENOMEM, "%s: out of memory", path);
        goto out;
    }
    XXH3_64bits_reset(st);
    ssize_t n;
    while ((n = read(fd, buf, 1u << 20)) > 0) {
        XXH3_64bits_update(st, buf, (size_t)n);
        *bytes += (uint64_t)n;
    }
    if (n < 0) rc = st_seterr(err, ST_EIO, "%s: read failed", path);
    *out = XXH3_64bits_digest(st);
out:
    free(buf);
    XXH3_freeState(st);
    close(fd);
    return rc;
}

static int verify_files(const pack *p, pack_verify_stats *vs, st_error *err)
{
    const manifest *m = pack_manifest(p);
    char path[PATH_MAX];
    uint64_t h = 0;
    for (uint32_t s = 0; s < m->nsplits; s++) {
        for (uint32_t k = 0; k < m->splits[s].nshards; k++) {
            const manifest_shard *ms = &m->splits[s].shards[k];
            snprintf(path, sizeof path, "%s/%s", pack_dir(p), ms->file);
            ST_TRY(hash_file(path, &h, &vs->bytes, err));
            vs->files++;
            if (h != ms->file_xxh3)
                return st_seterr(err, ST_ECHECKSUM, "split %s, shard %s: file "
                                 "checksum mismatch", m->splits[s].name,
                                 ms->file);
        }
    }
    return 0;
}

static int verify_records(const pack *p, codec_dec *dec, uint8_t *rec,
                          size_t rec_cap, uint8_t *pix,
                          pack_verify_stats *vs, st_error *err)
{
    const manifest *m = pack_manifest(p);
    st_error e = {0};
    for (uint32_t s = 0; s < m->nsplits; s++) {
        for (uint32_t k = 0; k < m->splits[s].nshards; k++) {
            const shard *sh = pack_shard(p, (int)s, k);
            for (uint64_t r = 0; r < shard_count(sh); r++) {
                const shard_entry *en = shard_entry_at(sh, r);
                int rc = shard_read_record(sh, r, rec, rec_cap, &e);
                if (rc == 0)
                    rc = codec_decode(dec, rec, en->length, en->height,
                                      en->width, pix, &e);
                if (rc == 0 && (en->label < 0 ||
                                (m->nclasses && (uint32_t)en->label >= m->nclasses)))
                    rc = st_seterr(&e, ST_EFORMAT, "label %d is not a class "
                                   "index", en->label);
                if (rc != 0)
                    return st_seterr(err, rc, "split %s, shard %s, record "
                                     "%llu: %s", m->splits[s].name,
                                     m->splits[s].shards[k].file,
                                     (unsigned long long)r, e.msg);
                vs->records++;
            }
        }
    }
    return 0;
}

int pack_verify(const pack *p, pack_verify_stats *vs, st_error *err)
{
    const manifest *m = pack_manifest(p);
    *vs = (pack_verify_stats){0};
    codec_shape shape = {m->codec, m->height, m->width, m->channels};
    codec_dec *dec = NULL;
    size_t cap = pack_max_record(p) + 1;
    uint8_t *rec = malloc(cap), *pix = malloc(pack_max_sample_bytes(p));
    int rc = rec && pix ? codec_dec_create(&shape, pack_ddict(p), &dec, err)
                        : st_seterr(err, ST_ENOMEM, "verify: out of memory");
    /* records first, so that a damaged record is named; then whole files */
    if (rc == 0) rc = verify_records(p, dec, rec, cap, pix, vs, err);
    if (rc == 0) rc = verify_files(p, vs, err);
    codec_dec_destroy(dec);
    free(rec);
    free(pix);
    return rc;
}
