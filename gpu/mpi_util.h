/* gpu/mpi_util.h — internal: checked MPI calls and a polled wait, shared
 * by gpu/comm.c (the gradient all-reduce) and train/dist.c (the job's
 * host collectives). ST_HAVE_MPI builds only.
 *
 * defines: st_mpi_fail, MPI_TRY, st_mpi_poll, st_mpi_now_s
 *
 * Contract:
 * - st_mpi_fail records "file:line: call: MPI's own message" in err and
 *   returns ST_EIO; MPI_TRY returns it from the calling function.
 * - st_mpi_poll tests the n requests until all are done (1) or timeout_s
 *   seconds have passed (0; timeout_s <= 0: no deadline), or an MPI call
 *   failed (negative, err filled). It polls without sleeping, since Open
 *   MPI moves a large sum one fragment per progress call (a sleep per
 *   poll made a 2 MB sum take 20 ms), and yields the core every 64 polls
 *   so that an oversubscribed core can run the other rank.
 */
#ifndef ST_GPU_MPI_UTIL_H
#define ST_GPU_MPI_UTIL_H

#ifdef ST_HAVE_MPI
#include <mpi.h>

#include "datasets/error.h"

int st_mpi_fail(st_error *err, int rc, const char *what, const char *file,
                int line);

#define MPI_TRY(call, err)                                                   \
    do {                                                                     \
        int mpi_rc_ = (call);                                                \
        if (mpi_rc_ != MPI_SUCCESS)                                          \
            return st_mpi_fail(err, mpi_rc_, #call, __FILE__, __LINE__);     \
    } while (0)

int st_mpi_poll(MPI_Request *req, int n, double timeout_s, st_error *err);
/* Seconds on CLOCK_MONOTONIC: the clock st_mpi_poll's deadlines use. */
double st_mpi_now_s(void);
#endif

#endif
