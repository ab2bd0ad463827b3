/* gpu/comm.h — the gradient all-reduce of a data-parallel job: in-place
 * sums of float buffers in device memory across the ranks of one job.
 *
 * defines: gpu_comm, gpu_comm_create, gpu_comm_destroy,
 *          gpu_comm_allreduce, gpu_comm_join, gpu_comm_wait
 *
 * Contract:
 * - One gpu_comm per process, created collectively by every rank (same
 *   world, each its own rank) before step 1; it allocates nothing after
 *   create. world == 1 is valid everywhere and makes every call a no-op.
 * - CPU backends: MPI_Iallreduce (MPI_SUM, MPI_IN_PLACE) on a duplicate
 *   of MPI_COMM_WORLD; the host memory is the device memory.
 *   CUDA backend: NCCL (ncclAllReduce, ncclSum, ncclFloat) on a stream of
 *   its own, ordered after the compute queue by events; its unique id is
 *   made on rank 0 and broadcast with MPI_Bcast inside gpu_comm_create.
 * - gpu_comm_allreduce starts buf[0..n) = sum over ranks, ordered after
 *   all work queued so far on GPU_Q_COMPUTE, and returns without waiting
 *   (no host block on CUDA). Every rank issues its buffers in the same
 *   order and with the same n. At most max_inflight are outstanding
 *   between two gpu_comm_wait calls.
 * - gpu_comm_join makes GPU_Q_COMPUTE wait (CUDA: an event wait on the
 *   device, no host block) for every reduction started so far; on CPU
 *   backends it is gpu_comm_wait.
 * - gpu_comm_wait blocks the host until every started reduction is done,
 *   or fails after timeout_s seconds (ST_ETIMEDOUT, "all-reduce did not
 *   finish within N s"), after which the comm
 *   is unusable and the caller aborts the job.
 * - Built with MPI=0: world must be 1 (else ST_EINVAL, "built without
 *   MPI"). Built with CUDA=0: the CUDA path is absent.
 */
#ifndef ST_GPU_COMM_H
#define ST_GPU_COMM_H

#include <stddef.h>

#include "datasets/error.h"
#include "gpu/device.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct gpu_comm gpu_comm;

int gpu_comm_create(gpu_device *d, int rank, int world, size_t max_inflight,
                    gpu_comm **out, st_error *err);
void gpu_comm_destroy(gpu_comm *c); /* accepts NULL */
int gpu_comm_allreduce(gpu_comm *c, float *buf, size_t n, st_error *err);
int gpu_comm_join(gpu_comm *c, st_error *err);
int gpu_comm_wait(gpu_comm *c, double timeout_s, st_error *err);

#ifdef __cplusplus
}
#endif

#endif
