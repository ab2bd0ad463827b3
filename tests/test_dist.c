/* tests/test_dist.c — the job (train/dist), the gradient buckets
 * (train/grad_sync) and the trainer's global-count step, in one process;
 * tests/cli/dist.sh runs the real multi-rank job under mpirun.
 *
 * Also a checkpoint comparison for dist.sh (not part of any user CLI):
 *   test_dist --compare A B TOL [--state TOL2]
 * prints the largest absolute difference of the parameters (and with
 * --state of the BN running statistics) and the stream counters, and
 * exits 0 when the counters match and every difference is <= TOL.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "device_fixture.h"
#include "gpu/comm.h"
#include "train/dist.h"
#include "train/trainer.h"

/* ---- the checkpoint comparison ---------------------------------------- */

typedef struct ck {
    uint8_t *buf;
    size_t len;
    uint64_t step, epoch, next_batch, P, S, R, A;
} ck;

static uint64_t rd64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static int ck_read(const char *path, ck *c)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) return fprintf(stderr, "compare: cannot open %s\n", path), -1;
    fseek(f, 0, SEEK_END);
    c->len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    c->buf = malloc(c->len);
    size_t got = c->buf ? fread(c->buf, 1, c->len, f) : 0;
    fclose(f);
    if (got != c->len || c->len < 256 || memcmp(c->buf, "STCKPT\r\n", 8))
        return fprintf(stderr, "compare: %s is not a checkpoint\n", path), -1;
    c->step = rd64(c->buf + 96);
    c->epoch = rd64(c->buf + 112);
    c->next_batch = rd64(c->buf + 120);
    c->P = rd64(c->buf + 128);
    c->S = rd64(c->buf + 136);
    c->R = rd64(c->buf + 160);
    uint32_t a;
    memcpy(&a, c->buf + 168, 4);
    c->A = (a + 7u) & ~7u;
    if (256 + c->A + 4 * (c->P + c->S + c->R) + 8 > c->len)
        return fprintf(stderr, "compare: %s is truncated\n", path), -1;
    return 0;
}

static double max_diff(const ck *a, const ck *b, size_t off, uint64_t n)
{
    double m = 0;
    for (uint64_t i = 0; i < n; i++) {
        float x, y;
        memcpy(&x, a->buf + off + 4 * i, 4);
        memcpy(&y, b->buf + off + 4 * i, 4);
        double d = fabs((double)x - (double)y);
        if (!(d <= m)) m = isnan(d) ? INFINITY : d;
    }
    return m;
}

static int compare(int argc, char **argv)
{
    if (argc != 5 && argc != 7) {
        fprintf(stderr, "usage: test_dist --compare A B TOL [--state TOL2]\n");
        return 2;
    }
    double tol = atof(argv[4]), stol = argc == 7 ? atof(argv[6]) : -1;
    ck a = {0}, b = {0};
    if (ck_read(argv[2], &a) || ck_read(argv[3], &b)) return 1;
    if (a.P != b.P || a.R != b.R || a.A != b.A ||
        memcmp(a.buf + 256, b.buf + 256, a.A) != 0) {
        fprintf(stderr, "compare: different models\n");
        return 1;
    }
    size_t off = 256 + a.A;
    double dp = max_diff(&a, &b, off, a.P);
    double ds = max_diff(&a, &b, off + 4 * (a.P + a.S), a.R);
    printf("compare: step %llu/%llu epoch %llu/%llu batch %llu/%llu, "
           "params max |diff| %.3g (tol %g), bn state max |diff| %.3g\n",
           (unsigned long long)a.step, (unsigned long long)b.step,
           (unsigned long long)a.epoch, (unsigned long long)b.epoch,
           (unsigned long long)a.next_batch, (unsigned long long)b.next_batch,
           dp, tol, ds);
    int ok = a.step == b.step && a.epoch == b.epoch &&
             a.next_batch == b.next_batch && dp <= tol &&
             (stol < 0 || ds <= stol);
    free(a.buf), free(b.buf);
    return ok ? 0 : 1;
}

/* ---- unit tests ---------------------------------------------------------- */

/* Without a launcher's environment the job is one rank and no MPI call. */
static void test_solo_job(void **state)
{
    (void)state;
    unsetenv("OMPI_COMM_WORLD_SIZE");
    unsetenv("PMIX_RANK");
    unsetenv("PMI_SIZE");
    unsetenv("PMI_RANK");
    dist_job j;
    st_error err = {0};
    assert_int_equal(dist_init(&j, NULL, NULL, &err), 0);
    assert_int_equal(j.world, 1);
    assert_int_equal(j.rank, 0);
    assert_int_equal(j.local_world, 1);
    assert_int_equal(j.mpi, 0);
    double v[2] = {1.5, 2.5};
    assert_int_equal(dist_allreduce(&j, v, 2, DIST_F64, DIST_SUM, "t", &err), 0);
    assert_true(v[0] == 1.5 && v[1] == 2.5);
    dist_field f = {.name = "--batch", .value = "64"};
    assert_int_equal(dist_check_fields(&j, &f, 1, &err), 0);
    assert_true(dist_hash("a", 1) != dist_hash("b", 1));
    dist_finalize(&j);
}

/* A world of 2 without MPI initialized (or built without it) is refused
 * by name; world 1 is a no-op comm. */
static void test_comm_refusals(void **state)
{
    (void)state;
    gpu_device *d = cpu_dev();
    gpu_comm *c = NULL;
    st_error err = {0};
    assert_int_equal(gpu_comm_create(d, 0, 2, 4, &c, &err), ST_EINVAL);
    assert_null(c);
    assert_non_null(strstr(err.msg, "MPI"));
    assert_int_equal(gpu_comm_create(d, 2, 2, 4, &c, &err), ST_EINVAL);
    assert_int_equal(gpu_comm_create(d, 0, 1, 4, &c, &err), 0);
    float x[3] = {1, 2, 3};
    assert_int_equal(gpu_comm_allreduce(c, x, 3, &err), 0);
    assert_int_equal(gpu_comm_wait(c, 1, &err), 0);
    assert_true(x[0] == 1 && x[2] == 3);
    gpu_comm_destroy(c);
    gpu_device_destroy(d);
}

static void config(trainer_config *c, int world, size_t bucket)
{
    trainer_config_init(c);
    c->model = (model_spec){.in_c = 1, .in_h = 8, .in_w = 8, .classes = 4,
                            .n_hidden = 2, .hidden = {32, 16},
                            .in_scale = 1.0f / 255};
    c->batch = 16;
    c->world = world;
    c->bucket_bytes = bucket;
}

/* Buckets group whole layers from the last: a tiny size gives one a layer
 * (3 dense layers), the default one for the whole small MLP. */
static int buckets_of(size_t bucket)
{
    gpu_device *d = cpu_dev(); /* one arena a device */
    trainer_config c;
    trainer *t = NULL;
    st_error err = {0};
    config(&c, 1, bucket);
    int rc = trainer_create(&t, d, &c, &err);
    if (rc) print_message("%s\n", err.msg);
    assert_int_equal(rc, 0);
    int n = trainer_comm_buckets(t);
    trainer_destroy(t);
    gpu_device_destroy(d);
    return n;
}

static void test_buckets(void **state)
{
    (void)state;
    assert_int_equal(buckets_of(1), 3);
    /* dense16->4: 68 floats, 32->16: 528 (596 = 2384 B >= 2000 closes
     * the first bucket), 64->32: 2080 */
    assert_int_equal(buckets_of(500 * 4), 2);
    assert_int_equal(buckets_of((size_t)25 << 20), 1);
}

/* The batch must split into whole micro-batches on every rank. */
static void test_batch_refusals(void **state)
{
    (void)state;
    gpu_device *d = cpu_dev();
    trainer_config c;
    trainer *t = NULL;
    st_error err = {0};
    config(&c, 3, 1);
    assert_int_equal(trainer_create(&t, d, &c, &err), ST_EINVAL);
    assert_non_null(strstr(err.msg, "16"));
    config(&c, 2, 1);
    c.micro_batch = 3;
    err = (st_error){0};
    assert_int_equal(trainer_create(&t, d, &c, &err), ST_EINVAL);
    assert_non_null(strstr(err.msg, "2 x 3 = 6"));
    gpu_device_destroy(d);
}

/* A step on n of a global batch of N scales by 1/N: one step on 8 samples
 * counted as 16 moves the weights half as far (SGD without momentum) as
 * the same 8 counted as 8. */
static void test_global_scale(void **state)
{
    (void)state;
    uint8_t px[16 * 64];
    int32_t lab[16];
    for (int i = 0; i < 16 * 64; i++) px[i] = (uint8_t)(i * 37 % 251);
    for (int i = 0; i < 16; i++) lab[i] = i % 4;
    float *p0 = NULL, *p[2] = {NULL, NULL};
    size_t np = 0;
    for (int k = 0; k < 2; k++) {
        gpu_device *d = cpu_dev();
        trainer_config c;
        config(&c, 1, 1);
        c.optim.momentum = 0;
        trainer *t = NULL;
        st_error err = {0};
        assert_int_equal(trainer_create(&t, d, &c, &err), 0);
        np = model_param_count(trainer_model(t));
        if (p0 == NULL) {
            p0 = malloc(np * sizeof *p0);
            assert_int_equal(trainer_get_params(t, p0, NULL, &err), 0);
        }
        p[k] = malloc(np * sizeof *p[k]);
        prefetch_batch b;
        void *tag;
        prefetch *pf = trainer_prefetch(t);
        assert_int_equal(prefetch_submit(pf, px, lab, 8, NULL, &b, &err), 0);
        assert_int_equal(trainer_train_step(t, &b, k ? 16 : 8, &err), 0);
        assert_int_equal(prefetch_consumed(pf, &b, &err), 0);
        while (prefetch_poll(pf, 0, &tag, &err) == 1) {
        }
        assert_int_equal(trainer_get_params(t, p[k], NULL, &err), 0);
        trainer_destroy(t);
        gpu_device_destroy(d);
    }
    double worst = 0, moved = 0;
    for (size_t i = 0; i < np; i++) {
        double a = p[0][i] - p0[i], b = p[1][i] - p0[i];
        moved += fabs(a);
        if (fabs(b - 0.5 * a) > worst) worst = fabs(b - 0.5 * a);
    }
    assert_true(moved > 1e-3);
    assert_true(worst < 1e-6);
    free(p0), free(p[0]), free(p[1]);
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--compare") == 0)
        return compare(argc, argv);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_solo_job),
        cmocka_unit_test(test_comm_refusals),
        cmocka_unit_test(test_buckets),
        cmocka_unit_test(test_batch_refusals),
        cmocka_unit_test(test_global_scale),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
