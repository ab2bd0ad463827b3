/* datasets/pack.h — a pack directory: reading it (pack_open) and writing it
 * atomically (pack_writer).
 *
 * defines: pack_open, pack_close, pack_manifest, pack_split_find,
 *          pack_split_samples, pack_locate, pack_shard, pack_read_record,
 *          pack_ddict, pack_sample_bytes, pack_max_sample_bytes,
 *          pack_is_variable, pack_index_memory, pack_split_sizes,
 *          pack_dict,
 *          pack_writer_open, pack_writer_begin_split, pack_writer_add,
 *          pack_writer_end_split, pack_writer_set_stats,
 *          pack_writer_commit, pack_writer_abort
 */
#ifndef ST_PACK_H
#define ST_PACK_H

#include <stdint.h>
#include <stddef.h>

#include "error.h"
#include "manifest.h"
#include "shard.h"

/* ---- reading ---------------------------------------------------------- */
typedef struct pack pack;

/* Opens dir: parses and checks MANIFEST (format version 1 or 2; another
 * is refused by number), loads and checks the dictionary (and builds one
 * shared ZSTD_DDict), opens every shard of every split and cross-checks it
 * against the manifest (version, size, record count, index XXH3, shape,
 * codec, dict id, largest record). Open reads every index once (see
 * shard_open). Memory: the manifest, O(shards), plus for version-1 shards
 * 24 bytes a record; a version-2 index is mapped read-only (page cache,
 * no anonymous memory; pack_index_memory).
 * @return 0 or a negative st_errcode whose message names the file. */
int pack_open(const char *dir, pack **out, st_error *err);

/* Accepts NULL. */
void pack_close(pack *p);

const manifest *pack_manifest(const pack *p);
const char *pack_dir(const pack *p);

/* @return the split's index, or -1 when the pack has no such split. */
int pack_split_find(const pack *p, const char *name);
uint64_t pack_split_samples(const pack *p, int split);
uint32_t pack_split_nshards(const pack *p, int split);
const shard *pack_shard(const pack *p, int split, uint32_t shard_no);

/* Index of the first sample of shard_no within its split. */
uint64_t pack_shard_first(const pack *p, int split, uint32_t shard_no);

/* Maps sample i of a split to (shard, record). O(log shards). */
void pack_locate(const pack *p, int split, uint64_t i, uint32_t *shard_no,
                 uint64_t *record);

/* H * W * C: the decoded size of every sample of a fixed-shape pack; for a
 * variable-shape pack the largest (= pack_max_sample_bytes). */
size_t pack_sample_bytes(const pack *p);

/* max_h * max_w * C: a buffer this size holds any decoded sample. */
size_t pack_max_sample_bytes(const pack *p);

/* 1 when samples have different sizes (each entry's height and width
 * say which); 0 when every sample is (H, W, C). */
int pack_is_variable(const pack *p);

/* Exact min, median (the lower one: element (n-1)/2 in sorted order) and
 * max of a split's image heights, widths and pixel counts (H*W), from the
 * index alone: two passes over it, O(1) memory (histograms). */
typedef struct pack_size_summary {
    uint32_t min[3], med[3], max[3]; /* [0] H, [1] W, [2] H*W */
} pack_size_summary;

/* @return 0 or ST_ENOMEM. */
int pack_split_sizes(const pack *p, int split, pack_size_summary *out,
                     st_error *err);

/* Anonymous memory the open pack holds for indexes: 24 bytes a record of
 * version-1 shards; version-2 indexes cost none (mapped). */
size_t pack_index_memory(const pack *p);

/* Largest encoded record in the pack (for sizing read buffers). */
size_t pack_max_record(const pack *p);

/* The shared decoder dictionary (a ZSTD_DDict *), or NULL. Owned by p. */
const void *pack_ddict(const pack *p);

/* Raw dictionary bytes (NULL, 0 when none). Owned by p. */
const void *pack_dict(const pack *p, size_t *len);

/* ---- writing ---------------------------------------------------------- */
typedef struct pack_writer pack_writer;

typedef struct pack_writer_config {
    uint32_t codec;               /* CODEC_* */
    int level;
    uint32_t height, width, channels; /* the shape; variable: the largest
                                         H and W any record may have */
    int variable;                 /* records of different sizes */
    int format_version;           /* 0: current (2); 1: write version 1
                                     (fixed shape, raw/zstd/png only; for
                                     tests' compatibility fixtures) */
    uint64_t shard_bytes;         /* roll over to a new shard past this */
    uint32_t nclasses;
    const char *const *classes;   /* (nclasses), copied */
    const void *dict;             /* zstd dictionary bytes or NULL */
    size_t dict_len;
    int force;                    /* replace an existing out_dir */
} pack_writer_config;

/* Creates a temporary directory beside out_dir (".NAME.tmp-XXXXXX") where
 * everything is written. Refuses an out_dir that is a symbolic link, and an
 * existing out_dir unless cfg->force; even then only an empty directory or
 * a pack (a MANIFEST starting "streamtrain-pack N", the dictionary and
 * *.shard files, nothing else) is replaced.
 * @return 0 or ST_EEXIST / ST_EIO / ST_ENOSPC / ST_EINVAL. */
int pack_writer_open(const char *out_dir, const pack_writer_config *cfg,
                     pack_writer **out, st_error *err);

int pack_writer_begin_split(pack_writer *w, const char *name, st_error *err);
/* Appends one record (len encoded bytes) of a height x width image to the
 * current split. A fixed-shape pack needs exactly its shape; a variable
 * one any size in 1..65535 up to cfg's height and width.
 * @return 0 or ST_EINVAL (a bad size, outside a split) / ST_EIO / ... */
int pack_writer_add(pack_writer *w, const void *enc, size_t len,
                    int32_t label, uint32_t height, uint32_t width,
                    st_error *err);
int pack_writer_end_split(pack_writer *w, st_error *err);

/* Records per-channel mean and std (pixel units, 0..255; channels values
 * each) of split `split` for the manifest (version 2 only; ignored by a
 * version-1 writer). @return 0 or ST_EINVAL (a value out of range). */
int pack_writer_set_stats(pack_writer *w, const char *split,
                          const double *mean, const double *std,
                          st_error *err);

/* Total encoded bytes added so far (records only). */
uint64_t pack_writer_record_bytes(const pack_writer *w);

/* Writes MANIFEST last, fsyncs every file and the directory, then renames
 * the temporary directory to out_dir (replacing it under --force). Frees w
 * whatever happens; on failure the temporary directory is removed.
 * @return 0 or a negative st_errcode. */
int pack_writer_commit(pack_writer *w, st_error *err);

/* Removes the temporary directory and frees w. Accepts NULL. */
void pack_writer_abort(pack_writer *w);

/* Path of the temporary directory (for signal-time cleanup), or NULL. */
const char *pack_writer_tmpdir(const pack_writer *w);


/* ---- verifying ---------------------------------------------------------- */
typedef struct pack_verify_stats {
    uint64_t files, records, bytes;
} pack_verify_stats;

/* Checks every file's XXH3 against the manifest, then reads, checks and
 * decodes every record of every split. Stops at the first fault, which err
 * names as "split S, shard FILE, record R: problem".
 * @return 0 or a negative st_errcode. */
int pack_verify(const pack *p, pack_verify_stats *stats, st_error *err);

#endif
