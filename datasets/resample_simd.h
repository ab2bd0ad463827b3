/* datasets/resample_simd.h — internal to datasets/resample.c: the
 * resampler's AVX2 and AVX-512 kernels (datasets/resample_simd.c). Each
 * is compiled for its ISA by a target attribute, so the build stays
 * -march=x86-64-v2; resample_create calls one only after
 * __builtin_cpu_supports said the CPU has it.
 *
 * defines: rs_vrow_fn, rs_hrow_fn, RS_PREC, RS_HALF, rs_hprep,
 *          rs_avx2_hrow, rs_avx512_hrow, rs_avx512vnni_hrow, rs_avx2_vrow,
 *          rs_avx512_vrow
 *
 * Contract: every kernel gives exactly the bytes of resample.c's scalar
 * arithmetic (int32 sums of 22-bit weights, + 2^21, >> 22, clamped to
 * 0..255); they read only the bytes the scalar code reads, except that
 * the horizontal kernels read 16 bytes from each tap group's first pixel
 * when those stay inside the row (the weights past the taps are 0).
 */
#ifndef ST_RESAMPLE_SIMD_H
#define ST_RESAMPLE_SIMD_H

#include <stddef.h>
#include <stdint.h>

#define RS_PREC 22
#define RS_HALF (1 << (RS_PREC - 1))

/* One output row of the vertical filter: out[i] for i < n sums
 * base[t * stride + i] * k[t] over t < taps. */
typedef void (*rs_vrow_fn)(const uint8_t *base, size_t stride,
                           const int32_t *k, int32_t taps, uint8_t *out,
                           size_t n);

/* One source row through the horizontal filter, c = 3 or 4 channels:
 * output o (taps lo[o] .. lo[o] + n[o] - 1 of in, sw pixels; int32 weights
 * coef[o * ksize ..]; their split int16 form in wtab and the blocks' tap
 * groups in bg, see rs_hprep) to out at o, or at ow - 1 - o when flip. */
typedef void (*rs_hrow_fn)(const uint8_t *in, uint32_t sw,
                           const int32_t *coef, int ksize,
                           const int32_t *lo, const int32_t *n,
                           const int16_t *wtab, const int32_t *bg,
                           uint32_t ow, int flip, int c, uint8_t *out);

/* Splits each weight w (0 <= w <= 2^22) into w >> 11 and w & 2047, both
 * int16, laid out for the hrow kernels, which run `lanes` outputs (one
 * per 128-bit lane) at a time: per block of lanes outputs (the last
 * ow % lanes have none), per group g of taps 4g .. 4g + 3, four vectors
 * (high halves of taps (4g, 4g+1), of (4g+2, 4g+3), then the low halves
 * of each) of `lanes` 128-bit lanes, lane j for output block + j holding
 * its pair of weights repeated for 4 channels; taps at or past n[o]
 * weigh 0. bg[b] (ow / lanes of them): the tap groups block b runs (the
 * most any of its outputs needs) g, or -g - 2 when a 16-byte load would
 * pass the end of the row of sw pixels of c channels (the block then goes
 * pixel by pixel, or with masked loads). wtab: 64-byte aligned, 32
 * int16s per group of 4 taps (ceil(ksize / 4)) per output. Needs AVX2. */
void rs_hprep(const int32_t *coef, int ksize, const int32_t *lo,
              const int32_t *n, uint32_t ow, int lanes, uint32_t sw, int c,
              int16_t *wtab, int32_t *bg);

void rs_avx2_hrow(const uint8_t *in, uint32_t sw, const int32_t *coef,
                  int ksize, const int32_t *lo, const int32_t *n,
                  const int16_t *wtab, const int32_t *bg, uint32_t ow,
                  int flip, int c, uint8_t *out);
void rs_avx512_hrow(const uint8_t *in, uint32_t sw, const int32_t *coef,
                    int ksize, const int32_t *lo, const int32_t *n,
                    const int16_t *wtab, const int32_t *bg, uint32_t ow,
                    int flip, int c, uint8_t *out);
void rs_avx512vnni_hrow(const uint8_t *in, uint32_t sw, const int32_t *coef,
                        int ksize, const int32_t *lo, const int32_t *n,
                        const int16_t *wtab, const int32_t *bg, uint32_t ow,
                        int flip, int c, uint8_t *out);
void rs_avx2_vrow(const uint8_t *base, size_t stride, const int32_t *k,
                  int32_t taps, uint8_t *out, size_t n);
void rs_avx512_vrow(const uint8_t *base, size_t stride, const int32_t *k,
                    int32_t taps, uint8_t *out, size_t n);

#endif
