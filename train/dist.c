/* train/dist.c — the job's identity and host-side collectives (contract in
 * train/dist.h): MPI under mpirun, nothing at all without it.
 */
#include "train/dist.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <xxhash.h>

#include "gpu/mpi_util.h"

uint64_t dist_hash(const void *p, size_t n)
{
    return (uint64_t)XXH64(p, n, 0x5354524e ^ n);
}

/* Was this process started by mpirun (or another PMI launcher)? */
static int launched_by_mpi(void)
{
    static const char *vars[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK",
                                 "PMI_SIZE", "PMI_RANK"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        if (getenv(vars[i]) != NULL) return 1;
    return 0;
}

#ifdef ST_HAVE_MPI
/* Polls a started collective until it completes or the deadline passes. */
static int wait_req(const dist_job *job, MPI_Request *req, const char *what,
                    st_error *err)
{
    int rc = st_mpi_poll(req, 1, job->timeout_s, err);
    if (rc < 0) return rc;
    if (rc == 0)
        return st_seterr(err, ST_ETIMEDOUT, "%s: the collective did not "
                         "finish within %g s (--dist-timeout): another "
                         "rank died or hangs", what, job->timeout_s);
    return 0;
}

static int find_job(dist_job *job, st_error *err)
{
    MPI_TRY(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN), err);
    MPI_TRY(MPI_Comm_rank(MPI_COMM_WORLD, &job->rank), err);
    MPI_TRY(MPI_Comm_size(MPI_COMM_WORLD, &job->world), err);
    MPI_Comm local;
    MPI_TRY(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED,
                                job->rank, MPI_INFO_NULL, &local), err);
    MPI_TRY(MPI_Comm_rank(local, &job->local_rank), err);
    MPI_TRY(MPI_Comm_size(local, &job->local_world), err);
    MPI_TRY(MPI_Comm_free(&local), err);
    job->gather = malloc((size_t)DIST_SUM_MAX * job->world * sizeof(double));
    if (job->gather == NULL)
        return st_seterr(err, ST_ENOMEM, "dist: out of memory");
    return 0;
}
#endif

int dist_init(dist_job *job, int *argc, char ***argv, st_error *err)
{
    memset(job, 0, sizeof *job);
    job->world = job->local_world = 1;
    job->timeout_s = 60;
    if (!launched_by_mpi()) return 0;
#ifdef ST_HAVE_MPI
    int provided = 0;
    /* Open MPI's nonblocking all-reduce (libnbc) picks a binomial
     * reduce-then-broadcast for every in-place sum, half the speed of
     * the blocking one on a 2.1 MB gradient; Rabenseifner's reduce-scatter
     * + all-gather matches it (0.25 against 0.55 ms on the Zen 4 VM), and
     * Open MPI 4.1 takes its ring instead where it does not apply (fewer
     * values than ranks: the stop flag). A user's own choice (mpirun
     * --mca ..., or the variable) wins */
    if (setenv("OMPI_MCA_coll_libnbc_iallreduce_algorithm", "3", 0) != 0)
        return st_seterr(err, ST_EIO, "setenv: %s", strerror(errno));
    MPI_TRY(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided), err);
    job->mpi = 1;
    return find_job(job, err);
#else
    (void)argc, (void)argv;
    const char *w = getenv("OMPI_COMM_WORLD_SIZE");
    if (w && strcmp(w, "1") != 0)
        return st_seterr(err, ST_EINVAL, "launched by mpirun with %s ranks, "
                         "but streamtrain was built without MPI (make "
                         "MPI=0): rebuild with MPI", w);
    return 0;
#endif
}

void dist_finalize(dist_job *job)
{
#ifdef ST_HAVE_MPI
    if (job->mpi) {
        int fin = 0;
        if (MPI_Finalized(&fin) == MPI_SUCCESS && !fin) MPI_Finalize();
        job->mpi = 0;
    }
#endif
    free(job->gather);
    job->gather = NULL;
}

void dist_abort(const dist_job *job, int code)
{
    fflush(stdout);
#ifdef ST_HAVE_MPI
    if (job->mpi) MPI_Abort(MPI_COMM_WORLD, code);
#endif
    (void)job;
    exit(code);
}

#ifdef ST_HAVE_MPI
/* DIST_SUM of doubles in rank order: gather, then add 0, 1, ... w-1. */
static int sum_f64_ordered(const dist_job *job, double *buf, int n,
                           const char *what, st_error *err)
{
    if (n > DIST_SUM_MAX)
        return st_seterr(err, ST_EINTERNAL, "%s: %d doubles in a fixed-order "
                         "sum (at most %d)", what, n, DIST_SUM_MAX);
    MPI_Request req;
    MPI_TRY(MPI_Iallgather(buf, n, MPI_DOUBLE, job->gather, n, MPI_DOUBLE,
                           MPI_COMM_WORLD, &req), err);
    ST_TRY(wait_req(job, &req, what, err));
    for (int i = 0; i < n; i++) {
        double s = 0;
        for (int r = 0; r < job->world; r++) s += job->gather[r * n + i];
        buf[i] = s;
    }
    return 0;
}
#endif

int dist_allreduce(const dist_job *job, void *buf, int n, dist_type type,
                   dist_op op, const char *what, st_error *err)
{
    if (job->world == 1 || n == 0) return 0;
#ifdef ST_HAVE_MPI
    if (type == DIST_F64 && op == DIST_SUM)
        return sum_f64_ordered(job, buf, n, what, err);
    MPI_Datatype t = type == DIST_F64   ? MPI_DOUBLE
                     : type == DIST_F32 ? MPI_FLOAT
                     : type == DIST_U64 ? MPI_UINT64_T
                                        : MPI_INT64_T;
    MPI_Op o = op == DIST_SUM ? MPI_SUM : op == DIST_MIN ? MPI_MIN : MPI_MAX;
    MPI_Request req;
    MPI_TRY(MPI_Iallreduce(MPI_IN_PLACE, buf, n, t, o, MPI_COMM_WORLD, &req),
            err);
    return wait_req(job, &req, what, err);
#else
    (void)buf, (void)type, (void)op, (void)what;
    return st_seterr(err, ST_EINTERNAL, "dist: %d ranks without MPI",
                     job->world);
#endif
}

#ifdef ST_HAVE_MPI
/* Broadcasts root's text of field f (DIST_FIELD_TEXT bytes) into out. */
static int bcast_text(const dist_job *job, const dist_field *f, int root,
                      char *out, st_error *err)
{
    memcpy(out, f->value, DIST_FIELD_TEXT);
    out[DIST_FIELD_TEXT - 1] = '\0';
    MPI_Request req;
    MPI_TRY(MPI_Ibcast(out, DIST_FIELD_TEXT, MPI_CHAR, root, MPI_COMM_WORLD,
                       &req), err);
    return wait_req(job, &req, "configuration check", err);
}

/* Names the mismatch of field f: rank 0's value and the first other. */
static int name_mismatch(const dist_job *job, const dist_field *f,
                         st_error *err)
{
    char v0[DIST_FIELD_TEXT], vr[DIST_FIELD_TEXT];
    ST_TRY(bcast_text(job, f, 0, v0, err));
    int64_t first = strcmp(v0, f->value) != 0 ? job->rank : job->world;
    ST_TRY(dist_allreduce(job, &first, 1, DIST_I64, DIST_MIN,
                          "configuration check", err));
    if (first >= job->world) first = 0; /* a hash collision: unreachable */
    ST_TRY(bcast_text(job, f, (int)first, vr, err));
    return st_seterr(err, ST_EINVAL, "ranks disagree: rank %d has %s %s, "
                     "rank 0 has %s", (int)first, f->name, vr, v0);
}
#endif

int dist_check_fields(const dist_job *job, const dist_field *f, int n,
                      st_error *err)
{
    if (job->world == 1) return 0;
#ifdef ST_HAVE_MPI
    uint64_t *h = malloc(2 * (size_t)n * sizeof *h);
    if (h == NULL) return st_seterr(err, ST_ENOMEM, "dist: out of memory");
    for (int i = 0; i < n; i++)
        h[i] = h[n + i] = dist_hash(f[i].value, strlen(f[i].value));
    int rc = dist_allreduce(job, h, n, DIST_U64, DIST_MIN,
                            "configuration check", err);
    if (rc == 0)
        rc = dist_allreduce(job, h + n, n, DIST_U64, DIST_MAX,
                            "configuration check", err);
    int bad = -1;
    for (int i = 0; rc == 0 && i < n && bad < 0; i++)
        if (h[i] != h[n + i]) bad = i;
    free(h);
    if (rc < 0) return rc;
    return bad < 0 ? 0 : name_mismatch(job, &f[bad], err);
#else
    (void)f, (void)n, (void)err;
    return 0;
#endif
}

#ifdef ST_HAVE_MPI
static void roll_nap(void)
{
    struct timespec ts = {0, 1000000}; /* 1 ms */
    nanosleep(&ts, NULL);
}

/* A rank but 0: sends n bytes to rank 0 with tag, then keeps the send
 * moving until rank 0 ends the job (or does not, within wait_s). */
static void send_and_wait(const void *buf, int n, int tag, double wait_s)
{
    int done = 0;
    MPI_Request req;
    if (MPI_Isend(buf, n, MPI_BYTE, 0, tag, MPI_COMM_WORLD, &req) !=
        MPI_SUCCESS)
        return;
    for (double end = st_mpi_now_s() + wait_s; st_mpi_now_s() < end;) {
        if (!done && MPI_Test(&req, &done, MPI_STATUS_IGNORE) != MPI_SUCCESS)
            return;
        roll_nap();
    }
}

/* Rank 0: the next message with tag before end into buf (room cap; as a
 * string); @return its source, or -1 when none came. */
static int recv_until(int tag, double end, char *buf, int cap)
{
    while (st_mpi_now_s() < end) {
        int flag = 0, n = 0;
        MPI_Status st;
        if (MPI_Iprobe(MPI_ANY_SOURCE, tag, MPI_COMM_WORLD, &flag, &st) !=
            MPI_SUCCESS)
            return -1;
        if (!flag) {
            roll_nap();
            continue;
        }
        if (MPI_Get_count(&st, MPI_BYTE, &n) != MPI_SUCCESS || n > cap ||
            MPI_Recv(buf, n, MPI_BYTE, st.MPI_SOURCE, tag, MPI_COMM_WORLD,
                     MPI_STATUS_IGNORE) != MPI_SUCCESS)
            return -1;
        buf[n > 0 ? n - 1 : 0] = '\0';
        return st.MPI_SOURCE;
    }
    return -1;
}

/* Rank 0: who reports within grace_s; heard[r] = 1 for each. */
static void roll_collect(const dist_job *job, double grace_s, char *heard)
{
    int left = job->world - 1;
    char buf[16];
    heard[0] = 1;
    for (double end = st_mpi_now_s() + grace_s; left > 0;) {
        int src = recv_until(DIST_ROLL_TAG, end, buf, (int)sizeof buf);
        if (src < 0) return;
        if (!heard[src]) heard[src] = 1, left--;
    }
}

/* ", 3" appended to list (room cap) for the shown-th rank r; "..." past 8 */
static void list_rank(char *list, size_t cap, int *shown, int r)
{
    size_t n = strlen(list);
    if (*shown == 8 && n + 6 < cap) strcat(list, ", ...");
    if (*shown < 8 && n < cap)
        snprintf(list + n, cap - n, "%s%d", *shown ? ", " : "", r);
    (*shown)++;
}
#endif

int dist_roll_call(const dist_job *job, double grace_s, char *out,
                   size_t len)
{
    if (out && len) out[0] = '\0';
#ifdef ST_HAVE_MPI
    if (!job->mpi || job->world == 1) return 0;
    if (job->rank != 0) {
        static char me[16]; /* the rank, as text; static: the send may
                               outlive this call, until the job ends */
        int n = snprintf(me, sizeof me, "%d", job->rank);
        send_and_wait(me, n + 1, DIST_ROLL_TAG, grace_s + 2.0);
        return 0;
    }
    char *heard = calloc((size_t)job->world, 1);
    if (heard == NULL) return 0;
    roll_collect(job, grace_s, heard);
    char list[96] = "";
    int silent = 0;
    for (int r = 1; r < job->world; r++)
        if (!heard[r]) list_rank(list, sizeof list, &silent, r);
    free(heard);
    if (silent == 0)
        snprintf(out, len, "every other rank answered a roll call within "
                 "%g s, so none of them hangs: they wait in another "
                 "collective, or this rank was stopped itself", grace_s);
    else
        snprintf(out, len, "no word from rank%s %s within %g s: %s stopped, "
                 "stuck or gone", silent == 1 ? "" : "s", list, grace_s,
                 silent == 1 ? "it is" : "they are");
    return 1;
#else
    (void)job, (void)grace_s;
    return 0;
#endif
}

int dist_fail_together(const dist_job *job, const char *msg, double wait_s,
                       FILE *f, char *same, size_t len)
{
    if (same && len) same[0] = '\0';
#ifdef ST_HAVE_MPI
    if (!job->mpi || job->world == 1) return 0;
    enum { CAP = sizeof ((st_error *)0)->msg }; /* one error message */
    size_t n = strlen(msg) + 1;
    if (n > CAP) n = CAP;
    if (job->rank != 0) {
        static char buf[CAP]; /* static: the send may outlive this call */
        memcpy(buf, msg, n);
        buf[n - 1] = '\0';
        /* past rank 0's wait and Open MPI's SIGTERM-then-SIGKILL (1 s) */
        send_and_wait(buf, (int)n, DIST_FAIL_TAG, wait_s + 2.0);
        return 0;
    }
    char list[96] = "", buf[CAP];
    int left = job->world - 1, alike = 0, src;
    for (double end = st_mpi_now_s() + wait_s;
         left > 0 && (src = recv_until(DIST_FAIL_TAG, end, buf,
                                       (int)sizeof buf)) >= 0;
         left--) {
        if (strncmp(buf, msg, sizeof buf - 1) == 0)
            list_rank(list, sizeof list, &alike, src);
        else
            fprintf(f, "streamtrain: rank %d: %s\n", src, buf);
    }
    if (alike == job->world - 1)
        snprintf(same, len, " (the same on every rank)");
    else if (alike)
        snprintf(same, len, " (the same on rank%s %s)", alike == 1 ? "" : "s",
                 list);
    return 1;
#else
    (void)job, (void)msg, (void)wait_s, (void)f;
    return 0;
#endif
}
