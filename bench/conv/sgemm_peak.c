/* bench/conv/sgemm_peak.c — OpenBLAS's fp32 GEMM peak on this machine,
 * the yardstick for the conv layers' achieved GFLOP/s (bench/conv/layers.c).
 *
 *   sgemm_peak [THREADS [REPS [MIN_MS]]]      (2, 5, 200)
 *
 * Times cblas_sgemm (row-major, C = A.B, alpha 1, beta 0) on square
 * matrices of 256..2048 and on the GEMMs that train/layer_conv.c issues
 * for the Fashion-MNIST net at micro-batch 128 (below), with
 * THREADS OpenBLAS threads. Each figure is the best of REPS timings, each
 * timing as many calls as fill MIN_MS (at least 2), after one warm-up
 * call. Prints one line per GEMM, then the peak (the best square):
 *   sgemm kind=square name=n1024 M=1024 N=1024 K=1024 tA=0 tB=0 ms=12.345 gflops=174.0
 *   sgemm_peak threads=2 gflops=180.2 name=n2048 config="OpenBLAS ..."
 *
 * The conv shapes. A conv layer over NHWC lowers G images at a time into
 * col (G*oh*ow, kh*kw*c) and runs, with K = kh*kw*c and P = G*oh*ow:
 *   forward          y (P, oc)   = col (P, K) . W (K, oc)
 *   backward-filter  gW (K, oc)  = col^T (K, P) . dy (P, oc)
 *   backward-data    dcol (P, K) = dy (P, oc) . W^T (oc, K)
 * G is what the model's shared workspace holds (train/layer.h): the
 * workspace is min(max_l col(l)*128, max(LAYER_WORK_CAP_FLOATS, max_l
 * col(l))) = min(128*56448, 1M) = 1,048,576 floats for this net, so G =
 * 128 for conv1 (col 28*28*9 = 7,056 floats an image: the whole batch),
 * 18 for conv2 (14*14*288 = 56,448; 7 groups of 18 and one of 2) and 37
 * for conv3 (7*7*576 = 28,224; 3 of 37 and one of 17); the shapes below
 * are the full groups. bench/conv/layers.c prints the G it binds, so a
 * change to the rule shows as a mismatch there. The first layer skips
 * backward-data.
 */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct gemm_shape {
    const char *kind, *name;
    int M, N, K, tA, tB;
} gemm_shape;

static const gemm_shape SHAPES[] = {
    {"square", "n256", 256, 256, 256, 0, 0},
    {"square", "n512", 512, 512, 512, 0, 0},
    {"square", "n1024", 1024, 1024, 1024, 0, 0},
    {"square", "n2048", 2048, 2048, 2048, 0, 0},
    {"conv", "conv1.fwd", 128 * 784, 32, 9, 0, 0},
    {"conv", "conv1.bwd_filter", 9, 32, 128 * 784, 1, 0},
    {"conv", "conv2.fwd", 18 * 196, 64, 288, 0, 0},
    {"conv", "conv2.bwd_filter", 288, 64, 18 * 196, 1, 0},
    {"conv", "conv2.bwd_data", 18 * 196, 288, 64, 0, 1},
    {"conv", "conv3.fwd", 37 * 49, 128, 576, 0, 0},
    {"conv", "conv3.bwd_filter", 576, 128, 37 * 49, 1, 0},
    {"conv", "conv3.bwd_data", 37 * 49, 576, 128, 0, 1},
};

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* C (M, N) = op(A) (M, K) . op(B) (K, N), row-major, tightly packed. */
static void gemm(const gemm_shape *s, const float *A, const float *B, float *C)
{
    int lda = s->tA ? s->M : s->K, ldb = s->tB ? s->K : s->N;
    cblas_sgemm(CblasRowMajor, s->tA ? CblasTrans : CblasNoTrans,
                s->tB ? CblasTrans : CblasNoTrans, s->M, s->N, s->K, 1.0f,
                A, lda, B, ldb, 0.0f, C, s->N);
}

/* Best seconds per call over reps timings of >= min_s each. */
static double time_gemm(const gemm_shape *s, const float *A, const float *B,
                        float *C, int reps, double min_s)
{
    gemm(s, A, B, C); /* warm-up: OpenBLAS's threads, the caches */
    double t0 = now();
    gemm(s, A, B, C);
    double one = now() - t0;
    int calls = one > 0 ? (int)(min_s / one) + 1 : 2;
    if (calls < 2) calls = 2;
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        t0 = now();
        for (int i = 0; i < calls; i++) gemm(s, A, B, C);
        double per = (now() - t0) / calls;
        if (per < best) best = per;
    }
    return best;
}

int main(int argc, char **argv)
{
    int threads = argc > 1 ? atoi(argv[1]) : 2;
    int reps = argc > 2 ? atoi(argv[2]) : 5;
    double min_s = (argc > 3 ? atof(argv[3]) : 200.0) * 1e-3;
    if (threads < 1 || reps < 1 || min_s <= 0) {
        fprintf(stderr, "usage: sgemm_peak [THREADS [REPS [MIN_MS]]]\n");
        return 2;
    }
    openblas_set_num_threads(threads);
    size_t na = 0, nb = 0, nc = 0;
    const size_t count = sizeof SHAPES / sizeof *SHAPES;
    for (size_t i = 0; i < count; i++) {
        const gemm_shape *s = &SHAPES[i];
        size_t a = (size_t)s->M * s->K, b = (size_t)s->K * s->N,
               c = (size_t)s->M * s->N;
        na = a > na ? a : na, nb = b > nb ? b : nb, nc = c > nc ? c : nc;
    }
    float *A = malloc(na * sizeof *A), *B = malloc(nb * sizeof *B);
    float *C = malloc(nc * sizeof *C);
    if (!A || !B || !C) {
        fprintf(stderr, "sgemm_peak: out of memory (%zu floats)\n", na + nb + nc);
        free(A), free(B), free(C);
        return 1;
    }
    for (size_t i = 0; i < na; i++) A[i] = (float)(i % 17) * 0.01f - 0.08f;
    for (size_t i = 0; i < nb; i++) B[i] = (float)(i % 13) * 0.01f - 0.06f;
    memset(C, 0, nc * sizeof *C);
    double peak = 0;
    const char *peak_name = "";
    for (size_t i = 0; i < count; i++) {
        const gemm_shape *s = &SHAPES[i];
        double sec = time_gemm(s, A, B, C, reps, min_s);
        double gf = 2.0 * s->M * s->N * (double)s->K / sec * 1e-9;
        printf("sgemm kind=%s name=%s M=%d N=%d K=%d tA=%d tB=%d ms=%.4f "
               "gflops=%.1f\n", s->kind, s->name, s->M, s->N, s->K, s->tA,
               s->tB, sec * 1e3, gf);
        fflush(stdout);
        if (strcmp(s->kind, "square") == 0 && gf > peak)
            peak = gf, peak_name = s->name;
    }
    printf("sgemm_peak threads=%d gflops=%.1f name=%s config=\"%s\"\n", threads,
           peak, peak_name, openblas_get_config());
    free(A), free(B), free(C);
    return 0;
}
