/* tests/test_comm_nccl.c — the NCCL half of the all-reduce
 * (gpu/comm_nccl.h), called directly, with the id broadcast over MPI here
 * as gpu/comm.c does it. Every rank runs every case, in the same order.
 *
 *   sums       per-rank buffers of 1, 1001 and 1M floats sum exactly (small
 *              integers), and floats past n stay untouched
 *   buckets    four reductions in flight, then one join: compute-stream
 *              reads after the join see all four sums; a fifth past
 *              max_inflight is refused
 *   ordering   a kernel on the compute stream writes the buffer just
 *              before the all-reduce: the sum includes the write; a kernel
 *              after the join reads the sums
 *   timeout    rank 1 never issues: rank 0's wait fails with ST_ETIMEDOUT
 *              within its bound, and the aborted comm refuses more work
 *              (needs 2 ranks: skipped, saying so, in a world of 1)
 *
 * Runs on CUDA: cuemu (make EMU=1; tests/emu/nccl.h is NCCL over MPI, so
 * the comm stream's event ordering is exercised for real) under
 * `mpirun -np 2` (tests/cli/nccl_emu.sh), and as one process (a 1-rank
 * communicator) on cuemu or a real GPU. Skipped, saying why, without NCCL
 * in the build or without a GPU (a failure with ST_REQUIRE_GPU=1).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gpu/device.h"
#include "device_fixture.h"

#ifdef ST_HAVE_NCCL
#include <mpi.h>

#include "gpu/comm_nccl.h"

enum { BIG = 1 << 20, NBUF = 4, INFLIGHT = 4, PAD = 64 };
#define WAIT_S 20.0 /* a healthy wait; a hang fails instead of blocking */

static int g_rank, g_world;
static gpu_device *g_dev;
static void *g_comm;
static float *g_buf[NBUF]; /* device (BIG + PAD) each */
static float *g_src, *g_out; /* device (BIG + PAD) */
static float *g_host;        /* host (BIG + PAD) */

/* rank r's value at i: small integers, so every sum is exact */
static float val(int r, size_t i) { return (float)((r + 1) * (int)(i % 97 + 1)); }
static float sum_val(size_t i)
{
    return (float)(g_world * (g_world + 1) / 2 * (int)(i % 97 + 1));
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void ok(int rc, const st_error *err, const char *what)
{
    if (rc != 0) fail_msg("rank %d: %s: %d %s", g_rank, what, rc, err->msg);
}

static void dev_ok(const char *what)
{
    st_error err = {0};
    if (gpu_device_check(g_dev, &err) != 0)
        fail_msg("rank %d: %s: %s", g_rank, what, err.msg);
}

/* dst (n + PAD floats) = rank's values for [0, n), then pad */
static void put(float *dst, size_t n, float pad)
{
    for (size_t i = 0; i < n; i++) g_host[i] = val(g_rank, i);
    for (size_t i = n; i < n + PAD; i++) g_host[i] = pad;
    gpu_to_device(g_dev, dst, g_host, (n + PAD) * sizeof(float));
    dev_ok("to_device");
}

/* The first wrong value seen in a case: reported at the case's end, so
 * that a rank with wrong sums still issues the collectives its peer waits
 * for. */
static char g_bad[320];

/* src (n + PAD) on the device is scale * sum over ranks, then pad */
static void expect(const float *src, size_t n, float scale, float pad,
                   const char *what)
{
    gpu_to_host(g_dev, g_host, src, (n + PAD) * sizeof(float));
    dev_ok("to_host");
    for (size_t i = 0; i < n + PAD && g_bad[0] == '\0'; i++) {
        float want = i < n ? scale * sum_val(i) : pad;
        if (g_host[i] != want)
            snprintf(g_bad, sizeof g_bad, "rank %d, %s, n %zu: [%zu]%s = %g, "
                     "want %g", g_rank, what, n, i, i < n ? "" : " past the end",
                     g_host[i], want);
    }
}

static void check_bad(void)
{
    if (g_bad[0] != '\0') {
        char msg[sizeof g_bad];
        memcpy(msg, g_bad, sizeof msg);
        g_bad[0] = '\0';
        fail_msg("%s", msg);
    }
}

static int setup(void **state)
{
    (void)state;
    st_error err = {0};
    if (!gpu_cuda_probe(NULL, 0)) return 0; /* each case says why */
    gpu_device_config cfg;
    gpu_device_config_init(&cfg);
    cfg.kind = GPU_KIND_CUDA;
    if (gpu_device_create(&g_dev, &cfg, NULL, 0, &err) != 0) {
        fprintf(stderr, "device: %s\n", err.msg);
        return -1;
    }
    size_t each = ((size_t)BIG + PAD) * sizeof(float);
    void *base = NULL;
    if (gpu_arena_alloc(g_dev, (NBUF + 2) * each, &base, &err) != 0) {
        fprintf(stderr, "arena: %s\n", err.msg);
        return -1;
    }
    for (int i = 0; i < NBUF; i++) g_buf[i] = (float *)((char *)base + i * each);
    g_src = (float *)((char *)base + NBUF * each);
    g_out = (float *)((char *)base + (NBUF + 1) * each);
    g_host = malloc(each);
    size_t nb = gpu__nccl_id_bytes();
    char *id = calloc(1, nb);
    if (g_host == NULL || id == NULL) return -1;
    int rc = g_rank == 0 ? gpu__nccl_make_id(id, &err) : 0;
    MPI_Bcast(&rc, 1, MPI_INT, 0, MPI_COMM_WORLD);
    if (rc == 0) MPI_Bcast(id, (int)nb, MPI_BYTE, 0, MPI_COMM_WORLD);
    if (rc == 0)
        rc = gpu__nccl_create(g_dev, id, g_rank, g_world, INFLIGHT, &g_comm, &err);
    free(id);
    if (rc != 0) {
        fprintf(stderr, "rank %d: nccl: %s\n", g_rank, err.msg);
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    gpu__nccl_destroy(g_comm);
    gpu_device_destroy(g_dev);
    free(g_host);
    return 0;
}

static void test_sums(void **state)
{
    (void)state;
    if (!need_cuda()) skip();
    const size_t sizes[] = {1, 1001, BIG};
    st_error err = {0};
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        size_t n = sizes[k];
        put(g_buf[0], n, -3.0f);
        ok(gpu__nccl_allreduce(g_comm, g_buf[0], n, &err), &err, "allreduce");
        ok(gpu__nccl_wait(g_comm, WAIT_S, &err), &err, "wait");
        expect(g_buf[0], n, 1.0f, -3.0f, "sum");
    }
    ok(gpu__nccl_allreduce(g_comm, g_buf[0], 0, &err), &err, "n 0");
    ok(gpu__nccl_wait(g_comm, WAIT_S, &err), &err, "wait after n 0");
    check_bad();
}

static void test_buckets(void **state)
{
    (void)state;
    if (!need_cuda()) skip();
    const size_t sizes[NBUF] = {3, 1000, 4097, BIG / 2};
    st_error err = {0};
    for (int b = 0; b < NBUF; b++) put(g_buf[b], sizes[b], -5.0f);
    for (int b = 0; b < NBUF; b++)
        ok(gpu__nccl_allreduce(g_comm, g_buf[b], sizes[b], &err), &err, "bucket");
    /* max_inflight (4) reached before a join */
    assert_int_equal(gpu__nccl_allreduce(g_comm, g_buf[0], 1, &err), ST_EINVAL);
    assert_non_null(strstr(err.msg, "more than 4 all-reduces"));
    st_clearerr(&err);
    ok(gpu__nccl_join(g_comm, &err), &err, "join");
    /* no host wait: the compute stream's reads order after the join */
    for (int b = 0; b < NBUF; b++) expect(g_buf[b], sizes[b], 1.0f, -5.0f, "bucket");
    ok(gpu__nccl_wait(g_comm, WAIT_S, &err), &err, "wait");
    check_bad();
}

static void test_ordering(void **state)
{
    (void)state;
    if (!need_cuda()) skip();
    const size_t n = 70001;
    st_error err = {0};
    put(g_src, n, -9.0f);
    for (size_t i = 0; i < n + PAD; i++) g_host[i] = i < n ? -7.0f : -9.0f;
    gpu_to_device(g_dev, g_buf[1], g_host, (n + PAD) * sizeof(float));
    dev_ok("to_device");
    /* queued on compute: buf = src, then reduced, then out = 2 * buf */
    gpu_axpby(g_dev, n, 1.0f, g_src, 0.0f, g_buf[1]);
    ok(gpu__nccl_allreduce(g_comm, g_buf[1], n, &err), &err, "allreduce");
    ok(gpu__nccl_join(g_comm, &err), &err, "join");
    gpu_axpby(g_dev, n + PAD, 2.0f, g_buf[1], 0.0f, g_out);
    dev_ok("axpby");
    expect(g_out, n, 2.0f, -18.0f, "kernel after join");
    ok(gpu__nccl_wait(g_comm, WAIT_S, &err), &err, "wait");

    /* and with the host wait alone: the write before is in the sum */
    put(g_src, n, -9.0f);
    for (size_t i = 0; i < n + PAD; i++) g_host[i] = i < n ? -7.0f : -9.0f;
    gpu_to_device(g_dev, g_buf[1], g_host, (n + PAD) * sizeof(float));
    dev_ok("to_device");
    gpu_axpby(g_dev, n, 1.0f, g_src, 0.0f, g_buf[1]);
    ok(gpu__nccl_allreduce(g_comm, g_buf[1], n, &err), &err, "allreduce");
    ok(gpu__nccl_wait(g_comm, WAIT_S, &err), &err, "wait");
    expect(g_buf[1], n, 1.0f, -9.0f, "kernel before allreduce");
    check_bad();
}

/* Last: it leaves rank 0's communicator aborted. */
static void test_timeout(void **state)
{
    (void)state;
    if (!need_cuda()) skip();
    if (g_world < 2) {
        print_message("skipped: the timeout case needs 2 ranks (mpirun -np 2; "
                      "tests/cli/nccl_emu.sh)\n");
        skip();
    }
    st_error err = {0}, err2 = {0};
    const double bound = 0.5;
    int rc = 0, rc2 = 0;
    double dt = 0;
    put(g_buf[2], 16, 0.0f);
    if (g_rank == 0) {
        ok(gpu__nccl_allreduce(g_comm, g_buf[2], 16, &err), &err, "allreduce");
        double t0 = now_s();
        rc = gpu__nccl_wait(g_comm, bound, &err);
        dt = now_s() - t0;
        rc2 = gpu__nccl_allreduce(g_comm, g_buf[2], 16, &err2);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    if (g_rank != 0) {
        /* match rank 0's orphaned reduction, so that MPI ends cleanly:
         * rank 0 moves it along inside the barrier below */
        ok(gpu__nccl_allreduce(g_comm, g_buf[2], 16, &err), &err, "late allreduce");
        ok(gpu__nccl_wait(g_comm, WAIT_S, &err), &err, "late wait");
    }
    MPI_Barrier(MPI_COMM_WORLD);
    if (g_rank != 0) return;
    if (rc != ST_ETIMEDOUT)
        fail_msg("wait: %d (%s), want ST_ETIMEDOUT", rc, err.msg);
    assert_non_null(strstr(err.msg, "all-reduce did not finish within 0.5 s"));
    if (dt < bound || dt > bound + 10.0)
        fail_msg("the wait took %.2f s for a bound of %.1f s", dt, bound);
    if (rc2 != ST_EDEVICE || strstr(err2.msg, "aborted") == NULL)
        fail_msg("allreduce after the timeout: %d (%s), want ST_EDEVICE "
                 "\"...aborted...\"", rc2, err2.msg);
}

static int run(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sums),
        cmocka_unit_test(test_buckets),
        cmocka_unit_test(test_ordering),
        cmocka_unit_test(test_timeout),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_world);
    int rc = run();
    MPI_Finalize();
    return rc;
}

#else /* no NCCL in this build */

static void test_nccl(void **state)
{
    (void)state;
    print_message("skipped: built without NCCL (CUDA=1 with nccl.h, libnccl "
                  "and mpicc, or EMU=1 with mpicc)\n");
    skip();
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_nccl)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
#endif
