/* tests/test_model.c — the model on the CPU backend: finite-difference
 * checks of the loss gradient and of every parameter of every layer,
 * the parameter/activation layout, init determinism, and gradient
 * accumulation (B=256 with m=64 against m=256 on the same data).
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
#include "train/model.h"
#include "train/trainer.h"


static uint64_t rs = 99;
static uint32_t urand(void)
{
    rs = rs * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(rs >> 33);
}

/* A small model bound to plain host memory (the CPU device reads it). */
typedef struct fixture {
    gpu_device *d;
    model *m;
    float *params, *grads, *acts;
} fixture;

static void fx_open(fixture *f, const model_spec *spec, int mb)
{
    st_error err = {0};
    f->d = cpu_dev();
    assert_int_equal(model_create(&f->m, spec, &err), 0);
    size_t np = model_param_count(f->m);
    f->params = calloc(np, sizeof(float));
    f->grads = calloc(np, sizeof(float));
    f->acts = calloc(model_act_floats(f->m, mb), sizeof(float));
    model_bind(f->m, f->params, f->grads, f->acts, mb);
    model_init_params(f->m, 7, f->params);
    /* non-zero biases so that their gradients are exercised too */
    for (size_t i = model_weight_count(f->m); i < np; i++)
        f->params[i] = 0.05f * (float)((int)(urand() % 21) - 10);
}

static void fx_close(fixture *f)
{
    free(f->acts);
    free(f->grads);
    free(f->params);
    model_destroy(f->m);
    gpu_device_destroy(f->d);
}

static double loss_of(fixture *f, const uint8_t *px, const int32_t *lab,
                      int n)
{
    gpu_loss_stats st = {0};
    assert_int_equal(model_eval(f->m, f->d, px, lab, n, &st), 0);
    return st.loss_sum;
}

static void test_parse_and_describe(void **state)
{
    (void)state;
    model_spec s = {.in_c = 1, .in_h = 28, .in_w = 28, .classes = 10};
    st_error err = {0};
    assert_int_equal(model_parse_hidden(&s, "512,256", &err), 0);
    assert_int_equal(s.n_hidden, 2);
    assert_int_equal(model_parse_hidden(&s, "512,,3", &err), ST_EINVAL);
    assert_int_equal(model_parse_hidden(&s, "x", &err), ST_EINVAL);
    assert_int_equal(model_parse_hidden(&s, "none", &err), 0);
    assert_int_equal(s.n_hidden, 0);
    assert_int_equal(model_parse_hidden(&s, "512,256", &err), 0);
    model *m = NULL;
    assert_int_equal(model_create(&m, &s, &err), 0);
    char buf[64];
    model_describe(m, buf, sizeof buf);
    assert_string_equal(buf, "784-512-256-10");
    assert_int_equal(model_param_count(m),
                     784 * 512 + 512 * 256 + 256 * 10 + 512 + 256 + 10);
    assert_int_equal(model_weight_count(m), 784 * 512 + 512 * 256 + 256 * 10);
    /* x 128x784, y 128x(512+256+10 -> 1280 aligned), d0/d1 2 x 128x512 */
    assert_int_equal(model_act_floats(m, 128),
                     128 * 784 + 128 * 512 + 128 * 256 + 1280 + 2 * 128 * 512);
    model_destroy(m);
    s.classes = 1;
    assert_int_equal(model_create(&m, &s, &err), ST_EINVAL);
    model_destroy(NULL);
}

static void test_init_deterministic(void **state)
{
    (void)state;
    model_spec s = {.in_c = 3, .in_h = 4, .in_w = 4, .classes = 5,
                    .n_hidden = 1, .hidden = {16}, .in_scale = 1.0f};
    st_error err = {0};
    model *m = NULL;
    assert_int_equal(model_create(&m, &s, &err), 0);
    size_t np = model_param_count(m);
    float *a = calloc(np, 4), *b = calloc(np, 4), *c = calloc(np, 4);
    model_init_params(m, 1, a);
    model_init_params(m, 1, b);
    model_init_params(m, 2, c);
    assert_memory_equal(a, b, np * 4);
    assert_memory_not_equal(a, c, np * 4);
    /* He uniform: |w| < sqrt(6/fan_in), biases 0 */
    float bound = sqrtf(6.0f / 48.0f);
    for (size_t i = 0; i < 48 * 16; i++) assert_true(fabsf(a[i]) <= bound);
    for (size_t i = model_weight_count(m); i < np; i++)
        assert_float_equal(a[i], 0.0f, 0);
    free(a), free(b), free(c);
    model_destroy(m);
}

/* d(sum of losses)/d(logits) by central differences. */
static void test_loss_gradient(void **state)
{
    (void)state;
    gpu_device *d = cpu_dev();
    enum { R = 3, K = 5 };
    float z[R * K], g[R * K];
    int32_t lab[R] = {1, 4, 0};
    for (int i = 0; i < R * K; i++) z[i] = (float)((int)(urand() % 41) - 20) / 10;
    gpu_loss_stats st = {0};
    assert_int_equal(gpu_softmax_xent(d, z, lab, R, K, 1.0f, g, &st), 0);
    const float h = 1e-2f;
    for (int i = 0; i < R * K; i++) {
        float keep = z[i];
        gpu_loss_stats a = {0}, b = {0};
        z[i] = keep + h;
        gpu_softmax_xent(d, z, lab, R, K, 0, NULL, &a);
        z[i] = keep - h;
        gpu_softmax_xent(d, z, lab, R, K, 0, NULL, &b);
        z[i] = keep;
        double fd = (a.loss_sum - b.loss_sum) / (2 * h);
        if (fabs(fd - g[i]) > 2e-3 + 1e-2 * fabs(fd))
            fail_msg("dlogit %d: analytic %.6f, numeric %.6f", i, g[i], fd);
    }
    gpu_device_destroy(d);
}

/* Every weight and bias of every layer of a 3-layer MLP. */
static void test_layer_gradients(void **state)
{
    (void)state;
    enum { N = 4 };
    model_spec s = {.in_c = 2, .in_h = 2, .in_w = 2, .classes = 4,
                    .n_hidden = 2, .hidden = {7, 6}, .in_scale = 1.0f / 255,
                    .in_shift = -0.5f};
    fixture f;
    fx_open(&f, &s, N);
    uint8_t px[N * 8];
    int32_t lab[N] = {0, 3, 1, 2};
    for (int i = 0; i < N * 8; i++) px[i] = (uint8_t)urand();
    gpu_loss_stats st = {0};
    assert_int_equal(model_forward(f.m, f.d, px, N), 0);
    assert_int_equal(model_backward(f.m, f.d, lab, N, 1.0f, &st, 0), 0);
    size_t np = model_param_count(f.m);
    const float h = 1e-2f;
    int bad = 0, kinks = 0;
    for (size_t i = 0; i < np; i++) {
        float keep = f.params[i];
        f.params[i] = keep + h;
        double lp = loss_of(&f, px, lab, N);
        f.params[i] = keep - h;
        double lm = loss_of(&f, px, lab, N);
        f.params[i] = keep;
        double fd = (lp - lm) / (2 * h);
        double l0 = loss_of(&f, px, lab, N);
        /* a ReLU kink inside [-h, h] breaks the quadratic model: detect it
         * by the one-sided differences disagreeing, and skip */
        double fwd = (lp - l0) / h, bwd = (l0 - lm) / h;
        if (fabs(fwd - bwd) > 0.05 + 0.05 * fabs(fd)) {
            kinks++;
            continue;
        }
        if (fabs(fd - f.grads[i]) > 2e-3 + 2e-2 * fabs(fd)) {
            print_message("param %zu: analytic %.6f numeric %.6f\n", i,
                          f.grads[i], fd);
            bad++;
        }
    }
    assert_int_equal(bad, 0);
    assert_true(kinks < (int)np / 20);
    fx_close(&f);
}

/* accumulate=1 adds to the gradients of an earlier micro-batch. */
static void test_backward_accumulates(void **state)
{
    (void)state;
    enum { N = 6 };
    model_spec s = {.in_c = 5, .in_h = 1, .in_w = 1, .classes = 3,
                    .n_hidden = 1, .hidden = {8}, .in_scale = 1.0f / 255};
    fixture f;
    fx_open(&f, &s, N);
    uint8_t px[N * 5];
    int32_t lab[N];
    for (int i = 0; i < N * 5; i++) px[i] = (uint8_t)urand();
    for (int i = 0; i < N; i++) lab[i] = (int32_t)(urand() % 3);
    size_t np = model_param_count(f.m);
    float *full = malloc(np * 4);
    gpu_loss_stats st = {0};
    model_forward(f.m, f.d, px, N);
    model_backward(f.m, f.d, lab, N, 1.0f / N, &st, 0);
    memcpy(full, f.grads, np * 4);
    for (int k = 0; k < 3; k++) {
        model_forward(f.m, f.d, px + k * 2 * 5, 2);
        model_backward(f.m, f.d, lab + k * 2, 2, 1.0f / N, &st, k > 0);
    }
    for (size_t i = 0; i < np; i++)
        assert_float_equal(f.grads[i], full[i], 1e-6);
    free(full);
    fx_close(&f);
}

/* The same 3 steps with B=256: micro-batch 64 (4 accumulations) vs 256. */
static void test_accumulation_equivalence(void **state)
{
    (void)state;
    enum { B = 256, IN = 64, STEPS = 3 };
    uint8_t *px = malloc((size_t)STEPS * B * IN);
    int32_t *lab = malloc(sizeof(int32_t) * STEPS * B);
    for (int i = 0; i < STEPS * B * IN; i++) px[i] = (uint8_t)urand();
    for (int i = 0; i < STEPS * B; i++) lab[i] = (int32_t)(urand() % 10);
    float *w[2];
    size_t np = 0;
    for (int run = 0; run < 2; run++) {
        trainer_config c;
        trainer_config_init(&c);
        c.model = (model_spec){.in_c = 1, .in_h = 8, .in_w = 8, .classes = 10,
                               .n_hidden = 2, .hidden = {48, 32},
                               .in_scale = 1.0f / 255};
        c.batch = B;
        c.micro_batch = run == 0 ? 64 : 256;
        c.optim.nesterov = 1;
        c.optim.weight_decay = 1e-3f;
        gpu_device *d = cpu_dev();
        trainer *t = NULL;
        st_error err = {0};
        assert_int_equal(trainer_create(&t, d, &c, &err), 0);
        assert_int_equal(trainer_plan(t)->micro_batch, c.micro_batch);
        for (int s = 0; s < STEPS; s++) {
            prefetch_batch b = {.pixels = px + (size_t)s * B * IN,
                                .labels = lab + s * B, .n = B};
            assert_int_equal(trainer_train_batch(t, &b, &err), 0);
        }
        np = model_param_count(trainer_model(t));
        w[run] = malloc(np * 4);
        assert_int_equal(trainer_get_params(t, w[run], NULL, &err), 0);
        trainer_destroy(t);
        gpu_device_destroy(d);
    }
    double maxdiff = 0;
    for (size_t i = 0; i < np; i++) {
        double dlt = fabs((double)w[0][i] - w[1][i]);
        if (dlt > maxdiff) maxdiff = dlt;
    }
    print_message("accumulation: max |w(m=64) - w(m=256)| = %.3g\n", maxdiff);
    assert_true(maxdiff < 1e-5);
    free(w[0]), free(w[1]), free(px), free(lab);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_and_describe),
        cmocka_unit_test(test_init_deterministic),
        cmocka_unit_test(test_loss_gradient),
        cmocka_unit_test(test_layer_gradients),
        cmocka_unit_test(test_backward_accumulates),
        cmocka_unit_test(test_accumulation_equivalence),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
