/* datasets/resample.c — PIL-compatible antialiased resampling of 8-bit
 * images (see resample.h for the contract).
 *
 * implements: the coefficient tables (PIL's construction: the filter's
 *             support widened by max(1, box/out), taps from
 *             floor(centre - support + 0.5) to floor(centre + support + 0.5)
 *             clamped to the source, weights normalised per output pixel in
 *             double, then rounded to RS_PREC-bit fixed point), a
 *             horizontal pass over only the rows the vertical filter
 *             touches into an 8-bit intermediate (as PIL: the same bytes),
 *             and a vertical pass summing blocks of 16 columns in int32;
 *             AVX2 / AVX-512 kernels of both passes (resample_simd.c),
 *             chosen at create, give the same bytes.
 *
 * Fixed point: a weight w in [0, 1] becomes round(w * 2^22). A sum of taps
 * is at most 255 * 2^22 * (1 + taps * 2^-23) + 2^21 < 2^31, so int32 holds
 * it with room; 22 bits is the most precision that leaves 8 bits for the
 * pixel and 2 of headroom in a signed 32-bit accumulator (PIL's choice for
 * its 8-bit path too). Results are rounded (+ 2^21) and clamped to 0..255.
 *
 * Arena (one allocation at create, nothing allocated by resample_run):
 *   coef_x  int32 (kcap_x)             horizontal taps, ksize per output x
 *   lo_x    int32 (max_out_w)          first source column of each output x
 *   n_x     int32 (max_out_w)          its tap count
 *   coef_y, lo_y, n_y                  the same for rows
 *   tmp     uint8 (tmp_rows, row_cap)  horizontal pass output, one row per
 *                                      source row the vertical filter
 *                                      reads; row_cap = max_out_w * c
 *                                      rounded up to 16
 *   wtab   int16                       the horizontal taps split in two
 *                                      int16 halves for the SIMD kernel
 *                                      (resample_simd.h), 16 bytes a tap
 *                                      padded to 4 taps per output
 *   bg     int32 (max_out_w)           its tap groups per block of outputs
 * kcap = 2 * max_box + 5 * max_out + 8 bounds out * (2 * ceil(support) + 1)
 * for every out <= max_out, box <= max_box (+ a float-rounding margin);
 * tmp_rows = 2 * max_box_h + 6 bounds the rows read (box + support - scale
 * / 2 on each side, at most box_h + max(1, box_h / out_h) + 3).
 */
#include "resample.h"
#include "resample_simd.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#if defined(__SSE4_1__)
#include <smmintrin.h>
#endif

#define RS_BLOCK 16 /* vertical pass: columns per vectorised block */
#define RS_MAX_SIDE (1u << 16)

struct resample {
    uint32_t max_box_w, max_box_h, max_out_w, max_out_h;
    int c;
    size_t kcap_x, kcap_y, row_cap, tmp_rows;
    int32_t *coef_x, *lo_x, *n_x; /* (kcap_x), (max_out_w), (max_out_w) */
    int32_t *coef_y, *lo_y, *n_y; /* (kcap_y), (max_out_h), (max_out_h) */
    uint8_t *tmp;                 /* (tmp_rows, row_cap) */
    int16_t *wtab;                /* split taps, see rs_hprep */
    int32_t *bg;                  /* (max_out_w) tap groups per block */
    rs_vrow_fn vrow;              /* the vertical pass's row kernel */
    rs_hrow_fn hrow;              /* 3-4 channel SIMD row, or NULL */
    int hlanes;                   /* outputs hrow runs at a time */
    const char *isa;              /* "scalar", "avx2" or "avx512" */
};

static void vrow_c(const uint8_t *base, size_t in_stride, const int32_t *k,
                   int32_t taps, uint8_t *out, size_t n);

typedef struct axis {
    int32_t *coef, *lo, *n;
    int ksize;
} axis;

/* ---- sizes --------------------------------------------------------------- */

static size_t kcap(uint32_t max_box, uint32_t max_out)
{
    return 2 * (size_t)max_box + 5 * (size_t)max_out + 8;
}

static size_t row_cap(uint32_t max_out_w, int c)
{
    size_t n = (size_t)max_out_w * (size_t)c;
    return (n + RS_BLOCK - 1) / RS_BLOCK * RS_BLOCK;
}

static size_t align64(size_t n) { return (n + 63) & ~(size_t)63; }

/* Byte offsets of the arena's parts; returns the total. */
static size_t layout(uint32_t bw, uint32_t bh, uint32_t ow, uint32_t oh,
                     int c, size_t off[9])
{
    size_t sz[9] = {
        kcap(bw, ow) * 4, (size_t)ow * 4, (size_t)ow * 4,
        kcap(bh, oh) * 4, (size_t)oh * 4, (size_t)oh * 4,
        (2 * (size_t)bh + 6) * row_cap(ow, c),
        /* split weights: 16 bytes a tap, taps padded to 4 per output */
        (kcap(bw, ow) + 3 * (size_t)ow) * 16, (size_t)ow * 4,
    };
    size_t at = align64(sizeof(struct resample));
    for (int i = 0; i < 9; i++) {
        off[i] = at;
        at += align64(sz[i]);
    }
    return at;
}

size_t resample_scratch_bytes(uint32_t max_box_w, uint32_t max_box_h,
                              uint32_t max_out_w, uint32_t max_out_h, int c)
{
    size_t off[9];
    return layout(max_box_w, max_box_h, max_out_w, max_out_h, c, off);
}

/* The kernels: ST_RESAMPLE_ISA (scalar, avx2, avx512 or avx512vnni;
 * unset, empty or auto: the best this CPU has) read once here. Forcing an ISA the CPU
 * lacks is an error, not a silent fallback. */
static int pick_isa(resample *r, st_error *err)
{
    int has2 = __builtin_cpu_supports("avx2");
    int has512 = has2 && __builtin_cpu_supports("avx512f") &&
                 __builtin_cpu_supports("avx512bw") &&
                 __builtin_cpu_supports("avx512vl");
    int hasvnni = has512 && __builtin_cpu_supports("avx512vnni");
    const char *want = getenv("ST_RESAMPLE_ISA");
    if (!want || !*want || strcmp(want, "auto") == 0)
        want = hasvnni  ? "avx512vnni"
               : has512 ? "avx512"
               : has2   ? "avx2"
                        : "scalar";
    if (strcmp(want, "scalar") == 0) {
        r->vrow = vrow_c;
        r->hrow = NULL;
        r->isa = "scalar";
    } else if (strcmp(want, "avx2") == 0 && has2) {
        r->vrow = rs_avx2_vrow;
        r->hrow = rs_avx2_hrow;
        r->hlanes = 2;
        r->isa = "avx2";
    } else if (strcmp(want, "avx512") == 0 && has512) {
        r->vrow = rs_avx512_vrow;
        r->hrow = rs_avx512_hrow;
        r->hlanes = 4;
        r->isa = "avx512";
    } else if (strcmp(want, "avx512vnni") == 0 && hasvnni) {
        r->vrow = rs_avx512_vrow;
        r->hrow = rs_avx512vnni_hrow;
        r->hlanes = 4;
        r->isa = "avx512vnni";
    } else {
        return st_seterr(err, ST_EINVAL, "resample: ST_RESAMPLE_ISA=%s: "
                         "expected scalar, avx2, avx512 or avx512vnni, and "
                         "one this CPU has (avx2: %s, avx512bw/vl: %s, "
                         "avx512vnni: %s)", want, has2 ? "yes" : "no",
                         has512 ? "yes" : "no", hasvnni ? "yes" : "no");
    }
    return 0;
}

int resample_create(uint32_t max_box_w, uint32_t max_box_h,
                    uint32_t max_out_w, uint32_t max_out_h, int c,
                    resample **out, st_error *err)
{
    *out = NULL;
    if (c < 1 || c > 4)
        return st_seterr(err, ST_EINVAL,
                         "resample: %d channels: expected 1..4", c);
    if (max_box_w < 1 || max_box_h < 1 || max_out_w < 1 || max_out_h < 1 ||
        max_box_w > RS_MAX_SIDE || max_box_h > RS_MAX_SIDE ||
        max_out_w > RS_MAX_SIDE || max_out_h > RS_MAX_SIDE)
        return st_seterr(err, ST_EINVAL,
                         "resample: limits box %ux%u, output %ux%u: expected "
                         "1..%u on each side",
                         max_box_w, max_box_h, max_out_w, max_out_h,
                         RS_MAX_SIDE);
    size_t off[9];
    size_t total = layout(max_box_w, max_box_h, max_out_w, max_out_h, c, off);
    void *mem = NULL;
    if (posix_memalign(&mem, 64, total) != 0)
        return st_seterr(err, ST_ENOMEM,
                         "resample: cannot allocate %zu bytes of scratch",
                         total);
    uint8_t *base = mem;
    resample *r = mem;
    memset(r, 0, sizeof *r);
    r->max_box_w = max_box_w;
    r->max_box_h = max_box_h;
    r->max_out_w = max_out_w;
    r->max_out_h = max_out_h;
    r->c = c;
    r->kcap_x = kcap(max_box_w, max_out_w);
    r->kcap_y = kcap(max_box_h, max_out_h);
    r->row_cap = row_cap(max_out_w, c);
    r->tmp_rows = 2 * (size_t)max_box_h + 6;
    r->coef_x = (int32_t *)(base + off[0]);
    r->lo_x = (int32_t *)(base + off[1]);
    r->n_x = (int32_t *)(base + off[2]);
    r->coef_y = (int32_t *)(base + off[3]);
    r->lo_y = (int32_t *)(base + off[4]);
    r->n_y = (int32_t *)(base + off[5]);
    r->tmp = base + off[6];
    r->wtab = (int16_t *)(base + off[7]);
    r->bg = (int32_t *)(base + off[8]);
    int rc = pick_isa(r, err);
    if (rc != 0) {
        free(mem);
        return rc;
    }
    *out = r;
    return 0;
}

const char *resample_isa(const resample *r) { return r->isa; }

void resample_destroy(resample *r) { free(r); }

/* ---- coefficients -------------------------------------------------------- */

/* An axis that maps integer source positions one to one: no filtering. */
static int is_identity(double b0, double b1, uint32_t n)
{
    return b0 == floor(b0) && b1 - b0 == (double)n;
}

static double filter_support(resample_filter f)
{
    return f == RESAMPLE_AREA ? 0.5 : 1.0;
}

static inline double filter_eval(resample_filter f, double x)
{
    if (f == RESAMPLE_AREA) return (x > -0.5 && x <= 0.5) ? 1.0 : 0.0;
    if (x < 0.0) x = -x;
    return x < 1.0 ? 1.0 - x : 0.0;
}

/* Taps of n_out outputs over the source interval [b0, b1), reading source
 * samples in [lim0, lim1); first taps stored relative to origin (the
 * source position of the buffer's first sample). Fails (returns -1) only when the table would
 * overflow cap, which the create-time bound rules out. */
static int make_axis(resample_filter f, double b0, double b1, uint32_t n_out,
                     int32_t lim0, int32_t lim1, int32_t origin, size_t cap,
                     axis *a)
{
    double scale = (b1 - b0) / (double)n_out;
    double fscale = scale < 1.0 ? 1.0 : scale;
    double support = filter_support(f) * fscale;
    double inv = 1.0 / fscale;
    a->ksize = (int)ceil(support) * 2 + 1;
    if ((size_t)a->ksize * n_out > cap) return -1;
    for (uint32_t o = 0; o < n_out; o++) {
        double centre = b0 + ((double)o + 0.5) * scale;
        int32_t lo = (int32_t)floor(centre - support + 0.5);
        int32_t hi = (int32_t)floor(centre + support + 0.5);
        if (lo < lim0) lo = lim0;
        if (hi > lim1) hi = lim1;
        if (hi < lo) hi = lo;
        double sum = 0.0;
        for (int32_t x = lo; x < hi; x++)
            sum += filter_eval(f, ((double)x - centre + 0.5) * inv);
        double norm = sum != 0.0 ? 1.0 / sum : 0.0;
        int32_t *k = a->coef + (size_t)o * (size_t)a->ksize;
        for (int32_t x = lo; x < hi; x++) {
            double w = filter_eval(f, ((double)x - centre + 0.5) * inv) * norm;
            k[x - lo] = (int32_t)(0.5 + w * (double)(1 << RS_PREC));
        }
        a->lo[o] = lo - origin;
        a->n[o] = hi - lo;
    }
    return 0;
}

/* The source range [*lo, *hi) that n_out outputs over [b0, b1) read:
 * make_axis's taps of the first and last output (both ends are monotone
 * in the output), or the box itself on a copied axis; widened to the
 * box's pixels [floor(b0), ceil(b1)) where the taps stop short of them. */
static void axis_span(resample_filter f, double b0, double b1, uint32_t n_out,
                      int32_t lim0, int32_t lim1, uint32_t *lo, uint32_t *hi)
{
    if (is_identity(b0, b1, n_out)) {
        *lo = (uint32_t)b0;
        *hi = (uint32_t)b1;
        return;
    }
    double scale = (b1 - b0) / (double)n_out;
    double support = filter_support(f) * (scale < 1.0 ? 1.0 : scale);
    int32_t a = (int32_t)floor(b0 + 0.5 * scale - support + 0.5);
    int32_t b = (int32_t)floor(b0 + ((double)n_out - 0.5) * scale + support +
                               0.5);
    /* the box's own pixels too, so that the box fits in the region */
    int32_t fa = (int32_t)floor(b0), fb = (int32_t)ceil(b1);
    a = a > fa ? fa : a;
    b = b < fb ? fb : b;
    a = a < lim0 ? lim0 : a;
    b = b > lim1 ? lim1 : b;
    *lo = (uint32_t)a;
    *hi = (uint32_t)b;
}

void resample_footprint(resample_filter f, uint32_t sw, uint32_t sh,
                        double x0, double y0, double x1, double y1,
                        uint32_t ow, uint32_t oh, int flags, uint32_t *ix0,
                        uint32_t *iy0, uint32_t *ix1, uint32_t *iy1)
{
    int crop = (flags & RESAMPLE_CROP) != 0;
    axis_span(f, x0, x1, ow, crop ? (int32_t)floor(x0) : 0,
              crop ? (int32_t)ceil(x1) : (int32_t)sw, ix0, ix1);
    axis_span(f, y0, y1, oh, crop ? (int32_t)floor(y0) : 0,
              crop ? (int32_t)ceil(y1) : (int32_t)sh, iy0, iy1);
}

/* ---- passes -------------------------------------------------------------- */

static inline uint8_t clip8(int32_t v)
{
    if (v <= 0) return 0;
    if (v >= (255 << RS_PREC)) return 255;
    return (uint8_t)(v >> RS_PREC);
}

/* One output pixel of the horizontal filter, C channels, to q. */
static inline __attribute__((always_inline)) void
hpix(const uint8_t *in, uint8_t *q, const axis *a, uint32_t o, const int C)
{
    const int32_t *k = a->coef + (size_t)o * (size_t)a->ksize;
    const uint8_t *p = in + (size_t)a->lo[o] * C;
    int32_t n = a->n[o];
    int32_t s0 = RS_HALF, s1 = RS_HALF, s2 = RS_HALF, s3 = RS_HALF;
    for (int32_t t = 0; t < n; t++, p += C) {
        int32_t w = k[t];
        s0 += p[0] * w;
        if (C > 1) s1 += p[1] * w;
        if (C > 2) s2 += p[2] * w;
        if (C > 3) s3 += p[3] * w;
    }
    q[0] = clip8(s0);
    if (C > 1) q[1] = clip8(s1);
    if (C > 2) q[2] = clip8(s2);
    if (C > 3) q[3] = clip8(s3);
}

/* One source row (sw pixels) through the horizontal filter: ow outputs of
 * C channels, column o written at ow - 1 - o when flip. C is a constant at
 * each call site, so each channel count gets its own tight loop. With
 * SSE4.1, 3 and 4 channels sum as one vector of 4 int32 lanes per tap (3
 * channels read one byte past the pixel: the scalar path takes the outputs
 * whose last tap is the row's last pixel). Same sums, same bytes. */
static inline __attribute__((always_inline)) void
hrow(const uint8_t *in, uint8_t *out, const axis *a, uint32_t ow, int flip,
     const int C, uint32_t sw)
{
#if defined(__SSE4_1__)
    if (C >= 3) {
        const __m128i half = _mm_set1_epi32(RS_HALF);
        for (uint32_t o = 0; o < ow; o++) {
            uint8_t *q = out + (size_t)(flip ? ow - 1 - o : o) * C;
            int32_t n = a->n[o];
            if (C == 3 && a->lo[o] + n >= (int32_t)sw) {
                hpix(in, q, a, o, C);
                continue;
            }
            const int32_t *k = a->coef + (size_t)o * (size_t)a->ksize;
            const uint8_t *p = in + (size_t)a->lo[o] * C;
            __m128i acc = half;
            for (int32_t t = 0; t < n; t++, p += C) {
                int32_t v;
                memcpy(&v, p, 4);
                __m128i px = _mm_cvtepu8_epi32(_mm_cvtsi32_si128(v));
                acc = _mm_add_epi32(acc,
                                    _mm_mullo_epi32(px, _mm_set1_epi32(k[t])));
            }
            /* >> 22 then saturating packs: clip8 on every lane */
            acc = _mm_srai_epi32(acc, RS_PREC);
            acc = _mm_packus_epi32(acc, acc);
            acc = _mm_packus_epi16(acc, acc);
            int32_t v = _mm_cvtsi128_si32(acc);
            memcpy(q, &v, (size_t)C);
        }
        return;
    }
#endif
    (void)sw;
    for (uint32_t o = 0; o < ow; o++)
        hpix(in, out + (size_t)(flip ? ow - 1 - o : o) * C, a, o, C);
}

static void hpass_c(const resample *r, const uint8_t *src, uint32_t sw,
                    size_t stride, int32_t y0, int32_t rows, const axis *a,
                    uint32_t ow, int flip, uint8_t *out, size_t out_stride)
{
    int c = r->c;
    if (r->hrow && c >= 3) {
        rs_hprep(a->coef, a->ksize, a->lo, a->n, ow, r->hlanes, sw, c,
                 r->wtab, r->bg);
        for (int32_t y = 0; y < rows; y++)
            r->hrow(src + (size_t)(y0 + y) * stride, sw, a->coef, a->ksize,
                    a->lo, a->n, r->wtab, r->bg, ow, flip, c,
                    out + (size_t)y * out_stride);
        return;
    }
    for (int32_t y = 0; y < rows; y++) {
        const uint8_t *in = src + (size_t)(y0 + y) * stride;
        uint8_t *o = out + (size_t)y * out_stride;
        switch (c) {
        case 1: hrow(in, o, a, ow, flip, 1, sw); break;
        case 2: hrow(in, o, a, ow, flip, 2, sw); break;
        case 3: hrow(in, o, a, ow, flip, 3, sw); break;
        default: hrow(in, o, a, ow, flip, 4, sw); break;
        }
    }
}

static inline uint8_t clip8v(int32_t v) /* clip8 in a vectorisable form */
{
    v = v < 0 ? 0 : v;
    v = v > (255 << RS_PREC) ? (255 << RS_PREC) : v;
    return (uint8_t)(v >> RS_PREC);
}

/* Mirrors one row of ow pixels of c channels in place. */
static void mirror_row(uint8_t *row, uint32_t ow, int c)
{
    for (uint32_t a = 0, b = ow - 1; a < b; a++, b--)
        for (int ch = 0; ch < c; ch++) {
            uint8_t t = row[(size_t)a * c + ch];
            row[(size_t)a * c + ch] = row[(size_t)b * c + ch];
            row[(size_t)b * c + ch] = t;
        }
}

/* The vertical filter's row kernel in plain C (the reference the SIMD
 * kernels match): columns in blocks of RS_BLOCK whose sums stay in
 * registers across the taps (a constant trip count the compiler
 * vectorises even under -O2's cheap cost model), then the tail. */
static void vrow_c(const uint8_t *base, size_t in_stride, const int32_t *k,
                   int32_t taps, uint8_t *out, size_t n)
{
    size_t i = 0;
    for (; i + RS_BLOCK <= n; i += RS_BLOCK) {
        int32_t acc[RS_BLOCK];
        for (int j = 0; j < RS_BLOCK; j++) acc[j] = RS_HALF;
        const uint8_t *p = base + i;
        for (int32_t t = 0; t < taps; t++, p += in_stride) {
            int32_t w = k[t];
            for (int j = 0; j < RS_BLOCK; j++)
                acc[j] += (int32_t)p[j] * w;
        }
        for (int j = 0; j < RS_BLOCK; j++) out[i + j] = clip8v(acc[j]);
    }
    for (; i < n; i++) {
        int32_t acc = RS_HALF;
        const uint8_t *p = base + i;
        for (int32_t t = 0; t < taps; t++, p += in_stride)
            acc += (int32_t)*p * k[t];
        out[i] = clip8v(acc);
    }
}

/* Vertical filter: output row y sums rows lo[y] .. lo[y] + n[y] - 1 of the
 * input, where input row i starts at in + i * in_stride. */
static void vpass(const resample *r, const uint8_t *in, size_t in_stride,
                  const axis *a, uint8_t *dst, uint32_t ow, uint32_t oh,
                  int flip)
{
    size_t n = (size_t)ow * (size_t)r->c;
    for (uint32_t y = 0; y < oh; y++) {
        uint8_t *out = dst + (size_t)y * n;
        r->vrow(in + (size_t)a->lo[y] * in_stride, in_stride,
                a->coef + (size_t)y * (size_t)a->ksize, a->n[y], out, n);
        if (flip) mirror_row(out, ow, r->c);
    }
}

static void copy_rows(const uint8_t *src, size_t stride, uint32_t ow,
                      uint32_t oh, int c, int flip, uint8_t *dst)
{
    size_t n = (size_t)ow * (size_t)c;
    for (uint32_t y = 0; y < oh; y++) {
        const uint8_t *s = src + (size_t)y * stride;
        uint8_t *d = dst + (size_t)y * n;
        if (!flip) {
            memcpy(d, s, n);
            continue;
        }
        for (uint32_t o = 0; o < ow; o++)
            memcpy(d + (size_t)(ow - 1 - o) * c, s + (size_t)o * c, (size_t)c);
    }
}

/* ---- run ----------------------------------------------------------------- */

static int check_run(const resample *r, resample_filter f, uint32_t ox,
                     uint32_t oy, uint32_t sw, uint32_t sh, size_t stride,
                     double x0, double y0, double x1, double y1, uint32_t ow,
                     uint32_t oh, st_error *err)
{
    if (f != RESAMPLE_BILINEAR && f != RESAMPLE_AREA)
        return st_seterr(err, ST_EINVAL, "resample: filter %d: expected "
                         "bilinear (0) or area (1)", (int)f);
    if (sw < 1 || sh < 1 || stride < (size_t)sw * (size_t)r->c ||
        ox > INT32_MAX - sw || oy > INT32_MAX - sh)
        return st_seterr(err, ST_EINVAL, "resample: source %ux%u at (%u, %u) "
                         "with stride %zu: expected a non-empty image of %d "
                         "channels", sw, sh, ox, oy, stride, r->c);
    if (!(x0 >= (double)ox && x0 < x1 && x1 <= (double)ox + sw &&
          y0 >= (double)oy && y0 < y1 && y1 <= (double)oy + sh))
        return st_seterr(err, ST_EINVAL, "resample: box (%g, %g)-(%g, %g): "
                         "expected a non-empty box inside the %ux%u source "
                         "at (%u, %u)", x0, y0, x1, y1, sw, sh, ox, oy);
    /* 1e-6: a box computed as (a + S) * s - a * s may overshoot by ulps */
    if (x1 - x0 > (double)r->max_box_w + 1e-6 ||
        y1 - y0 > (double)r->max_box_h + 1e-6)
        return st_seterr(err, ST_EINVAL, "resample: box %gx%g beyond the "
                         "context's limit %ux%u", x1 - x0, y1 - y0,
                         r->max_box_w, r->max_box_h);
    if (ow < 1 || oh < 1 || ow > r->max_out_w || oh > r->max_out_h)
        return st_seterr(err, ST_EINVAL, "resample: output %ux%u: expected "
                         "1x1 .. %ux%u (the context's limit)", ow, oh,
                         r->max_out_w, r->max_out_h);
    return 0;
}

int resample_run_at(resample *r, resample_filter f, const uint8_t *src,
                    uint32_t ox, uint32_t oy, uint32_t sw, uint32_t sh,
                    size_t stride, double x0, double y0, double x1, double y1,
                    uint8_t *dst, uint32_t ow, uint32_t oh, int flags,
                    st_error *err)
{
    ST_TRY(check_run(r, f, ox, oy, sw, sh, stride, x0, y0, x1, y1, ow, oh,
                     err));
    int c = r->c, mirror = (flags & RESAMPLE_FLIP) != 0;
    int crop = (flags & RESAMPLE_CROP) != 0;
    /* what the filter may read, in source coordinates */
    int32_t limx0 = crop ? (int32_t)floor(x0) : (int32_t)ox;
    int32_t limx1 = crop ? (int32_t)ceil(x1) : (int32_t)(ox + sw);
    int32_t limy0 = crop ? (int32_t)floor(y0) : (int32_t)oy;
    int32_t limy1 = crop ? (int32_t)ceil(y1) : (int32_t)(oy + sh);
    int hid = is_identity(x0, x1, ow), vid = is_identity(y0, y1, oh);
    size_t n = (size_t)ow * (size_t)c;
    int32_t xs = (int32_t)x0 - (int32_t)ox, ys = (int32_t)y0 - (int32_t)oy;
    axis ax = {r->coef_x, r->lo_x, r->n_x, 0};
    axis ay = {r->coef_y, r->lo_y, r->n_y, 0};

    if (hid && vid) {
        copy_rows(src + (size_t)ys * stride + (size_t)xs * c, stride, ow, oh,
                  c, mirror, dst);
        return 0;
    }
    if (!hid && make_axis(f, x0, x1, ow, limx0, limx1, (int32_t)ox,
                          r->kcap_x, &ax) != 0)
        return st_seterr(err, ST_EINTERNAL, "resample: horizontal taps "
                         "overflow the table (%gx%g box to %ux%u)",
                         x1 - x0, y1 - y0, ow, oh);
    if (vid) { /* horizontal pass only, straight into dst */
        hpass_c(r, src, sw, stride, ys, (int32_t)oh, &ax, ow, mirror, dst, n);
        return 0;
    }
    if (make_axis(f, y0, y1, oh, limy0, limy1, (int32_t)oy, r->kcap_y,
                  &ay) != 0)
        return st_seterr(err, ST_EINTERNAL, "resample: vertical taps "
                         "overflow the table (%gx%g box to %ux%u)",
                         x1 - x0, y1 - y0, ow, oh);
    if (hid) { /* vertical pass only, reading the source's columns */
        vpass(r, src + (size_t)xs * c, stride, &ay, dst, ow, oh, mirror);
        return 0;
    }
    /* rows the vertical filter reads: lo of the first output row to the
     * end of the last (both monotone in the output row) */
    int32_t first = ay.lo[0];
    int32_t last = ay.lo[oh - 1] + ay.n[oh - 1];
    if (last - first > (int32_t)r->tmp_rows)
        return st_seterr(err, ST_EINTERNAL, "resample: %d source rows overflow "
                         "the intermediate (%zu rows)", last - first,
                         r->tmp_rows);
    for (uint32_t y = 0; y < oh; y++) ay.lo[y] -= first;
    hpass_c(r, src, sw, stride, first, last - first, &ax, ow, mirror, r->tmp,
            r->row_cap);
    vpass(r, r->tmp, r->row_cap, &ay, dst, ow, oh, 0);
    return 0;
}

int resample_run(resample *r, resample_filter f, const uint8_t *src,
                 uint32_t sw, uint32_t sh, size_t stride, double x0,
                 double y0, double x1, double y1, uint8_t *dst, uint32_t ow,
                 uint32_t oh, int flip, st_error *err)
{
    return resample_run_at(r, f, src, 0, 0, sw, sh, stride, x0, y0, x1, y1,
                           dst, ow, oh, flip, err);
}
