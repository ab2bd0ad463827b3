/* gpu/prefetch.c — D device batch buffers fed over the copy queue.
 *
 * Buffer layout inside the borrowed arena piece, per slot s (0..D-1):
 *   [s * slot_bytes]               pixels (max_batch, sample_bytes) uint8
 *   [s * slot_bytes + px_bytes]    labels (max_batch) int32
 * with px_bytes and the label block each rounded up to 256 bytes.
 *
 * One copy per batch where it can: the loader's ring slot holds the labels
 * a little after the pixels (loader.c: at the pixel bytes rounded up to
 * 64), so when that gap fits the device slot the pixels, the padding and
 * the labels cross in one cudaMemcpyAsync and the device labels sit at the
 * same offset. Each copy has a fixed cost of a few microseconds, as large
 * as moving a 100 KB batch itself; other layouts take two copies.
 *
 * Slot life: FREE -> COPIED (submit: copy queued, compute waits on
 * copy_done) -> CONSUMED (compute_done recorded) -> reused by the submit D
 * batches later, after compute_done. Host batches wait in a FIFO of
 * `pending` entries until their copy is known to be complete; copies on
 * one queue complete in order, so the FIFO head is always the next one.
 */
#include "gpu/prefetch.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { SLOT_FREE = 0, SLOT_COPIED, SLOT_CONSUMED };

typedef struct pf_slot {
    uint8_t *px;               /* (max_batch, sample_bytes) uint8, device */
    int32_t *lab;              /* (max_batch) int32, device */
    gpu_event *copy_start;     /* copy queue, before the copies */
    gpu_event *copy_done;      /* copy queue, after the copies */
    gpu_event *compute_done;   /* compute queue, after the step's last read */
    int state;                 /* SLOT_* */
} pf_slot;

typedef struct pf_pending {
    void *tag;                 /* the caller's host batch */
    int slot;
    int done;                  /* copy known complete (and timed) */
    size_t bytes;              /* H2D bytes of this batch */
} pf_pending;

struct prefetch {
    gpu_device *d;             /* borrowed */
    int unified;
    int depth;
    int max_batch;
    size_t sample_bytes;
    size_t slot_bytes;         /* device bytes of one slot */
    pf_slot slot[PREFETCH_MAX_DEPTH];
    pf_pending fifo[PREFETCH_MAX_DEPTH]; /* ring: head, count */
    int head, count;
    int next;                  /* slot the next submit uses */
    prefetch_stats st;
};

static size_t align256(size_t n) { return (n + 255) & ~(size_t)255; }

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

size_t prefetch_plan_bytes(int unified, int depth, int max_batch,
                           size_t sample_bytes)
{
    if (unified) return 0;
    size_t per = align256((size_t)max_batch * sample_bytes) +
                 align256((size_t)max_batch * sizeof(int32_t));
    return (size_t)depth * per;
}

int prefetch_create(prefetch **out, gpu_device *d, int depth, int max_batch,
                    size_t sample_bytes, void *dev_mem, size_t dev_bytes,
                    st_error *err)
{
    *out = NULL;
    int unified = gpu_device_unified(d);
    if (depth < 2 || depth > PREFETCH_MAX_DEPTH)
        return st_seterr(err, ST_EINVAL, "prefetch depth %d outside 2..%d",
                         depth, PREFETCH_MAX_DEPTH);
    if (max_batch < 1 || sample_bytes == 0)
        return st_seterr(err, ST_EINVAL, "prefetch: batch %d, sample %zu bytes",
                         max_batch, sample_bytes);
    size_t need = prefetch_plan_bytes(unified, depth, max_batch, sample_bytes);
    if (dev_bytes < need || (need && dev_mem == NULL))
        return st_seterr(err, ST_EINVAL, "prefetch: %zu device bytes given, "
                         "%zu needed", dev_bytes, need);
    prefetch *p = calloc(1, sizeof *p);
    if (p == NULL) return st_seterr(err, ST_ENOMEM, "prefetch: out of memory");
    p->d = d;
    p->unified = unified;
    p->depth = depth;
    p->max_batch = max_batch;
    p->sample_bytes = sample_bytes;
    size_t px_bytes = align256((size_t)max_batch * sample_bytes);
    size_t per = need / (size_t)depth;
    p->slot_bytes = per;
    int rc = 0;
    for (int s = 0; s < depth && rc == 0; s++) {
        pf_slot *sl = &p->slot[s];
        if (!unified) {
            sl->px = (uint8_t *)dev_mem + (size_t)s * per;
            sl->lab = (int32_t *)(sl->px + px_bytes);
        }
        rc = gpu_event_create(d, &sl->copy_start);
        if (rc == 0) rc = gpu_event_create(d, &sl->copy_done);
        if (rc == 0) rc = gpu_event_create(d, &sl->compute_done);
    }
    if (rc < 0) {
        gpu_device_check(d, err);
        prefetch_destroy(p);
        return rc;
    }
    *out = p;
    return 0;
}

void prefetch_destroy(prefetch *p)
{
    if (p == NULL) return;
    if (!gpu_device_err(p->d)->code) gpu_sync(p->d);
    for (int s = p->depth - 1; s >= 0; s--) {
        gpu_event_destroy(p->d, p->slot[s].compute_done);
        gpu_event_destroy(p->d, p->slot[s].copy_done);
        gpu_event_destroy(p->d, p->slot[s].copy_start);
    }
    free(p);
}

/* The pending entry that still refers to slot s, or NULL. */
static pf_pending *pending_of(prefetch *p, int s)
{
    for (int k = 0; k < p->count; k++) {
        pf_pending *e = &p->fifo[(p->head + k) % PREFETCH_MAX_DEPTH];
        if (e->slot == s && !e->done) return e;
    }
    return NULL;
}

/* Marks e's copy complete (the caller knows it is) and adds its timing,
 * read now because the slot's events are about to be recorded again. */
static int settle(prefetch *p, pf_pending *e)
{
    if (e->done) return 0;
    e->done = 1;
    if (p->unified) return 0;
    float ms = 0.0f;
    int rc = gpu_event_elapsed(p->d, p->slot[e->slot].copy_start,
                               p->slot[e->slot].copy_done, &ms);
    if (rc < 0) return rc;
    p->st.bytes += e->bytes;
    p->st.copy_s += ms * 1e-3;
    return 0;
}

/* Makes slot s free for a new batch: its last reader (or, if it was never
 * consumed, its copy) must be done. */
static int reclaim(prefetch *p, int s)
{
    pf_slot *sl = &p->slot[s];
    if (sl->state == SLOT_FREE) return 0;
    double t0 = now_s();
    int rc = gpu_event_wait_host(p->d, sl->state == SLOT_CONSUMED
                                           ? sl->compute_done
                                           : sl->copy_done);
    p->st.wait_s += now_s() - t0;
    if (rc < 0) return rc;
    pf_pending *e = pending_of(p, s);
    if (e) rc = settle(p, e);
    sl->state = SLOT_FREE;
    return rc;
}

/* The offset of the labels from the pixels when one copy can carry both
 * into the slot (labels after the pixels, 4-aligned, at most a quarter of
 * the pixel bytes of padding between, and all of it fitting the slot);
 * 0 when two copies are needed. */
static size_t one_copy_gap(const prefetch *p, const uint8_t *px,
                           const int32_t *lab, int n)
{
    uintptr_t a = (uintptr_t)px, b = (uintptr_t)lab;
    size_t pxb = (size_t)n * p->sample_bytes;
    if (b < a + pxb) return 0;
    size_t gap = (size_t)(b - a);
    if (gap % sizeof *lab || gap - pxb > pxb / 4) return 0;
    if (gap + (size_t)n * sizeof *lab > p->slot_bytes) return 0;
    return gap;
}

/* Queues the batch's copies; *dlab is where its labels land. */
static int queue_copy(prefetch *p, pf_slot *sl, const uint8_t *px,
                      const int32_t *lab, int n, int32_t **dlab)
{
    gpu_device *d = p->d;
    size_t pxb = (size_t)n * p->sample_bytes, lb = (size_t)n * sizeof *lab;
    size_t gap = one_copy_gap(p, px, lab, n);
    ST_TRY(gpu_event_record(d, sl->copy_start, GPU_Q_COPY));
    if (gap) {
        ST_TRY(gpu_copy_async(d, GPU_Q_COPY, sl->px, px, gap + lb));
        *dlab = (int32_t *)(sl->px + gap);
        p->st.copies++;
    } else {
        ST_TRY(gpu_copy_async(d, GPU_Q_COPY, sl->px, px, pxb));
        ST_TRY(gpu_copy_async(d, GPU_Q_COPY, sl->lab, lab, lb));
        *dlab = sl->lab;
        p->st.copies += 2;
    }
    ST_TRY(gpu_event_record(d, sl->copy_done, GPU_Q_COPY));
    ST_TRY(gpu_queue_wait(d, GPU_Q_COMPUTE, sl->copy_done));
    return 0;
}

int prefetch_submit(prefetch *p, const uint8_t *pixels,
                    const int32_t *labels, int n, void *tag,
                    prefetch_batch *out, st_error *err)
{
    if (n < 1 || n > p->max_batch)
        return st_seterr(err, ST_EINVAL, "prefetch: batch of %d outside 1..%d",
                         n, p->max_batch);
    int s = p->next;
    pf_slot *sl = &p->slot[s];
    int rc = reclaim(p, s);
    if (rc == 0 && p->count == PREFETCH_MAX_DEPTH)
        rc = st_seterr(err, ST_EINVAL, "prefetch: %d host batches pending; "
                       "poll and release them", p->count);
    int32_t *dlab = NULL;
    if (rc == 0 && !p->unified)
        rc = queue_copy(p, sl, pixels, labels, n, &dlab);
    if (rc < 0) {
        gpu_device_check(p->d, err);
        return rc;
    }
    p->next = (s + 1) % p->depth;
    sl->state = SLOT_COPIED;
    pf_pending *e = &p->fifo[(p->head + p->count) % PREFETCH_MAX_DEPTH];
    e->tag = tag;
    e->slot = s;
    e->done = 0;
    e->bytes = (size_t)n * (p->sample_bytes + sizeof(int32_t));
    p->count++;
    p->st.batches++;
    out->pixels = p->unified ? pixels : sl->px;
    out->labels = p->unified ? labels : dlab;
    out->n = n;
    out->slot = s;
    return 0;
}

int prefetch_consumed(prefetch *p, const prefetch_batch *b, st_error *err)
{
    if (b->slot < 0 || b->slot >= p->depth)
        return st_seterr(err, ST_EINVAL, "prefetch: slot %d unknown", b->slot);
    pf_slot *sl = &p->slot[b->slot];
    if (gpu_event_record(p->d, sl->compute_done, GPU_Q_COMPUTE) < 0)
        return gpu_device_check(p->d, err);
    sl->state = SLOT_CONSUMED;
    if (p->unified) {
        pf_pending *e = pending_of(p, b->slot);
        if (e) e->done = 1; /* CPU compute has finished reading it */
    }
    return 0;
}

int prefetch_poll(prefetch *p, int wait, void **tag, st_error *err)
{
    *tag = NULL;
    if (p->count == 0) return 0;
    pf_pending *e = &p->fifo[p->head];
    if (!e->done && !p->unified) {
        pf_slot *sl = &p->slot[e->slot];
        int rc = wait ? gpu_event_wait_host(p->d, sl->copy_done)
                      : gpu_event_query(p->d, sl->copy_done);
        if (rc < 0) return gpu_device_check(p->d, err);
        if (!wait && rc == 0) return 0;
        if (settle(p, e) < 0) return gpu_device_check(p->d, err);
    }
    if (!e->done) return 0; /* unified: not consumed yet */
    *tag = e->tag;
    p->head = (p->head + 1) % PREFETCH_MAX_DEPTH;
    p->count--;
    return 1;
}

int prefetch_pending(const prefetch *p) { return p->count; }

void prefetch_get_stats(const prefetch *p, prefetch_stats *out)
{
    *out = p->st;
}
