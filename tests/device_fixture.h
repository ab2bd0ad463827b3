/* tests/device_fixture.h — a CPU device of one thread (the model,
 * optimizer, device and trainer tests) or of n (the CPU backend's
 * threading tests), and the GPU tests' check that a CUDA device is visible
 * (cmocka must be included first). */
#ifndef ST_TEST_DEVICE_FIXTURE_H
#define ST_TEST_DEVICE_FIXTURE_H

#include <stdlib.h>
#include <string.h>

#include "gpu/device.h"

static inline gpu_device *cpu_dev_threads(int threads)
{
    gpu_device_config cfg;
    gpu_device_config_init(&cfg);
    cfg.kind = GPU_KIND_CPU;
    cfg.cpu_threads = threads;
    gpu_device *d = NULL;
    st_error err = {0};
    assert_int_equal(gpu_device_create(&d, &cfg, NULL, 0, &err), 0);
    return d;
}

static inline gpu_device *cpu_dev(void) { return cpu_dev_threads(1); }

/* 1 when a CUDA device is visible; else prints why the test is skipped
 * and returns 0, or fails it when ST_REQUIRE_GPU is set (the GPU machine's
 * check, where a missing device is an error). */
static inline int need_cuda(void)
{
    char why[256];
    if (gpu_cuda_probe(why, sizeof why)) return 1;
    const char *req = getenv("ST_REQUIRE_GPU");
    if (req && req[0] && strcmp(req, "0") != 0)
        fail_msg("ST_REQUIRE_GPU is set but %s", why);
    print_message("skipped: %s\n", why);
    return 0;
}

#endif
