/* tests/gpu_fixture.h — what the CUDA-vs-CPU agreement tests share
 * (tests/test_gpu.c: ops, trainer, prefetch, memory; tests/test_gpu_conv.c:
 * conv-net ops and train/ layers). Include it after <cmocka.h>.
 *
 * defines: GPU_UNDER_TEST, need_gpu, dev, frand, close_enough, close_rel,
 *          bump, take, pair, pair_open_mib, pair_open, pair_close
 *
 * Built with -DST_TEST_GPU_ON_CPU the "CUDA" side is a second CPU device:
 * a dry run of the tests' own logic on a machine without a GPU. Otherwise
 * need_gpu() is need_cuda() (tests/device_fixture.h): without a visible
 * CUDA device a test prints why and skips, or fails when ST_REQUIRE_GPU is
 * set. Only static functions: each test binary compiles its own copy (and
 * its own frand() sequence).
 */
#ifndef ST_TEST_GPU_FIXTURE_H
#define ST_TEST_GPU_FIXTURE_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "gpu/device.h"
#include "device_fixture.h"

#ifdef ST_TEST_GPU_ON_CPU
#define GPU_UNDER_TEST GPU_KIND_CPU
#else
#define GPU_UNDER_TEST GPU_KIND_CUDA
#endif

static inline int need_gpu(void)
{
    return GPU_UNDER_TEST == GPU_KIND_CPU || need_cuda();
}

static inline gpu_device *dev(gpu_kind kind)
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
static inline float frand(void)
{
    rs = rs * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((rs >> 40) & 0xFFFFFF) / 8388608.0f - 1.0f;
}

static inline void close_enough(const char *what, const float *a,
                                const float *b, size_t n, float tol)
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
static inline void close_rel(const char *what, const float *a, const float *b,
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
static inline void *take(bump *b, size_t bytes)
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

/* 0 (the caller skips) when need_gpu() says no. */
static inline int pair_open_mib(pair *p, unsigned mib)
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

static inline int pair_open(pair *p) { return pair_open_mib(p, 16); }

static inline void pair_close(pair *p)
{
    st_error err = {0};
    if (gpu_device_check(p->g, &err) != 0) fail_msg("%s", err.msg);
    gpu_device_destroy(p->g);
    gpu_device_destroy(p->c);
}

#endif
