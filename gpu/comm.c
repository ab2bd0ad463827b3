/* gpu/comm.c — the gradient all-reduce (contract in gpu/comm.h): on the
 * CPU backends MPI_Iallreduce in place on a duplicate of MPI_COMM_WORLD,
 * polled against a deadline; on CUDA the NCCL half (gpu/comm_nccl.h),
 * whose unique id this file makes on rank 0 and broadcasts over MPI.
 */
#include "gpu/comm.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "gpu/mpi_util.h"
#ifdef ST_HAVE_NCCL
#include "gpu/comm_nccl.h"
#endif

struct gpu_comm {
    int rank, world;
    size_t max_inflight;
    void *nccl;                /* CUDA: the NCCL half's handle, else NULL */
#ifdef ST_HAVE_MPI
    MPI_Comm comm;             /* CPU: duplicate of MPI_COMM_WORLD */
    MPI_Request *req;          /* (max_inflight) outstanding reductions */
    int have_comm;
#endif
    size_t inflight;           /* requests started since the last wait */
    int broken;                /* a wait timed out: unusable */
};

#ifdef ST_HAVE_MPI
static int cpu_create(gpu_comm *c, st_error *err)
{
    int init = 0;
    MPI_TRY(MPI_Initialized(&init), err);
    if (!init)
        return st_seterr(err, ST_EINVAL, "comm: world %d needs MPI "
                         "initialized first (run under mpirun)", c->world);
    MPI_TRY(MPI_Comm_dup(MPI_COMM_WORLD, &c->comm), err);
    c->have_comm = 1;
    MPI_TRY(MPI_Comm_set_errhandler(c->comm, MPI_ERRORS_RETURN), err);
    c->req = malloc(c->max_inflight * sizeof *c->req);
    if (c->req == NULL)
        return st_seterr(err, ST_ENOMEM, "comm: %zu requests",
                         c->max_inflight);
    for (size_t i = 0; i < c->max_inflight; i++) c->req[i] = MPI_REQUEST_NULL;
    return 0;
}

#ifdef ST_HAVE_NCCL
/* The NCCL id: made on rank 0, broadcast to the others over MPI. */
static int nccl_create(gpu_comm *c, gpu_device *d, st_error *err)
{
    size_t nb = gpu__nccl_id_bytes();
    unsigned char *id = calloc(1, nb);
    if (id == NULL) return st_seterr(err, ST_ENOMEM, "comm: NCCL id");
    int rc = c->rank == 0 ? gpu__nccl_make_id(id, err) : 0;
    if (rc == 0) {
        int mrc = MPI_Bcast(id, (int)nb, MPI_BYTE, 0, MPI_COMM_WORLD);
        if (mrc != MPI_SUCCESS)
            rc = st_mpi_fail(err, mrc, "MPI_Bcast(nccl id)", __FILE__,
                             __LINE__);
    }
    if (rc == 0)
        rc = gpu__nccl_create(d, id, c->rank, c->world, c->max_inflight,
                              &c->nccl, err);
    free(id);
    return rc;
}
#endif
#endif /* ST_HAVE_MPI */

int gpu_comm_create(gpu_device *d, int rank, int world, size_t max_inflight,
                    gpu_comm **out, st_error *err)
{
    *out = NULL;
    if (world < 1 || rank < 0 || rank >= world || max_inflight < 1)
        return st_seterr(err, ST_EINVAL, "comm: rank %d of %d, %zu in "
                         "flight", rank, world, max_inflight);
    gpu_comm *c = calloc(1, sizeof *c);
    if (c == NULL) return st_seterr(err, ST_ENOMEM, "comm: out of memory");
    c->rank = rank;
    c->world = world;
    c->max_inflight = max_inflight;
    int rc = 0;
    if (world > 1) {
#ifndef ST_HAVE_MPI
        (void)d;
        rc = st_seterr(err, ST_EINVAL, "comm: world %d, but streamtrain was "
                       "built without MPI (make MPI=0)", world);
#else
        if (gpu_device_kind(d) == GPU_KIND_CUDA) {
#ifdef ST_HAVE_NCCL
            rc = nccl_create(c, d, err);
#else
            rc = st_seterr(err, ST_EINVAL, "comm: the CUDA backend with %d "
                           "ranks needs NCCL, and this build has none",
                           world);
#endif
        } else {
            rc = cpu_create(c, err);
        }
#endif
    }
    if (rc < 0) {
        gpu_comm_destroy(c);
        return rc;
    }
    *out = c;
    return 0;
}

void gpu_comm_destroy(gpu_comm *c)
{
    if (c == NULL) return;
#ifdef ST_HAVE_NCCL
    if (c->nccl) gpu__nccl_destroy(c->nccl);
#endif
#ifdef ST_HAVE_MPI
    if (c->req) {
        /* a broken comm's requests may never finish: leave them */
        if (!c->broken && c->inflight)
            MPI_Waitall((int)c->inflight, c->req, MPI_STATUSES_IGNORE);
        free(c->req);
    }
    int fin = 1;
    if (c->have_comm && MPI_Finalized(&fin) == MPI_SUCCESS && !fin && !c->broken)
        MPI_Comm_free(&c->comm);
#endif
    free(c);
}

int gpu_comm_allreduce(gpu_comm *c, float *buf, size_t n, st_error *err)
{
    if (c->world == 1 || n == 0) return 0;
    if (c->broken)
        return st_seterr(err, ST_EINTERNAL, "comm: used after a failure");
    if (n > INT_MAX)
        return st_seterr(err, ST_EINVAL, "comm: %zu floats in one "
                         "all-reduce (at most %d)", n, INT_MAX);
#ifdef ST_HAVE_NCCL
    if (c->nccl) return gpu__nccl_allreduce(c->nccl, buf, n, err);
#endif
#ifdef ST_HAVE_MPI
    if (c->inflight >= c->max_inflight)
        return st_seterr(err, ST_EINTERNAL, "comm: more than %zu all-reduces "
                         "in flight", c->max_inflight);
    MPI_TRY(MPI_Iallreduce(MPI_IN_PLACE, buf, (int)n, MPI_FLOAT, MPI_SUM,
                           c->comm, &c->req[c->inflight]), err);
    c->inflight++;
    /* Open MPI progresses nonblocking collectives only inside MPI calls:
     * poke the earlier ones so they move while backward goes on */
    int done = 0;
    MPI_TRY(MPI_Testall((int)c->inflight, c->req, &done,
                        MPI_STATUSES_IGNORE), err);
    return 0;
#else
    (void)buf;
    return st_seterr(err, ST_EINTERNAL, "comm: no MPI in this build");
#endif
}

int gpu_comm_join(gpu_comm *c, st_error *err)
{
    if (c->world == 1) return 0;
#ifdef ST_HAVE_NCCL
    if (c->nccl) return gpu__nccl_join(c->nccl, err);
#endif
    return gpu_comm_wait(c, 0, err);
}

int gpu_comm_wait(gpu_comm *c, double timeout_s, st_error *err)
{
    if (c->world == 1) return 0;
#ifdef ST_HAVE_NCCL
    if (c->nccl) {
        int rc = gpu__nccl_wait(c->nccl, timeout_s, err);
        if (rc == ST_ETIMEDOUT) c->broken = 1;
        return rc;
    }
#endif
#ifdef ST_HAVE_MPI
    /* timeout 0 (join): the deadline the job was given at create is not
     * known here; wait without one only when asked to */
    if (c->inflight) {
        int rc = st_mpi_poll(c->req, (int)c->inflight, timeout_s, err);
        if (rc < 0) return rc;
        if (rc == 0) {
            c->broken = 1;
            return st_seterr(err, ST_ETIMEDOUT, "all-reduce did not finish "
                             "within %g s", timeout_s);
        }
    }
    c->inflight = 0;
    return 0;
#else
    (void)timeout_s, (void)err;
    return 0;
#endif
}
