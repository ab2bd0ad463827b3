/* datasets/packer.h — turns a source dataset into a pack directory:
 * dictionary training, parallel encoding on N threads, in-order writing.
 *
 * defines: packer_config, packer_stats, packer_progress, packer_run
 *
 * The output is byte-identical for the same input and options whatever the
 * thread count: samples are encoded independently and written in order.
 */
#ifndef ST_PACKER_H
#define ST_PACKER_H

#include <signal.h>
#include <stdint.h>

#include "error.h"
#include "source.h"

#define PACKER_DEFAULT_DICT_BYTES (64u << 10)
#define PACKER_DEFAULT_LEVEL 9
#define PACKER_DEFAULT_QUALITY 90

typedef struct packer_progress {
    const char *split;       /* split being written */
    uint64_t done, total;    /* samples written so far, in all splits */
    double seconds;          /* since the start */
} packer_progress;

typedef struct packer_config {
    source_options source;
    int codec;               /* CODEC_*; -1 picks zstd */
    int level;               /* zstd level (1..22) */
    int quality;             /* jpeg codec: libjpeg quality 1..100 */
    uint64_t shard_bytes;    /* 0: 64 MiB */
    size_t dict_bytes;       /* zstd dictionary size; 0: none */
    int threads;             /* >= 1 */
    int huffman_literals;    /* zstd: Huffman-code literals (smaller, slower
                                to decode); see codec_enc_huffman_literals */
    int force;               /* replace an existing output pack */
    /* called from the calling thread after each chunk; may be NULL */
    void (*progress)(void *ctx, const packer_progress *p);
    void *progress_ctx;
    /* set asynchronously (e.g. by a signal handler) to stop; may be NULL */
    volatile sig_atomic_t *cancel;
} packer_config;

typedef struct packer_stats {
    uint64_t samples;
    uint64_t raw_bytes;      /* samples * H * W * C */
    uint64_t record_bytes;   /* encoded bytes of all records */
    uint64_t disk_bytes;     /* every file in the pack */
    size_t dict_bytes;       /* 0 when no dictionary */
    double dict_seconds, seconds;
    uint32_t shards;
    source_info info;        /* copy; classes pointer not valid after run */
} packer_stats;

/* Sets the defaults: zstd, level PACKER_DEFAULT_LEVEL, 64 MiB shards, a
 * 64 KiB dictionary, threads = online CPUs. */
void packer_config_default(packer_config *cfg);

/* Packs src into out. On any failure nothing is left at out (the temporary
 * directory is removed) and err names the file and the problem; a cancel
 * returns ST_ECLOSED.
 * @return 0 or a negative st_errcode. */
int packer_run(const char *src, const char *out, const packer_config *cfg,
               packer_stats *stats, st_error *err);

#endif
