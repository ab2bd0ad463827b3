/* tests/test_optim.c — optimizer steps (decay split between weights and
 * biases, AdamW bias correction) and the learning-rate schedules.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <string.h>

#include "gpu/device.h"
#include "train/optim.h"

static gpu_device *cpu_dev(void)
{
    gpu_device_config cfg;
    gpu_device_config_init(&cfg);
    cfg.kind = GPU_KIND_CPU;
    gpu_device *d = NULL;
    st_error err = {0};
    assert_int_equal(gpu_device_create(&d, &cfg, NULL, 0, &err), 0);
    return d;
}

static void test_parse_validate(void **state)
{
    (void)state;
    assert_int_equal(optim_parse("sgd"), OPTIM_SGD);
    assert_int_equal(optim_parse("adamw"), OPTIM_ADAMW);
    assert_int_equal(optim_parse("adam"), -1);
    assert_int_equal(sched_parse("cosine"), SCHED_COSINE);
    assert_int_equal(sched_parse("linear"), -1);
    optim_config c;
    st_error err = {0};
    optim_config_init(&c, OPTIM_SGD);
    assert_int_equal(optim_validate(&c, &err), 0);
    c.momentum = 1.0f;
    assert_int_equal(optim_validate(&c, &err), ST_EINVAL);
    assert_non_null(strstr(err.msg, "--momentum"));
    optim_config_init(&c, OPTIM_SGD);
    c.momentum = 0;
    c.nesterov = 1;
    assert_int_equal(optim_validate(&c, &err), ST_EINVAL);
    optim_config_init(&c, OPTIM_ADAMW);
    assert_float_equal(c.weight_decay, 0.01f, 0);
    c.weight_decay = -1;
    assert_int_equal(optim_validate(&c, &err), ST_EINVAL);
    assert_int_equal(optim_state_floats(OPTIM_SGD, 10), 10);
    assert_int_equal(optim_state_floats(OPTIM_ADAMW, 10), 20);
    sched_config s;
    sched_config_init(&s);
    assert_int_equal(sched_validate(&s, &err), 0);
    s.lr = 0;
    assert_int_equal(sched_validate(&s, &err), ST_EINVAL);
}

/* Weights decay, biases do not. */
static void test_sgd_decay_split(void **state)
{
    (void)state;
    gpu_device *d = cpu_dev();
    optim_config c;
    optim_config_init(&c, OPTIM_SGD);
    c.weight_decay = 0.5f;
    float w[4] = {1, 1, 1, 1}, g[4] = {0, 0, 0, 0}, v[4] = {0};
    assert_int_equal(optim_step(&c, d, w, g, v, 4, 2, 0.1f, 1), 0);
    assert_float_equal(w[0], 1 - 0.1 * 0.5, 1e-7);
    assert_float_equal(w[1], 1 - 0.1 * 0.5, 1e-7);
    assert_float_equal(w[2], 1, 0);
    assert_float_equal(w[3], 1, 0);
    /* momentum carries: second step with zero gradient still moves */
    float w1 = w[0];
    assert_int_equal(optim_step(&c, d, w, g, v, 4, 2, 0.1f, 2), 0);
    double v1 = 0.9 * 0.5 + 0.5 * w1;
    assert_float_equal(w[0], w1 - 0.1 * v1, 1e-6);
    gpu_device_destroy(d);
}

/* AdamW's first step moves each weight by ~lr (bias-corrected m/sqrt(v)
 * is sign(g)), plus decoupled decay on the weights only. */
static void test_adamw_first_step(void **state)
{
    (void)state;
    gpu_device *d = cpu_dev();
    optim_config c;
    optim_config_init(&c, OPTIM_ADAMW);
    c.weight_decay = 0.1f;
    float w[4] = {1, -1, 1, -1}, g[4] = {3, -0.001f, -2, 5}, st[8] = {0};
    assert_int_equal(optim_step(&c, d, w, g, st, 4, 2, 0.01f, 1), 0);
    assert_float_equal(w[0], 1 * (1 - 0.01 * 0.1) - 0.01, 1e-5);
    assert_float_equal(w[1], -1 * (1 - 0.01 * 0.1) + 0.01, 1e-4);
    assert_float_equal(w[2], 1 + 0.01, 1e-5);
    assert_float_equal(w[3], -1 - 0.01, 1e-5);
    assert_float_equal(st[0], 0.3, 1e-6);      /* m = (1-b1) g */
    assert_float_equal(st[4 + 0], 0.009, 1e-6); /* v = (1-b2) g^2 */
    gpu_device_destroy(d);
}

static void test_schedules(void **state)
{
    (void)state;
    sched_config s;
    sched_config_init(&s);
    s.lr = 1.0f;
    assert_float_equal(sched_lr(&s, 0), 1.0, 0);
    assert_float_equal(sched_lr(&s, 1000), 1.0, 0);

    s.warmup = 4;
    assert_float_equal(sched_lr(&s, 0), 0.25, 1e-7);
    assert_float_equal(sched_lr(&s, 3), 1.0, 1e-7);
    assert_float_equal(sched_lr(&s, 4), 1.0, 1e-7);

    s.kind = SCHED_STEP;
    s.warmup = 0;
    s.step_size = 10;
    s.gamma = 0.5f;
    assert_float_equal(sched_lr(&s, 9), 1.0, 1e-7);
    assert_float_equal(sched_lr(&s, 10), 0.5, 1e-7);
    assert_float_equal(sched_lr(&s, 25), 0.25, 1e-7);

    s.kind = SCHED_COSINE;
    s.warmup = 10;
    s.total = 110;
    s.min_lr = 0.0f;
    assert_float_equal(sched_lr(&s, 4), 0.5, 1e-7);
    assert_float_equal(sched_lr(&s, 10), 1.0, 1e-6);
    assert_float_equal(sched_lr(&s, 60), 0.5, 1e-6);
    assert_float_equal(sched_lr(&s, 110), 0.0, 1e-6);
    assert_float_equal(sched_lr(&s, 500), 0.0, 1e-6);
    for (uint64_t k = 11; k < 110; k++)
        assert_true(sched_lr(&s, k) <= sched_lr(&s, k - 1));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_validate),
        cmocka_unit_test(test_sgd_decay_split),
        cmocka_unit_test(test_adamw_first_step),
        cmocka_unit_test(test_schedules),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
