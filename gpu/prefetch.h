/* gpu/prefetch.h — moves host batches onto the device ahead of compute.
 *
 * defines: prefetch, prefetch_batch, prefetch_stats, prefetch_plan_bytes,
 *          prefetch_create, prefetch_destroy, prefetch_submit,
 *          prefetch_consumed, prefetch_poll, prefetch_get_stats
 *
 * The prefetcher owns D >= 2 device batch buffers (a piece of the arena the
 * caller passes in) and uses the device's copy queue. For each host batch
 * (uint8 pixels + int32 labels, in pinned memory from gpu_host_alloc):
 *
 *   submit    takes the next device buffer in turn (waiting, on the host,
 *             only if the compute step that last read it is not done yet),
 *             queues the H2D copies on the copy queue, records a copy
 *             event, and makes the compute queue wait on that event. The
 *             host does not wait for the copy.
 *   consumed  the caller has queued every compute op that reads the batch;
 *             records a compute event that guards the buffer's reuse.
 *   poll      hands back, in submission order, the tag of each host batch
 *             whose copy has completed: the caller may release that host
 *             memory (the loader's ring slot) now.
 *
 * CPU backend (gpu_device_unified): no device buffers, no copy; the batch
 * view points straight at the host memory, and the host batch is released
 * once consumed (the compute that read it has finished by then).
 *
 * Not thread-safe: one thread (the trainer's) drives it.
 */
#ifndef ST_GPU_PREFETCH_H
#define ST_GPU_PREFETCH_H

#include <stddef.h>
#include <stdint.h>

#include "datasets/error.h"
#include "gpu/device.h"

#define PREFETCH_MAX_DEPTH 8

typedef struct prefetch prefetch;

/* A batch as the compute queue sees it. Valid until the next submit that
 * reuses its buffer (D submits later). */
typedef struct prefetch_batch {
    const uint8_t *pixels; /* (n, sample_bytes) uint8, device memory */
    const int32_t *labels; /* (n) int32, device memory */
    int n;
    int slot;              /* device buffer index, for prefetch_consumed */
} prefetch_batch;

typedef struct prefetch_stats {
    uint64_t batches;      /* batches submitted */
    uint64_t copies;       /* H2D copies queued: 1 a batch when the host
                              labels follow its pixels closely, else 2 */
    uint64_t bytes;        /* H2D bytes whose copy completed and was timed */
    double copy_s;         /* copy-queue time of those copies (CUDA events) */
    double wait_s;         /* host time blocked in submit for a free buffer */
} prefetch_stats;

/* Device bytes the buffers need (the plan's "batch buffers" line):
 * 0 when unified, else depth * (pixels + labels, each 256-aligned). */
size_t prefetch_plan_bytes(int unified, int depth, int max_batch,
                           size_t sample_bytes);

/* dev_mem: dev_bytes of device memory (>= prefetch_plan_bytes) borrowed
 * from the arena for the prefetcher's lifetime; may be NULL when unified.
 * @return 0, ST_EINVAL (depth outside 2..PREFETCH_MAX_DEPTH, too little
 *         memory), ST_ENOMEM, ST_EDEVICE (events). */
int prefetch_create(prefetch **out, gpu_device *d, int depth, int max_batch,
                    size_t sample_bytes, void *dev_mem, size_t dev_bytes,
                    st_error *err);
/* Waits for outstanding copies, destroys the events. Accepts NULL. Tags
 * not yet returned by poll are forgotten: release them beforehand. */
void prefetch_destroy(prefetch *p);

/* pixels (n, sample_bytes) uint8 and labels (n) int32 in host memory that
 * stays valid until poll returns tag. n <= max_batch.
 * @return 0, ST_EINVAL, ST_EDEVICE. */
int prefetch_submit(prefetch *p, const uint8_t *pixels,
                    const int32_t *labels, int n, void *tag,
                    prefetch_batch *out, st_error *err);

/* Every compute op reading b has been queued. @return 0 or ST_EDEVICE. */
int prefetch_consumed(prefetch *p, const prefetch_batch *b, st_error *err);

/* Returns 1 and the oldest tag whose host memory is free again, 0 when
 * none is (yet), or a negative code. wait=1 blocks until the oldest
 * pending copy has completed; it still returns 0 when nothing is pending
 * or (CPU) when the oldest batch has not been consumed. */
int prefetch_poll(prefetch *p, int wait, void **tag, st_error *err);

/* Number of host batches submitted and not yet returned by poll. */
int prefetch_pending(const prefetch *p);

void prefetch_get_stats(const prefetch *p, prefetch_stats *out);

#endif
