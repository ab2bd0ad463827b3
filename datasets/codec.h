/* datasets/codec.h — per-sample encoders and decoders: raw, zstd (with a
 * shared dictionary), png and jpeg.
 *
 * defines: codec_enc_create, codec_encode, codec_enc_destroy,
 *          codec_dec_create, codec_decode, codec_dec_destroy,
 *          codec_train_dict, codec_train_dict_sizes
 *
 * One codec_enc / codec_dec per thread: each owns its zstd context, libpng
 * arena or libjpeg object and scratch, allocated at create (sized from the
 * shape, the largest image) and reused for every sample. The zstd
 * dictionaries (ZSTD_CDict / ZSTD_DDict) are created once and shared
 * read-only between threads.
 *
 * Sizes: every call names its image's own height and width, 1..the
 * shape's (a fixed-shape pack passes the shape). raw, zstd and png store
 * the pixels at that size; jpeg encodes them (baseline, 4:2:0 for colour)
 * or the packer stores a source file's own JPEG bytes unchanged.
 */
#ifndef ST_CODEC_H
#define ST_CODEC_H

#include <stdint.h>
#include <stddef.h>

#include "error.h"

typedef struct codec_shape {
    uint32_t codec;               /* CODEC_* */
    uint32_t height, width;       /* the largest image (fixed: the shape) */
    uint32_t channels;            /* 1..4; jpeg: 1 or 3 */
} codec_shape;

/* Default JPEG quality of codec_enc_create's level 0 under jpeg. */
#define CODEC_JPEG_QUALITY 90

/* ---- shared dictionaries ------------------------------------------------ */
typedef struct codec_cdict codec_cdict;

/* Digests dict once for level. @return 0 or ST_EDECODE / ST_ENOMEM. */
int codec_cdict_create(const void *dict, size_t len, int level,
                       codec_cdict **out, st_error *err);
void codec_cdict_destroy(codec_cdict *d); /* accepts NULL */

/* Most samples codec_train_dict uses (taken at an even stride). */
#define CODEC_DICT_SAMPLES 8192

/* Smallest dictionary capacity zstd trains (ZDICT_DICTSIZE_MIN): with a
 * smaller cap codec_train_dict always gives *len 0. */
#define CODEC_DICT_MIN_BYTES 256u

/* Trains a zstd dictionary of at most cap bytes with ZDICT_trainFromBuffer
 * on up to CODEC_DICT_SAMPLES samples taken at an even stride from samples
 * (n samples of sample_bytes each, contiguous). Deterministic.
 * @return 0 (with *len set, possibly 0 when training is not worth it: then
 *         the pack is written without a dictionary) or ST_ENOMEM. */
int codec_train_dict(const uint8_t *samples, size_t n, size_t sample_bytes,
                     void *dict, size_t cap, size_t *len, st_error *err);

/* The same for samples of different sizes: n samples back to back in
 * samples, sample i sizes[i] bytes (all of them are used: the caller picks
 * at most CODEC_DICT_SAMPLES). */
int codec_train_dict_sizes(const uint8_t *samples, const size_t *sizes,
                           size_t n, void *dict, size_t cap, size_t *len,
                           st_error *err);

/* @return the dictionary id in a zstd dictionary, 0 when none. */
uint32_t codec_dict_id(const void *dict, size_t len);

/* ---- encoding ------------------------------------------------------------ */
typedef struct codec_enc codec_enc;

/* cdict may be NULL (zstd without dictionary). level: the zstd level for
 * zstd, the quality 1..100 for jpeg (0: CODEC_JPEG_QUALITY); ignored by
 * raw and png. */
int codec_enc_create(const codec_shape *shape, int level,
                     const codec_cdict *cdict, codec_enc **out,
                     st_error *err);
void codec_enc_destroy(codec_enc *e); /* accepts NULL */

/* zstd: Huffman-code the literals (zstd's own default). streamtrain's
 * default leaves literals uncompressed: on Fashion-MNIST at level 9 with a
 * 64 KiB dictionary that costs 5 % of the ratio (1.70 instead of 1.78) and
 * makes decoding 1.7x faster (the per-frame Huffman table is half of a
 * 28x28 frame's decode time). Call before the first codec_encode. */
int codec_enc_huffman_literals(codec_enc *e, int on, st_error *err);

/* Encodes one (height, width, C) uint8 image (height, width within the
 * shape). *out points into the encoder's own buffer (raw: into pixels),
 * valid until the next call on e.
 * @return 0 or ST_EINVAL (a size outside the shape) / ST_EDECODE (the
 *         library's message) / ST_ENOMEM. */
int codec_encode(codec_enc *e, const uint8_t *pixels, uint32_t height,
                 uint32_t width, const uint8_t **out, size_t *out_len,
                 st_error *err);

/* ---- decoding ------------------------------------------------------------ */
typedef struct codec_dec codec_dec;

/* ddict is a ZSTD_DDict * (from pack_ddict) or NULL. */
int codec_dec_create(const codec_shape *shape, const void *ddict,
                     codec_dec **out, st_error *err);
void codec_dec_destroy(codec_dec *d); /* accepts NULL */

/* Decodes one record of a (height, width) image (its index entry's size,
 * within the shape) into dst, which holds height * width * C bytes. A
 * record that decodes to any other size is an error, and so is every
 * libjpeg warning (corrupt data is never returned as gray pixels).
 * @return 0 or ST_EDECODE with the library's message (the caller adds the
 *         split, shard and record), ST_EINVAL (a size outside the shape). */
int codec_decode(codec_dec *d, const void *src, size_t len, uint32_t height,
                 uint32_t width, uint8_t *dst, st_error *err);

#endif
