/* tests/test_device.c — the device layer on the CPU backend: every op
 * against a naive reference, the arena, the sticky error, device choice,
 * the host allocator hook, and the prefetcher's CPU path.
 * (CUDA-vs-CPU agreement lives in tests/test_gpu.c.)
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gpu/cpu_ops.h"
#include "gpu/device.h"
#include "device_fixture.h"
#include "gpu/prefetch.h"

static uint64_t rng_state = 12345;

static float frand(void) /* [-1, 1) */
{
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((rng_state >> 40) & 0xFFFFFF) / 8388608.0f - 1.0f;
}

static void fill(float *p, size_t n)
{
    for (size_t i = 0; i < n; i++) p[i] = frand();
}


static void assert_close(const float *a, const float *b, size_t n, float tol)
{
    for (size_t i = 0; i < n; i++) {
        float scale = fmaxf(1.0f, fmaxf(fabsf(a[i]), fabsf(b[i])));
        if (!(fabsf(a[i] - b[i]) <= tol * scale))
            fail_msg("element %zu: %.9g vs %.9g (tol %g)", i, a[i], b[i], tol);
    }
}

static void test_create_kinds(void **state)
{
    (void)state;
    gpu_device *d = cpu_dev();
    assert_int_equal(gpu_device_kind(d), GPU_KIND_CPU);
    assert_true(gpu_device_unified(d));
    assert_non_null(strstr(gpu_device_name(d), "cpu"));
    assert_int_equal(gpu_device_workspace_bytes(d), 0);
    gpu_device_destroy(d);
    gpu_device_destroy(NULL);

    char why[256];
    gpu_device_config cfg;
    gpu_device_config_init(&cfg);
    st_error err = {0};
    if (gpu_cuda_probe(why, sizeof why)) {
        print_message("note: a GPU is visible (%s); skipping the no-GPU "
                      "error checks\n", why);
        return;
    }
    cfg.kind = GPU_KIND_CUDA;
    assert_int_equal(gpu_device_create(&d, &cfg, NULL, 0, &err), ST_EDEVICE);
    assert_null(d);
    assert_non_null(strstr(err.msg, "--device cuda"));
    assert_non_null(strstr(err.msg, "CUDA"));

    char note[512];
    cfg.kind = GPU_KIND_AUTO;
    st_clearerr(&err);
    assert_int_equal(gpu_device_create(&d, &cfg, note, sizeof note, &err), 0);
    assert_int_equal(gpu_device_kind(d), GPU_KIND_CPU);
    assert_non_null(strstr(note, "using the CPU"));
    gpu_device_destroy(d);
}

static void ref_gemm(int tA, int tB, int M, int N, int K, float alpha,
                     const float *A, int lda, const float *B, int ldb,
                     float beta, float *C, int ldc)
{
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double s = 0;
            for (int k = 0; k < K; k++) {
                float a = tA ? A[k * lda + i] : A[i * lda + k];
                float b = tB ? B[j * ldb + k] : B[k * ldb + j];
                s += (double)a * b;
            }
            C[i * ldc + j] = (float)(alpha * s + beta * C[i * ldc + j]);
        }
}

static void test_gemm(void **state)
{
    (void)state;
    gpu_device *d = cpu_dev();
    enum { M = 7, N = 5, K = 9, LD = 12 };
    float A[LD * LD], B[LD * LD], C[M * LD], R[M * LD];
    for (int tA = 0; tA < 2; tA++)
        for (int tB = 0; tB < 2; tB++) {
            fill(A, LD * LD);
            fill(B, LD * LD);
            fill(C, M * LD);
            memcpy(R, C, sizeof C);
            assert_int_equal(gpu_gemm(d, tA, tB, M, N, K, 0.5f, A, LD, B, LD,
                                      0.25f, C, LD), 0);
            ref_gemm(tA, tB, M, N, K, 0.5f, A, LD, B, LD, 0.25f, R, LD);
            assert_close(C, R, M * LD, 1e-5f);
        }
    gpu_device_destroy(d);
}

static void test_elementwise(void **state)
{
    (void)state;
    gpu_device *d = cpu_dev();
    enum { R = 5, C = 11 };
    uint8_t px[R * C];
    float y[R * C], b[C], ref[R * C];
    for (int i = 0; i < R * C; i++) px[i] = (uint8_t)(i * 37);
    assert_int_equal(gpu_normalize_u8(d, px, R * C, 1.0f / 255, -0.5f, y), 0);
    for (int i = 0; i < R * C; i++)
        assert_float_equal(y[i], px[i] / 255.0f - 0.5f, 1e-6);

    fill(y, R * C);
    fill(b, C);
    memcpy(ref, y, sizeof y);
    assert_int_equal(gpu_bias_act(d, y, b, R, C, 1), 0);
    for (int i = 0; i < R * C; i++)
        assert_float_equal(y[i], fmaxf(ref[i] + b[i % C], 0.0f), 1e-7);
    memcpy(y, ref, sizeof y);
    assert_int_equal(gpu_bias_act(d, y, b, R, C, 0), 0);
    for (int i = 0; i < R * C; i++)
        assert_float_equal(y[i], ref[i] + b[i % C], 1e-7);

    /* ReLU mask + bias gradient, overwrite then accumulate */
    float act[R * C], dy[R * C], dy0[R * C], db[C];
    fill(act, R * C);
    for (int i = 0; i < R * C; i++) act[i] = fmaxf(act[i], 0.0f);
    fill(dy0, R * C);
    memcpy(dy, dy0, sizeof dy);
    fill(db, C);
    assert_int_equal(gpu_act_bias_grad(d, dy, act, db, R, C, 1, 0), 0);
    for (int c = 0; c < C; c++) {
        float s = 0;
        for (int r = 0; r < R; r++) {
            float want = act[r * C + c] > 0 ? dy0[r * C + c] : 0.0f;
            assert_float_equal(dy[r * C + c], want, 0);
            s += want;
        }
        assert_float_equal(db[c], s, 1e-6);
    }
    float db2[C];
    memcpy(db2, db, sizeof db);
    memcpy(dy, dy0, sizeof dy);
    assert_int_equal(gpu_act_bias_grad(d, dy, act, db, R, C, 0, 1), 0);
    for (int c = 0; c < C; c++) {
        float s = 0;
        for (int r = 0; r < R; r++) s += dy0[r * C + c];
        assert_float_equal(db[c], db2[c] + s, 1e-5);
    }
    gpu_device_destroy(d);
}

static void test_softmax_xent(void **state)
{
    (void)state;
    gpu_device *d = cpu_dev();
    enum { R = 4, K = 6 };
    float logits[R * K], g[R * K];
    int32_t lab[R] = {0, 5, 2, 7}; /* 7 is out of range */
    fill(logits, R * K);
    logits[1 * K + 5] = 3.0f; /* row 1 predicts its label */
    gpu_loss_stats st = {0};
    assert_int_equal(gpu_softmax_xent(d, logits, lab, R, K, 0.5f, g, &st), 0);
    assert_int_equal(st.count, R);
    assert_int_equal(st.bad_labels, 1);
    double loss = 0;
    long long correct = 0;
    for (int r = 0; r < 3; r++) {
        const float *x = logits + r * K;
        double mx = x[0], s = 0;
        int best = 0;
        for (int c = 1; c < K; c++)
            if (x[c] > x[best]) best = c;
        mx = x[best];
        for (int c = 0; c < K; c++) s += exp(x[c] - mx);
        loss += log(s) - (x[lab[r]] - mx);
        correct += best == lab[r];
        for (int c = 0; c < K; c++) {
            double p = exp(x[c] - mx) / s;
            assert_float_equal(g[r * K + c], 0.5 * (p - (c == lab[r])), 1e-6);
        }
    }
    for (int c = 0; c < K; c++) assert_float_equal(g[3 * K + c], 0.0f, 0);
    assert_float_equal(st.loss_sum, loss, 1e-5);
    assert_int_equal(st.correct, correct);
    assert_true(correct >= 1);
    gpu_device_destroy(d);
}

static void test_updates(void **state)
{
    (void)state;
    gpu_device *d = cpu_dev();
    enum { N = 37 };
    float w[N], g[N], v[N], w0[N], v0[N], m[N], m0[N];
    for (int nest = 0; nest < 2; nest++) {
        fill(w, N), fill(g, N), fill(v, N);
        memcpy(w0, w, sizeof w), memcpy(v0, v, sizeof v);
        assert_int_equal(gpu_sgd_update(d, w, g, v, N, 0.1f, 0.9f, nest, 0.01f), 0);
        for (int i = 0; i < N; i++) {
            double gi = g[i] + 0.01 * w0[i], vi = 0.9 * v0[i] + gi;
            double step = nest ? gi + 0.9 * vi : vi;
            assert_float_equal(v[i], vi, 1e-6);
            assert_float_equal(w[i], w0[i] - 0.1 * step, 1e-6);
        }
    }
    fill(w, N), fill(g, N), fill(m, N), fill(v, N);
    for (int i = 0; i < N; i++) v[i] = fabsf(v[i]);
    memcpy(w0, w, sizeof w), memcpy(v0, v, sizeof v), memcpy(m0, m, sizeof m);
    float bc1 = 1 - 0.9f * 0.9f, bc2 = 1 - 0.999f * 0.999f; /* t = 2 */
    assert_int_equal(gpu_adamw_update(d, w, g, m, v, N, 1e-2f, 0.9f, 0.999f,
                                      1e-8f, 0.1f, bc1, bc2), 0);
    for (int i = 0; i < N; i++) {
        double mi = 0.9 * m0[i] + 0.1 * g[i];
        double vi = 0.999 * v0[i] + 0.001 * (double)g[i] * g[i];
        double wi = w0[i] * (1 - 1e-2 * 0.1) -
                    1e-2 * (mi / bc1) / (sqrt(vi / bc2) + 1e-8);
        assert_float_equal(m[i], mi, 1e-6);
        assert_float_equal(v[i], vi, 1e-6);
        assert_float_equal(w[i], wi, 1e-5);
    }
    gpu_device_destroy(d);
}

static void test_arena_and_sticky_error(void **state)
{
    (void)state;
    gpu_device *d = cpu_dev();
    st_error err = {0};
    void *base = NULL, *again = NULL;
    assert_int_equal(gpu_arena_alloc(d, 1000, &base, &err), 0);
    assert_non_null(base);
    assert_int_equal((uintptr_t)base % 256, 0);
    assert_int_equal(gpu_arena_alloc(d, 10, &again, &err), ST_EINVAL);
    gpu_mem_stats ms;
    assert_int_equal(gpu_device_mem(d, &ms), 0);
    assert_int_equal(ms.arena, 1024);
    assert_int_equal(ms.used, 1024);
    assert_true(ms.peak >= 1024);

    float x = 1;
    assert_int_equal(gpu_device_check(d, &err), 0);
    assert_int_equal(gpu_gemm(d, 0, 0, -1, 1, 1, 1, &x, 1, &x, 1, 0, &x, 1),
                     ST_EINVAL);
    /* sticky: a valid op now returns the first failure untouched */
    assert_int_equal(gpu_zero(d, &x, sizeof x), ST_EINVAL);
    assert_float_equal(x, 1.0f, 0);
    st_clearerr(&err);
    assert_int_equal(gpu_device_check(d, &err), ST_EINVAL);
    assert_non_null(strstr(err.msg, "gemm"));
    gpu_device_destroy(d);
}

/* The OpenBLAS kernel note: only an AVX-512 CPU running kernels without
 * it gets one, and it names the variable when the environment set it. */
static void test_blas_note(void **state)
{
    (void)state;
    char note[256] = "";
    assert_int_equal(gpu__cpu_blas_note(0, "Haswell", "Haswell", note,
                                        sizeof note), 0);
    assert_int_equal(gpu__cpu_blas_note(1, "Cooperlake", NULL, note,
                                        sizeof note), 0);
    assert_int_equal(gpu__cpu_blas_note(1, "SKYLAKEX", "SkylakeX", note,
                                        sizeof note), 0);
    assert_string_equal(note, "");
    assert_int_equal(gpu__cpu_blas_note(1, "Haswell", "Haswell", note,
                                        sizeof note), 1);
    assert_non_null(strstr(note, "OPENBLAS_CORETYPE=Haswell"));
    assert_non_null(strstr(note, "unset it"));
    assert_int_equal(gpu__cpu_blas_note(1, "Zen", NULL, note, sizeof note),
                     1);
    assert_non_null(strstr(note, "its Zen kernels"));
    assert_non_null(strstr(note, "OPENBLAS_CORETYPE=SKYLAKEX"));
    /* the real one agrees with itself: a core name, and a 0/1 answer */
    assert_true(strlen(gpu_cpu_blas_core()) > 0);
    int got = gpu_cpu_blas_note(note, sizeof note);
    assert_true(got == 0 || got == 1);
}

static void test_host_alloc(void **state)
{
    (void)state;
    gpu_device *d = cpu_dev();
    void *p = gpu_host_alloc(1000, d), *q = gpu_host_alloc(3, NULL);
    assert_non_null(p);
    assert_non_null(q);
    assert_int_equal((uintptr_t)p % 64, 0);
    memset(p, 1, 1000);
    gpu_host_free(p, d);
    gpu_host_free(q, NULL);
    gpu_host_free(NULL, d);
    gpu_device_destroy(d);
}

static void test_prefetch_cpu(void **state)
{
    (void)state;
    gpu_device *d = cpu_dev();
    st_error err = {0};
    prefetch *p = NULL;
    assert_int_equal(prefetch_plan_bytes(1, 2, 8, 4), 0);
    assert_int_equal(prefetch_plan_bytes(0, 2, 8, 4), 2 * (256 + 256));
    assert_int_equal(prefetch_create(&p, d, 1, 8, 4, NULL, 0, &err), ST_EINVAL);
    assert_int_equal(prefetch_create(&p, d, 2, 8, 4, NULL, 0, &err), 0);
    uint8_t px[3][32];
    int32_t lab[3][8];
    int tags[3];
    void *tag;
    for (int k = 0; k < 3; k++) {
        prefetch_batch b;
        memset(px[k], k, sizeof px[k]);
        assert_int_equal(prefetch_submit(p, px[k], lab[k], 8, &tags[k], &b,
                                         &err), 0);
        assert_ptr_equal(b.pixels, px[k]); /* no copy on the CPU */
        assert_ptr_equal(b.labels, lab[k]);
        assert_int_equal(b.slot, k % 2);
        /* not consumed yet: the host batch is still being read */
        assert_int_equal(prefetch_poll(p, 0, &tag, &err), 0);
        assert_int_equal(prefetch_consumed(p, &b, &err), 0);
        assert_int_equal(prefetch_poll(p, 1, &tag, &err), 1);
        assert_ptr_equal(tag, &tags[k]);
        assert_int_equal(prefetch_pending(p), 0);
    }
    prefetch_batch b;
    assert_int_equal(prefetch_submit(p, px[0], lab[0], 9, NULL, &b, &err),
                     ST_EINVAL);
    prefetch_stats st;
    prefetch_get_stats(p, &st);
    assert_int_equal(st.batches, 3);
    assert_int_equal(st.bytes, 0);
    prefetch_destroy(p);
    prefetch_destroy(NULL);
    gpu_device_destroy(d);
}

/* The staged CPU device takes the GPU's path: batches are copied into the
 * arena's buffers, later, as on a GPU. A ring-slot layout (labels right
 * after the pixels) takes one copy, separate labels two; the device copies
 * hold the host's bytes, and the host batch comes back once copied, before
 * it is consumed. */
static void test_prefetch_staged(void **state)
{
    (void)state;
    enum { SB = 16, MB = 8 };
    gpu_device_config cfg;
    gpu_device_config_init(&cfg);
    cfg.kind = GPU_KIND_CPU;
    cfg.cpu_threads = 1;
    cfg.cpu_staged = 1;
    gpu_device *d = NULL;
    st_error err = {0};
    assert_int_equal(gpu_device_create(&d, &cfg, NULL, 0, &err), 0);
    assert_false(gpu_device_unified(d));
    assert_non_null(strstr(gpu_device_name(d), "staged"));
    size_t need = prefetch_plan_bytes(0, 2, MB, SB);
    assert_int_equal(need, 2 * (256 + 256));
    void *arena;
    assert_int_equal(gpu_arena_alloc(d, need, &arena, &err), 0);
    prefetch *p = NULL;
    assert_int_equal(prefetch_create(&p, d, 2, MB, SB, arena, need, &err), 0);
    static _Alignas(64) uint8_t host[5][256];
    static int32_t sep[MB];
    const int ns[5] = {8, 8, 6, 7, 8};
    const int copies[5] = {1, 1, 2, 1, 2};
    uint64_t want_copies = 0, want_bytes = 0;
    for (int k = 0; k < 5; k++) {
        uint8_t *px = host[k];
        int32_t *lab = k == 4 ? sep : (int32_t *)(host[k] + MB * SB);
        for (int i = 0; i < ns[k] * SB; i++) px[i] = (uint8_t)(k * 31 + i);
        for (int i = 0; i < ns[k]; i++) lab[i] = k * 100 + i;
        prefetch_batch b;
        void *tag;
        assert_int_equal(prefetch_submit(p, px, lab, ns[k], host[k], &b, &err),
                         0);
        assert_int_equal(b.slot, k % 2);
        uintptr_t lo = (uintptr_t)arena, hi = lo + need;
        assert_true((uintptr_t)b.pixels >= lo && (uintptr_t)b.pixels < hi);
        assert_true((uintptr_t)b.labels >= lo && (uintptr_t)b.labels < hi);
        /* the copy is deferred: a first poll finds it pending (and the
         * model runs it); then the host batch goes back, before it is
         * consumed, and the device buffer holds its bytes */
        assert_int_equal(prefetch_poll(p, 0, &tag, &err), 0);
        assert_int_equal(prefetch_poll(p, 0, &tag, &err), 1);
        assert_ptr_equal(tag, host[k]);
        assert_memory_equal(b.pixels, px, (size_t)ns[k] * SB);
        assert_memory_equal(b.labels, lab, (size_t)ns[k] * sizeof *lab);
        want_copies += (uint64_t)copies[k];
        want_bytes += (uint64_t)ns[k] * (SB + sizeof(int32_t));
        prefetch_stats st;
        prefetch_get_stats(p, &st);
        assert_int_equal(st.copies, want_copies);
        assert_int_equal(prefetch_consumed(p, &b, &err), 0);
    }
    prefetch_stats st;
    prefetch_get_stats(p, &st);
    assert_int_equal(st.batches, 5);
    assert_int_equal(st.bytes, want_bytes);
    prefetch_destroy(p);
    gpu_device_destroy(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_kinds),
        cmocka_unit_test(test_gemm),
        cmocka_unit_test(test_elementwise),
        cmocka_unit_test(test_softmax_xent),
        cmocka_unit_test(test_updates),
        cmocka_unit_test(test_arena_and_sticky_error),
        cmocka_unit_test(test_blas_note),
        cmocka_unit_test(test_host_alloc),
        cmocka_unit_test(test_prefetch_cpu),
        cmocka_unit_test(test_prefetch_staged),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
