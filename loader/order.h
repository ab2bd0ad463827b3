/* loader/order.h — the sample order of every epoch: which sample sits at
 * each position, and which positions belong to each rank and batch.
 *
 * defines: order_perm, order_perm_init, order_perm_apply,
 *          order_create, order_destroy, order_samples, order_rank_samples,
 *          order_batches, order_batch_len, order_global_batch_len,
 *          order_batch_cap, order_position,
 *          order_cursor_create, order_cursor_destroy, order_sample,
 *          order_window_of, order_window_shards
 *
 * Everything here is a pure function of (seed, epoch, position): no state
 * is carried from one epoch or one batch to the next, so any number of
 * producer threads, a resumed run and every rank of a job see the same
 * stream. Nothing is O(samples) in memory.
 *
 * Modes, over the N samples of a split (sample id = index in the split):
 *   ORDER_NONE    position p holds sample p.
 *   ORDER_GLOBAL  a keyed bijection of [0, N) per epoch: a 4-round
 *                 balanced Feistel network on the smallest even-bit domain
 *                 2^2h >= N, with cycle-walking back into [0, N).
 *   ORDER_WINDOW  the shards are permuted (a Feistel bijection over the
 *                 shard numbers), consecutive groups of W permuted shards
 *                 form windows, and positions inside a window are permuted
 *                 by a bijection keyed by (seed, epoch, window). An epoch
 *                 reads one window (W shards) at a time, for datasets larger
 *                 than the page cache.
 *
 * Ranks (one stream whatever the world size): global batch k of an epoch
 * is the positions [kB, (k+1)B) of the epoch's order (the last one
 * shorter without drop_last), the same samples for any number of ranks w.
 * B must be a multiple of w. Rank r takes the r-th sub-slice: of a global
 * batch of L samples, L/w each, and the L mod w left over go one each to
 * ranks 0 .. (L mod w)-1, so rank r's part is
 *   [kB + r*(L/w) + min(r, L mod w), + L/w + (r < L mod w))
 * (a full batch: B/w samples at kB + r*B/w). A rank's part may be empty
 * only when L < w. Every rank has the same batch count: floor(N/B) with
 * drop_last (the last N mod B positions are dropped), else ceil(N/B).
 * With w = 1 an epoch is exactly the N samples (or floor(N/B)*B), each
 * once; at any w the ranks' parts of an epoch are disjoint and together
 * the w = 1 stream, so a checkpoint's (epoch, global batch) continues
 * the same stream at another world size.
 */
#ifndef ST_ORDER_H
#define ST_ORDER_H

#include <stdint.h>

#include "datasets/error.h"

/* ---- keyed bijection over [0, n) ------------------------------------------ */
typedef struct order_perm {
    uint64_t n;        /* domain size */
    uint32_t half;     /* bits per Feistel half: 2^(2*half) >= n */
    uint64_t mask;     /* (1 << half) - 1 */
    uint64_t keys[4];  /* one per round */
} order_perm;

/* Prepares the bijection of [0, n) keyed by (seed, epoch, tag). n >= 1.
 * No allocation; the struct may live on the stack. */
void order_perm_init(order_perm *p, uint64_t n, uint64_t seed, uint64_t epoch,
                     uint64_t tag);

/* @return the image of x (x < n): a value in [0, n). Expected < 4 Feistel
 *         evaluations (cycle-walking over a domain smaller than 4n). */
uint64_t order_perm_apply(const order_perm *p, uint64_t x);

/* ---- the order of a split --------------------------------------------------- */
typedef enum order_mode {
    ORDER_NONE = 0,
    ORDER_GLOBAL = 1,
    ORDER_WINDOW = 2,
} order_mode;

typedef struct order_config {
    order_mode mode;
    uint64_t seed;
    uint32_t window;      /* shards per window (ORDER_WINDOW), >= 1 */
    uint32_t batch;       /* B: samples per GLOBAL batch, a multiple of world */
    int drop_last;        /* drop the last partial global batch */
    uint32_t rank, world; /* 0 <= rank < world */
} order_config;

typedef struct order order;

/* shard_records (nshards) gives the record count of each shard of the split,
 * in file order; the split's samples are the shards' records concatenated.
 * The array is copied.
 * @return 0, ST_EINVAL (empty split, batch 0, rank >= world, batch not a
 *         multiple of world (the numbers in the message), window 0, or no
 *         batch at all: drop_last with fewer than B samples) or
 *         ST_ENOMEM. */
int order_create(const order_config *cfg, const uint64_t *shard_records,
                 uint32_t nshards, order **out, st_error *err);

/* Accepts NULL. */
void order_destroy(order *o);

/* N: samples in the split. */
uint64_t order_samples(const order *o);

/* Samples this rank takes per epoch (the sum of its batch lengths). */
uint64_t order_rank_samples(const order *o);

/* Global batches per epoch (>= 1), the same on every rank. */
uint64_t order_batches(const order *o);

/* Samples of global batch b (< order_batches): B, or fewer for the last
 * batch without drop_last. */
uint32_t order_global_batch_len(const order *o, uint64_t b);

/* This rank's part of global batch b: B/w, or for the last short batch
 * L/w or L/w + 1; 0 only when that batch has fewer samples than ranks. */
uint32_t order_batch_len(const order *o, uint64_t b);

/* The most samples a rank's part of a batch holds: B/w. */
uint32_t order_batch_cap(const order *o);

/* The epoch position (in [0, N)) of sample i of this rank's part of
 * global batch b. */
uint64_t order_position(const order *o, uint64_t b, uint32_t i);

/* A cursor caches one epoch's shard permutation and prefix sums (window
 * mode: O(shards) memory, rebuilt when the epoch changes). One per thread;
 * results never depend on its history. */
typedef struct order_cursor order_cursor;

/* @return 0 or ST_ENOMEM. */
int order_cursor_create(const order *o, order_cursor **out, st_error *err);

/* Accepts NULL. */
void order_cursor_destroy(order_cursor *c);

/* @return the sample id (index in the split) at position pos (< N) of
 *         epoch's order. c may be NULL except in window mode (global mode
 *         then derives the epoch's keys on every call). */
uint64_t order_sample(const order *o, order_cursor *c, uint64_t epoch,
                      uint64_t pos);

/* Window mode: @return the window holding position pos of epoch (0 in the
 * other modes). */
uint64_t order_window_of(const order *o, order_cursor *c, uint64_t epoch,
                         uint64_t pos);

/* Window mode: points *shards at the shard numbers of window w of epoch
 * (valid until the cursor moves to another epoch).
 * @return how many (0 when w is past the last window or in other modes). */
uint32_t order_window_shards(const order *o, order_cursor *c, uint64_t epoch,
                             uint64_t w, const uint32_t **shards);

#endif
