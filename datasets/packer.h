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

typedef struct packer_progress {
    const char *split;       /* split being written */
    uint64_t done, total;    /* samples written so far, in all splits */
    double seconds;          /* since the start */
} packer_progress;

typedef struct packer_config {
    source_options source;
    int codec;               /* CODEC_*; -1: jpeg for a source whose
                                samples are JPEG files, else zstd */
    int level;               /* zstd level (1..22) */
    int quality;             /* jpeg quality (1..100) for the samples the
                                jpeg codec encodes (not passed through) */
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
    uint32_t codec;          /* CODEC_* written */
    uint64_t passthrough;    /* records stored as the source file's bytes */
    uint32_t max_h, max_w;   /* largest sample */
    int has_stats;           /* channel statistics of split stats_split */
    char stats_split[64];
    double mean[4], std[4];  /* per channel, pixel units 0..255 */
    source_info info;        /* copy; classes pointer not valid after run */
} packer_stats;

#define PACKER_DEFAULT_QUALITY 90

/* Sets the defaults: codec by source (-1), level PACKER_DEFAULT_LEVEL,
 * quality PACKER_DEFAULT_QUALITY, 64 MiB shards, a 64 KiB dictionary,
 * threads = online CPUs. */
void packer_config_default(packer_config *cfg);

/* Packs src into out. Images of different sizes (a variable source) go
 * into a variable-shape pack, each at its own size. When the source's
 * bytes of a sample are already in the pack's codec and decode exactly to
 * its pixels (a PNG or JPEG file needing no resize, rotation or colour
 * conversion) they are stored unchanged. The manifest gets the exact
 * per-channel mean and std of the "train" split (else the first split),
 * from uint64 sums over every pixel, whatever the thread count (the
 * source's pixels: for samples the jpeg codec encodes, before its loss).
 * On any failure nothing is left at out (the temporary
 * directory is removed) and err names the file and the problem; a cancel
 * returns ST_ECLOSED.
 * @return 0 or a negative st_errcode. */
int packer_run(const char *src, const char *out, const packer_config *cfg,
               packer_stats *stats, st_error *err);

#endif
