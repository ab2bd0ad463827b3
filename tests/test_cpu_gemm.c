/* tests/test_cpu_gemm.c — the CPU backend's GEMM (gpu/cpu_gemm.c), through
 * gpu_gemm on a CPU device. The thin kernels: the first conv layer's
 * forward shape (C = alpha A.B + beta C, K small, M large) and its
 * backward-filter shape (C = alpha A^T.B + beta C, M small, K large),
 * for N = 16, 32, 64 and an odd N, with beta 0 and 1 and leading
 * dimensions wider than the rows; each against a double-precision
 * reference, and at 1, 2 and 3 threads with the same bits. Shapes just
 * outside the thin ones (OpenBLAS's) are checked against the same
 * reference. OpenBLAS split over the threads: the conv and dense shapes
 * whose rows go to 2 and 3 threads (M not a multiple of the 12-row split
 * unit, all four transposes), against the reference and with the same
 * bits at 1, 2 and 3 threads.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gpu/device.h"
#include "device_fixture.h"

static uint64_t rng = 99;

static void fill(float *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        rng = rng * 6364136223846793005ull + 1442695040888963407ull;
        p[i] = (float)((rng >> 40) & 0xFFFFFF) / 8388608.0f - 1.0f;
    }
}

typedef struct shape {
    int tA, M, N, K, pad; /* pad: extra columns in every leading dimension */
    float alpha, beta;
    int tB; /* B is (N, K) */
} shape;

/* C as computed in double from the float inputs. */
static void reference(const shape *s, const float *A, int lda, const float *B,
                      int ldb, const float *C0, int ldc, double *out)
{
    for (int i = 0; i < s->M; i++)
        for (int j = 0; j < s->N; j++) {
            double acc = 0.0;
            for (int k = 0; k < s->K; k++) {
                double a = s->tA ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k];
                acc += a * (s->tB ? B[(size_t)j * ldb + k]
                                  : B[(size_t)k * ldb + j]);
            }
            out[(size_t)i * s->N + j] =
                s->alpha * acc + s->beta * (double)C0[(size_t)i * ldc + j];
        }
}

static void check_shape(const shape *s)
{
    int lda = (s->tA ? s->M : s->K) + s->pad;
    int ldb = (s->tB ? s->K : s->N) + s->pad;
    int ldc = s->N + s->pad;
    size_t na = (size_t)(s->tA ? s->K : s->M) * lda;
    size_t nb = (size_t)(s->tB ? s->N : s->K) * ldb, nc = (size_t)s->M * ldc;
    float *A = malloc(na * sizeof *A), *B = malloc(nb * sizeof *B);
    float *C0 = malloc(nc * sizeof *C0), *C1 = malloc(nc * sizeof *C1);
    float *Ct = malloc(nc * sizeof *Ct);
    double *ref = malloc((size_t)s->M * s->N * sizeof *ref);
    assert_true(A && B && C0 && C1 && Ct && ref);
    fill(A, na), fill(B, nb), fill(C0, nc);
    reference(s, A, lda, B, ldb, C0, ldc, ref);
    for (int threads = 1; threads <= 3; threads++) {
        gpu_device *d = cpu_dev_threads(threads);
        float *C = threads == 1 ? C1 : Ct;
        memcpy(C, C0, nc * sizeof *C);
        assert_int_equal(gpu_gemm(d, s->tA, s->tB, s->M, s->N, s->K,
                                  s->alpha, A, lda, B, ldb, s->beta, C, ldc),
                         0);
        gpu_device_destroy(d);
        for (int i = 0; i < s->M; i++) {
            for (int j = 0; j < s->N; j++) {
                double r = ref[(size_t)i * s->N + j];
                double got = C[(size_t)i * ldc + j];
                /* float sums of K terms of size <= 1 */
                double tol = 1e-6 * (1.0 + sqrt((double)s->K) * 4.0);
                if (fabs(got - r) > tol * fmax(1.0, fabs(r)))
                    fail_msg("tA %d %dx%dx%d: C[%d][%d] = %.8g, expected "
                             "%.8g", s->tA, s->M, s->N, s->K, i, j, got, r);
            }
            /* the padding columns are not written */
            for (int j = s->N; j < ldc; j++)
                assert_true(C[(size_t)i * ldc + j] == C0[(size_t)i * ldc + j]);
        }
        if (threads > 1 && memcmp(C1, Ct, nc * sizeof *C1) != 0)
            fail_msg("tA %d %dx%dx%d: 1 and %d threads differ", s->tA, s->M,
                     s->N, s->K, threads);
    }
    free(ref), free(Ct), free(C1), free(C0), free(B), free(A);
}

static void test_thin_forward(void **state)
{
    (void)state;
    static const shape cases[] = {
        {0, 100352 / 8, 32, 9, 0, 1.0f, 0.0f, 0},   /* gray 3x3, 32 filters */
        {0, 8192, 16, 27, 3, 1.0f, 1.0f, 0},        /* RGB 3x3, accumulate */
        {0, 5000, 64, 32, 1, 0.5f, 0.0f, 0},
        {0, 4099, 24, 5, 2, -1.0f, 0.25f, 0},       /* odd N, odd M */
        {0, 4096, 65, 9, 0, 1.0f, 0.0f, 0},         /* N too wide: OpenBLAS */
        {0, 4096, 32, 33, 0, 1.0f, 0.0f, 0},        /* K too deep: OpenBLAS */
        {0, 100, 32, 9, 0, 1.0f, 0.0f, 0},          /* M small: OpenBLAS */
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        check_shape(&cases[i]);
}

static void test_thin_filter(void **state)
{
    (void)state;
    static const shape cases[] = {
        {1, 9, 32, 100352 / 8, 0, 1.0f, 0.0f, 0},   /* gray 3x3 filter grad */
        {1, 27, 16, 8192, 3, 1.0f, 1.0f, 0},        /* accumulate (+=) */
        {1, 32, 64, 6000, 1, 0.5f, 0.0f, 0},
        {1, 5, 24, 4099, 2, -1.0f, 0.25f, 0},
        {1, 33, 32, 8192, 0, 1.0f, 0.0f, 0},        /* M too big: OpenBLAS */
        {1, 9, 32, 1000, 0, 1.0f, 1.0f, 0},         /* K small: OpenBLAS */
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        check_shape(&cases[i]);
}

/* OpenBLAS's shapes that the backend splits by rows over its threads. */
static void test_split(void **state)
{
    (void)state;
    static const shape cases[] = {
        {0, 3530, 64, 288, 0, 1.0f, 0.0f, 0},  /* conv forward */
        {0, 1813, 576, 128, 1, 1.0f, 0.0f, 1}, /* backward-data: dy . W^T */
        {1, 290, 64, 3528, 0, 1.0f, 1.0f, 0},  /* backward-filter, += */
        {0, 130, 512, 784, 2, 0.5f, 0.25f, 0}, /* dense forward */
        {1, 784, 100, 130, 0, 1.0f, 0.0f, 1},  /* both transposed */
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        check_shape(&cases[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_thin_forward),
        cmocka_unit_test(test_thin_filter),
        cmocka_unit_test(test_split),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
