/* train/dist.h — the job: this process's identity among the ranks of a
 * data-parallel run, and the host-side collectives the run needs (the
 * start-up agreement check, the stop flag, summed statistics).
 *
 * defines: dist_job, dist_op, dist_type, dist_field, dist_init,
 *          dist_finalize, dist_abort, dist_allreduce, dist_check_fields,
 *          dist_roll_call, dist_fail_together, dist_hash, DIST_FIELD_TEXT,
 *          DIST_ROLL_TAG, DIST_FAIL_TAG
 *
 * Launch: under mpirun (the environment holds OMPI_COMM_WORLD_SIZE,
 * PMIX_RANK or PMI_SIZE) dist_init calls MPI_Init_thread (FUNNELED: only
 * the main thread calls MPI), sets MPI_ERRORS_RETURN so that errors come
 * back as codes (reported with file:line and MPI_Error_string's text),
 * and finds rank, world, and the local rank and count among the ranks on
 * this host (MPI_Comm_split_type, MPI_COMM_TYPE_SHARED). Without mpirun,
 * or built with MPI=0, the job is one rank and no MPI call is made.
 *
 * Collectives never hang: each is started nonblocking and polled until
 * job->timeout_s (--dist-timeout), after which it fails with ST_ETIMEDOUT
 * naming the collective; the caller then aborts the job (dist_abort).
 * Every rank must call the same collectives in the same order. With one
 * rank every collective is a copy-free no-op.
 */
#ifndef ST_TRAIN_DIST_H
#define ST_TRAIN_DIST_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "datasets/error.h"

typedef struct dist_job {
    int rank, world;             /* 0 <= rank < world */
    int local_rank, local_world; /* among the ranks on this host */
    int mpi;                     /* 1: MPI was initialized by dist_init */
    double timeout_s;            /* deadline of each collective (60) */
    double *gather;              /* (DIST_SUM_MAX * world) fixed-order sums'
                                    scratch, made by dist_init */
} dist_job;

/* Most doubles one fixed-order DIST_SUM takes. */
#define DIST_SUM_MAX 64

typedef enum dist_op { DIST_SUM = 0, DIST_MIN = 1, DIST_MAX = 2 } dist_op;
typedef enum dist_type {
    DIST_F64 = 0, DIST_F32 = 1, DIST_U64 = 2, DIST_I64 = 3,
} dist_type;

/* Room for one field's value as text. */
#define DIST_FIELD_TEXT 200

/* One configuration field every rank must agree on: its name as the
 * user wrote it ("--batch") and its value as text ("128"). */
typedef struct dist_field {
    const char *name;
    char value[DIST_FIELD_TEXT];
} dist_field;

/* Finds the job (see above); job->timeout_s is set to 60.
 * @return 0, or ST_EIO (an MPI call failed: its message), ST_EINVAL
 *         (launched by mpirun, but built with MPI=0). */
int dist_init(dist_job *job, int *argc, char ***argv, st_error *err);

/* MPI_Finalize when dist_init initialized MPI. */
void dist_finalize(dist_job *job);

/* Ends the whole job now with exit status code: MPI_Abort under MPI (the
 * other ranks are killed by mpirun), else exit. */
void dist_abort(const dist_job *job, int code);

/* In place: buf[0..n) = op over the ranks. DIST_SUM of DIST_F64 adds in
 * rank order (a gather and a fixed-order sum; n <= DIST_SUM_MAX), so the
 * result does not depend on the MPI algorithm or the world's shape.
 * @return 0, ST_ETIMEDOUT ("<what>: ... did not finish within N s"),
 *         ST_EIO (MPI's message). */
int dist_allreduce(const dist_job *job, void *buf, int n, dist_type type,
                   dist_op op, const char *what, st_error *err);

/* Checks that every rank has the same value for each of the n fields (a
 * MIN and MAX all-reduce of their hashes); on a mismatch the first such
 * field is named with rank 0's value and the first differing rank's:
 * "rank 1 has --batch 64, rank 0 has 128". Every rank returns the same
 * result. @return 0, ST_EINVAL (mismatch), or a collective's error. */
int dist_check_fields(const dist_job *job, const dist_field *f, int n,
                      st_error *err);

/* After a collective timed out on this rank, before the job is aborted:
 * a roll call, so that one line can name the rank that hangs (a timeout
 * alone only says that some rank did not come). Every rank but 0 reports
 * to rank 0 (one int, tag DIST_ROLL_TAG) and then waits grace_s + 2 s for
 * rank 0 to end the job; rank 0 collects the reports for up to grace_s
 * and writes what it found into out: "no word from rank 1: it is stopped,
 * stuck or gone", or, when every rank reported, that none of them hangs
 * (they wait in another collective, or rank 0 was stopped itself). @return 1 on rank 0 (out filled), 0 elsewhere
 * (on a rank but 0, when rank 0 did not end the job in time: rank 0 may
 * be the rank that hangs), and 0 with one rank or without MPI. */
int dist_roll_call(const dist_job *job, double grace_s, char *out,
                   size_t len);
#define DIST_ROLL_TAG 0x5354

/* A rank failed with msg (anything but a timeout), before the job is
 * aborted: so that an error every rank hits (a bad flag, a pack missing
 * on every host) prints once. A rank but 0 sends msg to rank 0 (tag
 * DIST_FAIL_TAG) and waits wait_s + 2 s for rank 0 to end the job; rank 0
 * collects the others' messages for up to wait_s (less once every rank
 * has sent one), writes each that differs from its own to f as its own
 * line ("streamtrain: rank 2: ..."), and writes into same the ranks whose
 * message is its own: " (the same on every rank)", " (the same on ranks
 * 1, 3)" or "". @return 1 on rank 0 (same filled), else 0: a rank but 0
 * prints its own line (rank 0 did not fail, or not in time). */
int dist_fail_together(const dist_job *job, const char *msg, double wait_s,
                       FILE *f, char *same, size_t len);
#define DIST_FAIL_TAG 0x5355

/* A 64-bit hash of n bytes (for fields too large to send as text, e.g.
 * the initial weights). */
uint64_t dist_hash(const void *p, size_t n);

#endif
