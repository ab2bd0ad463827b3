/* tests/emu/nccl.h — cuemu: the slice of NCCL that gpu/comm_nccl.cu uses,
 * with NCCL's own names, signatures and enum values, implemented over MPI
 * between processes by tests/emu/cuemu_nccl.cpp (`make EMU=1`).
 *
 * defines: ncclComm_t, ncclUniqueId, ncclResult_t, ncclRedOp_t,
 *          ncclDataType_t, ncclGetUniqueId, ncclCommInitRank,
 *          ncclCommDestroy, ncclCommAbort, ncclCommGetAsyncError,
 *          ncclAllReduce, ncclGetErrorString, ncclGetLastError
 *
 * Contract (where it differs from NCCL's, it says so):
 * - One process per rank, started by mpirun (or alone: a world of 1). MPI
 *   must be initialized before ncclCommInitRank, which is collective over
 *   MPI_COMM_WORLD: nranks must be its size and rank the caller's rank.
 * - ncclAllReduce supports ncclFloat and ncclSum only (ncclInvalidArgument
 *   otherwise); both buffers must lie inside one cudaMalloc block. It is
 *   queued on the stream like a kernel: it reads sendbuff only when the
 *   stream reaches it (after the events the stream waits on), and the
 *   stream stays stopped there until every rank's part has arrived.
 * - ncclCommAbort ends a communicator whose reductions may never complete:
 *   they finish at once, leaving recvbuff as it was.
 */
#ifndef CUEMU_NCCL_H
#define CUEMU_NCCL_H

#include <stddef.h>

#include "cuda_runtime.h"

extern "C" {

typedef struct ncclComm *ncclComm_t;

#define NCCL_UNIQUE_ID_BYTES 128
typedef struct { char internal[NCCL_UNIQUE_ID_BYTES]; } ncclUniqueId;

typedef enum { ncclSuccess = 0,
               ncclUnhandledCudaError = 1,
               ncclSystemError = 2,
               ncclInternalError = 3,
               ncclInvalidArgument = 4,
               ncclInvalidUsage = 5,
               ncclRemoteError = 6,
               ncclInProgress = 7,
               ncclNumResults = 8 } ncclResult_t;

typedef enum { ncclSum = 0, ncclProd = 1, ncclMax = 2, ncclMin = 3,
               ncclAvg = 4 } ncclRedOp_t;

typedef enum { ncclInt8 = 0, ncclChar = 0, ncclUint8 = 1, ncclInt32 = 2,
               ncclInt = 2, ncclUint32 = 3, ncclInt64 = 4, ncclUint64 = 5,
               ncclFloat16 = 6, ncclHalf = 6, ncclFloat32 = 7,
               ncclFloat = 7, ncclFloat64 = 8, ncclDouble = 8,
               ncclBfloat16 = 9 } ncclDataType_t;

ncclResult_t ncclGetUniqueId(ncclUniqueId *uniqueId);
ncclResult_t ncclCommInitRank(ncclComm_t *comm, int nranks,
                              ncclUniqueId commId, int rank);
ncclResult_t ncclCommDestroy(ncclComm_t comm);
ncclResult_t ncclCommAbort(ncclComm_t comm);
ncclResult_t ncclCommGetAsyncError(ncclComm_t comm, ncclResult_t *asyncError);
ncclResult_t ncclAllReduce(const void *sendbuff, void *recvbuff, size_t count,
                           ncclDataType_t datatype, ncclRedOp_t op,
                           ncclComm_t comm, cudaStream_t stream);
const char *ncclGetErrorString(ncclResult_t result);
const char *ncclGetLastError(ncclComm_t comm);

} // extern "C"

#endif
