/* loader/producer.h — one producer thread of the loader (internal to
 * loader/): claim a batch, read its records, decode them into the slot.
 *
 * defines: producer_shared, producer, producer_init, producer_destroy,
 *          producer_main, producer_scratch_bytes
 *
 * Per batch a producer takes the ring lock twice (claim, publish) and never
 * otherwise: the samples are read with one pread each into the thread's own
 * record buffer (or straight from a mapping) and decoded in place into the
 * slot. Nothing is allocated after producer_init.
 */
#ifndef ST_PRODUCER_H
#define ST_PRODUCER_H

#include <stdatomic.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "datasets/codec.h"
#include "datasets/error.h"
#include "datasets/pack.h"
#include "loader/fused.h"
#include "loader/loader.h"
#include "loader/order.h"
#include "loader/ring.h"

/* What every producer reads; immutable once the threads start, except
 * ring (its own lock) and slot_err (entry i is written by the producer
 * holding slot i FILLING, read by the consumer after ring_next hands slot i
 * over: the ring's mutex orders the two). */
typedef struct producer_shared {
    const pack *pack;
    int split;
    const char *split_name;
    const order *order;
    ring *ring;
    loader_config cfg;          /* copy; split points at split_name */
    size_t sample_bytes;        /* H*W*C */
    size_t labels_off, ids_off; /* slot layout: pixels (B,H,W,C) at 0, then
                                   labels (B) int32, then ids (B) uint64 */
    uint64_t nbatches;          /* per epoch */
    uint64_t start_g;           /* global batch number of ring sequence 0 */
    uint64_t limit;             /* ring sequences to produce */
    const uint8_t *const *maps; /* (nshards) LOADER_IO_MMAP mappings, or NULL */
    st_error *slot_err;         /* (slots) see above */
    int fused_on;               /* samples go through loader/fused.c */
    fused_config fused_cfg;     /* the transform and its geometry */
} producer_shared;

typedef struct producer {
    const producer_shared *sh;
    pthread_t thread;
    int started;                /* thread was created (owner: loader) */
    codec_dec *dec;             /* this thread's decoder */
    fused *fused;               /* this thread's transform state, or NULL */
    fused_stats fst;            /* its counters, thread-local; published
                                   per batch into the atomics below */
    order_cursor *cur;          /* this thread's window tables */
    uint8_t *scratch;           /* (max_record) one record */
    size_t scratch_cap;
    uint32_t *loc_shard;        /* (B) this batch's samples: shard ... */
    uint64_t *loc_rec;          /* (B) ... and record within it */
    uint64_t last_window;       /* window prefetched last; thread-local */
    st_error err;               /* this thread's scratch error */
    /* Written by this thread once per batch, read by loader_get_stats. */
    _Atomic uint64_t read_ns, decode_ns, blocked_ns, skipped;
    _Atomic uint64_t resize_ns, jpeg_rows, jpeg_rows_skipped;
} producer;

/* Allocates p's decoder, cursor, record buffer and location arrays.
 * @return 0 or ST_ENOMEM / ST_EDECODE. */
int producer_init(producer *p, const producer_shared *sh, st_error *err);

/* Frees what producer_init allocated (the thread must be joined). */
void producer_destroy(producer *p);

/* Thread body (arg: producer *). Runs until the ring reports the end of
 * the sequence, shutdown, or a failed batch with policy fail. */
void *producer_main(void *arg);

/* Per-thread host memory for the cap check: record buffer, the batch's
 * record locations, and the decoder (a zstd DCtx, the largest of the
 * codecs' states, plus the handle). */
size_t producer_scratch_bytes(size_t max_record, uint32_t batch);

#endif
