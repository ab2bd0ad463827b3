/* bench/gpustep.c — step time of the reference MLP (784-512-256-10, SGD
 * momentum 0.9, batch 128) with the batch already resident on the device,
 * against batches streamed through the prefetcher from pinned host memory
 * (no loader: the batches are made once, up front). For
 * tests/gpu/bench.sh, which builds it against the library.
 *
 *   gpustep [cuda|cpu] [STEPS]        (default: cuda 2000)
 *
 * After 50 warm-up steps it times STEPS steps each way, three rounds,
 * alternating, and prints one parseable line per round and one at the end:
 *
 *   gpustep round=1 resident_ms=0.081 prefetch_ms=0.090
 *   gpustep device="cuda: NVIDIA H100 ..." prefetch_h2d_gbps=12.3
 *           dev_mem_used=... dev_mem_peak=... arena=...
 *
 * resident: trainer_train_batch over and over on one batch the prefetcher
 * copied once. prefetch: every step submits the next of 16 pinned host
 * batches (prefetch_submit, the H2D copy on the copy queue, the compute
 * queue waiting on its event), trains on it and hands it back. Each timing
 * ends with trainer_read_stats, which synchronizes. On the CPU backend
 * (unified memory) the two are the same code; that mode checks the
 * program's logic on machines without a GPU.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gpu/device.h"
#include "gpu/prefetch.h"
#include "train/trainer.h"

enum { B = 128, IN = 784, NB = 16, WARMUP = 50, ROUNDS = 3 };

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* Returns the oldest host batches whose copies are done; wait: all. */
static int drain(prefetch *pf, int wait, st_error *err)
{
    void *tag;
    int rc;
    while ((rc = prefetch_poll(pf, wait, &tag, err)) == 1) {
    }
    return rc < 0 ? rc : 0;
}

/* steps steps, each submitting host batch k % NB. @return ms per step. */
static int run_prefetch(trainer *t, const uint8_t *px, const int32_t *lab,
                        int steps, double *ms, st_error *err)
{
    prefetch *pf = trainer_prefetch(t);
    gpu_loss_stats st;
    double t0 = now_s();
    for (int k = 0; k < steps; k++) {
        prefetch_batch b;
        int i = k % NB;
        ST_TRY(prefetch_submit(pf, px + (size_t)i * B * IN, lab + i * B, B,
                               NULL, &b, err));
        ST_TRY(trainer_train_batch(t, &b, err));
        ST_TRY(prefetch_consumed(pf, &b, err));
        ST_TRY(drain(pf, 0, err));
    }
    ST_TRY(drain(pf, 1, err));
    ST_TRY(trainer_read_stats(t, 0, 1, &st, err));
    *ms = (now_s() - t0) * 1e3 / steps;
    return 0;
}

/* One batch copied once, then steps steps on it. @return ms per step. */
static int run_resident(trainer *t, const uint8_t *px, const int32_t *lab,
                        int steps, double *ms, st_error *err)
{
    prefetch *pf = trainer_prefetch(t);
    gpu_loss_stats st;
    prefetch_batch b;
    ST_TRY(prefetch_submit(pf, px, lab, B, NULL, &b, err));
    ST_TRY(trainer_train_batch(t, &b, err)); /* the copy is waited on here */
    ST_TRY(trainer_read_stats(t, 0, 1, &st, err));
    double t0 = now_s();
    for (int k = 0; k < steps; k++) ST_TRY(trainer_train_batch(t, &b, err));
    ST_TRY(trainer_read_stats(t, 0, 1, &st, err));
    *ms = (now_s() - t0) * 1e3 / steps;
    ST_TRY(prefetch_consumed(pf, &b, err));
    return drain(pf, 1, err);
}

static int bench(gpu_kind kind, int steps, st_error *err)
{
    gpu_device_config dc;
    gpu_device_config_init(&dc);
    dc.kind = kind;
    gpu_device *g = NULL;
    trainer *t = NULL;
    uint8_t *px = NULL;
    int32_t *lab = NULL;
    int rc = gpu_device_create(&g, &dc, NULL, 0, err);
    if (rc == 0) {
        px = gpu_host_alloc((size_t)NB * B * IN, g); /* pinned on CUDA */
        lab = gpu_host_alloc(sizeof *lab * NB * B, g);
        if (px == NULL || lab == NULL)
            rc = st_seterr(err, ST_ENOMEM, "gpustep: no pinned host memory");
    }
    if (rc == 0) {
        uint64_t s = 7;
        for (size_t i = 0; i < (size_t)NB * B * IN; i++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            px[i] = (uint8_t)(s >> 56);
        }
        for (int i = 0; i < NB * B; i++) lab[i] = (int32_t)((i * 7) % 10);
        trainer_config c;
        trainer_config_init(&c);
        c.model = (model_spec){.in_c = 1, .in_h = 28, .in_w = 28, .classes = 10,
                               .n_hidden = 2, .hidden = {512, 256},
                               .in_scale = 1.0f / 255};
        c.batch = B;
        rc = trainer_create(&t, g, &c, err);
    }
    double ms;
    if (rc == 0) rc = run_prefetch(t, px, lab, WARMUP, &ms, err);
    for (int r = 1; rc == 0 && r <= ROUNDS; r++) {
        double res_ms, pf_ms;
        rc = run_resident(t, px, lab, steps, &res_ms, err);
        if (rc == 0) rc = run_prefetch(t, px, lab, steps, &pf_ms, err);
        if (rc == 0)
            printf("gpustep round=%d resident_ms=%.4f prefetch_ms=%.4f\n", r,
                   res_ms, pf_ms);
    }
    if (rc == 0) {
        prefetch_stats ps;
        gpu_mem_stats ms_;
        prefetch_get_stats(trainer_prefetch(t), &ps);
        rc = gpu_device_mem(g, &ms_);
        if (rc == 0)
            printf("gpustep device=\"%s\" prefetch_h2d_gbps=%.2f dev_mem_used=%zu "
                   "dev_mem_peak=%zu arena=%zu\n", gpu_device_name(g),
                   ps.copy_s > 0 ? ps.bytes / ps.copy_s / 1e9 : 0.0, ms_.used,
                   ms_.peak, ms_.arena);
        else
            rc = gpu_device_check(g, err);
    }
    trainer_destroy(t);
    gpu_host_free(lab, g);
    gpu_host_free(px, g);
    gpu_device_destroy(g);
    return rc;
}

int main(int argc, char **argv)
{
    gpu_kind kind = GPU_KIND_CUDA;
    int steps = 2000;
    if (argc > 1 && strcmp(argv[1], "cpu") == 0) kind = GPU_KIND_CPU;
    else if (argc > 1 && strcmp(argv[1], "cuda") != 0) {
        fprintf(stderr, "usage: gpustep [cuda|cpu] [STEPS]\n");
        return 2;
    }
    if (argc > 2 && (steps = atoi(argv[2])) < 1) {
        fprintf(stderr, "gpustep: STEPS must be >= 1\n");
        return 2;
    }
    st_error err = {0};
    if (bench(kind, steps, &err) != 0) {
        fprintf(stderr, "gpustep: %s\n", err.msg);
        return 1;
    }
    return 0;
}
