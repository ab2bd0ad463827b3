// gpu/comm_nccl.cu — the NCCL half of the gradient all-reduce
// (gpu/comm_nccl.h): a communicator, a communication stream, and events
// ordering it against the CUDA backend's compute stream.
//
// defines: the gpu__nccl_* functions of gpu/comm_nccl.h
//
// Ordering, per reduction i (slot i of the preallocated events):
//   compute: ... work writing buf ... [record start[i]]
//   comm:    [wait start[i]] [ncclAllReduce(buf)] [record done[i]]
// and a join queues [wait done[last]] on compute, so the compute stream
// reads the sums without the host waiting. The comm stream is one FIFO, so
// the latest done event covers every earlier reduction. Under cuemu
// (make EMU=1) the same code runs against tests/emu/nccl.h, NCCL over MPI.
#include "gpu/comm_nccl.h"
#include "gpu/cuda_util.cuh"

#include <nccl.h>

#include <stdlib.h>
#include <string.h>
#include <time.h>

namespace {

struct nccl_impl {
    ncclComm_t comm;       // NULL once aborted
    int rank, world;
    cudaStream_t compute;  // the device's, not owned
    cudaStream_t stream;   // ours: the reductions run here
    size_t max_inflight;
    size_t inflight;       // reductions since the last join or wait
    cudaEvent_t *start;    // (max_inflight) recorded on compute
    cudaEvent_t *done;     // (max_inflight) recorded on stream
    cudaEvent_t last;      // the latest done event; NULL before the first
    int broken;            // aborted after a timeout or an async error
};

int nccl_fail(st_error *err, ncclResult_t r, const char *expr,
              const char *file, int line)
{
    const char *last = ncclGetLastError(nullptr);
    int have = last != nullptr && last[0] != '\0';
    return st_seterr(err, ST_EDEVICE, "%s:%d: %s: %s%s%s%s", file, line,
                     expr, ncclGetErrorString(r), have ? " (" : "",
                     have ? last : "", have ? ")" : "");
}

#define NCCL_TRY(err, expr)                                                  \
    do {                                                                     \
        ncclResult_t nc__r = (expr);                                         \
        if (nc__r != ncclSuccess)                                            \
            return nccl_fail((err), nc__r, #expr, __FILE__, __LINE__);       \
    } while (0)

double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int usable(const nccl_impl *c, st_error *err)
{
    if (c == nullptr) return st_seterr(err, ST_EINVAL, "nccl: no communicator");
    if (c->broken)
        return st_seterr(err, ST_EDEVICE, "nccl: rank %d's communicator was "
                         "aborted after a failed all-reduce", c->rank);
    return 0;
}

// After a timeout or an async error: the comm cannot be trusted again.
void abort_comm(nccl_impl *c)
{
    if (c->comm) ncclCommAbort(c->comm); // the failure being reported wins
    c->comm = nullptr;
    c->broken = 1;
}

int init(nccl_impl *c, gpu_device *d, const void *id, size_t max_inflight,
         st_error *err)
{
    void *dev = gpu__device_impl(d);
    c->compute = gpu__cuda_stream(dev, GPU_Q_COMPUTE);
    c->max_inflight = max_inflight;
    c->start = (cudaEvent_t *)calloc(max_inflight, sizeof *c->start);
    c->done = (cudaEvent_t *)calloc(max_inflight, sizeof *c->done);
    if (c->start == nullptr || c->done == nullptr)
        return st_seterr(err, ST_ENOMEM, "nccl: %zu events", 2 * max_inflight);
    CUDA_TRY(err, cudaSetDevice(gpu__cuda_ordinal(dev)));
    CUDA_TRY(err, cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking));
    for (size_t i = 0; i < max_inflight; i++) {
        CUDA_TRY(err, cudaEventCreateWithFlags(&c->start[i], cudaEventDisableTiming));
        CUDA_TRY(err, cudaEventCreateWithFlags(&c->done[i], cudaEventDisableTiming));
    }
    ncclUniqueId uid;
    memcpy(&uid, id, sizeof uid);
    NCCL_TRY(err, ncclCommInitRank(&c->comm, c->world, uid, c->rank));
    return 0;
}

} // namespace

extern "C" size_t gpu__nccl_id_bytes(void) { return sizeof(ncclUniqueId); }

extern "C" int gpu__nccl_make_id(void *id, st_error *err)
{
    if (id == nullptr) return st_seterr(err, ST_EINVAL, "nccl: id buffer is NULL");
    NCCL_TRY(err, ncclGetUniqueId((ncclUniqueId *)id));
    return 0;
}

extern "C" int gpu__nccl_create(gpu_device *d, const void *id, int rank,
                                int world, size_t max_inflight, void **impl,
                                st_error *err)
{
    *impl = nullptr;
    if (d == nullptr || gpu_device_kind(d) != GPU_KIND_CUDA)
        return st_seterr(err, ST_EINVAL, "nccl: the device is not a CUDA device");
    if (id == nullptr || world < 1 || rank < 0 || rank >= world || max_inflight < 1)
        return st_seterr(err, ST_EINVAL, "nccl: rank %d of world %d, "
                         "max_inflight %zu: out of range", rank, world,
                         max_inflight);
    nccl_impl *c = (nccl_impl *)calloc(1, sizeof *c);
    if (c == nullptr) return st_seterr(err, ST_ENOMEM, "nccl: out of memory");
    c->rank = rank;
    c->world = world;
    int rc = init(c, d, id, max_inflight, err);
    if (rc < 0) {
        gpu__nccl_destroy(c);
        return rc;
    }
    *impl = c;
    return 0;
}

extern "C" int gpu__nccl_allreduce(void *impl, float *buf, size_t n,
                                   st_error *err)
{
    nccl_impl *c = (nccl_impl *)impl;
    ST_TRY(usable(c, err));
    if (n == 0) return 0;
    if (c->inflight >= c->max_inflight)
        return st_seterr(err, ST_EINVAL, "nccl: more than %zu all-reduces "
                         "between two joins or waits", c->max_inflight);
    cudaEvent_t start = c->start[c->inflight], done = c->done[c->inflight];
    CUDA_TRY(err, cudaEventRecord(start, c->compute));
    CUDA_TRY(err, cudaStreamWaitEvent(c->stream, start, 0));
    NCCL_TRY(err, ncclAllReduce(buf, buf, n, ncclFloat, ncclSum, c->comm,
                                c->stream));
    CUDA_TRY(err, cudaEventRecord(done, c->stream));
    c->last = done;
    c->inflight++;
    return 0;
}

extern "C" int gpu__nccl_join(void *impl, st_error *err)
{
    nccl_impl *c = (nccl_impl *)impl;
    ST_TRY(usable(c, err));
    if (c->last) CUDA_TRY(err, cudaStreamWaitEvent(c->compute, c->last, 0));
    // the compute stream is now ordered after every record so far: the
    // events may be recorded again
    c->inflight = 0;
    return 0;
}

extern "C" int gpu__nccl_wait(void *impl, double timeout_s, st_error *err)
{
    nccl_impl *c = (nccl_impl *)impl;
    ST_TRY(usable(c, err));
    if (!(timeout_s >= 0))
        return st_seterr(err, ST_EINVAL, "nccl: timeout %g s", timeout_s);
    if (c->last == nullptr) return 0;
    double t0 = now_s();
    for (;;) {
        cudaError_t e = cudaEventQuery(c->last);
        if (e == cudaSuccess) break;
        if (e != cudaErrorNotReady)
            return st_seterr(err, ST_EDEVICE, "%s:%d: cudaEventQuery: %s",
                             __FILE__, __LINE__, cudaGetErrorString(e));
        // "not ready" is an answer: keep it out of LAUNCH_TRY's slot
        if (cudaPeekAtLastError() == cudaErrorNotReady) cudaGetLastError();
        ncclResult_t async = ncclSuccess;
        NCCL_TRY(err, ncclCommGetAsyncError(c->comm, &async));
        if (async != ncclSuccess && async != ncclInProgress) {
            int rc = nccl_fail(err, async, "ncclCommGetAsyncError", __FILE__,
                               __LINE__);
            abort_comm(c);
            return rc;
        }
        if (timeout_s > 0 && now_s() - t0 >= timeout_s) {
            abort_comm(c);
            return st_seterr(err, ST_ETIMEDOUT, "all-reduce did not finish "
                             "within %g s (rank %d of %d; NCCL communicator "
                             "aborted)", timeout_s, c->rank, c->world);
        }
        struct timespec ts = {0, 50000}; // 50 us
        nanosleep(&ts, nullptr);
    }
    c->inflight = 0;
    return 0;
}

extern "C" void gpu__nccl_destroy(void *impl)
{
    nccl_impl *c = (nccl_impl *)impl;
    if (c == nullptr) return;
    if (c->comm) {
        cudaError_t e = c->last ? cudaEventQuery(c->last) : cudaSuccess;
        if (e == cudaErrorNotReady && cudaPeekAtLastError() == cudaErrorNotReady)
            cudaGetLastError();
        if (e == cudaSuccess) ncclCommDestroy(c->comm);
        else ncclCommAbort(c->comm); // pending: peers may be gone
    }
    if (c->stream) {
        cudaStreamSynchronize(c->stream);
        cudaStreamDestroy(c->stream);
    }
    for (size_t i = 0; c->start && i < c->max_inflight; i++)
        if (c->start[i]) cudaEventDestroy(c->start[i]);
    for (size_t i = 0; c->done && i < c->max_inflight; i++)
        if (c->done[i]) cudaEventDestroy(c->done[i]);
    free(c->start);
    free(c->done);
    free(c);
}
