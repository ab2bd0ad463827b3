/* bench/conv/layers.c — each conv layer of the Fashion-MNIST net,
 * timed alone on the CPU backend through train/layer.h, as the trainer
 * runs it: forward (train=1) then backward at micro-batch N, with the
 * shared lowering workspace the model binds (train/model.h's rule), conv1
 * without backward-data (the first layer's dx is NULL), no bias and no
 * fused ReLU (a bn follows each conv; the ReLU fuses into the bn).
 *
 *   layers [THREADS [REPS [N]]]      (2, 7, 128)
 *
 * The net: conv32k3s1p1,bn,relu,maxpool2s2p0,conv64k3s1p1,bn,relu,
 * maxpool2s2p0,conv128k3s1p1,bn,relu,gap,dense10 on 28x28x1, so
 *   conv1  1 -> 32  on 28x28     conv2  32 -> 64 on 14x14
 *   conv3  64 -> 128 on 7x7
 * FLOPs: 2*N*oh*ow*K*oc a GEMM (K = kh*kw*c): forward, backward-filter
 * and, but for conv1, backward-data. Each repetition runs the three
 * layers in turn; the figures are the best and the median of REPS. One
 * line per layer, then the sum:
 *   conv_layer name=conv2 c=32 h=14 w=14 oc=64 k=3 n=128 group=18
 *       flop=1387266048 fwd_ms=4.1 bwd_ms=8.0 ms=12.1 med_ms=13.0 gflops=114.6
 *   conv_layers n=128 threads=2 flop=... ms=... gflops=...
 * Memory: one arena from gpu_arena_alloc holds every tensor, as in the
 * trainer; the numbers in it are arbitrary (timing does not depend on
 * them).
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "train/layer.h"

#define NCONV 3

typedef struct conv_def {
    const char *name;
    int c, h, w, oc;
} conv_def;

static const conv_def NET[NCONV] = {
    {"conv1", 1, 28, 28, 32},
    {"conv2", 32, 14, 14, 64},
    {"conv3", 64, 7, 7, 128},
};

typedef struct conv_bench {
    layer l;
    float *x, *y, *dy, *dx; /* (n, in), (n, out), (n, out), (n, in) or NULL */
    double flop;
    double fwd[64], bwd[64]; /* seconds per repetition */
} conv_bench;

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static size_t up64(size_t n) { return (n + 63) & ~(size_t)63; }

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Best and (lower) median of v[0..n) of the per-rep sums a[i] + b[i]. */
static void best_med(const double *a, const double *b, int n, double *best,
                     double *med)
{
    double s[64];
    for (int i = 0; i < n; i++) s[i] = a[i] + (b ? b[i] : 0);
    qsort(s, (size_t)n, sizeof *s, cmp_double);
    *best = s[0], *med = s[(n - 1) / 2];
}

static double fill_value(size_t i) { return (double)(i % 17) * 0.1 - 0.8; }

/* Shapes, the arena, the binding. @return 0 or a negative st_errcode. */
static int setup(conv_bench *cb, gpu_device *d, int n, size_t *work_out,
                 st_error *err)
{
    layer_win win = {3, 3, 1, 1, 1, 1};
    size_t total = 0, want = 0, least = 0;
    for (int i = 0; i < NCONV; i++) {
        const conv_def *c = &NET[i];
        layer *l = &cb[i].l;
        ST_TRY(layer_conv_init(l, c->c, c->h, c->w, c->oc, win, 0, err));
        size_t in = (size_t)n * layer_in_size(l), out = (size_t)n * layer_out_size(l);
        size_t wc = l->ops->weight_count(l);
        total += 2 * up64(in) + 2 * up64(out) + 2 * up64(wc);
        size_t a = layer_workspace_floats(l, n), b = layer_workspace_floats(l, 1);
        want = a > want ? a : want, least = b > least ? b : least;
    }
    /* train/model.c's rule for the shared workspace */
    size_t cap = LAYER_WORK_CAP_FLOATS > least ? LAYER_WORK_CAP_FLOATS : least;
    size_t work = up64(want < cap ? want : cap);
    total += work;
    void *base;
    ST_TRY(gpu_arena_alloc(d, total * sizeof(float), &base, err));
    float *p = base;
    for (int i = 0; i < NCONV; i++) {
        layer *l = &cb[i].l;
        size_t in = (size_t)n * layer_in_size(l), out = (size_t)n * layer_out_size(l);
        size_t wc = l->ops->weight_count(l);
        cb[i].x = p, p += up64(in);
        cb[i].dx = i == 0 ? NULL : p; /* the first layer: no backward-data */
        p += up64(in);
        cb[i].y = p, p += up64(out);
        cb[i].dy = p, p += up64(out);
        l->w = p, p += up64(wc);
        l->gw = p, p += up64(wc);
        for (size_t j = 0; j < in; j++) cb[i].x[j] = (float)fill_value(j);
        for (size_t j = 0; j < out; j++) cb[i].dy[j] = (float)fill_value(j + 5);
        uint64_t rng = 1 + (uint64_t)i;
        l->ops->init(l, l->w, NULL, &rng);
        double gemm = 2.0 * n * l->out_h * l->out_w *
                      (double)l->ops->weight_count(l);
        cb[i].flop = gemm * (i == 0 ? 2 : 3);
    }
    for (int i = 0; i < NCONV; i++) {
        cb[i].l.work = p;
        cb[i].l.work_floats = work;
        layer_bind(&cb[i].l, n);
    }
    *work_out = work;
    return 0;
}

static int run_once(conv_bench *cb, gpu_device *d, int n, int rep)
{
    for (int i = 0; i < NCONV; i++) {
        const layer *l = &cb[i].l;
        double t0 = now();
        ST_TRY(l->ops->forward(l, d, cb[i].x, cb[i].y, n, 1));
        ST_TRY(gpu_sync(d));
        double t1 = now();
        ST_TRY(l->ops->backward(l, d, cb[i].x, cb[i].y, cb[i].dy, cb[i].dx, n, 0));
        ST_TRY(gpu_sync(d));
        cb[i].fwd[rep] = t1 - t0;
        cb[i].bwd[rep] = now() - t1;
    }
    return 0;
}

static void report(const conv_bench *cb, int n, int reps, int threads,
                   size_t work)
{
    double flop = 0, ms = 0;
    for (int i = 0; i < NCONV; i++) {
        const layer *l = &cb[i].l;
        double f, fm, b, bm, t, tm;
        best_med(cb[i].fwd, NULL, reps, &f, &fm);
        best_med(cb[i].bwd, NULL, reps, &b, &bm);
        best_med(cb[i].fwd, cb[i].bwd, reps, &t, &tm);
        size_t col = layer_workspace_floats(l, 1);
        size_t g = col ? work / col : 0;
        printf("conv_layer name=%s c=%d h=%d w=%d oc=%d k=%d n=%d group=%zu "
               "flop=%.0f fwd_ms=%.3f bwd_ms=%.3f ms=%.3f med_ms=%.3f "
               "gflops=%.1f med_gflops=%.1f\n", NET[i].name, l->in_c, l->in_h,
               l->in_w, l->out_c, l->win.kh, n, g < (size_t)n ? g : (size_t)n,
               cb[i].flop, f * 1e3, b * 1e3, t * 1e3, tm * 1e3,
               cb[i].flop / t * 1e-9, cb[i].flop / tm * 1e-9);
        flop += cb[i].flop, ms += t * 1e3;
    }
    printf("conv_layers n=%d threads=%d reps=%d work_floats=%zu flop=%.0f "
           "ms=%.3f gflops=%.1f\n", n, threads, reps, work, flop, ms,
           flop / ms * 1e-6);
}

int main(int argc, char **argv)
{
    int threads = argc > 1 ? atoi(argv[1]) : 2;
    int reps = argc > 2 ? atoi(argv[2]) : 7;
    int n = argc > 3 ? atoi(argv[3]) : 128;
    if (threads < 1 || reps < 1 || reps > 64 || n < 1) {
        fprintf(stderr, "usage: layers [THREADS [REPS (1..64) [N]]]\n");
        return 2;
    }
    gpu_device_config cfg;
    gpu_device_config_init(&cfg);
    cfg.kind = GPU_KIND_CPU;
    cfg.cpu_threads = threads;
    gpu_device *d = NULL;
    st_error err = {0};
    static conv_bench cb[NCONV];
    size_t work = 0;
    int rc = gpu_device_create(&d, &cfg, NULL, 0, &err);
    if (rc < 0) goto fail;
    rc = setup(cb, d, n, &work, &err);
    if (rc < 0) goto fail;
    rc = run_once(cb, d, n, 0); /* warm-up: OpenBLAS's threads, the pages */
    for (int r = 0; rc == 0 && r < reps; r++) rc = run_once(cb, d, n, r);
    if (rc < 0) {
        gpu_device_check(d, &err);
        goto fail;
    }
    report(cb, n, reps, threads, work);
    for (int i = 0; i < NCONV; i++) layer_release(&cb[i].l);
    gpu_device_destroy(d);
    return 0;
fail:
    fprintf(stderr, "layers: %s\n", err.msg[0] ? err.msg : "device error");
    for (int i = 0; i < NCONV; i++) layer_release(&cb[i].l);
    gpu_device_destroy(d);
    return 1;
}
