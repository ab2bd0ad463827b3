/* tests/test_gpu.c — the CUDA backend against the CPU backend. Compiled
 * always; each test skips, printing why, when no GPU is visible (or the
 * build has no CUDA).
 *
 *   ops        every device op on the same inputs, within tolerance
 *              (gemm, elementwise, loss and optimizer updates)
 *   conv ops   lowering and its adjoint, max and average pooling, batch
 *              norm, activations, axpby, flip, per-channel normalization,
 *              label smoothing: odd sizes, strides, padding, overlapping
 *              windows, several blocks' worth of elements
 *   trainer    forward logits, backward gradients and 3 optimizer steps of
 *              the same model on the same batches (through the
 *              prefetcher's copy path on CUDA)
 *   prefetch   pinned host batches stream over the copy queue; tags come
 *              back in order, and only once the copy has read the batch
 *              (a released batch is overwritten at once); H2D bytes are
 *              timed
 *   memory     device memory in use is identical after epochs 1, 2 and 3
 *
 * ST_REQUIRE_GPU=1 (tests/gpu/check.sh sets it) turns "no GPU, skipped"
 * into a failure, so that a GPU machine whose GPU is not visible cannot
 * pass by skipping.
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
#include "gpu/prefetch.h"
#include "train/layer.h"
#include "train/trainer.h"

/* Built with -DST_TEST_GPU_ON_CPU the "CUDA" side is a second CPU device:
 * a dry run of the tests' own logic on a machine without a GPU. */
#ifdef ST_TEST_GPU_ON_CPU
#define GPU_UNDER_TEST GPU_KIND_CPU
#else
#define GPU_UNDER_TEST GPU_KIND_CUDA
#endif

static int need_gpu(void)
{
    return GPU_UNDER_TEST == GPU_KIND_CPU || need_cuda();
}

static gpu_device *dev(gpu_kind kind)
{
    gpu_device_config cfg;
    gpu_device_config_init(&cfg);
    cfg.kind = kind;
    gpu_device *d = NULL;
    st_error err = {0};
    if (gpu_device_create(&d, &cfg, NULL, 0, &err) != 0)
        fail_msg("device: %s", err.msg);
    return d;
}

static uint64_t rs = 5;
static float frand(void)
{
    rs = rs * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((rs >> 40) & 0xFFFFFF) / 8388608.0f - 1.0f;
}

static void close_enough(const char *what, const float *a, const float *b,
                         size_t n, float tol)
{
    for (size_t i = 0; i < n; i++) {
        float scale = fmaxf(1.0f, fmaxf(fabsf(a[i]), fabsf(b[i])));
        if (!(fabsf(a[i] - b[i]) <= tol * scale))
            fail_msg("%s[%zu]: cuda %.9g vs cpu %.9g", what, i, a[i], b[i]);
    }
}

/* |a[i] - b[i]| <= tol * max|b| for every i: for tensors whose entries are
 * all well below 1 (gradients, weight updates), where close_enough's floor
 * of 1 would let a wrong result through. */
static void close_rel(const char *what, const float *a, const float *b,
                      size_t n, float tol)
{
    float mx = 0.0f;
    for (size_t i = 0; i < n; i++) mx = fmaxf(mx, fabsf(b[i]));
    if (!(mx > 0.0f)) fail_msg("%s: the cpu reference is all zero", what);
    for (size_t i = 0; i < n; i++)
        if (!(fabsf(a[i] - b[i]) <= tol * mx))
            fail_msg("%s[%zu]: cuda %.9g vs cpu %.9g (max |cpu| %.3g, tol "
                     "%.1g)", what, i, a[i], b[i], mx, tol);
}

/* Device scratch: a CUDA arena carved by hand. */
typedef struct bump { uint8_t *base; size_t off; } bump;
static void *take(bump *b, size_t bytes)
{
    void *p = b->base + b->off;
    b->off += (bytes + 255) & ~(size_t)255;
    return p;
}

/* A CUDA and a CPU device, and a bump allocator over a CUDA arena. */
typedef struct pair {
    gpu_device *g, *c;
    bump a;
} pair;

static int pair_open_mib(pair *p, unsigned mib)
{
    if (!need_gpu()) return 0;
    st_error err = {0};
    p->g = dev(GPU_UNDER_TEST);
    p->c = dev(GPU_KIND_CPU);
    p->a = (bump){0};
    if (gpu_arena_alloc(p->g, (size_t)mib << 20, (void **)&p->a.base, &err))
        fail_msg("%s", err.msg);
    return 1;
}

static int pair_open(pair *p) { return pair_open_mib(p, 16); }

static void pair_close(pair *p)
{
    st_error err = {0};
    if (gpu_device_check(p->g, &err) != 0) fail_msg("%s", err.msg);
    gpu_device_destroy(p->g);
    gpu_device_destroy(p->c);
}

enum { M = 67, N = 45, K = 131, R = 70, CL = 10, NU = 1001 };
static float A[K * K], Bm[K * K], C0[R * K], Cc[R * K], Cg[R * K]; /* R > M */

static void test_gemm_agrees(void **state)
{
    (void)state;
    pair p;
    if (!pair_open(&p)) { skip(); return; }
    float *dA = take(&p.a, sizeof A), *dB = take(&p.a, sizeof Bm),
          *dC = take(&p.a, sizeof C0);
    for (size_t i = 0; i < K * K; i++) A[i] = frand(), Bm[i] = frand();
    for (size_t i = 0; i < M * K; i++) C0[i] = frand();
    gpu_to_device(p.g, dA, A, sizeof A);
    gpu_to_device(p.g, dB, Bm, sizeof Bm);
    for (int t = 0; t < 4; t++) {
        int tA = t & 1, tB = t >> 1;
        memcpy(Cc, C0, sizeof C0);
        gpu_to_device(p.g, dC, C0, sizeof C0);
        gpu_gemm(p.c, tA, tB, M, N, K, 0.7f, A, K, Bm, K, 0.3f, Cc, K);
        gpu_gemm(p.g, tA, tB, M, N, K, 0.7f, dA, K, dB, K, 0.3f, dC, K);
        gpu_to_host(p.g, Cg, dC, sizeof Cg);
        close_enough("gemm", Cg, Cc, M * K, 1e-4f);
    }
    pair_close(&p);
}

static void test_elementwise_agrees(void **state)
{
    (void)state;
    pair p;
    if (!pair_open(&p)) { skip(); return; }
    /* normalize: from an aligned start (the 4-pixel path, then a tail of
     * 3) and from an odd offset (the scalar path) */
    static uint8_t px[R * K];
    for (size_t i = 0; i < sizeof px; i++) px[i] = (uint8_t)(i * 31 + 7);
    uint8_t *dpx = take(&p.a, sizeof px);
    float *dC = take(&p.a, sizeof C0), *dy = take(&p.a, sizeof C0);
    gpu_to_device(p.g, dpx, px, sizeof px);
    for (int off = 0; off < 2; off++) {
        size_t n = (size_t)R * K - (off ? 1 : 3); /* R * K - 3 = 4k + 3 */
        gpu_normalize_u8(p.c, px + off, n, 1 / 255.0f, -0.1f, Cc);
        gpu_normalize_u8(p.g, dpx + off, n, 1 / 255.0f, -0.1f, dC);
        gpu_to_host(p.g, Cg, dC, n * 4);
        close_enough(off ? "normalize (odd offset)" : "normalize (aligned)",
                     Cg, Cc, n, 1e-6f);
    }
    /* bias + ReLU, then mask + bias gradient (accumulating) */
    float bias[K], db_c[K], db_g[K];
    for (int i = 0; i < K; i++) bias[i] = frand(), db_c[i] = frand();
    float *dbias = take(&p.a, sizeof bias), *ddb = take(&p.a, sizeof bias);
    gpu_to_device(p.g, dbias, bias, sizeof bias);
    gpu_to_device(p.g, ddb, db_c, sizeof db_c);
    for (size_t i = 0; i < R * K; i++) C0[i] = frand();
    memcpy(Cc, C0, sizeof C0);
    gpu_to_device(p.g, dC, C0, sizeof C0);
    gpu_bias_act(p.c, Cc, bias, R, K, 1);
    gpu_bias_act(p.g, dC, dbias, R, K, 1);
    gpu_to_host(p.g, Cg, dC, R * K * 4);
    close_enough("bias_act", Cg, Cc, R * K, 1e-6f);
    static float grad[R * K];
    for (size_t i = 0; i < R * K; i++) grad[i] = frand();
    gpu_to_device(p.g, dy, grad, R * K * 4);
    gpu_act_bias_grad(p.c, grad, Cc, db_c, R, K, 1, 1);
    gpu_act_bias_grad(p.g, dy, dC, ddb, R, K, 1, 1);
    gpu_to_host(p.g, db_g, ddb, sizeof db_g);
    close_enough("bias_grad", db_g, db_c, K, 1e-5f);
    gpu_to_host(p.g, Cg, dy, R * K * 4);
    close_enough("relu_mask", Cg, grad, R * K, 0);
    pair_close(&p);
}

static void test_loss_and_updates_agree(void **state)
{
    (void)state;
    pair p;
    if (!pair_open(&p)) { skip(); return; }
    int32_t lab[R];
    for (int i = 0; i < R; i++) lab[i] = i % CL;
    lab[5] = -1; /* one bad label */
    for (size_t i = 0; i < R * CL; i++) A[i] = 3 * frand();
    float *dA = take(&p.a, R * CL * 4), *dC = take(&p.a, R * CL * 4);
    int32_t *dlab = take(&p.a, sizeof lab);
    gpu_loss_stats *dst = take(&p.a, sizeof(gpu_loss_stats)), sc = {0}, sg;
    gpu_to_device(p.g, dlab, lab, sizeof lab);
    gpu_zero(p.g, dst, sizeof *dst);
    gpu_to_device(p.g, dA, A, R * CL * 4);
    gpu_softmax_xent(p.c, A, lab, R, CL, 0.25f, Cc, &sc);
    gpu_softmax_xent(p.g, dA, dlab, R, CL, 0.25f, dC, dst);
    gpu_to_host(p.g, Cg, dC, R * CL * 4);
    gpu_to_host(p.g, &sg, dst, sizeof sg);
    close_enough("dlogits", Cg, Cc, R * CL, 1e-6f);
    /* ~70 terms of ~3 nats, each off by an ulp or two (expf, logf) */
    assert_float_equal(sg.loss_sum, sc.loss_sum, 1e-3);
    assert_int_equal(sg.correct, sc.correct);
    assert_int_equal(sg.count, R);
    assert_int_equal(sg.bad_labels, 1);
    static float w[NU], gr[NU], m1[NU], v1[NU], back[NU];
    for (int i = 0; i < NU; i++)
        w[i] = frand(), gr[i] = frand(), m1[i] = frand(), v1[i] = fabsf(frand());
    float *dw = take(&p.a, sizeof w), *dg = take(&p.a, sizeof w),
          *dm = take(&p.a, sizeof w), *dv = take(&p.a, sizeof w);
    gpu_to_device(p.g, dw, w, sizeof w), gpu_to_device(p.g, dg, gr, sizeof w);
    gpu_to_device(p.g, dm, m1, sizeof w), gpu_to_device(p.g, dv, v1, sizeof w);
    gpu_sgd_update(p.c, w, gr, m1, NU, 0.1f, 0.9f, 1, 0.01f);
    gpu_sgd_update(p.g, dw, dg, dm, NU, 0.1f, 0.9f, 1, 0.01f);
    gpu_adamw_update(p.c, w, gr, m1, v1, NU, 1e-3f, 0.9f, 0.999f, 1e-8f,
                     0.01f, 0.19f, 0.002f);
    gpu_adamw_update(p.g, dw, dg, dm, dv, NU, 1e-3f, 0.9f, 0.999f, 1e-8f,
                     0.01f, 0.19f, 0.002f);
    gpu_to_host(p.g, back, dw, sizeof back);
    close_enough("sgd+adamw w", back, w, NU, 1e-5f);
    gpu_to_host(p.g, back, dv, sizeof back);
    close_enough("adamw v", back, v1, NU, 1e-5f);
    pair_close(&p);
}

enum { IN = 784, BT = 64, NBATCH = 6 };

static void batches(uint8_t *px, int32_t *lab)
{
    for (size_t i = 0; i < (size_t)NBATCH * BT * IN; i++)
        px[i] = (uint8_t)(frand() * 127 + 128);
    for (int i = 0; i < NBATCH * BT; i++) lab[i] = (int32_t)((i * 7) % 10);
}

static void recipe(trainer_config *c, int micro)
{
    trainer_config_init(c);
    c->model = (model_spec){.in_c = 1, .in_h = 28, .in_w = 28, .classes = 10,
                            .n_hidden = 2, .hidden = {512, 256},
                            .in_scale = 1.0f / 255};
    c->batch = BT;
    c->micro_batch = micro;
}

/* Submits the first n samples of batch k through the prefetcher and
 * trains (eval = 0) or evaluates (eval = 1) on them. */
static void run_batch(trainer *t, const uint8_t *px, const int32_t *lab,
                      int k, int n, int eval)
{
    st_error err = {0};
    prefetch *pf = trainer_prefetch(t);
    prefetch_batch b;
    void *tag;
    assert_int_equal(prefetch_submit(pf, px + (size_t)k * BT * IN,
                                     lab + k * BT, n, NULL, &b, &err), 0);
    if ((eval ? trainer_eval_batch(t, &b, &err)
              : trainer_train_batch(t, &b, &err)) != 0)
        fail_msg("%s", err.msg);
    assert_int_equal(prefetch_consumed(pf, &b, &err), 0);
    int rc;
    while ((rc = prefetch_poll(pf, 1, &tag, &err)) == 1) {
    }
    if (rc < 0) fail_msg("prefetch_poll: %s", err.msg);
}

static void step(trainer *t, const uint8_t *px, const int32_t *lab, int k)
{
    run_batch(t, px, lab, k, BT, 0);
}

static void test_trainer_agrees(void **state)
{
    (void)state;
    if (!need_gpu()) { skip(); return; }
    gpu_device *dv[2] = {dev(GPU_UNDER_TEST), dev(GPU_KIND_CPU)};
    uint8_t *px = gpu_host_alloc((size_t)NBATCH * BT * IN, dv[0]);
    int32_t *lab = gpu_host_alloc(sizeof(int32_t) * NBATCH * BT, dv[0]);
    batches(px, lab);
    trainer_config c;
    recipe(&c, 32);
    c.optim.nesterov = 1;
    c.optim.weight_decay = 1e-4f;
    trainer *t[2];
    st_error err = {0};
    size_t np = 0;
    float *logits[2], *grads[2], *p0[2], *params[2];
    for (int k = 0; k < 2; k++) {
        assert_int_equal(trainer_create(&t[k], dv[k], &c, &err), 0);
        model *m = trainer_model(t[k]);
        np = model_param_count(m);
        logits[k] = malloc(32 * 10 * 4);
        grads[k] = malloc(np * 4);
        p0[k] = malloc(np * 4);
        params[k] = malloc(np * 4);
        assert_int_equal(trainer_get_params(t[k], p0[k], NULL, &err), 0);
        step(t[k], px, lab, 0); /* grads: batch 0's two micro-batches
                                   summed; logits: its last micro-batch */
        gpu_to_host(dv[k], logits[k], model_logits(m), 32 * 10 * 4);
        gpu_to_host(dv[k], grads[k], model_grads(m), np * 4);
        for (int s = 1; s < 3; s++) step(t[k], px, lab, s);
        assert_int_equal(trainer_get_params(t[k], params[k], NULL, &err), 0);
        assert_int_equal(gpu_device_check(dv[k], &err), 0);
        /* what 3 steps changed: ~1e-2 and below, next to weights of ~0.1,
         * so compare the change itself, not the weights */
        for (size_t i = 0; i < np; i++) params[k][i] -= p0[k][i];
    }
    close_enough("initial params", p0[0], p0[1], np, 0.0f);
    close_enough("logits", logits[0], logits[1], 32 * 10, 1e-4f);
    close_rel("grads", grads[0], grads[1], np, 1e-3f);
    close_rel("params change over 3 steps", params[0], params[1], np, 1e-3f);
    for (int k = 0; k < 2; k++) {
        free(logits[k]), free(grads[k]), free(p0[k]), free(params[k]);
        trainer_destroy(t[k]);
    }
    gpu_host_free(px, dv[0]);
    gpu_host_free(lab, dv[0]);
    gpu_device_destroy(dv[0]);
    gpu_device_destroy(dv[1]);
}

static void test_prefetch_stream(void **state)
{
    (void)state;
    if (!need_gpu()) { skip(); return; }
    gpu_device *g = dev(GPU_UNDER_TEST);
    st_error err = {0};
    enum { D = 3, NB = 10, SB = 4096, MB = 64 };
    size_t need = prefetch_plan_bytes(0, D, MB, SB);
    void *base;
    assert_int_equal(gpu_arena_alloc(g, need, &base, &err), 0);
    prefetch *p = NULL;
    assert_int_equal(prefetch_create(&p, g, D, MB, SB, base, need, &err), 0);
    uint8_t *host = gpu_host_alloc((size_t)NB * MB * SB, g);
    int32_t *lab = gpu_host_alloc(sizeof(int32_t) * NB * MB, g);
    uint8_t *check = malloc(MB * SB);
    int tags[NB], next = 0;
    for (int k = 0; k < NB; k++) {
        memset(host + (size_t)k * MB * SB, k + 1, (size_t)MB * SB);
        prefetch_batch b;
        assert_int_equal(prefetch_submit(p, host + (size_t)k * MB * SB,
                                         lab + k * MB, MB, &tags[k], &b, &err),
                         0);
        assert_int_equal(b.slot, k % D);
        /* a released batch is refilled at once, as the loader's producers
         * do: a copy still reading it would pick up the new bytes */
        void *tag;
        while (prefetch_poll(p, 0, &tag, &err) == 1) {
            assert_ptr_equal(tag, &tags[next]);
            memset(host + (size_t)next++ * MB * SB, 0xEE, (size_t)MB * SB);
        }
        gpu_to_host(g, check, b.pixels, (size_t)MB * SB); /* compute queue */
        for (size_t i = 0; i < (size_t)MB * SB; i += 997)
            assert_int_equal(check[i], k + 1);
        assert_int_equal(prefetch_consumed(p, &b, &err), 0);
    }
    void *tag;
    while (prefetch_poll(p, 1, &tag, &err) == 1)
        assert_ptr_equal(tag, &tags[next++]);
    assert_int_equal(next, NB);
    prefetch_stats st;
    prefetch_get_stats(p, &st);
    if (!gpu_device_unified(g)) {
        assert_int_equal(st.bytes, (uint64_t)NB * MB * (SB + 4));
        assert_true(st.copy_s > 0);
        print_message("prefetch: %.2f GB/s over %d batches\n",
                      st.bytes / st.copy_s / 1e9, NB);
    }
    assert_int_equal(gpu_device_check(g, &err), 0);
    prefetch_destroy(p);
    free(check);
    gpu_host_free(host, g);
    gpu_host_free(lab, g);
    gpu_device_destroy(g);
}

static size_t mem_used(gpu_device *g)
{
    gpu_mem_stats ms;
    assert_int_equal(gpu_device_mem(g, &ms), 0);
    return ms.used;
}

/* Epochs as streamtrain runs them: a short last batch in training and in
 * eval (other GEMM shapes than the full batches), statistics read and
 * reset. Memory is read where run.c reads it (after training, before the
 * eval pass) and after the eval pass. Only the second must be flat from
 * epoch 1 on: the first may grow once, in epoch 2, if epoch 1's eval pass
 * loaded code for a shape training had not used (CUDA lazy loading). */
static void test_memory_flat(void **state)
{
    (void)state;
    if (!need_gpu()) { skip(); return; }
    gpu_device *g = dev(GPU_UNDER_TEST);
    uint8_t *px = gpu_host_alloc((size_t)NBATCH * BT * IN, g);
    int32_t *lab = gpu_host_alloc(sizeof(int32_t) * NBATCH * BT, g);
    batches(px, lab);
    trainer_config c;
    recipe(&c, 0);
    trainer *t = NULL;
    st_error err = {0};
    assert_int_equal(trainer_create(&t, g, &c, &err), 0);
    size_t before_eval[3], after_eval[3];
    gpu_loss_stats st;
    for (int epoch = 0; epoch < 3; epoch++) {
        for (int k = 0; k < NBATCH; k++)
            run_batch(t, px, lab, k, k < NBATCH - 1 ? BT : 40, 0);
        assert_int_equal(trainer_read_stats(t, 0, 1, &st, &err), 0);
        before_eval[epoch] = mem_used(g);
        for (int k = 0; k < NBATCH; k++)
            run_batch(t, px, lab, k, k < NBATCH - 1 ? BT : 16, 1);
        assert_int_equal(trainer_read_stats(t, 1, 1, &st, &err), 0);
        after_eval[epoch] = mem_used(g);
        print_message("epoch %d: device memory in use %zu before eval, %zu "
                      "after\n", epoch + 1, before_eval[epoch],
                      after_eval[epoch]);
    }
    if (before_eval[1] != before_eval[0])
        print_message("note: before eval, epoch 2 uses %lld bytes more than "
                      "epoch 1 (first use of a shape in epoch 1's eval)\n",
                      (long long)before_eval[1] - (long long)before_eval[0]);
    assert_int_equal(before_eval[1], before_eval[2]);
    assert_int_equal(after_eval[0], after_eval[1]);
    assert_int_equal(after_eval[0], after_eval[2]);
    assert_int_equal(gpu_device_check(g, &err), 0);
    trainer_destroy(t);
    gpu_host_free(px, g);
    gpu_host_free(lab, g);
    gpu_device_destroy(g);
}

/* The reference for the prefetcher's H2D figure: plain async copies from
 * pinned memory on the copy queue, one large and many batch-sized. */
static void test_h2d_reference(void **state)
{
    (void)state;
    if (!need_gpu()) { skip(); return; }
    gpu_device *g = dev(GPU_UNDER_TEST);
    st_error err = {0};
    const size_t big = (size_t)256 << 20, small = (size_t)128 * (784 + 4);
    void *dst;
    assert_int_equal(gpu_arena_alloc(g, big, &dst, &err), 0);
    uint8_t *src = gpu_host_alloc(big, g);
    assert_non_null(src);
    memset(src, 1, big);
    gpu_event *a, *b;
    gpu_event_create(g, &a);
    gpu_event_create(g, &b);
    for (int round = 0; round < 2; round++) { /* first round warms up */
        float ms_big, ms_small;
        gpu_event_record(g, a, GPU_Q_COPY);
        gpu_copy_async(g, GPU_Q_COPY, dst, src, big);
        gpu_event_record(g, b, GPU_Q_COPY);
        gpu_event_wait_host(g, b);
        gpu_event_elapsed(g, a, b, &ms_big);
        gpu_event_record(g, a, GPU_Q_COPY);
        for (int k = 0; k < 200; k++)
            gpu_copy_async(g, GPU_Q_COPY, (uint8_t *)dst + k * small,
                           src + k * small, small);
        gpu_event_record(g, b, GPU_Q_COPY);
        gpu_event_wait_host(g, b);
        gpu_event_elapsed(g, a, b, &ms_small);
        if (round == 1)
            print_message("h2d reference (pinned cudaMemcpyAsync): %.2f GB/s "
                          "for 256 MiB, %.2f GB/s for %zu-byte batches\n",
                          big / (ms_big * 1e-3) / 1e9,
                          200.0 * small / (ms_small * 1e-3) / 1e9, small);
    }
    assert_int_equal(gpu_device_check(g, &err), 0);
    gpu_event_destroy(g, a);
    gpu_event_destroy(g, b);
    gpu_host_free(src, g);
    gpu_device_destroy(g);
}

/* ---- conv-net ops (NHWC) ------------------------------------------------
 * Each op on both devices from the same inputs. Tolerances: 0 (bitwise)
 * where both backends do the same float operations in the same order:
 * copies, maxima, and the gathers of col2im / max pool backward, which add
 * each pixel's taps in ascending output order as the CPU's scatter does;
 * avg pool (sums in position order, times 1/hw). Otherwise the difference
 * is the GPU's fused multiply-add and its erff/expf (a few ulps) or
 * batch norm's summation order (in double): 1e-5 to 1e-6 as stated. */

static float *fbuf(size_t n)
{
    float *b = malloc(n * sizeof *b);
    assert_non_null(b);
    return b;
}

/* A fresh device copy of h (n floats); n floats back from the device. */
static float *dput(pair *p, const float *h, size_t n)
{
    float *d = take(&p->a, n * sizeof *d);
    gpu_to_device(p->g, d, h, n * sizeof *d);
    return d;
}
#define dget(p, h, d, n) gpu_to_host((p)->g, (h), (d), (n) * sizeof(float))

typedef struct geo { int n, h, w, c, kh, kw, sh, sw, ph, pw; } geo;

static gpu_conv_geom mk(geo q)
{
    gpu_conv_geom g;
    assert_int_equal(gpu_conv_geom_init(&g, q.n, q.h, q.w, q.c, q.kh, q.kw,
                                        q.sh, q.sw, q.ph, q.pw), 0);
    return g;
}

static void test_lowering_agrees(void **state)
{
    (void)state;
    pair p;
    if (!pair_open(&p)) { skip(); return; }
    const geo gs[] = {
        {3, 7, 5, 3, 3, 3, 1, 1, 1, 1}, /* odd sizes, padding */
        {2, 9, 8, 4, 3, 2, 2, 2, 1, 1}, /* stride 2 < kernel: overlap */
        {2, 6, 7, 5, 1, 1, 2, 2, 0, 0}, /* 1x1, stride 2 skips pixels */
        {1, 5, 6, 2, 5, 4, 1, 3, 2, 0}, /* large window, mixed strides */
    };
    for (size_t t = 0; t < sizeof gs / sizeof gs[0]; t++) {
        gpu_conv_geom g = mk(gs[t]);
        size_t nx = (size_t)g.n * g.h * g.w * g.c;
        size_t nc = (size_t)g.n * g.oh * g.ow * g.kh * g.kw * g.c;
        float *x = fbuf(nx), *col = fbuf(nc), *cc = fbuf(nc), *cg = fbuf(nc);
        float *dx = fbuf(nx), *dxg = fbuf(nx);
        for (size_t i = 0; i < nx; i++) x[i] = frand();
        for (size_t i = 0; i < nc; i++) col[i] = frand();
        p.a.off = 0;
        float *d_x = dput(&p, x, nx), *d_col = take(&p.a, nc * 4);
        gpu_im2col(p.c, &g, x, cc);
        gpu_im2col(p.g, &g, d_x, d_col);
        dget(&p, cg, d_col, nc);
        close_enough("im2col", cg, cc, nc, 0.0f);
        /* col2im into garbage (accumulate 0), then on top (accumulate 1) */
        d_col = dput(&p, col, nc);
        gpu_col2im(p.c, &g, col, dx, 0);
        gpu_col2im(p.g, &g, d_col, d_x, 0);
        dget(&p, dxg, d_x, nx);
        close_enough("col2im", dxg, dx, nx, 0.0f);
        gpu_col2im(p.c, &g, col, dx, 1);
        gpu_col2im(p.g, &g, d_col, d_x, 1);
        dget(&p, dxg, d_x, nx);
        close_enough("col2im accumulate", dxg, dx, nx, 0.0f);
        free(x), free(col), free(cc), free(cg), free(dx), free(dxg);
    }
    pair_close(&p);
}

static void test_pool_agrees(void **state)
{
    (void)state;
    pair p;
    if (!pair_open(&p)) { skip(); return; }
    const geo gs[] = {
        {3, 9, 7, 5, 3, 3, 2, 2, 1, 1}, /* overlapping windows, padding */
        {2, 7, 9, 3, 2, 2, 2, 2, 0, 0}, /* odd sizes: last row dropped */
        {2, 6, 5, 4, 3, 2, 1, 2, 1, 1}, /* stride 1 < kernel */
    };
    for (size_t t = 0; t < sizeof gs / sizeof gs[0]; t++) {
        gpu_conv_geom g = mk(gs[t]);
        size_t nx = (size_t)g.n * g.h * g.w * g.c;
        size_t ny = (size_t)g.n * g.oh * g.ow * g.c;
        float *x = fbuf(nx), *y = fbuf(ny), *yg = fbuf(ny), *dy = fbuf(ny);
        float *dx = fbuf(nx), *dxg = fbuf(nx);
        int32_t *idx = malloc(ny * 4), *idxg = malloc(ny * 4);
        /* few distinct values: ties, where the first max must win */
        for (size_t i = 0; i < nx; i++) x[i] = (float)(int)(frand() * 3);
        for (size_t i = 0; i < ny; i++) dy[i] = frand();
        p.a.off = 0;
        float *d_x = dput(&p, x, nx), *d_y = take(&p.a, ny * 4);
        int32_t *d_idx = take(&p.a, ny * 4);
        gpu_maxpool_fwd(p.c, &g, x, y, idx);
        gpu_maxpool_fwd(p.g, &g, d_x, d_y, d_idx);
        dget(&p, yg, d_y, ny);
        gpu_to_host(p.g, idxg, d_idx, ny * 4);
        close_enough("maxpool y", yg, y, ny, 0.0f);
        for (size_t i = 0; i < ny; i++)
            if (idxg[i] != idx[i])
                fail_msg("maxpool idx[%zu]: cuda %d vs cpu %d", i, idxg[i],
                         idx[i]);
        float *d_dy = dput(&p, dy, ny);
        gpu_maxpool_bwd(p.c, &g, dy, idx, dx);
        gpu_maxpool_bwd(p.g, &g, d_dy, d_idx, d_x);
        dget(&p, dxg, d_x, nx);
        close_enough("maxpool dx", dxg, dx, nx, 0.0f);
        free(x), free(y), free(yg), free(dy), free(dx), free(dxg);
        free(idx), free(idxg);
    }
    /* global average pool: (5, 7x7, 6) -> (5, 6) and back */
    enum { PN = 5, HW = 49, PC = 6 };
    float *x = fbuf(PN * HW * PC), *y = fbuf(PN * PC), *yg = fbuf(PN * PC);
    float *dx = fbuf(PN * HW * PC), *dxg = fbuf(PN * HW * PC);
    for (int i = 0; i < PN * HW * PC; i++) x[i] = frand();
    p.a.off = 0;
    float *d_x = dput(&p, x, PN * HW * PC), *d_y = take(&p.a, PN * PC * 4);
    gpu_avgpool_fwd(p.c, x, PN, HW, PC, y);
    gpu_avgpool_fwd(p.g, d_x, PN, HW, PC, d_y);
    dget(&p, yg, d_y, PN * PC);
    close_enough("avgpool y", yg, y, PN * PC, 0.0f);
    gpu_avgpool_bwd(p.c, y, PN, HW, PC, dx);
    gpu_avgpool_bwd(p.g, d_y, PN, HW, PC, d_x);
    dget(&p, dxg, d_x, PN * HW * PC);
    close_enough("avgpool dx", dxg, dx, PN * HW * PC, 0.0f);
    free(x), free(y), free(yg), free(dx), free(dxg);
    pair_close(&p);
}

/* Batch norm over (BR, BC), inputs around 5 (a naive one-pass variance
 * would lose digits there). split 0: no workspace, the one-launch
 * kernels; split 1: with the plan's workspace, the chunked path. */
static void bn_case(int split, int BR, int BC)
{
    pair p; /* room for the workspace, cuBLAS's and the kernels': 34 MiB */
    if (!pair_open_mib(&p, split ? 48 : 16)) { skip(); return; }
    if (split) {
        size_t ws = gpu_device_workspace_bytes(p.g);
        assert_int_equal(gpu_device_set_workspace(p.g, take(&p.a, ws), ws), 0);
    }
    const int BN_ = BR * BC;
    float *x = fbuf(BN_), *y = fbuf(BN_), *yg = fbuf(BN_), *dy = fbuf(BN_);
    float ch[8][32] = {{0}}, chg[32]; /* gamma beta rm rv sm si dg db */
    assert_true(BC <= 32);
    for (int i = 0; i < BN_; i++) x[i] = 5.0f + frand(), dy[i] = frand();
    for (int k = 0; k < BC; k++) {
        ch[0][k] = 1.0f + 0.5f * frand(), ch[1][k] = 0.3f * frand();
        ch[2][k] = 0.1f * frand(), ch[3][k] = 1.0f + 0.5f * frand();
        ch[6][k] = frand(), ch[7][k] = frand();
    }
    float *d_x = dput(&p, x, BN_), *d_dy = dput(&p, dy, BN_), *d[8];
    for (int j = 0; j < 8; j++) d[j] = dput(&p, ch[j], BC);
    /* train, in place on the GPU: y == x */
    gpu_bn_fwd_train(p.c, x, BR, BC, ch[0], ch[1], 1e-5f, 0.1f, ch[2], ch[3],
                     ch[4], ch[5], y);
    gpu_bn_fwd_train(p.g, d_x, BR, BC, d[0], d[1], 1e-5f, 0.1f, d[2], d[3],
                     d[4], d[5], d_x);
    dget(&p, yg, d_x, BN_);
    close_enough("bn train y", yg, y, BN_, 1e-5f);
    const char *names[] = {"run_mean", "run_var", "save_mean", "save_invstd"};
    for (int j = 2; j < 6; j++) {
        dget(&p, chg, d[j], BC);
        close_enough(names[j - 2], chg, ch[j], BC, 1e-6f);
    }
    /* backward from the original x (re-sent), accumulating into dgamma and
     * dbeta, dx in place over dy on the GPU */
    gpu_to_device(p.g, d_x, x, BN_ * 4);
    gpu_bn_bwd(p.c, x, dy, BR, BC, ch[0], ch[4], ch[5], ch[6], ch[7], y, 1);
    gpu_bn_bwd(p.g, d_x, d_dy, BR, BC, d[0], d[4], d[5], d[6], d[7], d_dy, 1);
    dget(&p, yg, d_dy, BN_);
    close_rel("bn dx", yg, y, BN_, 1e-5f);
    for (int j = 6; j < 8; j++) {
        dget(&p, chg, d[j], BC);
        close_rel(j == 6 ? "bn dgamma" : "bn dbeta", chg, ch[j], BC, 1e-5f);
    }
    /* evaluation with the running estimates */
    gpu_bn_fwd_eval(p.c, x, BR, BC, ch[0], ch[1], 1e-5f, ch[2], ch[3], y);
    gpu_bn_fwd_eval(p.g, d_x, BR, BC, d[0], d[1], 1e-5f, d[2], d[3], d_dy);
    dget(&p, yg, d_dy, BN_);
    close_enough("bn eval y", yg, y, BN_, 1e-5f);
    free(x), free(y), free(yg), free(dy);
    pair_close(&p);
}

/* 105 rows (several per row-thread; 3 chunks when split), 19 channels
 * (blocks of 8 or 32, the last partial); 4100 rows: 128 chunks (the cap)
 * of uneven size. */
static void test_bn_agrees(void **s) { (void)s, bn_case(0, 105, 19); }
static void test_bn_split_agrees(void **s)
{
    (void)s, bn_case(1, 105, 19), bn_case(1, 4100, 5);
}

static void test_elementwise_conv_agrees(void **state)
{
    (void)state;
    pair p;
    if (!pair_open(&p)) { skip(); return; }
    enum { EN = 3001 };
    float *x = fbuf(EN), *dy = fbuf(EN), *y = fbuf(EN), *yg = fbuf(EN);
    for (int i = 0; i < EN; i++) x[i] = 4 * frand(), dy[i] = frand();
    x[0] = 0.0f;
    p.a.off = 0;
    float *d_x = dput(&p, x, EN), *d_dy = dput(&p, dy, EN),
          *d_y = take(&p.a, EN * 4);
    /* ReLU exactly, GELU within its erff/expf ulps */
    for (int k = GPU_ACT_RELU; k <= GPU_ACT_GELU; k++) {
        float tol = k == GPU_ACT_RELU ? 0.0f : 1e-6f;
        gpu_act_fwd(p.c, k, x, y, EN);
        gpu_act_fwd(p.g, k, d_x, d_y, EN);
        dget(&p, yg, d_y, EN);
        close_enough(k == GPU_ACT_RELU ? "relu" : "gelu", yg, y, EN, tol);
        gpu_to_device(p.g, d_y, dy, EN * 4); /* dx in place over dy */
        gpu_act_bwd(p.c, k, x, dy, y, EN);
        gpu_act_bwd(p.g, k, d_x, d_y, d_y, EN);
        dget(&p, yg, d_y, EN);
        close_enough(k == GPU_ACT_RELU ? "relu'" : "gelu'", yg, y, EN, tol);
    }
    /* axpby: beta 0 over NaNs (never read), then y += y (x == y) */
    for (int i = 0; i < EN; i++) yg[i] = NAN;
    gpu_to_device(p.g, d_y, yg, EN * 4);
    gpu_axpby(p.c, EN, 0.5f, x, 0.0f, y);
    gpu_axpby(p.g, EN, 0.5f, d_x, 0.0f, d_y);
    gpu_axpby(p.c, EN, -1.5f, dy, 2.0f, y);
    gpu_axpby(p.g, EN, -1.5f, d_dy, 2.0f, d_y);
    gpu_axpby(p.c, EN, 1.0f, y, 1.0f, y);
    gpu_axpby(p.g, EN, 1.0f, d_y, 1.0f, d_y);
    dget(&p, yg, d_y, EN);
    close_enough("axpby", yg, y, EN, 1e-6f);
    /* mirror: (3, 5, 7, 4) */
    gpu_flip_w(p.c, x, 3, 5, 7, 4, y);
    gpu_flip_w(p.g, d_x, 3, 5, 7, 4, d_y);
    dget(&p, yg, d_y, 3 * 5 * 7 * 4);
    close_enough("flip_w", yg, y, 3 * 5 * 7 * 4, 0.0f);
    /* per-channel normalization, 3 channels, from an odd offset */
    static uint8_t px[EN];
    for (int i = 0; i < EN; i++) px[i] = (uint8_t)(i * 37 + 11);
    uint8_t *d_px = take(&p.a, EN);
    gpu_to_device(p.g, d_px, px, EN);
    const float mean[4] = {0.49f, 0.48f, 0.45f}, sd[4] = {0.25f, 0.24f, 0.26f};
    gpu_normalize_u8_ch(p.c, px + 1, 1000, 3, mean, sd, y);
    gpu_normalize_u8_ch(p.g, d_px + 1, 1000, 3, mean, sd, d_y);
    dget(&p, yg, d_y, 3000);
    close_enough("normalize_u8_ch", yg, y, 3000, 1e-6f);
    free(x), free(dy), free(y), free(yg);
    pair_close(&p);
}

/* Label smoothing 0.1 against the CPU; smoothing 0 must be exactly
 * gpu_softmax_xent on the same device. */
static void test_softmax_ls_agrees(void **state)
{
    (void)state;
    pair p;
    if (!pair_open(&p)) { skip(); return; }
    enum { LR = 70, LC = 37 }; /* 37 classes: lanes with 2 and with 1 */
    int32_t lab[LR];
    for (int i = 0; i < LR; i++) lab[i] = (i * 11) % LC;
    lab[3] = LC; /* a bad label */
    float *lg = fbuf(LR * LC), *gc = fbuf(LR * LC), *gg = fbuf(LR * LC);
    for (int i = 0; i < LR * LC; i++) lg[i] = 3 * frand();
    p.a.off = 0;
    float *d_lg = dput(&p, lg, LR * LC), *d_g = take(&p.a, LR * LC * 4),
          *d_g0 = take(&p.a, LR * LC * 4);
    int32_t *d_lab = take(&p.a, sizeof lab);
    gpu_loss_stats *d_st = take(&p.a, 2 * sizeof *d_st), sc = {0}, sg[2];
    gpu_to_device(p.g, d_lab, lab, sizeof lab);
    gpu_zero(p.g, d_st, 2 * sizeof *d_st);
    gpu_softmax_xent_ls(p.c, lg, lab, LR, LC, 0.1f, 0.5f, gc, &sc);
    gpu_softmax_xent_ls(p.g, d_lg, d_lab, LR, LC, 0.1f, 0.5f, d_g, d_st);
    dget(&p, gg, d_g, LR * LC);
    gpu_to_host(p.g, sg, d_st, sizeof sg[0]);
    close_enough("smoothed dlogits", gg, gc, LR * LC, 1e-6f);
    assert_float_equal(sg[0].loss_sum, sc.loss_sum, 1e-3);
    assert_int_equal(sg[0].correct, sc.correct);
    assert_int_equal(sg[0].bad_labels, 1);
    gpu_zero(p.g, d_st, 2 * sizeof *d_st);
    gpu_softmax_xent_ls(p.g, d_lg, d_lab, LR, LC, 0.0f, 0.5f, d_g, d_st);
    gpu_softmax_xent(p.g, d_lg, d_lab, LR, LC, 0.5f, d_g0, d_st + 1);
    dget(&p, gg, d_g, LR * LC);
    dget(&p, gc, d_g0, LR * LC);
    gpu_to_host(p.g, sg, d_st, sizeof sg);
    assert_memory_equal(gg, gc, LR * LC * 4);
    /* the same terms; on a GPU the atomics may add them in another order */
    assert_float_equal(sg[0].loss_sum, sg[1].loss_sum, 1e-9 * sg[1].loss_sum);
    assert_int_equal(sg[0].correct, sg[1].correct);
    assert_int_equal(sg[0].bad_labels, sg[1].bad_labels);
    free(lg), free(gc), free(gg);
    pair_close(&p);
}

/* ---- train/ layers on both backends -------------------------------------
 * Each layer bound on each device, the same parameters, input and dy:
 * forward (training), backward, forward (evaluation). Composites of the
 * ops above; cuBLAS and OpenBLAS add the GEMMs' terms in other orders:
 * 1e-4 of the largest entry. */

static void layer_agrees(const char *name, layer L[2], int n)
{
    pair p;
    if (!pair_open(&p)) { skip(); return; }
    gpu_device *dv[2] = {p.g, p.c};
    st_error err = {0};
    bump cb = {0};
    assert_int_equal(gpu_arena_alloc(p.c, 8u << 20, (void **)&cb.base, &err), 0);
    bump *b[2] = {&p.a, &cb};
    size_t wc = L[0].ops->weight_count(&L[0]), bc = L[0].ops->bias_count(&L[0]);
    size_t st = layer_state_count(&L[0]), wk = layer_workspace_floats(&L[0], n);
    size_t sc = L[0].ops->scratch_floats(&L[0], n);
    size_t in = (size_t)n * layer_in_size(&L[0]);
    size_t out = (size_t)n * layer_out_size(&L[0]);
    size_t nh = in + 2 * out + wc + bc + st;
    float *h = fbuf(nh), *back = fbuf(nh), *t[2][5];
    uint64_t rng = 42; /* h: x, dy, w, b, state */
    for (size_t i = 0; i < in + out; i++) h[i] = frand();
    L[0].ops->init(&L[0], h + in + out, h + in + out + wc, &rng);
    for (size_t i = 0; i < bc; i++) h[in + out + wc + i] += 0.1f * frand();
    layer_init_state(&L[0], h + in + out + wc + bc);
    for (int k = 0; k < 2; k++) {
        layer *l = &L[k];
        float **f[] = {&l->w, &l->gw, &l->b, &l->gb, &l->state, &l->scratch,
                       &l->work};
        size_t sz[] = {wc, wc, bc, bc, st, sc, wk};
        for (int j = 0; j < 7; j++) *f[j] = take(b[k], sz[j] * 4 + 4);
        l->work_floats = wk;
        layer_bind(l, n);
        size_t tz[] = {in, out, out, in, out}; /* x y dy dx y_eval */
        for (int j = 0; j < 5; j++) t[k][j] = take(b[k], tz[j] * 4);
        gpu_to_device(dv[k], t[k][0], h, in * 4);
        gpu_to_device(dv[k], t[k][2], h + in, out * 4);
        gpu_to_device(dv[k], l->w, h + in + out, wc * 4);
        gpu_to_device(dv[k], l->b, h + in + out + wc, bc * 4);
        gpu_to_device(dv[k], l->state, h + in + out + wc + bc, st * 4);
        if (l->ops->forward(l, dv[k], t[k][0], t[k][1], n, 1) ||
            l->ops->backward(l, dv[k], t[k][0], t[k][1], t[k][2], t[k][3], n,
                             0) ||
            l->ops->forward(l, dv[k], t[k][0], t[k][4], n, 0) ||
            gpu_device_check(dv[k], &err))
            fail_msg("%s on %s: %s", name, k ? "cpu" : "cuda", err.msg);
    }
    const char *what[] = {"y", "dx", "gw", "gb", "state", "y eval"};
    const float *pg[] = {t[0][1], t[0][3], L[0].gw, L[0].gb, L[0].state, t[0][4]},
                *pc[] = {t[1][1], t[1][3], L[1].gw, L[1].gb, L[1].state, t[1][4]};
    size_t nn[] = {out, in, wc, bc, st, out};
    for (int j = 0; j < 6; j++) {
        if (nn[j] == 0) continue;
        char msg[96];
        snprintf(msg, sizeof msg, "%s %s", name, what[j]);
        gpu_to_host(p.g, back, pg[j], nn[j] * 4);
        close_rel(msg, back, pc[j], nn[j], 1e-4f);
    }
    free(h), free(back);
    layer_release(&L[0]), layer_release(&L[1]);
    pair_close(&p);
}

static void test_layers_agree(void **state)
{
    (void)state;
    if (!need_gpu()) { skip(); return; }
    st_error e = {0};
    layer L[2];
    const layer_win k3s2 = {3, 3, 2, 2, 1, 1};
    for (int k = 0; k < 2; k++) {
        assert_int_equal(layer_conv_init(&L[k], 3, 9, 7, 8, k3s2, 1, &e), 0);
        L[k].relu = 1;
    }
    layer_agrees("conv k3 s2 bias relu", L, 5);
    for (int k = 0; k < 2; k++)
        assert_int_equal(layer_maxpool_init(&L[k], 6, 9, 7, k3s2, &e), 0);
    layer_agrees("maxpool k3 s2", L, 4);
    for (int k = 0; k < 2; k++)
        assert_int_equal(layer_bn_init(&L[k], 6, 5, 7, 1, &e), 0);
    layer_agrees("bn relu", L, 4);
    for (int k = 0; k < 2; k++)
        assert_int_equal(layer_avgpool_init(&L[k], 6, 5, 7, &e), 0);
    layer_agrees("avgpool", L, 4);
    layer_res_config rp = {.out_c = 8, .k = 3, .stride = 2, .proj = 1,
                           .act = GPU_ACT_RELU, .act_after_add = 1};
    for (int k = 0; k < 2; k++)
        assert_int_equal(layer_res_init(&L[k], 4, 9, 8, &rp, &e), 0);
    layer_agrees("res proj s2", L, 3);
    layer_res_config ri = {.out_c = 6, .k = 3, .stride = 1, .act = GPU_ACT_GELU,
                           .act_after_bn2 = 1, .act_after_add = 1};
    for (int k = 0; k < 2; k++)
        assert_int_equal(layer_res_init(&L[k], 6, 7, 5, &ri, &e), 0);
    layer_agrees("res identity gelu", L, 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gemm_agrees),
        cmocka_unit_test(test_elementwise_agrees),
        cmocka_unit_test(test_loss_and_updates_agree),
        cmocka_unit_test(test_lowering_agrees),
        cmocka_unit_test(test_pool_agrees),
        cmocka_unit_test(test_bn_agrees),
        cmocka_unit_test(test_bn_split_agrees),
        cmocka_unit_test(test_elementwise_conv_agrees),
        cmocka_unit_test(test_softmax_ls_agrees),
        cmocka_unit_test(test_layers_agree),
        cmocka_unit_test(test_trainer_agrees),
        cmocka_unit_test(test_prefetch_stream),
        cmocka_unit_test(test_memory_flat),
        cmocka_unit_test(test_h2d_reference),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
