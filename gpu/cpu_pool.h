/* gpu/cpu_pool.h — internal: the CPU backend's worker threads, which run
 * all of its work: the GEMMs' row blocks (gpu/cpu_gemm.c, one
 * single-threaded OpenBLAS call each) and the element-wise, batch-norm,
 * pooling and lowering ops between them.
 *
 * defines: cpu_pool, cpu_pool_fn, cpu_pool_create, cpu_pool_destroy,
 *          cpu_pool_threads, cpu_pool_for
 *
 * Contract:
 * - cpu_pool_create(threads) starts threads - 1 workers (none for 1): the
 *   caller of cpu_pool_for is the remaining one. All allocation happens
 *   here; cpu_pool_for allocates nothing.
 * - cpu_pool_for(p, n, grain, fn, ctx) calls fn(ctx, begin, end) on
 *   disjoint ranges that cover [0, n) exactly once, in at most
 *   cpu_pool_threads(p) contiguous blocks of at least `grain` items (one
 *   block, on the calling thread, when n < 2 * grain), and returns when
 *   every call has returned. fn must not call cpu_pool_for.
 * - The split depends on the thread count, so an fn whose result depends
 *   on where a block starts (a reduction) must itself reduce in pieces that
 *   do not: the batch-norm sums use fixed row chunks (gpu/cpu_bn.c), and
 *   results are bit for bit the same at any thread count.
 * - One caller at a time (the backend's ops are serialized per device).
 * - Between jobs the workers, and the caller waiting for them, poll for
 *   about 0.1 ms before they sleep: a step is hundreds of short jobs.
 * - cpu_pool_destroy stops and joins the workers; NULL is accepted.
 */
#ifndef ST_GPU_CPU_POOL_H
#define ST_GPU_CPU_POOL_H

#include <stddef.h>

#include "datasets/error.h"

typedef struct cpu_pool cpu_pool;
typedef void (*cpu_pool_fn)(void *ctx, size_t begin, size_t end);

int cpu_pool_create(int threads, cpu_pool **out, st_error *err);
void cpu_pool_destroy(cpu_pool *p);
int cpu_pool_threads(const cpu_pool *p);
int cpu_pool_for(cpu_pool *p, size_t n, size_t grain, cpu_pool_fn fn,
                 void *ctx, st_error *err);

#endif
