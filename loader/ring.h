/* loader/ring.h — K batch slots shared by producer threads and one consumer,
 * delivered strictly in sequence order.
 *
 * defines: ring_allocator, ring_create, ring_destroy, ring_slot, ring_slots,
 *          ring_slot_bytes, ring_claim, ring_publish, ring_next,
 *          ring_release, ring_limit, ring_shutdown
 *
 * Each slot cycles FREE -> FILLING -> READY -> HELD -> FREE:
 *   ring_claim    (producer) waits for a FREE slot and takes it together with
 *                 the next sequence number 0, 1, 2, ... (FILLING). Taking
 *                 both under one lock means the slots always hold the lowest
 *                 outstanding sequence numbers, so in-order delivery can
 *                 never deadlock.
 *   ring_publish  (producer) marks it READY with a status (0 or an error).
 *   ring_next     (consumer) waits until the slot carrying the next sequence
 *                 number is READY and hands it over (HELD).
 *   ring_release  (any thread) gives a HELD slot back (FREE).
 * Producers block while no slot is FREE (backpressure); the consumer blocks
 * while its next batch is not READY. Both waits report the time they spent
 * blocked, and both end with ST_ECLOSED as soon as ring_shutdown is called.
 *
 * Memory: one allocation of K * stride bytes through the allocator hook
 * (stride = slot_bytes rounded up to 4096), made at create. Nothing else is
 * allocated afterwards.
 */
#ifndef ST_RING_H
#define ST_RING_H

#include <stddef.h>
#include <stdint.h>

#include "datasets/error.h"

/* Where slot memory comes from: the CUDA backend passes cudaHostAlloc
 * (pinned), the default (NULL hook) is 4096-aligned host memory. alloc
 * returns NULL on failure and must return 64-byte-aligned memory; free
 * receives the same size. */
typedef struct ring_allocator {
    void *(*alloc)(size_t bytes, void *ctx);
    void (*free)(void *p, size_t bytes, void *ctx);
    void *ctx;
} ring_allocator;

typedef struct ring ring;

/* Creates nslots (>= 1) slots of slot_bytes (>= 1) each. Sequence numbers at
 * or past limit are never handed out (UINT64_MAX: no limit). alloc may be
 * NULL (default allocator); it is copied.
 * @return 0, ST_EINVAL, ST_ENOMEM (the hook failed; sizes in the message) or
 *         ST_EINTERNAL (pthread init failed). */
int ring_create(uint32_t nslots, size_t slot_bytes, uint64_t limit,
                const ring_allocator *alloc, ring **out, st_error *err);

/* Frees the slots through the hook. No thread may be inside a ring call:
 * ring_shutdown first, then join the producers. Accepts NULL. */
void ring_destroy(ring *r);

/* Start of slot i's memory (slot_bytes usable). Stable for r's lifetime. */
void *ring_slot(const ring *r, uint32_t i);
uint32_t ring_slots(const ring *r);
size_t ring_slot_bytes(const ring *r);

/* Producer: waits for a FREE slot, then takes it (FILLING) with the next
 * sequence number. *blocked_ns receives the time spent waiting (0 when a
 * slot was free at once).
 * @return 0, ST_EEND (the sequence limit is reached: nothing left to
 *         produce), ST_ECLOSED (shut down) or ST_EINTERNAL. */
int ring_claim(ring *r, uint32_t *slot, uint64_t *seq, uint64_t *blocked_ns,
               st_error *err);

/* Producer: FILLING -> READY, with status 0 or a negative st_errcode that
 * ring_next passes on to the consumer.
 * @return 0, ST_EINVAL (slot not FILLING) or ST_EINTERNAL. */
int ring_publish(ring *r, uint32_t slot, int status, st_error *err);

/* Consumer (one thread): waits until the batch with the next sequence number
 * is READY and makes it HELD. timeout_ms 0 waits without limit. *wait_ns
 * receives the time spent waiting.
 * @return 0 (then *status is that batch's publish status), ST_EEND (every
 *         sequence below the limit was delivered), ST_ECLOSED, ST_ETIMEDOUT (timed
 *         out, with the sequence number and the wait in the message) or
 *         ST_EINTERNAL. */
int ring_next(ring *r, uint32_t timeout_ms, uint32_t *slot, uint64_t *seq,
              int *status, uint64_t *wait_ns, st_error *err);

/* HELD -> FREE, from any thread; wakes one waiting producer.
 * @return 0, ST_EINVAL (slot not HELD) or ST_EINTERNAL. */
int ring_release(ring *r, uint32_t slot, st_error *err);

/* Lowers the sequence limit (never raises it) and wakes every waiter: used
 * to stop producing after a failed batch. */
void ring_limit(ring *r, uint64_t limit);

/* Wakes every blocked call; from now on claim and next return ST_ECLOSED.
 * Idempotent, callable from any thread. */
void ring_shutdown(ring *r);

#endif
