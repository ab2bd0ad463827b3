/* datasets/manifest.h — the pack directory's MANIFEST: a small text file
 * that lists the dataset's shape, codec, classes, dictionary, splits and
 * shards, and ends with an XXH3 of everything before its last line.
 *
 * defines: manifest, manifest_parse, manifest_format, manifest_free
 *
 * The grammar is in datasets/FORMAT.md. manifest_parse works on a buffer so
 * that the fuzz target can drive it directly.
 */
#ifndef ST_MANIFEST_H
#define ST_MANIFEST_H

#include <stdint.h>
#include <stddef.h>

#include "error.h"

#define MANIFEST_NAME "MANIFEST"
#define MANIFEST_VERSION 2u      /* written */
#define MANIFEST_VERSION_MIN 1u  /* oldest read */
#define MANIFEST_MAX_CLASSES 65536u
#define MANIFEST_MAX_SPLITS 16u
#define MANIFEST_NAME_MAX 256u

typedef struct manifest_shard {
    char file[MANIFEST_NAME_MAX]; /* plain file name inside the pack dir */
    uint64_t records;
    uint64_t bytes;               /* file size */
    uint64_t file_xxh3;           /* XXH3 of the whole file */
    uint64_t index_xxh3;          /* XXH3 of the shard's index block */
} manifest_shard;

typedef struct manifest_split {
    char name[64];                /* [A-Za-z0-9_.-]+ */
    uint64_t samples;             /* sum of its shards' records */
    uint32_t nshards;
    manifest_shard *shards;       /* (nshards) owned by the manifest */
} manifest_split;

typedef struct manifest {
    uint32_t version;             /* 1 or 2 (manifest_format writes this
                                     version's grammar) */
    uint32_t codec;               /* CODEC_* from shard.h */
    int level;                    /* zstd level used (informational) */
    /* The shape. A fixed-shape pack: every sample is (height, width,
     * channels). A variable-shape pack (variable = 1, version 2 only):
     * each record's H and W is in its index entry, and height, width are
     * the largest (equal to max_h, max_w), so height * width * channels
     * bounds every decoded sample. */
    uint32_t height, width, channels;
    int variable;
    uint32_t max_h, max_w;        /* largest H and W (= height, width) */
    uint64_t max_record;          /* largest encoded record in bytes;
                                     version 1: 0 (found from the index) */
    /* Per-channel mean and standard deviation of the pixel values (0..255)
     * of one split (normally train), over all its samples' pixels. */
    int has_stats;
    char stats_split[64];
    double mean[4], std[4];       /* (channels) */
    /* dictionary: dict_file[0] == 0 when the codec uses none */
    char dict_file[MANIFEST_NAME_MAX];
    uint64_t dict_bytes;
    uint32_t dict_id;
    uint64_t dict_xxh3;
    uint32_t nclasses;
    char **classes;               /* (nclasses) UTF-8, owned */
    uint32_t nsplits;
    manifest_split splits[MANIFEST_MAX_SPLITS];
} manifest;

/* Parses text (len bytes, need not be NUL-terminated). path names the file
 * in error messages. On success *out is a new manifest owned by the caller.
 * @return 0 or ST_EFORMAT / ST_EVERSION / ST_ECHECKSUM / ST_ENOMEM. */
int manifest_parse(const char *text, size_t len, const char *path,
                   manifest **out, st_error *err);

/* Renders m as text with its checksum line into a new malloc'd buffer.
 * @return 0 or ST_ENOMEM / ST_EINVAL (a name the grammar can't hold). */
int manifest_format(const manifest *m, char **text, size_t *len,
                    st_error *err);

/* Accepts NULL. */
void manifest_free(manifest *m);

/* Name helpers shared with the importers. */
int manifest_valid_split_name(const char *s);
/* Valid UTF-8, no control characters, 1..255 bytes. */
int manifest_valid_class_name(const char *s);
const char *manifest_codec_name(uint32_t codec);
int manifest_codec_parse(const char *s); /* -1 when unknown */

#endif
