/* tests/device_fixture.h — a one-thread CPU device for the model,
 * optimizer, device and trainer tests (cmocka must be included first). */
#ifndef ST_TEST_DEVICE_FIXTURE_H
#define ST_TEST_DEVICE_FIXTURE_H

#include "gpu/device.h"

static inline gpu_device *cpu_dev(void)
{
    gpu_device_config cfg;
    gpu_device_config_init(&cfg);
    cfg.kind = GPU_KIND_CPU;
    cfg.cpu_threads = 1;
    gpu_device *d = NULL;
    st_error err = {0};
    assert_int_equal(gpu_device_create(&d, &cfg, NULL, 0, &err), 0);
    return d;
}

#endif
