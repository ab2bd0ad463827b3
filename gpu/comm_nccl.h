/* gpu/comm_nccl.h — internal (CUDA and EMU builds with ST_HAVE_NCCL): the
 * NCCL half of gpu/comm.h's all-reduce, called by gpu/comm.c.
 *
 * defines: gpu__nccl_id_bytes, gpu__nccl_make_id, gpu__nccl_create,
 *          gpu__nccl_allreduce, gpu__nccl_join, gpu__nccl_wait,
 *          gpu__nccl_destroy
 *
 * Contract:
 * - gpu/comm.c makes the id on rank 0 (gpu__nccl_make_id), broadcasts its
 *   gpu__nccl_id_bytes() bytes over MPI, and every rank then calls
 *   gpu__nccl_create collectively (ncclCommInitRank) with its rank. The
 *   device must be a CUDA gpu_device (cuda_device: the GPU of this rank,
 *   local_rank in a job with one process per GPU). world 1 is a real
 *   1-rank communicator.
 * - The handle owns a non-blocking communication stream and 2*max_inflight
 *   events, all made in create: nothing is allocated per call.
 * - gpu__nccl_allreduce(buf, n): buf[0..n) = sum over ranks, in place
 *   (ncclFloat, ncclSum), ordered after all work queued so far on the
 *   device's compute stream: an event recorded there, which the comm
 *   stream waits on before ncclAllReduce; a completion event is recorded
 *   after it. No host wait. At most max_inflight calls between two joins
 *   or waits (ST_EINVAL beyond); n == 0 is a no-op.
 * - gpu__nccl_join: the compute stream waits on the latest completion
 *   event (cudaStreamWaitEvent; no host wait): work queued after it reads
 *   the sums.
 * - gpu__nccl_wait: the host polls the latest completion event and
 *   ncclCommGetAsyncError until done (0) or timeout_s seconds have passed
 *   (timeout_s 0: no deadline, as gpu/comm.c's CPU path; < 0: ST_EINVAL):
 *   then ncclCommAbort and ST_ETIMEDOUT "all-reduce did not finish within
 *   N s"; an asynchronous NCCL error aborts too (ST_EDEVICE). After either,
 *   every call fails (ST_EDEVICE) and the caller ends the job.
 * - Every CUDA and NCCL failure is ST_EDEVICE with file:line, the call and
 *   the library's own message (ncclGetErrorString, ncclGetLastError).
 * - gpu__nccl_destroy accepts NULL; it destroys the communicator when
 *   nothing is pending, else aborts it (it never waits for peers).
 */
#ifndef ST_GPU_COMM_NCCL_H
#define ST_GPU_COMM_NCCL_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#include "datasets/error.h"
#include "gpu/device.h"

size_t gpu__nccl_id_bytes(void);                /* sizeof(ncclUniqueId) */
int gpu__nccl_make_id(void *id, st_error *err); /* rank 0: ncclGetUniqueId */
int gpu__nccl_create(gpu_device *d, const void *id, int rank, int world,
                     size_t max_inflight, void **impl, st_error *err);
int gpu__nccl_allreduce(void *impl, float *buf, size_t n, st_error *err);
int gpu__nccl_join(void *impl, st_error *err);
int gpu__nccl_wait(void *impl, double timeout_s, st_error *err);
void gpu__nccl_destroy(void *impl);

#ifdef __cplusplus
}
#endif

#endif
