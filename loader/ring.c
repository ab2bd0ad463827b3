/* loader/ring.c — the batch ring: slot states, in-order hand-over, timed
 * waits and shutdown. See ring.h for the protocol.
 */
#include "loader/ring.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#define RING_ALIGN 4096u

enum slot_state { SLOT_FREE = 0, SLOT_FILLING, SLOT_READY, SLOT_HELD };

typedef struct slot {
    int state;          /* enum slot_state; guarded by ring.mu */
    int status;         /* publish status; guarded by ring.mu */
    uint64_t seq;       /* sequence number while FILLING/READY/HELD; ring.mu */
} slot;

struct ring {
    pthread_mutex_t mu;
    pthread_cond_t freed;   /* a slot became FREE, or limit/shutdown */
    pthread_cond_t ready;   /* a slot became READY, or limit/shutdown */
    uint32_t nslots;        /* immutable */
    size_t slot_bytes;      /* immutable */
    size_t stride;          /* immutable: slot_bytes rounded to RING_ALIGN */
    uint8_t *mem;           /* (nslots, stride) immutable pointer */
    ring_allocator alloc;   /* immutable */
    slot *slots;            /* (nslots) fields guarded by mu */
    uint64_t next_claim;    /* next sequence number to hand out; mu */
    uint64_t next_deliver;  /* next sequence number for the consumer; mu */
    uint64_t limit;         /* no sequence at or past this; mu */
    int shutdown;           /* set once by ring_shutdown; mu */
};

static void *default_alloc(size_t bytes, void *ctx)
{
    (void)ctx;
    return aligned_alloc(RING_ALIGN, bytes);
}

static void default_free(void *p, size_t bytes, void *ctx)
{
    (void)bytes;
    (void)ctx;
    free(p);
}

/* Unlocks mu; @return rc, or the unlock failure when rc is 0. */
static int unlock(ring *r, int rc, st_error *err)
{
    int u = ST_PTHREAD(err, pthread_mutex_unlock(&r->mu));
    return rc ? rc : u;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int init_sync(ring *r, st_error *err)
{
    pthread_condattr_t ca;
    int rc = ST_PTHREAD(err, pthread_condattr_init(&ca));
    if (rc) return rc;
    rc = ST_PTHREAD(err, pthread_condattr_setclock(&ca, CLOCK_MONOTONIC));
    if (rc) goto out_attr;
    rc = ST_PTHREAD(err, pthread_mutex_init(&r->mu, NULL));
    if (rc) goto out_attr;
    rc = ST_PTHREAD(err, pthread_cond_init(&r->freed, &ca));
    if (rc) goto out_mu;
    rc = ST_PTHREAD(err, pthread_cond_init(&r->ready, &ca));
    if (rc) goto out_freed;
    st_error ignored = {0}; /* the attribute is no longer needed */
    (void)ST_PTHREAD(&ignored, pthread_condattr_destroy(&ca));
    return 0;
out_freed:
    (void)ST_PTHREAD(err, pthread_cond_destroy(&r->freed));
out_mu:
    (void)ST_PTHREAD(err, pthread_mutex_destroy(&r->mu));
out_attr:
    (void)ST_PTHREAD(err, pthread_condattr_destroy(&ca));
    return rc;
}

int ring_create(uint32_t nslots, size_t slot_bytes, uint64_t limit,
                const ring_allocator *alloc, ring **out, st_error *err)
{
    *out = NULL;
    if (nslots == 0 || slot_bytes == 0)
        return st_seterr(err, ST_EINVAL, "ring: %u slots of %zu bytes",
                         nslots, slot_bytes);
    int rc = ST_ENOMEM;
    ring *r = calloc(1, sizeof *r);
    if (r == NULL) goto fail;
    r->slots = calloc(nslots, sizeof *r->slots);
    if (r->slots == NULL) goto fail_ring;
    r->nslots = nslots;
    r->slot_bytes = slot_bytes;
    r->stride = (slot_bytes + RING_ALIGN - 1) / RING_ALIGN * RING_ALIGN;
    r->limit = limit;
    if (alloc != NULL && alloc->alloc != NULL && alloc->free != NULL)
        r->alloc = *alloc;
    else
        r->alloc = (ring_allocator){default_alloc, default_free, NULL};
    r->mem = r->alloc.alloc(r->stride * nslots, r->alloc.ctx);
    if (r->mem == NULL) {
        rc = st_seterr(err, ST_ENOMEM,
                       "ring: allocating %u slots x %zu bytes = %zu bytes "
                       "failed", nslots, r->stride, r->stride * nslots);
        goto fail_slots;
    }
    rc = init_sync(r, err);
    if (rc) goto fail_mem;
    *out = r;
    return 0;
fail_mem:
    r->alloc.free(r->mem, r->stride * nslots, r->alloc.ctx);
fail_slots:
    free(r->slots);
fail_ring:
    free(r);
fail:
    return st_seterr(err, rc, "ring: out of memory");
}

void ring_destroy(ring *r)
{
    if (r == NULL) return;
    st_error e = {0}; /* nothing to report to: checked, then freed anyway */
    (void)ST_PTHREAD(&e, pthread_cond_destroy(&r->ready));
    (void)ST_PTHREAD(&e, pthread_cond_destroy(&r->freed));
    (void)ST_PTHREAD(&e, pthread_mutex_destroy(&r->mu));
    r->alloc.free(r->mem, r->stride * r->nslots, r->alloc.ctx);
    free(r->slots);
    free(r);
}

void *ring_slot(const ring *r, uint32_t i) { return r->mem + r->stride * i; }
uint32_t ring_slots(const ring *r) { return r->nslots; }
size_t ring_slot_bytes(const ring *r) { return r->slot_bytes; }

/* Called with mu held. @return the first slot in state (and with sequence
 * number seq when match_seq), or -1. */
static int find_state(const ring *r, int state, uint64_t seq, int match_seq)
{
    for (uint32_t i = 0; i < r->nslots; i++)
        if (r->slots[i].state == state &&
            (!match_seq || r->slots[i].seq == seq))
            return (int)i;
    return -1;
}

int ring_claim(ring *r, uint32_t *slot_out, uint64_t *seq, uint64_t *blocked_ns,
               st_error *err)
{
    uint64_t t0 = 0;
    int rc = ST_PTHREAD(err, pthread_mutex_lock(&r->mu));
    if (rc) return rc;
    int i;
    for (;;) {
        if (r->shutdown) { rc = ST_ECLOSED; break; }
        if (r->next_claim >= r->limit) { rc = ST_EEND; break; }
        if ((i = find_state(r, SLOT_FREE, 0, 0)) >= 0) break;
        if (t0 == 0) t0 = now_ns();
        rc = ST_PTHREAD(err, pthread_cond_wait(&r->freed, &r->mu));
        if (rc) break;
    }
    int last = 0;
    if (rc == 0) {
        r->slots[i].state = SLOT_FILLING;
        r->slots[i].seq = r->next_claim++;
        *slot_out = (uint32_t)i;
        *seq = r->slots[i].seq;
        last = r->next_claim == r->limit;
    }
    rc = unlock(r, rc, err);
    /* The last sequence is gone: producers waiting for a slot must learn
     * that there is nothing left, since no later release may wake them. */
    if (last && rc == 0)
        rc = ST_PTHREAD(err, pthread_cond_broadcast(&r->freed));
    *blocked_ns = t0 ? now_ns() - t0 : 0;
    if (rc == ST_ECLOSED) st_seterr(err, rc, "ring: closed");
    return rc;
}

int ring_publish(ring *r, uint32_t i, int status, st_error *err)
{
    int rc = ST_PTHREAD(err, pthread_mutex_lock(&r->mu));
    if (rc) return rc;
    if (i >= r->nslots || r->slots[i].state != SLOT_FILLING) {
        rc = st_seterr(err, ST_EINVAL, "ring: publish of slot %u that is "
                       "not being filled", i);
        return unlock(r, rc, err);
    }
    r->slots[i].state = SLOT_READY;
    r->slots[i].status = status;
    int wake = r->slots[i].seq == r->next_deliver;
    rc = unlock(r, 0, err);
    /* Only the batch the consumer waits for can wake it. Signalling after
     * unlock is safe: the predicate was updated under the lock. */
    if (wake && rc == 0)
        rc = ST_PTHREAD(err, pthread_cond_signal(&r->ready));
    return rc;
}

static void deadline_after(struct timespec *ts, uint32_t ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

/* Waits on ready (with mu held) until the deadline, if any.
 * @return 0, ETIMEDOUT, or ST_EINTERNAL. */
static int wait_ready(ring *r, const struct timespec *deadline, st_error *err)
{
    if (deadline == NULL)
        return ST_PTHREAD(err, pthread_cond_wait(&r->ready, &r->mu));
    int e = pthread_cond_timedwait(&r->ready, &r->mu, deadline);
    if (e == ETIMEDOUT) return ETIMEDOUT;
    return ST_PTHREAD(err, e);
}

int ring_next(ring *r, uint32_t timeout_ms, uint32_t *slot_out, uint64_t *seq,
              int *status, uint64_t *wait_ns, st_error *err)
{
    struct timespec deadline;
    uint64_t t0 = 0;
    int rc = ST_PTHREAD(err, pthread_mutex_lock(&r->mu));
    if (rc) return rc;
    uint64_t want = r->next_deliver;
    int i;
    for (;;) {
        if (r->shutdown) { rc = ST_ECLOSED; break; }
        if (want >= r->limit) { rc = ST_EEND; break; }
        if ((i = find_state(r, SLOT_READY, want, 1)) >= 0) break;
        if (t0 == 0) {
            t0 = now_ns();
            if (timeout_ms) deadline_after(&deadline, timeout_ms);
        }
        rc = wait_ready(r, timeout_ms ? &deadline : NULL, err);
        if (rc == ETIMEDOUT) { rc = ST_ETIMEDOUT; break; }
        if (rc) break;
    }
    if (rc == 0) {
        r->slots[i].state = SLOT_HELD;
        r->next_deliver++;
        *slot_out = (uint32_t)i;
        *seq = want;
        *status = r->slots[i].status;
    }
    rc = unlock(r, rc, err);
    *wait_ns = t0 ? now_ns() - t0 : 0;
    if (rc == ST_ECLOSED) st_seterr(err, rc, "ring: closed");
    if (rc == ST_ETIMEDOUT)
        st_seterr(err, rc, "ring: timed out after %u ms waiting for batch "
                  "%llu", timeout_ms, (unsigned long long)want);
    return rc;
}

int ring_release(ring *r, uint32_t i, st_error *err)
{
    int rc = ST_PTHREAD(err, pthread_mutex_lock(&r->mu));
    if (rc) return rc;
    if (i >= r->nslots || r->slots[i].state != SLOT_HELD) {
        rc = st_seterr(err, ST_EINVAL, "ring: release of slot %u that is "
                       "not held", i);
        return unlock(r, rc, err);
    }
    r->slots[i].state = SLOT_FREE;
    rc = unlock(r, 0, err);
    return rc ? rc : ST_PTHREAD(err, pthread_cond_signal(&r->freed));
}

/* ring_limit and ring_shutdown return nothing: they run on cleanup paths
 * where a second error must not hide the first, and pthread calls on a
 * ring's own initialised mutex and conds fail only on memory corruption.
 * Their results are still checked, into a scratch st_error. */
static void set_and_wake(ring *r, uint64_t limit, int shutdown)
{
    st_error e = {0};
    if (ST_PTHREAD(&e, pthread_mutex_lock(&r->mu))) return;
    if (limit < r->limit) r->limit = limit;
    if (shutdown) r->shutdown = 1;
    if (unlock(r, 0, &e)) return;
    (void)ST_PTHREAD(&e, pthread_cond_broadcast(&r->freed));
    (void)ST_PTHREAD(&e, pthread_cond_broadcast(&r->ready));
}

void ring_limit(ring *r, uint64_t limit) { set_and_wake(r, limit, 0); }

void ring_shutdown(ring *r) { set_and_wake(r, UINT64_MAX, 1); }
