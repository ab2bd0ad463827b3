/* bench/conv_layout.c — NCHW or NHWC for the CPU backend's convolutions?
 * One conv layer's forward + backward (data and filter), both ways:
 *   NCHW  per image: col_i (c*kh*kw, oh*ow) from x_i (c, h, w);
 *         y_i (oc, oh*ow) = W (oc, K) . col_i; gW += dy_i . col_i^T;
 *         dcol = W^T . dy_i, col2im into dx_i: 3 GEMMs per image
 *   NHWC  train/layer_conv.c as built: the batch lowered in one group,
 *         col (n*oh*ow, K), one GEMM per direction; and again with the
 *         workspace capped at 16 images (8 groups).
 * Built by hand, not by make (it is run once, to choose the layout):
 *   make CUDA=0 build/libstreamtrain.a
 *   cc -O2 -march=x86-64-v2 -I. bench/conv_layout.c build/libstreamtrain.a \
 *      -lopenblas -lm -pthread -o build/conv_layout && build/conv_layout [T]
 * Prints the best of 7 interleaved runs per layer in ms and GFLOP/s (T
 * OpenBLAS threads, default 2; batch 128; the layers of the issue's
 * Fashion-MNIST net). The best, because the machine is shared: under load
 * a 2-thread GEMM waits for its slower thread, so T=1 is the steadier
 * comparison of the layouts themselves.
 */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "train/layer.h"

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

typedef struct shape {
    int c, h, w, oc, k, pad;
} shape;

static int out_dim(int h, int k, int p) { return h + 2 * p - k + 1; }

/* col (c*k*k, oh*ow) from x (c, h, w), stride 1. */
static void im2col_nchw(const shape *s, const float *x, float *col)
{
    int oh = out_dim(s->h, s->k, s->pad), ow = out_dim(s->w, s->k, s->pad);
    for (int ci = 0; ci < s->c; ci++)
        for (int ky = 0; ky < s->k; ky++)
            for (int kx = 0; kx < s->k; kx++) {
                float *row = col + ((size_t)(ci * s->k + ky) * s->k + kx) * oh * ow;
                int x0 = s->pad - kx > 0 ? s->pad - kx : 0;
                int x1 = s->w + s->pad - kx < ow ? s->w + s->pad - kx : ow;
                for (int oy = 0; oy < oh; oy++) {
                    float *r = row + (size_t)oy * ow;
                    int iy = oy - s->pad + ky;
                    if (iy < 0 || iy >= s->h || x1 <= x0) {
                        memset(r, 0, (size_t)ow * sizeof *r);
                        continue;
                    }
                    const float *xr = x + ((size_t)ci * s->h + iy) * s->w - s->pad + kx;
                    for (int ox = 0; ox < x0; ox++) r[ox] = 0;
                    memcpy(r + x0, xr + x0, (size_t)(x1 - x0) * sizeof *r);
                    for (int ox = x1; ox < ow; ox++) r[ox] = 0;
                }
            }
}

/* dx (c, h, w) += the adjoint of im2col_nchw. */
static void col2im_nchw(const shape *s, const float *col, float *dx)
{
    int oh = out_dim(s->h, s->k, s->pad), ow = out_dim(s->w, s->k, s->pad);
    for (int ci = 0; ci < s->c; ci++)
        for (int ky = 0; ky < s->k; ky++)
            for (int kx = 0; kx < s->k; kx++) {
                const float *row = col + ((size_t)(ci * s->k + ky) * s->k + kx) * oh * ow;
                int x0 = s->pad - kx > 0 ? s->pad - kx : 0;
                int x1 = s->w + s->pad - kx < ow ? s->w + s->pad - kx : ow;
                for (int oy = 0; oy < oh; oy++) {
                    int iy = oy - s->pad + ky;
                    if (iy < 0 || iy >= s->h) continue;
                    float *xr = dx + ((size_t)ci * s->h + iy) * s->w - s->pad + kx;
                    const float *r = row + (size_t)oy * ow;
                    for (int ox = x0; ox < x1; ox++) xr[ox] += r[ox];
                }
            }
}

static double run_nchw(const shape *s, int n, float *x, float *W, float *gW,
                       float *y, float *dx, float *col)
{
    int oh = out_dim(s->h, s->k, s->pad), ow = out_dim(s->w, s->k, s->pad);
    int K = s->c * s->k * s->k, P = oh * ow;
    size_t in = (size_t)s->c * s->h * s->w, out = (size_t)s->oc * P;
    double t0 = now();
    for (int i = 0; i < n; i++) {
        im2col_nchw(s, x + i * in, col);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, s->oc, P, K,
                    1.0f, W, K, col, P, 0.0f, y + i * out, P);
    }
    memset(dx, 0, (size_t)n * in * sizeof *dx);
    for (int i = 0; i < n; i++) {
        /* dy = y here: the timing does not depend on the values */
        im2col_nchw(s, x + i * in, col);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, s->oc, K, P,
                    1.0f, y + i * out, P, col, P, i ? 1.0f : 0.0f, gW, K);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, P, s->oc,
                    1.0f, W, K, y + i * out, P, 0.0f, col, P);
        col2im_nchw(s, col, dx + i * in);
    }
    return now() - t0;
}

static double run_nhwc(const shape *s, int n, gpu_device *d, float *x,
                       float *W, float *gW, float *y, float *dx, float *work,
                       size_t work_floats)
{
    layer l;
    st_error err = {0};
    layer_win win = {s->k, s->k, 1, 1, s->pad, s->pad};
    if (layer_conv_init(&l, s->c, s->h, s->w, s->oc, win, 0, &err) < 0) {
        fprintf(stderr, "conv_layout: %s\n", err.msg);
        exit(1);
    }
    l.w = W, l.gw = gW, l.work = work, l.work_floats = work_floats;
    double t0 = now();
    if (l.ops->forward(&l, d, x, y, n, 1) < 0 ||
        l.ops->backward(&l, d, x, y, y, dx, n, 0) < 0) {
        fprintf(stderr, "conv_layout: device error\n");
        exit(1);
    }
    return now() - t0;
}

int main(int argc, char **argv)
{
    const shape layers[] = {
        {1, 28, 28, 32, 3, 1}, {32, 14, 14, 64, 3, 1}, {64, 7, 7, 128, 3, 1},
    };
    const int n = 128, reps = 7;
    int threads = argc > 1 ? atoi(argv[1]) : 2;
    gpu_device_config cfg;
    gpu_device_config_init(&cfg);
    cfg.kind = GPU_KIND_CPU;
    cfg.cpu_threads = threads > 0 ? threads : 2;
    gpu_device *d = NULL;
    st_error err = {0};
    if (gpu_device_create(&d, &cfg, NULL, 0, &err) < 0) {
        fprintf(stderr, "conv_layout: %s\n", err.msg);
        return 1;
    }
    printf("%d OpenBLAS thread(s)\n", cfg.cpu_threads);
    printf("%-22s %9s %8s %9s %8s %9s %8s\n", "layer (batch 128)",
           "NCHW ms", "GFLOP/s", "NHWC ms", "GFLOP/s", "G=16 ms", "GFLOP/s");
    for (size_t li = 0; li < sizeof layers / sizeof *layers; li++) {
        const shape *s = &layers[li];
        int oh = out_dim(s->h, s->k, s->pad), ow = out_dim(s->w, s->k, s->pad);
        size_t K = (size_t)s->c * s->k * s->k, P = (size_t)oh * ow;
        size_t in = (size_t)n * s->c * s->h * s->w, out = (size_t)n * s->oc * P;
        size_t work_floats = (size_t)n * P * K;
        float *x = malloc(in * 4), *dx = malloc(in * 4), *y = malloc(out * 4);
        float *W = malloc(K * s->oc * 4), *gW = malloc(K * s->oc * 4);
        float *work = malloc(work_floats * 4);
        if (!x || !dx || !y || !W || !gW || !work) return 1;
        for (size_t i = 0; i < in; i++) x[i] = (float)(i % 17) * 0.1f - 0.8f;
        for (size_t i = 0; i < K * s->oc; i++) W[i] = (float)(i % 13) * 0.01f - 0.06f;
        double flop = 3.0 * 2.0 * (double)n * P * K * s->oc; /* fwd + 2 bwd */
        double best_c = 1e9, best_h = 1e9, best_g = 1e9;
        for (int r = 0; r < reps; r++) {
            double a = run_nchw(s, n, x, W, gW, y, dx, work);
            double b = run_nhwc(s, n, d, x, W, gW, y, dx, work, work_floats);
            double g = run_nhwc(s, n, d, x, W, gW, y, dx, work,
                                work_floats / 8);
            if (a < best_c) best_c = a;
            if (b < best_h) best_h = b;
            if (g < best_g) best_g = g;
        }
        char name[64];
        snprintf(name, sizeof name, "conv %d->%d %dx%d", s->c, s->oc, s->h, s->w);
        printf("%-22s %9.1f %8.1f %9.1f %8.1f %9.1f %8.1f\n", name,
               best_c * 1e3, flop / best_c * 1e-9, best_h * 1e3,
               flop / best_h * 1e-9, best_g * 1e3, flop / best_g * 1e-9);
        free(work), free(gW), free(W), free(y), free(dx), free(x);
    }
    gpu_device_destroy(d);
    return 0;
}
