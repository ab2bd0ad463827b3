// tests/emu/cuemu_nccl.cpp — cuemu's NCCL: the calls of tests/emu/nccl.h
// over MPI between processes, one process per rank.
//
// defines: the NCCL calls declared in tests/emu/nccl.h
//
// A communicator is an MPI_Comm_dup of MPI_COMM_WORLD. ncclAllReduce
// queues an OP_HOST on the stream (tests/emu/cuemu_internal.h), so it runs
// in stream order, after the events the stream waits on, and only when the
// host forces the stream, like every cuemu op: a reduction not ordered
// after the kernel that wrote its buffer reads the stale bytes. When the
// stream reaches it, it copies sendbuff into a host staging buffer and
// starts MPI_Iallreduce there; each later forcing tests it, and the stream
// stays stopped until it is done, when the sum is copied into recvbuff.
// MPI touches only the staging buffer, so MPI progress made inside other
// MPI calls never writes device memory behind cuemu's back. Staging buffers
// are reused: after the first reductions of each size nothing is allocated.
//
// ncclCommAbort marks the communicator aborted: queued reductions then
// finish at once, recvbuff untouched. A reduction already started stays
// pending inside MPI (a nonblocking collective cannot be cancelled); that
// communicator and its buffers are then kept, never freed.
#include "cuemu_internal.h"
#include "nccl.h"

#include <limits.h>
#include <mpi.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum { MAX_STAGE = 256 };

struct stage {
    float *p;
    size_t cap; // floats
    int busy;
};

struct ncclComm {
    MPI_Comm mpi;
    int rank, nranks;
    // all below: cuemu_lock
    int aborted;        // ncclCommAbort was called
    int queued;         // reductions queued and not finished
    int orphans;        // started when aborted: still pending inside MPI
    ncclResult_t async; // the first failure of a queued reduction
    stage pool[MAX_STAGE];
};

namespace {

const char kMagic[16] = "cuemu-nccl-id:1";
char g_last_error[320]; // cuemu_lock (or the calling thread before queueing)

ncclResult_t say(ncclResult_t r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
ncclResult_t say(ncclResult_t r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_last_error, sizeof g_last_error, fmt, ap);
    va_end(ap);
    return r;
}

const char *mpi_msg(int rc)
{
    static char s[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(rc, s, &len) != MPI_SUCCESS) snprintf(s, sizeof s, "MPI error %d", rc);
    return s;
}

// The reduction's state, in its op's args.
struct reduction {
    ncclComm *c;
    const float *send;
    float *recv;
    size_t n;
    int started;
    int slot;
    MPI_Request req;
};
static_assert(sizeof(reduction) <= CUEMU_ARG_BYTES, "cuemu: args too small");

// A free staging buffer of at least n floats: a fitting one, else an
// unused slot, else a free smaller one grown.
int stage_take(ncclComm *c, size_t n)
{
    int unused = -1, small = -1;
    for (int i = 0; i < MAX_STAGE; i++) {
        stage *s = &c->pool[i];
        if (s->busy) continue;
        if (s->p && s->cap >= n) {
            s->busy = 1;
            return i;
        }
        if (s->p == nullptr && unused < 0) unused = i;
        if (s->p != nullptr && small < 0) small = i;
    }
    int i = unused >= 0 ? unused : small;
    if (i < 0) cuemu_fatal("nccl: more than %d reductions in flight", MAX_STAGE);
    stage *s = &c->pool[i];
    free(s->p);
    s->p = (float *)malloc(n * sizeof(float));
    if (s->p == nullptr) cuemu_fatal("nccl: out of memory for a %zu-float staging buffer", n);
    s->cap = n;
    s->busy = 1;
    return i;
}

// A failed reduction: recorded for ncclCommGetAsyncError; the stream goes on.
int reduction_fail(reduction *r, int rc, const char *what)
{
    if (r->c->async == ncclSuccess) {
        r->c->async = ncclSystemError;
        say(ncclSystemError, "cuemu nccl: %s: %s", what, mpi_msg(rc));
    }
    if (r->slot >= 0) r->c->pool[r->slot].busy = 0;
    r->c->queued--;
    return 1;
}

// OP_HOST's poll, under cuemu_lock with device memory readable.
int reduction_poll(void *state)
{
    reduction *r = (reduction *)state;
    ncclComm *c = r->c;
    if (c->aborted || c->async != ncclSuccess) {
        if (r->started) c->orphans++;
        c->queued--;
        return 1;
    }
    if (!r->started) {
        r->slot = stage_take(c, r->n);
        float *buf = c->pool[r->slot].p;
        memcpy(buf, r->send, r->n * sizeof(float));
        int rc = MPI_Iallreduce(MPI_IN_PLACE, buf, (int)r->n, MPI_FLOAT,
                                MPI_SUM, c->mpi, &r->req);
        if (rc != MPI_SUCCESS) return reduction_fail(r, rc, "MPI_Iallreduce");
        r->started = 1;
    }
    int done = 0;
    int rc = MPI_Test(&r->req, &done, MPI_STATUS_IGNORE);
    if (rc != MPI_SUCCESS) return reduction_fail(r, rc, "MPI_Test");
    if (!done) return 0;
    memcpy(r->recv, c->pool[r->slot].p, r->n * sizeof(float));
    c->pool[r->slot].busy = 0;
    c->queued--;
    return 1;
}

void comm_free(ncclComm *c)
{
    for (int i = 0; i < MAX_STAGE; i++) free(c->pool[i].p);
    free(c);
}

struct lock_guard {
    lock_guard() { cuemu_lock(); }
    ~lock_guard() { cuemu_unlock(); }
};

} // namespace

extern "C" {

const char *ncclGetErrorString(ncclResult_t r)
{
    switch (r) {
    case ncclSuccess: return "no error";
    case ncclUnhandledCudaError: return "unhandled cuda error (run with NCCL_DEBUG=INFO for details)";
    case ncclSystemError: return "unhandled system error (run with NCCL_DEBUG=INFO for details)";
    case ncclInternalError: return "internal error - please report this issue to the NCCL developers";
    case ncclInvalidArgument: return "invalid argument (run with NCCL_DEBUG=WARN for details)";
    case ncclInvalidUsage: return "invalid usage (run with NCCL_DEBUG=WARN for details)";
    case ncclRemoteError: return "remote process exited or there was a network error";
    case ncclInProgress: return "NCCL operation in progress";
    case ncclNumResults: break;
    }
    return "unknown result code";
}

const char *ncclGetLastError(ncclComm_t comm)
{
    (void)comm; // as in NCCL: the last error of the process
    return g_last_error;
}

ncclResult_t ncclGetUniqueId(ncclUniqueId *id)
{
    if (id == nullptr) return say(ncclInvalidArgument, "ncclGetUniqueId: id is NULL");
    static unsigned counter;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    memset(id, 0, sizeof *id);
    memcpy(id->internal, kMagic, sizeof kMagic);
    long long tag[4] = {(long long)getpid(), (long long)ts.tv_sec,
                        (long long)ts.tv_nsec, (long long)++counter};
    memcpy(id->internal + sizeof kMagic, tag, sizeof tag);
    return ncclSuccess;
}

// Collective over MPI_COMM_WORLD: every rank learns whether all agree.
ncclResult_t ncclCommInitRank(ncclComm_t *comm, int nranks, ncclUniqueId id,
                              int rank)
{
    int inited = 0, size = 0, me = 0, rc;
    if (comm == nullptr) return say(ncclInvalidArgument, "ncclCommInitRank: comm is NULL");
    *comm = nullptr;
    if (MPI_Initialized(&inited) != MPI_SUCCESS || !inited)
        return say(ncclInvalidUsage, "cuemu nccl: MPI is not initialized "
                   "(the emulated NCCL runs over MPI)");
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    MPI_Comm_rank(MPI_COMM_WORLD, &me);
    ncclUniqueId root = id;
    rc = MPI_Bcast(&root, (int)sizeof root, MPI_BYTE, 0, MPI_COMM_WORLD);
    if (rc != MPI_SUCCESS)
        return say(ncclSystemError, "cuemu nccl: MPI_Bcast: %s", mpi_msg(rc));
    int ok = 1;
    if (memcmp(id.internal, kMagic, sizeof kMagic) != 0)
        ok = 0, say(ncclInvalidArgument, "cuemu nccl: not an id from ncclGetUniqueId");
    else if (memcmp(&root, &id, sizeof id) != 0)
        ok = 0, say(ncclInvalidArgument, "cuemu nccl: rank %d's id differs from rank 0's", me);
    else if (nranks != size || rank != me)
        ok = 0, say(ncclInvalidArgument, "cuemu nccl: nranks %d rank %d, but MPI "
                    "has %d ranks and this is %d", nranks, rank, size, me);
    int all = 0;
    rc = MPI_Allreduce(&ok, &all, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    if (rc != MPI_SUCCESS)
        return say(ncclSystemError, "cuemu nccl: MPI_Allreduce: %s", mpi_msg(rc));
    if (!ok) return ncclInvalidArgument;
    if (!all) return say(ncclInvalidArgument, "cuemu nccl: another rank's id or rank is wrong");
    ncclComm *c = (ncclComm *)calloc(1, sizeof *c);
    if (c == nullptr) return say(ncclSystemError, "cuemu nccl: out of memory");
    rc = MPI_Comm_dup(MPI_COMM_WORLD, &c->mpi);
    if (rc != MPI_SUCCESS) {
        free(c);
        return say(ncclSystemError, "cuemu nccl: MPI_Comm_dup: %s", mpi_msg(rc));
    }
    c->rank = rank;
    c->nranks = nranks;
    *comm = c;
    return ncclSuccess;
}

ncclResult_t ncclCommDestroy(ncclComm_t c)
{
    if (c == nullptr) return ncclSuccess;
    {
        lock_guard g;
        if (c->queued > 0)
            return say(ncclInvalidUsage, "cuemu nccl: ncclCommDestroy with %d "
                       "reductions unfinished (synchronize their streams, or "
                       "ncclCommAbort)", c->queued);
    }
    int rc = MPI_Comm_free(&c->mpi);
    comm_free(c);
    if (rc != MPI_SUCCESS)
        return say(ncclSystemError, "cuemu nccl: MPI_Comm_free: %s", mpi_msg(rc));
    return ncclSuccess;
}

ncclResult_t ncclCommAbort(ncclComm_t c)
{
    if (c == nullptr) return ncclSuccess;
    int keep;
    {
        lock_guard g;
        c->aborted = 1;
        keep = c->queued > 0 || c->orphans > 0; // still referenced: kept
    }
    if (!keep) {
        MPI_Comm_free(&c->mpi);
        comm_free(c);
    }
    return ncclSuccess;
}

ncclResult_t ncclCommGetAsyncError(ncclComm_t c, ncclResult_t *async)
{
    if (c == nullptr || async == nullptr)
        return say(ncclInvalidArgument, "ncclCommGetAsyncError: NULL argument");
    lock_guard g;
    *async = c->async;
    return ncclSuccess;
}

ncclResult_t ncclAllReduce(const void *sendbuff, void *recvbuff, size_t count,
                           ncclDataType_t datatype, ncclRedOp_t op,
                           ncclComm_t c, cudaStream_t stream)
{
    if (c == nullptr) return say(ncclInvalidArgument, "ncclAllReduce: comm is NULL");
    if (datatype != ncclFloat || op != ncclSum)
        return say(ncclInvalidArgument, "cuemu nccl: ncclAllReduce supports "
                   "ncclFloat and ncclSum only (got type %d op %d)",
                   (int)datatype, (int)op);
    if (count > (size_t)INT_MAX)
        return say(ncclInvalidArgument, "cuemu nccl: %zu floats: over MPI's int count", count);
    if (count == 0) return ncclSuccess;
    lock_guard g;
    if (c->aborted) return say(ncclInvalidUsage, "cuemu nccl: communicator aborted");
    size_t bytes = count * sizeof(float);
    if (cuemu_range_kind(sendbuff, bytes) != CUEMU_DEVICE ||
        cuemu_range_kind(recvbuff, bytes) != CUEMU_DEVICE)
        return say(ncclInvalidArgument, "cuemu nccl: ncclAllReduce of %zu "
                   "floats: sendbuff %p or recvbuff %p is not inside one "
                   "device block", count, sendbuff, recvbuff);
    cuemu_op *o = cuemu_op_push(stream, OP_HOST);
    if (o == nullptr) return say(ncclInvalidArgument, "cuemu nccl: invalid stream");
    reduction r = {c, (const float *)sendbuff, (float *)recvbuff, count, 0, -1,
                   MPI_REQUEST_NULL};
    memcpy(o->args, &r, sizeof r);
    o->host_poll = reduction_poll;
    c->queued++;
    return ncclSuccess;
}

} // extern "C"
