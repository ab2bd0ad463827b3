/* tests/test_gpu.c — the CUDA backend against the CPU backend: the ops of
 * the MLP path, the whole trainer, the prefetcher and device memory. (The
 * conv-net ops and the train/ layers: tests/test_gpu_conv.c.) Compiled
 * always; each test skips, printing why, when no GPU is visible (or the
 * build has no CUDA).
 *
 *   ops        gemm, elementwise, loss and optimizer updates on the same
 *              inputs, within tolerance
 *   trainer    forward logits, backward gradients and 3 optimizer steps of
 *              the same model on the same batches (through the
 *              prefetcher's copy path on CUDA)
 *   prefetch   pinned host batches stream over the copy queue; tags come
 *              back in order, and only once the copy has read the batch
 *              (a released batch is overwritten at once); H2D bytes are
 *              timed
 *   memory     device memory in use is identical after epochs 1, 2 and 3
 *   h2d        plain pinned copies, the reference for the prefetcher's
 *              H2D figure (tests/gpu/check.sh reads the line it prints)
 *
 * ST_REQUIRE_GPU=1 (tests/gpu/check.sh sets it) turns "no GPU, skipped"
 * into a failure, so that a GPU machine whose GPU is not visible cannot
 * pass by skipping. Shared pieces: tests/gpu_fixture.h.
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
#include "gpu_fixture.h"
#include "gpu/prefetch.h"
#include "train/trainer.h"

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

/* --tf32: cuBLAS's math mode follows the config (the device's name reads
 * it back from cuBLAS), and a GEMM under it stays within TF32's error of
 * the CPU's (10-bit mantissas: ~1e-3; cuemu computes fp32 either way).
 * The CPU backend ignores the flag. */
static void test_tf32_mode(void **state)
{
    (void)state;
    if (!need_gpu()) { skip(); return; }
    gpu_device_config cfg;
    gpu_device_config_init(&cfg);
    cfg.kind = GPU_UNDER_TEST;
    gpu_device *d = NULL, *t = NULL;
    st_error err = {0};
    assert_int_equal(gpu_device_create(&d, &cfg, NULL, 0, &err), 0);
    cfg.tf32 = 1;
    assert_int_equal(gpu_device_create(&t, &cfg, NULL, 0, &err), 0);
    assert_null(strstr(gpu_device_name(d), "TF32"));
    if (GPU_UNDER_TEST == GPU_KIND_CUDA)
        assert_non_null(strstr(gpu_device_name(t), ", TF32 GEMMs"));
    else
        assert_null(strstr(gpu_device_name(t), "TF32"));
    gpu_device_destroy(d);
    gpu_device *c = dev(GPU_KIND_CPU);
    void *arena = NULL;
    assert_int_equal(gpu_arena_alloc(t, sizeof A + sizeof Bm + sizeof C0,
                                     &arena, &err), 0);
    float *dA = arena, *dB = dA + K * K, *dC = dB + K * K;
    for (size_t i = 0; i < K * K; i++) A[i] = frand(), Bm[i] = frand();
    gpu_to_device(t, dA, A, sizeof A);
    gpu_to_device(t, dB, Bm, sizeof Bm);
    memcpy(Cc, C0, sizeof C0); /* the same bytes past each row's N */
    gpu_to_device(t, dC, C0, sizeof C0);
    gpu_gemm(c, 0, 0, M, N, K, 1.0f, A, K, Bm, K, 0.0f, Cc, K);
    gpu_gemm(t, 0, 0, M, N, K, 1.0f, dA, K, dB, K, 0.0f, dC, K);
    gpu_to_host(t, Cg, dC, sizeof Cg);
    assert_int_equal(gpu_device_check(t, &err), 0);
    close_enough("gemm under tf32", Cg, Cc, M * K, 1e-2f);
    gpu_device_destroy(c);
    gpu_device_destroy(t);
}

/* A CUDA ordinal past the visible devices (more ranks on a host than
 * GPUs) is refused with the count, not cudaSetDevice's bare message. */
static void test_ordinal_past_count(void **state)
{
    (void)state;
    if (GPU_UNDER_TEST != GPU_KIND_CUDA) {
        print_message("skipped: this build's \"GPU\" is a CPU device, "
                      "with no CUDA ordinals\n");
        skip();
        return;
    }
    if (!need_gpu()) { skip(); return; }
    gpu_device_config cfg;
    gpu_device_config_init(&cfg);
    cfg.kind = GPU_KIND_CUDA;
    cfg.cuda_device = 64;
    gpu_device *d = NULL;
    st_error err = {0};
    assert_int_equal(gpu_device_create(&d, &cfg, NULL, 0, &err), ST_EINVAL);
    assert_null(d);
    assert_non_null(strstr(err.msg, "CUDA device 64 asked for, but "));
    assert_non_null(strstr(err.msg, "one process per GPU"));
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gemm_agrees),
        cmocka_unit_test(test_tf32_mode),
        cmocka_unit_test(test_ordinal_past_count),
        cmocka_unit_test(test_elementwise_agrees),
        cmocka_unit_test(test_loss_and_updates_agree),
        cmocka_unit_test(test_trainer_agrees),
        cmocka_unit_test(test_prefetch_stream),
        cmocka_unit_test(test_memory_flat),
        cmocka_unit_test(test_h2d_reference),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
