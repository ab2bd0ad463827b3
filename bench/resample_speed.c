/* bench/resample_speed.c — the resampler's speed per kernel: random
 * RandomResizedCrop boxes (scale 0.08..1, ratio 3/4..4/3, else the whole
 * image) of a 512x384 RGB image to 224x224, bilinear, RESAMPLE_CROP, a
 * flip every other image, one thread; for each kernel this CPU has
 * (ST_RESAMPLE_ISA), the median of 5 runs of about 1 s of the thread's
 * CPU time (robust to a shared machine's time slicing), in ms/image.
 * Also checks that every kernel gives the scalar path's bytes.
 *
 * usage: resample_speed [seconds-per-run]   (a benchmark, not a test)
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "datasets/resample.h"

#define SW 512
#define SH 384
#define OUT 224
#define NBOX 512
#define RUNS 5

static uint64_t rng = 88172645463325252ull;
static double uni(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (double)(rng >> 11) / 9007199254740992.0;
}

static void rrc_box(double *b)
{
    for (int i = 0; i < 10; i++) {
        double area = SW * SH * (0.08 + 0.92 * uni());
        double r = exp(log(3.0 / 4) + uni() * (log(4.0 / 3) - log(3.0 / 4)));
        double w = sqrt(area * r), h = sqrt(area / r);
        if (w <= SW && h <= SH) {
            b[0] = floor(uni() * (SW - w));
            b[1] = floor(uni() * (SH - h));
            b[2] = b[0] + floor(w);
            b[3] = b[1] + floor(h);
            if (b[2] > b[0] && b[3] > b[1]) return;
        }
    }
    b[0] = 0, b[1] = 0, b[2] = SW, b[3] = SH;
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* All boxes once into out (NBOX, OUT, OUT, 3). */
static int run_all(resample *r, const uint8_t *src, double (*box)[4],
                   uint8_t *out, st_error *err)
{
    for (int i = 0; i < NBOX; i++)
        if (resample_run(r, RESAMPLE_BILINEAR, src, SW, SH, SW * 3, box[i][0],
                         box[i][1], box[i][2], box[i][3],
                         out + (size_t)i * OUT * OUT * 3, OUT, OUT,
                         RESAMPLE_CROP | (i & 1), err) != 0)
            return -1;
    return 0;
}

int main(int argc, char **argv)
{
    double secs = argc > 1 ? atof(argv[1]) : 1.0;
    static uint8_t src[SH * SW * 3];
    double(*box)[4] = malloc(sizeof(double[4]) * NBOX);
    size_t obytes = (size_t)NBOX * OUT * OUT * 3;
    uint8_t *ref = malloc(obytes), *out = malloc(obytes);
    if (!box || !ref || !out) return 1;
    for (size_t i = 0; i < sizeof src; i++) /* smooth-ish content */
        src[i] = (uint8_t)(128 + 100 * sin(i * 0.001) + 20 * uni());
    for (int i = 0; i < NBOX; i++) rrc_box(box[i]);
    const char *isas[] = {"scalar", "avx2", "avx512", "avx512vnni"};
    double base = 0;
    printf("kernel     ms/image (median of %d runs of ~%.1f s)  speedup  bytes\n",
           RUNS, secs);
    for (int k = 0; k < 4; k++) {
        setenv("ST_RESAMPLE_ISA", isas[k], 1);
        resample *r = NULL;
        st_error err = {0, ""};
        if (resample_create(SW, SH, OUT, OUT, 3, &r, &err) != 0) {
            printf("%-10s skipped: %s\n", isas[k], err.msg);
            continue;
        }
        if (run_all(r, src, box, k == 0 ? ref : out, &err) != 0) {
            fprintf(stderr, "resample_speed: %s\n", err.msg);
            return 1;
        }
        int same = k == 0 || memcmp(ref, out, obytes) == 0;
        double t[RUNS];
        for (int j = 0; j < RUNS; j++) {
            double t0 = now_s(), t1;
            long n = 0;
            do {
                run_all(r, src, box, out, &err);
                n += NBOX;
                t1 = now_s();
            } while (t1 - t0 < secs);
            t[j] = (t1 - t0) * 1e3 / (double)n;
        }
        qsort(t, RUNS, sizeof t[0], cmp_d);
        if (k == 0) base = t[RUNS / 2];
        printf("%-10s %.4f (min %.4f, max %.4f)             %.2fx    %s\n",
               isas[k], t[RUNS / 2], t[0], t[RUNS - 1], base / t[RUNS / 2],
               same ? "= scalar" : "DIFFER");
        resample_destroy(r);
    }
    free(box);
    free(ref);
    free(out);
    return 0;
}
