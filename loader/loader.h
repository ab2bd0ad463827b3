/* loader/loader.h — the streaming loader: producer threads read records of
 * a pack split with pread, decode them straight into the slots of a ring
 * allocated once, and one consumer takes the batches strictly in order.
 *
 * defines: loader_config_default, loader_config_resume, loader_open,
 *          loader_next_batch, loader_release, loader_get_state,
 *          loader_get_stats, loader_close, loader_memory
 *
 * Threads: loader_next_batch, loader_get_state and loader_close belong to
 * the consumer thread; loader_release and loader_get_stats may be called
 * from any thread. loader_close may also come from another thread to wake
 * a consumer blocked in loader_next_batch (which returns ST_ECLOSED); it
 * waits for calls in flight to return, and no call may follow it.
 *
 * Memory (host): the ring (slots x (B*H*W*C + B*4 + B*8) bytes, through the
 * allocator hook), per producer a record buffer of the pack's largest
 * record plus its decoder context (with a transform, also a buffer of the
 * pack's largest image and the resampler's scratch: loader/fused.h), and,
 * for version-1 packs only, the
 * copied index (24 bytes a record; a version-2 index is mapped read-only:
 * page cache, no anonymous memory).
 * None of it depends on how many samples are streamed; all of it is
 * allocated in loader_open.
 *
 * Stream: batch k of an epoch is this rank's part of global batch k, the
 * positions [kB, (k+1)B) of the epoch's order (loader/order.h: B/w each,
 * the last short batch split as evenly as possible, possibly 0 samples
 * on a rank when it holds fewer than w), a pure function of (seed, epoch,
 * position): any thread count and any world size give the same global
 * batches, and opening with a saved loader_state (global counters) at
 * any world size continues the same stream.
 */
#ifndef ST_LOADER_H
#define ST_LOADER_H

#include <stddef.h>
#include <stdint.h>

#include "datasets/error.h"
#include "loader/ring.h"
#include "loader/transform.h"

typedef enum loader_shuffle {
    LOADER_SHUFFLE_NONE = 0,   /* file order */
    LOADER_SHUFFLE_GLOBAL = 1, /* a full permutation of the split per epoch */
    LOADER_SHUFFLE_WINDOW = 2, /* shards shuffled; samples within W shards */
} loader_shuffle;

typedef enum loader_corrupt {
    LOADER_CORRUPT_FAIL = 0,   /* next_batch returns the error */
    LOADER_CORRUPT_SKIP = 1,   /* take the next valid sample of the order */
} loader_corrupt;

typedef enum loader_io {
    LOADER_IO_AUTO = 0,        /* mmap when the split's shard files total at
                                  most LOADER_MMAP_AUTO_MAX bytes (and fit
                                  under host_mem_cap with the rest), else
                                  pread */
    LOADER_IO_PREAD = 1,       /* one pread per record into thread scratch */
    LOADER_IO_MMAP = 2,        /* decode straight from a read-only mapping of
                                  each shard: no syscall per record, but the
                                  touched file pages count in RSS (up to the
                                  split's size) and toward host_mem_cap */
} loader_io;

/* A pread costs ~1.1 us on the reference VM, a third of a 28x28 zstd
 * decode: small splits are mapped instead (see LOADER_IO_AUTO). */
#define LOADER_MMAP_AUTO_MAX (256ull << 20)

/* Read-ahead in batches for pread I/O: cold-cache 4 GiB pack, 2 threads,
 * measured 3x faster than none (bench/results), and free when warm. */
#define LOADER_DEFAULT_READAHEAD 4

/* Where to resume: the next batch to deliver. */
typedef struct loader_state {
    uint64_t seed;
    uint64_t epoch;
    uint64_t batch;            /* within the epoch */
} loader_state;

typedef struct loader_config {
    const char *split;         /* split name; copied at open */
    uint32_t batch_size;       /* B >= 1: the GLOBAL batch, a multiple of
                                  world; a slot holds B/world samples */
    uint32_t threads;          /* producer threads >= 1 */
    uint32_t slots;            /* ring slots K >= 1 */
    loader_shuffle shuffle;
    uint32_t window_shards;    /* W for LOADER_SHUFFLE_WINDOW, >= 1 */
    uint64_t seed;
    int drop_last;             /* drop the last partial batch */
    uint32_t rank, world;      /* this process's slice: 0 <= rank < world */
    uint64_t start_epoch;      /* first batch delivered: (start_epoch, */
    uint64_t start_batch;      /*   start_batch); batch == per-epoch count
                                  means the next epoch's first batch */
    uint64_t epochs;           /* absolute: stop after epoch epochs-1;
                                  0 runs until closed */
    size_t host_mem_cap;       /* bytes for ring + scratch + index; 0: none */
    loader_corrupt on_corrupt;
    loader_io io;
    uint32_t readahead;        /* global shuffle with pread: posix_fadvise
                                  (WILLNEED) the records of the batch this
                                  many batches ahead; 0 off. Not used on a
                                  mapped split (a syscall a sample would
                                  cost as much as the pread it replaces).
                                  Window mode always prefetches the next
                                  window's shards. */
    uint32_t timeout_ms;       /* longest wait in next_batch; 0: no limit */
    const ring_allocator *alloc; /* slot memory; NULL: aligned host memory.
                                    Must outlive the loader. */
    uint32_t producer_delay_us;  /* tests and benchmarks: each producer
                                    sleeps this long per batch (slow disk) */
    const transform_spec *transform; /* NULL (or kind none without flip):
                                    records decode straight into the slot,
                                    fixed-size packs only. Otherwise every
                                    sample goes through loader/fused.c into
                                    a slot of transform_out_size; pad-crop
                                    and none keep the pack's shape and need
                                    a fixed-size pack. Copied at open. */
} loader_config;

/* A batch handed to the consumer. Its memory belongs to the loader and
 * stays valid until loader_release (or loader_close). */
typedef struct loader_batch {
    uint8_t *pixels;           /* (n, H, W, C) uint8, inside a ring slot */
    int32_t *labels;           /* (n) */
    const uint64_t *ids;       /* (n) sample index within the split */
    uint32_t n;                /* B/world, or fewer in an epoch's last
                                  batch (0 when it has fewer than world) */
    uint64_t epoch;            /* this batch's epoch */
    uint64_t index;            /* this batch's number within the epoch */
    uint32_t slot;             /* for loader_release */
    uint32_t height, width, channels;
} loader_batch;

typedef struct loader_stats {
    uint64_t batches;          /* delivered to the consumer */
    uint64_t samples;          /* delivered to the consumer */
    uint64_t bytes;            /* decoded bytes delivered */
    uint64_t skipped;          /* corrupt records skipped (policy skip) */
    uint64_t batches_per_epoch;
    double read_s;             /* producers, summed: pread + checksum */
    double decode_s;           /* producers, summed: decoding */
    double resize_s;           /* producers, summed: crop/resize/flip into
                                  the slot (transforms only) */
    uint64_t jpeg_rows;        /* JPEG rows at the decoded DCT scale ... */
    uint64_t jpeg_rows_skipped;/* ... and those never output (skipped above
                                  the crop, never decoded below it) */
    double blocked_s;          /* producers, summed: waiting for a free slot */
    double wait_s;             /* consumer: waiting in next_batch */
    double elapsed_s;          /* since open */
    double samples_per_s;      /* samples / elapsed_s */
    double mb_per_s;           /* bytes / elapsed_s / 1e6 */
    loader_io io;              /* the I/O mode in use (never AUTO) */
} loader_stats;

/* Host memory that loader_open will need, by part (bytes). */
typedef struct loader_memory {
    size_t ring;               /* slots x slot stride */
    size_t scratch;            /* threads x (largest record + decoder) */
    size_t index;              /* copied (version-1) index entries */
    size_t mapped;             /* the split's shard files (mmap only) */
    size_t total;
} loader_memory;

typedef struct loader loader;

/* Fills cfg with the defaults: split "train", B 256, 2 threads, 4 slots,
 * global shuffle, W 4, seed 0, world 1, fail on corruption, io auto,
 * readahead LOADER_DEFAULT_READAHEAD, no cap, no timeout. */
void loader_config_default(loader_config *cfg);

/* Sets cfg's seed and start position from a saved state. */
void loader_config_resume(loader_config *cfg, const loader_state *st);

/* Opens the pack directory dir (validating the manifest and every shard),
 * checks the config and the memory cap, allocates everything and starts
 * the producers. On success *out is owned by the caller (loader_close).
 * @return 0, or ST_ENOTFOUND (no such split; missing shard), ST_EFORMAT /
 *         ST_EVERSION / ST_ECHECKSUM (corrupt manifest or shard), ST_EINVAL
 *         (bad config: the field and value in the message), ST_ENOMEM (the
 *         ring, scratch and index exceed host_mem_cap, every number in the
 *         message; or an allocation failed), ST_EIO, ST_EINTERNAL. */
int loader_open(const char *dir, const loader_config *cfg, loader **out,
                st_error *err);

/* The shape of every delivered sample: the pack's for no transform, else
 * the transform's output size. */
void loader_sample_shape(const loader *l, uint32_t *height, uint32_t *width,
                         uint32_t *channels);

/* Waits for the next batch in order and hands it over (HELD).
 * @return 0 (*b filled), ST_EEND after an epoch's last batch (once; the
 *         next call starts the next epoch, or keeps returning ST_EEND once
 *         cfg.epochs are done), ST_ECHECKSUM / ST_EDECODE / ST_EIO naming
 *         split, shard and record (policy fail: the loader stays failed and
 *         returns the same error again), ST_ETIMEDOUT (timeout_ms passed; may be
 *         retried), ST_ECLOSED, ST_EINTERNAL. */
int loader_next_batch(loader *l, loader_batch *b, st_error *err);

/* Gives a batch's slot back to the producers.
 * @return 0, ST_EINVAL (b is not a held batch) or ST_EINTERNAL. */
int loader_release(loader *l, const loader_batch *b, st_error *err);

/* The position after the last delivered batch: opening with it (see
 * loader_config_resume) reproduces the rest of the stream. */
loader_state loader_get_state(const loader *l);

/* A consistent-enough snapshot (counters are read one by one). */
void loader_get_stats(const loader *l, loader_stats *st);

/* What loader_open needs for cfg, given the pack's numbers (records: those
 * whose index is copied into memory, i.e. of version-1 shards, 0 for a
 * version-2 pack; mapped_bytes: the split's shard files when they are
 * mapped, else 0); used by
 * loader_open's cap check and by tests. */
loader_memory loader_memory_of(const loader_config *cfg, size_t sample_bytes,
                               size_t max_record, uint64_t records,
                               uint64_t mapped_bytes);

/* Wakes any blocked call, stops and joins every producer, frees everything
 * (held batches become invalid). Works at any moment. Accepts NULL. */
void loader_close(loader *l);

#endif
