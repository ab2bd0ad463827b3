/* tests/test_plan.c — the memory plan's arithmetic for the recipe MLP and
 * for a conv net (BN state, per-layer activations, scratch, the shared
 * lowering workspace), the automatic micro-batch choice under a small
 * budget, and the error when micro-batch 1 does not fit.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "gpu/device.h"
#include "train/plan.h"
#include "train/trainer.h"

static model *recipe(void)
{
    model_spec s = {.in_c = 1, .in_h = 28, .in_w = 28, .classes = 10,
                    .n_hidden = 2, .hidden = {512, 256}};
    model *m = NULL;
    st_error err = {0};
    assert_int_equal(model_create(&m, &s, &err), 0);
    return m;
}

static size_t a256(size_t n) { return (n + 255) & ~(size_t)255; }

static void test_arithmetic_cuda_shape(void **state)
{
    (void)state;
    model *m = recipe();
    plan p;
    st_error err = {0};
    plan_env env = {.unified = 0, .workspace = 4u << 20, .depth = 2};
    assert_int_equal(plan_build(&p, m, OPTIM_SGD, &env, 128, 128, &err), 0);
    const size_t P = 535818;
    assert_int_equal(p.items[PLAN_WEIGHTS].bytes, 4 * P);
    assert_int_equal(p.items[PLAN_GRADS].bytes, 4 * P);
    assert_int_equal(p.items[PLAN_OPTIM].bytes, 4 * P);
    size_t acts = 128 * 784 + 128 * 512 + 128 * 256 + 1280 + 2 * 128 * 512;
    assert_int_equal(p.items[PLAN_ACTS].bytes, 4 * acts);
    assert_int_equal(p.items[PLAN_BATCHES].bytes,
                     2 * (a256(128 * 784) + a256(128 * 4)));
    assert_int_equal(p.items[PLAN_WORKSPACE].bytes, 4u << 20);
    size_t total = 0;
    for (int k = 0; k < PLAN_NITEMS; k++) {
        assert_int_equal(p.items[k].offset, total);
        assert_int_equal(p.items[k].offset % 256, 0);
        total += a256(p.items[k].bytes);
    }
    assert_int_equal(p.total, total);

    /* AdamW doubles the optimizer state; the CPU drops buffers and
     * workspace */
    plan_env cpu = {.unified = 1, .workspace = 0, .depth = 2};
    plan q;
    assert_int_equal(plan_build(&q, m, OPTIM_ADAMW, &cpu, 128, 32, &err), 0);
    assert_int_equal(q.items[PLAN_OPTIM].bytes, 8 * P);
    assert_int_equal(q.items[PLAN_BATCHES].bytes, 0);
    assert_int_equal(q.items[PLAN_WORKSPACE].bytes, 0);
    assert_int_equal(q.items[PLAN_ACTS].bytes,
                     4 * (32 * 784 + 32 * 512 + 32 * 256 + 320 + 2 * 32 * 512));

    assert_int_equal(plan_build(&q, m, OPTIM_SGD, &cpu, 128, 48, &err),
                     ST_EINVAL);
    assert_non_null(strstr(err.msg, "multiple"));
    assert_int_equal(plan_build(&q, m, OPTIM_SGD, &cpu, 128, 0, &err),
                     ST_EINVAL);

    char text[4096];
    FILE *f = fmemopen(text, sizeof text, "w");
    plan_print(&p, f);
    fclose(f);
    assert_non_null(strstr(text, "activations"));
    assert_non_null(strstr(text, "one allocation"));
    model_destroy(m);
}

static void test_auto_micro_batch(void **state)
{
    (void)state;
    model *m = recipe();
    plan p;
    st_error err = {0};
    plan_env env = {.unified = 1, .depth = 2};
    /* budget: what micro-batch 32 needs, so 128 and 64 do not fit */
    plan want;
    assert_int_equal(plan_build(&want, m, OPTIM_SGD, &env, 128, 32, &err), 0);
    assert_int_equal(plan_choose(&p, m, OPTIM_SGD, &env, 128, 0, want.total,
                                 &err), 0);
    assert_int_equal(p.micro_batch, 32);
    assert_int_equal(p.requested_micro, 128);
    assert_int_equal(p.total, want.total);
    /* one byte less: the next divisor down, 16 */
    assert_int_equal(plan_choose(&p, m, OPTIM_SGD, &env, 128, 0,
                                 want.total - 1, &err), 0);
    assert_int_equal(p.micro_batch, 16);
    /* a batch of 96 lowers through its divisors: 48, 32, 24, ... */
    assert_int_equal(plan_choose(&p, m, OPTIM_SGD, &env, 96, 0, want.total,
                                 &err), 0);
    assert_int_equal(96 % p.micro_batch, 0);
    assert_true(p.micro_batch <= 32);
    /* no budget: the request stands */
    assert_int_equal(plan_choose(&p, m, OPTIM_SGD, &env, 128, 64, 0, &err), 0);
    assert_int_equal(p.micro_batch, 64);
    /* below what the weights alone need: a clear error with the sizes */
    assert_int_equal(plan_choose(&p, m, OPTIM_SGD, &env, 128, 0, 1 << 20,
                                 &err), ST_ENOMEM);
    assert_non_null(strstr(err.msg, "micro-batch 1"));
    assert_non_null(strstr(err.msg, "weights 2.04 MiB"));
    assert_non_null(strstr(err.msg, "budget is 1.00 MiB"));
    model_destroy(m);
}

/* The trainer applies the budget: it lowers m and still steps on B. */
static void test_trainer_lowers(void **state)
{
    (void)state;
    gpu_device_config dc;
    gpu_device_config_init(&dc);
    dc.kind = GPU_KIND_CPU;
    gpu_device *d = NULL;
    st_error err = {0};
    assert_int_equal(gpu_device_create(&d, &dc, NULL, 0, &err), 0);
    trainer_config c;
    trainer_config_init(&c);
    c.model = (model_spec){.in_c = 1, .in_h = 28, .in_w = 28, .classes = 10,
                           .n_hidden = 2, .hidden = {512, 256},
                           .in_scale = 1.0f / 255};
    model *m = recipe();
    plan want;
    plan_env env = {.unified = 1, .depth = 2};
    assert_int_equal(plan_build(&want, m, OPTIM_SGD, &env, 128, 16, &err), 0);
    c.budget = want.total;
    trainer *t = NULL;
    assert_int_equal(trainer_create(&t, d, &c, &err), 0);
    assert_int_equal(trainer_plan(t)->micro_batch, 16);
    gpu_mem_stats ms;
    assert_int_equal(gpu_device_mem(d, &ms), 0);
    assert_int_equal(ms.arena, want.total);
    trainer_destroy(t);
    gpu_device_destroy(d);

    /* too small: trainer_create fails with the plan's message */
    assert_int_equal(gpu_device_create(&d, &dc, NULL, 0, &err), 0);
    c.budget = 4096;
    st_clearerr(&err);
    assert_int_equal(trainer_create(&t, d, &c, &err), ST_ENOMEM);
    assert_null(t);
    assert_non_null(strstr(err.msg, "does not fit"));
    gpu_device_destroy(d);
    model_destroy(m);
}

static size_t a64(size_t n) { return (n + 63) & ~(size_t)63; }

static model *conv_net(void)
{
    model_spec s = {.in_c = 3, .in_h = 16, .in_w = 16, .classes = 10,
                    .norm_ch = 1, .mean = {0.5f, 0.5f, 0.5f},
                    .std = {0.5f, 0.5f, 0.5f}};
    snprintf(s.arch, sizeof s.arch, "conv8k3,bn,relu,maxpool2,conv16k3,bn,"
             "relu,gap,dense");
    model *m = NULL;
    st_error err = {0};
    assert_int_equal(model_create(&m, &s, &err), 0);
    return m;
}

static void test_conv_arithmetic(void **state)
{
    (void)state;
    model *m = conv_net();
    plan p;
    st_error err = {0};
    plan_env env = {.unified = 0, .workspace = 4u << 20, .depth = 2};
    assert_int_equal(plan_build(&p, m, OPTIM_SGD, &env, 64, 32, &err), 0);
    /* conv kernels 27x8, 72x16 and the dense 16x10 (no conv bias: BN
     * follows), then BN gamma/beta 2x8, 2x16 and the dense bias */
    const size_t W = 27 * 8 + 72 * 16 + 16 * 10, P = W + 16 + 32 + 10;
    assert_int_equal(model_weight_count(m), W);
    assert_int_equal(p.items[PLAN_WEIGHTS].bytes, 4 * P);
    assert_int_equal(p.items[PLAN_GRADS].bytes, 4 * P);
    assert_int_equal(p.items[PLAN_OPTIM].bytes, 4 * P);
    assert_int_equal(p.items[PLAN_STATE].bytes, 4 * 2 * (8 + 16));
    /* conv, bn+relu, maxpool, conv, bn+relu, gap, dense */
    assert_int_equal(model_nlayers(m), 7);
    /* input 16x16x3; outputs 16x16x8 twice, 8x8x8, 8x8x16 twice, 16, 10;
     * two gradient buffers of the largest output */
    size_t acts = 32 * 768 + 2 * 32 * 2048 + 32 * 512 + 2 * 32 * 1024 +
                  32 * 16 + 32 * 10 + 2 * 32 * 2048;
    assert_int_equal(p.items[PLAN_ACTS].bytes, 4 * acts);
    size_t scratch = 0, work = 0;
    for (int i = 0; i < model_nlayers(m); i++) {
        const layer *l = model_layer(m, i);
        scratch += a64(l->ops->scratch_floats(l, 32));
        if (layer_workspace_floats(l, 32) > work)
            work = layer_workspace_floats(l, 32);
    }
    /* BN keeps mean and invstd, max pool one index per output */
    assert_true(scratch >= 2 * 8 + 2 * 16 + 32 * 512);
    assert_int_equal(p.items[PLAN_SCRATCH].bytes, 4 * scratch);
    /* the lowering of the larger conv: 32 x 8x8 windows of 72 taps, or of
     * the first one: 32 x 16x16 of 27 */
    assert_true(work >= 32 * 256 * 27);
    assert_true(work <= LAYER_WORK_CAP_FLOATS); /* small: all of it */
    assert_int_equal(p.items[PLAN_LOWER].bytes, 4 * a64(work));
    /* a large micro-batch is capped at the layers' rule */
    plan big;
    assert_int_equal(plan_build(&big, m, OPTIM_SGD, &env, 1024, 1024, &err),
                     0);
    assert_int_equal(big.items[PLAN_LOWER].bytes, 4 * LAYER_WORK_CAP_FLOATS);
    size_t total = 0;
    for (int k = 0; k < PLAN_NITEMS; k++) {
        assert_int_equal(p.items[k].offset, total);
        total += a256(p.items[k].bytes);
    }
    assert_int_equal(p.total, total);
    /* per layer, in --plan */
    char text[8192];
    FILE *f = fmemopen(text, sizeof text, "w");
    plan_print(&p, f);
    plan_print_layers(&p, m, f);
    fclose(f);
    assert_non_null(strstr(text, "bn state"));
    assert_non_null(strstr(text, "lowering"));
    assert_non_null(strstr(text, "per layer (micro-batch 32"));
    assert_non_null(strstr(text, "maxpool  8x8x8"));
    assert_non_null(strstr(text, "dense    1x1x10"));
    model_destroy(m);
}

static void test_conv_micro_batch(void **state)
{
    (void)state;
    model *m = conv_net();
    plan p, want;
    st_error err = {0};
    plan_env env = {.unified = 1, .depth = 2};
    /* every per-sample region scales with m: a budget for 8 picks 8 */
    assert_int_equal(plan_build(&want, m, OPTIM_SGD, &env, 64, 8, &err), 0);
    plan_build(&p, m, OPTIM_SGD, &env, 64, 16, &err);
    assert_true(p.items[PLAN_ACTS].bytes > want.items[PLAN_ACTS].bytes);
    assert_true(p.items[PLAN_SCRATCH].bytes > want.items[PLAN_SCRATCH].bytes);
    assert_true(p.items[PLAN_LOWER].bytes > want.items[PLAN_LOWER].bytes);
    assert_int_equal(plan_choose(&p, m, OPTIM_SGD, &env, 64, 0, want.total,
                                 &err), 0);
    assert_int_equal(p.micro_batch, 8);
    assert_int_equal(p.requested_micro, 64);
    /* micro-batch 1 does not fit: every item is named */
    plan one;
    assert_int_equal(plan_build(&one, m, OPTIM_SGD, &env, 64, 1, &err), 0);
    assert_int_equal(plan_choose(&p, m, OPTIM_SGD, &env, 64, 0, one.total - 1,
                                 &err), ST_ENOMEM);
    assert_non_null(strstr(err.msg, "micro-batch 1"));
    assert_non_null(strstr(err.msg, "bn state"));
    assert_non_null(strstr(err.msg, "lowering"));
    assert_non_null(strstr(err.msg, "layer scratch"));
    model_destroy(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_arithmetic_cuda_shape),
        cmocka_unit_test(test_auto_micro_batch),
        cmocka_unit_test(test_trainer_lowers),
        cmocka_unit_test(test_conv_arithmetic),
        cmocka_unit_test(test_conv_micro_batch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
