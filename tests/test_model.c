/* tests/test_model.c — the model on the CPU backend: finite-difference
 * checks of the loss gradient and of every parameter of every layer,
 * the parameter/activation layout, init determinism, and gradient
 * accumulation (B=256 with m=64 against m=256 on the same data); for conv
 * nets built from a spec: the whole model's gradient (every layer wired
 * to the right slice of the parameters), batch-norm running statistics
 * (training moves them, evaluation uses and keeps them), --tta flip, and
 * accumulation equivalence for a net without batch norm.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
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
    if (model_state_count(f->m)) model_init_state(f->m, model_state(f->m));
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

/* --init torch: a conv net's weights within PyTorch's U(+-1/sqrt(fan_in))
 * of each layer, filling it (the largest |w| near the bound), biases and
 * batch-norm parameters as with He. */
static void test_init_torch(void **state)
{
    (void)state;
    model_spec s = {.in_c = 3, .in_h = 8, .in_w = 8, .classes = 5,
                    .in_scale = 1.0f};
    snprintf(s.arch, sizeof s.arch, "conv16k3,bn,relu,gap,dense");
    st_error err = {0};
    model *he = NULL, *tm = NULL;
    assert_int_equal(model_create(&he, &s, &err), 0);
    s.init_torch = 1;
    assert_int_equal(model_create(&tm, &s, &err), 0);
    size_t np = model_param_count(tm), nw = model_weight_count(tm);
    assert_int_equal(nw, 27 * 16 + 16 * 5);
    float *a = calloc(np, 4), *b = calloc(np, 4);
    model_init_params(he, 3, a);
    model_init_params(tm, 3, b);
    const struct { size_t lo, hi; int fan_in; } w[2] = {
        {0, 27 * 16, 27}, {27 * 16, nw, 16}};
    for (int k = 0; k < 2; k++) {
        float bound = 1.0f / sqrtf((float)w[k].fan_in), most = 0.0f;
        for (size_t i = w[k].lo; i < w[k].hi; i++) {
            assert_true(fabsf(b[i]) <= bound * 1.000001f);
            most = fmaxf(most, fabsf(b[i]));
        }
        assert_true(most > 0.9f * bound);
    }
    for (size_t i = nw; i < np; i++) assert_true(a[i] == b[i]);
    free(a), free(b);
    model_destroy(he), model_destroy(tm);
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

/* The training-mode loss sum (batch statistics), no gradients. */
static double train_loss_of(fixture *f, const uint8_t *px, const int32_t *lab,
                            int n)
{
    gpu_loss_stats st = {0};
    assert_int_equal(model_forward(f->m, f->d, px, n), 0);
    assert_int_equal(gpu_softmax_xent(f->d, model_logits(f->m), lab, n,
                                      model_classes(f->m), 0, NULL, &st), 0);
    return st.loss_sum;
}

static model_spec conv_spec(const char *arch, int c, int h, int w, int k)
{
    model_spec s = {.in_c = c, .in_h = h, .in_w = w, .classes = k,
                    .norm_ch = 1, .mean = {0.5f, 0.4f, 0.3f, 0.5f},
                    .std = {0.25f, 0.3f, 0.2f, 0.25f}};
    snprintf(s.arch, sizeof s.arch, "%s", arch);
    return s;
}

/* Central differences of the whole conv net's training loss against
 * every parameter: each layer reads and writes its own slice. */
static void test_conv_model_gradients(void **state)
{
    (void)state;
    enum { N = 4, C = 2, H = 8 };
    /* gelu before the max pool: relu would tie its windows at 0, and
     * every tie is a kink that finite differences cannot step over */
    model_spec s = conv_spec("conv4k3,bn,gelu,maxpool2,resp(conv6k3s2,bn,relu,"
                             "conv6k3,bn,relu),res(conv6k3,bn,gelu,conv6k3,bn),"
                             "gelu,gap,dense", C, H, H, 3);
    fixture f;
    fx_open(&f, &s, N);
    assert_string_equal(model_arch(f.m), "conv4k3s1p1,bn,gelu,maxpool2s2p0,"
                        "resp(conv6k3s2p1,bn,relu,conv6k3s1p1,bn,relu),"
                        "res(conv6k3s1p1,bn,gelu,conv6k3s1p1,bn),gelu,gap,"
                        "dense3");
    /* conv, bn, gelu, maxpool, resp, res, gelu, gap, dense */
    assert_int_equal(model_nlayers(f.m), 9);
    assert_true(model_state_count(f.m) > 0);
    uint8_t px[N * C * H * H];
    int32_t lab[N] = {0, 2, 1, 2};
    for (size_t i = 0; i < sizeof px; i++) px[i] = (uint8_t)urand();
    gpu_loss_stats st = {0};
    assert_int_equal(model_forward(f.m, f.d, px, N), 0);
    assert_int_equal(model_backward(f.m, f.d, lab, N, 1.0f, &st, 0), 0);
    size_t np = model_param_count(f.m);
    float *g = malloc(np * 4);
    memcpy(g, f.grads, np * 4);
    const float h = 1e-3f;
    int bad = 0, kinks = 0;
    for (size_t i = 0; i < np; i++) {
        float keep = f.params[i];
        f.params[i] = keep + h;
        double lp = train_loss_of(&f, px, lab, N);
        f.params[i] = keep - h;
        double lm = train_loss_of(&f, px, lab, N);
        f.params[i] = keep;
        double l0 = train_loss_of(&f, px, lab, N);
        double fd = (lp - lm) / (2 * h), fwd = (lp - l0) / h,
               bwd = (l0 - lm) / h;
        if (fabs(fwd - bwd) > 0.05 + 0.05 * fabs(fd)) { /* a kink: skip */
            kinks++;
            continue;
        }
        if (fabs(fd - g[i]) > 3e-3 + 3e-2 * fabs(fd)) {
            print_message("param %zu: analytic %.6f numeric %.6f\n", i, g[i],
                          fd);
            bad++;
        }
    }
    print_message("conv model: %zu parameters, %d kinks skipped\n", np, kinks);
    assert_int_equal(bad, 0);
    assert_true(kinks < (int)np / 10);
    free(g);
    fx_close(&f);
}

/* Training moves the running statistics (momentum 0.1 toward the batch's
 * mean and unbiased variance); evaluation uses them and leaves them be. */
static void test_bn_running_stats(void **state)
{
    (void)state;
    enum { N = 6, C = 3, HW = 4 };
    model_spec s = conv_spec("bn,dense", C, 2, 2, 3);
    s.norm_ch = 0, s.in_scale = 1.0f / 255;   /* x = pixel / 255 */
    fixture f;
    fx_open(&f, &s, N);
    assert_int_equal(model_state_count(f.m), 2 * C);
    const float *rs = model_state(f.m);   /* mean (C), var (C) */
    for (int k = 0; k < C; k++) {
        assert_float_equal(rs[k], 0.0f, 0);
        assert_float_equal(rs[C + k], 1.0f, 0);
    }
    uint8_t px[N * HW * C];
    int32_t lab[N] = {0, 1, 2, 0, 1, 2};
    for (size_t i = 0; i < sizeof px; i++) px[i] = (uint8_t)urand();
    gpu_loss_stats st = {0};
    double l_init = loss_of(&f, px, lab, N);
    float before[2 * C];
    memcpy(before, rs, sizeof before);
    assert_memory_equal(before, rs, sizeof before); /* eval kept them */
    assert_int_equal(model_forward(f.m, f.d, px, N), 0);
    for (int k = 0; k < C; k++) {
        double sum = 0, sq = 0;
        for (int p = 0; p < N * HW; p++) sum += px[p * C + k] / 255.0;
        double mean = sum / (N * HW);
        for (int p = 0; p < N * HW; p++) {
            double dv = px[p * C + k] / 255.0 - mean;
            sq += dv * dv;
        }
        double var_unbiased = sq / (N * HW - 1);
        assert_float_equal(rs[k], 0.1 * mean, 1e-5);
        assert_float_equal(rs[C + k], 0.9 + 0.1 * var_unbiased, 1e-5);
    }
    /* evaluation now normalizes with the moved statistics */
    float moved[2 * C];
    memcpy(moved, rs, sizeof moved);
    double l_moved = loss_of(&f, px, lab, N);
    assert_true(fabs(l_moved - l_init) > 1e-4);
    assert_memory_equal(moved, rs, sizeof moved);
    (void)st;
    fx_close(&f);
}

/* --tta flip: the logits are the mean of those of x and of its mirror. */
static void test_tta_flip(void **state)
{
    (void)state;
    enum { N = 3, C = 2, H = 4, W = 5, K = 4 };
    model_spec s = conv_spec("conv3k3,relu,gap,dense", C, H, W, K);
    fixture f;
    fx_open(&f, &s, N);
    s.tta_flip = 1;
    model *t = NULL;
    st_error err = {0};
    assert_int_equal(model_create(&t, &s, &err), 0);
    float *acts = calloc(model_act_floats(t, N), 4);
    model_bind(t, f.params, f.grads, acts, N);
    uint8_t px[N * H * W * C], mir[N * H * W * C];
    int32_t lab[N] = {0, 1, 3};
    for (size_t i = 0; i < sizeof px; i++) px[i] = (uint8_t)urand();
    for (int n = 0; n < N; n++)
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++)
                for (int c = 0; c < C; c++)
                    mir[((n * H + y) * W + (W - 1 - x)) * C + c] =
                        px[((n * H + y) * W + x) * C + c];
    float a[N * K], b[N * K];
    gpu_loss_stats st = {0};
    assert_int_equal(model_eval(f.m, f.d, px, lab, N, &st), 0);
    memcpy(a, model_logits(f.m), sizeof a);
    assert_int_equal(model_eval(f.m, f.d, mir, lab, N, &st), 0);
    memcpy(b, model_logits(f.m), sizeof b);
    assert_int_equal(model_eval(t, f.d, px, lab, N, &st), 0);
    const float *l = model_logits(t);
    for (int i = 0; i < N * K; i++) {
        assert_float_equal(l[i], 0.5f * (a[i] + b[i]), 1e-5);
        assert_true(fabsf(a[i] - b[i]) > 0 || i > 0);
    }
    free(acts);
    model_destroy(t);
    fx_close(&f);
}

/* Bad specs fail model_create with the item named. */
static void test_conv_spec_errors(void **state)
{
    (void)state;
    model *m = NULL;
    st_error err = {0};
    model_spec s = conv_spec("conv8k9p0,dense", 1, 8, 8, 10);
    assert_int_equal(model_create(&m, &s, &err), ST_EINVAL);
    assert_non_null(strstr(err.msg, "--model: item 1 'conv8k9s1p0': kernel "
                           "9x9 is larger than its 8x8 input"));
    assert_null(m);
    st_clearerr(&err);
    s = conv_spec("cnn:32,64,128", 1, 28, 28, 10);
    assert_int_equal(model_create(&m, &s, &err), 0);
    assert_string_equal(model_arch(m), "cnn: conv32k3s1p1,bn,relu,maxpool2s2p0,"
                        "conv64k3s1p1,bn,relu,maxpool2s2p0,conv128k3s1p1,bn,"
                        "relu,dense128,relu,dense10");
    /* weights first: the three conv kernels, the hidden dense matrix on
     * the flattened 7x7x128 map and the classifier's */
    assert_int_equal(model_weight_count(m),
                     9 * 32 + 9 * 32 * 64 + 9 * 64 * 128 + 49 * 128 * 128 +
                     128 * 10);
    assert_int_equal(model_param_count(m) - model_weight_count(m),
                     2 * (32 + 64 + 128) + 128 + 10);
    assert_int_equal(model_state_count(m), 2 * (32 + 64 + 128));
    assert_int_equal(model_has_bn(m), 1);
    model_destroy(m);
}

/* A conv net without batch norm: micro-batch 16 (4 accumulations) gives
 * the full-batch step of 64. */
static void test_conv_accumulation(void **state)
{
    (void)state;
    enum { B = 64, IN = 8 * 8 * 3, STEPS = 3 };
    uint8_t *px = malloc((size_t)STEPS * B * IN);
    int32_t *lab = malloc(sizeof(int32_t) * STEPS * B);
    for (int i = 0; i < STEPS * B * IN; i++) px[i] = (uint8_t)urand();
    for (int i = 0; i < STEPS * B; i++) lab[i] = (int32_t)(urand() % 5);
    float *w[2];
    size_t np = 0;
    for (int run = 0; run < 2; run++) {
        trainer_config c;
        trainer_config_init(&c);
        c.model = conv_spec("conv8k3,relu,maxpool2,conv8k3s2,gelu,gap,dense",
                            3, 8, 8, 5);
        c.batch = B;
        c.micro_batch = run == 0 ? 16 : 64;
        c.optim.weight_decay = 1e-3f;
        gpu_device *d = cpu_dev();
        trainer *t = NULL;
        st_error err = {0};
        assert_int_equal(trainer_create(&t, d, &c, &err), 0);
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
    print_message("conv accumulation: max |w(m=16) - w(m=64)| = %.3g\n",
                  maxdiff);
    assert_true(maxdiff < 1e-5);
    free(w[0]), free(w[1]), free(px), free(lab);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_and_describe),
        cmocka_unit_test(test_init_deterministic),
        cmocka_unit_test(test_init_torch),
        cmocka_unit_test(test_loss_gradient),
        cmocka_unit_test(test_layer_gradients),
        cmocka_unit_test(test_backward_accumulates),
        cmocka_unit_test(test_accumulation_equivalence),
        cmocka_unit_test(test_conv_model_gradients),
        cmocka_unit_test(test_bn_running_stats),
        cmocka_unit_test(test_tta_flip),
        cmocka_unit_test(test_conv_spec_errors),
        cmocka_unit_test(test_conv_accumulation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
