/* datasets/resample_simd.c — AVX2 and AVX-512 kernels of the resampler
 * (see resample_simd.h; chosen in resample.c at resample_create).
 *
 * implements:
 * - the horizontal pass with 16-bit multiplies: a weight w < 2^23 is
 *   w_hi * 2^11 + w_lo with both halves below 2^11 + 1, so two
 *   _mm256_madd_epi16 (pixel pairs times weight pairs, summed into int32)
 *   give sum(p * w_hi) and sum(p * w_lo), and (hi << 11) + lo is the
 *   scalar int32 sum exactly (every term is >= 0 and the total < 2^31).
 *   One output pixel at a time, 4 taps per step: 16 source bytes
 *   broadcast to both 128-bit lanes, one byte shuffle puts taps (0, 1) of
 *   each channel as int16 pairs in lane 0 and taps (2, 3) in lane 1.
 * - the vertical pass in int32 (_mm256_mullo_epi32 / _mm512_mullo_epi32)
 *   over 32 / 64 columns per block, the sums in registers across taps.
 * Each function carries its ISA as a target attribute, so this file
 * compiles under the project's -march=x86-64-v2 (and the sanitizer
 * builds) and nothing in it runs unless the CPU was checked.
 */
#include "resample_simd.h"

#include <immintrin.h>
#include <string.h>

#define RS_AVX2 __attribute__((target("avx2")))
#define RS_AVX512 __attribute__((target("avx2,avx512f,avx512bw,avx512vl")))

/* ---- horizontal ---------------------------------------------------------- */

size_t rs_wtab_int16s(uint32_t ow, int ksize)
{
    return (size_t)ow * (size_t)((ksize + 3) / 4) * 32;
}

void rs_hprep(const int32_t *coef, int ksize, const int32_t *n, uint32_t ow,
              int16_t *wtab)
{
    int groups = (ksize + 3) / 4;
    for (uint32_t o = 0; o < ow; o++) {
        const int32_t *k = coef + (size_t)o * (size_t)ksize;
        int16_t *w = wtab + (size_t)o * (size_t)groups * 32;
        for (int g = 0; g < groups; g++, w += 32)
            for (int j = 0; j < 4; j++) {
                int t = 4 * g + j;
                int32_t v = t < n[o] ? k[t] : 0;
                /* lane j / 2, pair slot j % 2, repeated per channel */
                for (int ch = 0; ch < 4; ch++) {
                    int at = (j / 2) * 8 + ch * 2 + j % 2;
                    w[at] = (int16_t)(v >> 11);
                    w[16 + at] = (int16_t)(v & 2047);
                }
            }
    }
}

/* The scalar pixel (resample.c's hpix) for outputs whose 16-byte loads
 * would pass the row's end. */
static void hpix_c(const uint8_t *in, const int32_t *k, int32_t lo,
                   int32_t n, int c, uint8_t *q)
{
    int32_t s[4] = {RS_HALF, RS_HALF, RS_HALF, RS_HALF};
    const uint8_t *p = in + (size_t)lo * (size_t)c;
    for (int32_t t = 0; t < n; t++, p += c)
        for (int ch = 0; ch < c; ch++) s[ch] += p[ch] * k[t];
    for (int ch = 0; ch < c; ch++)
        q[ch] = s[ch] <= 0 ? 0
                : s[ch] >= (255 << RS_PREC) ? 255
                                            : (uint8_t)(s[ch] >> RS_PREC);
}

/* Byte shuffle of 16 source bytes (4 pixels of c channels) to int16
 * pairs: lane 0 (tap 0, tap 1) per channel, lane 1 (tap 2, tap 3);
 * channels past c read as 0. */
static RS_AVX2 __m256i hmask(int c)
{
    int8_t m[32];
    for (int lane = 0; lane < 2; lane++)
        for (int ch = 0; ch < 4; ch++) {
            int8_t *b = m + lane * 16 + ch * 4;
            int first = 2 * lane * c + ch;
            b[0] = ch < c ? (int8_t)first : -128;
            b[1] = -128;
            b[2] = ch < c ? (int8_t)(first + c) : -128;
            b[3] = -128;
        }
    return _mm256_loadu_si256((const __m256i *)m);
}

/* One output pixel from g tap groups at p with weights w: 4 int32 sums
 * with the rounding, clamped and packed into the low bytes. */
static inline RS_AVX2 __attribute__((always_inline)) int32_t
hsum(const uint8_t *p, int c, const int16_t *w, int32_t g, __m256i mask)
{
    __m256i ah = _mm256_setzero_si256(), al = _mm256_setzero_si256();
    for (int32_t i = 0; i < g; i++, p += 4 * c, w += 32) {
        __m256i x = _mm256_shuffle_epi8(
            _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)p)),
            mask);
        ah = _mm256_add_epi32(
            ah, _mm256_madd_epi16(x, _mm256_load_si256((const __m256i *)w)));
        al = _mm256_add_epi32(
            al,
            _mm256_madd_epi16(x, _mm256_load_si256((const __m256i *)(w + 16))));
    }
    __m256i s = _mm256_add_epi32(_mm256_slli_epi32(ah, 11), al);
    __m128i v = _mm_add_epi32(_mm256_castsi256_si128(s),
                              _mm256_extracti128_si256(s, 1));
    v = _mm_srai_epi32(_mm_add_epi32(v, _mm_set1_epi32(RS_HALF)), RS_PREC);
    v = _mm_packus_epi32(v, v); /* negative -> 0, then > 255 -> 255 */
    v = _mm_packus_epi16(v, v);
    return _mm_cvtsi128_si32(v);
}

RS_AVX2 void rs_avx2_hrow(const uint8_t *in, uint32_t sw, const int32_t *coef,
                          int ksize, const int32_t *lo, const int32_t *n,
                          const int16_t *wtab, uint32_t ow, int flip, int c,
                          uint8_t *out)
{
    const __m256i mask = hmask(c);
    const size_t gstride = (size_t)((ksize + 3) / 4) * 32;
    const int64_t end = (int64_t)sw * c; /* bytes of the row */
    for (uint32_t o = 0; o < ow; o++) {
        uint8_t *q = out + (size_t)(flip ? ow - 1 - o : o) * (size_t)c;
        int32_t g = (n[o] + 3) / 4;
        if (g > 0 && ((int64_t)lo[o] + 4 * (int64_t)(g - 1)) * c + 16 > end) {
            hpix_c(in, coef + (size_t)o * (size_t)ksize, lo[o], n[o], c, q);
            continue;
        }
        int32_t v = hsum(in + (size_t)lo[o] * (size_t)c, c,
                         wtab + (size_t)o * gstride, g, mask);
        memcpy(q, &v, (size_t)c);
    }
}

/* ---- vertical ------------------------------------------------------------ */

RS_AVX2 void rs_avx2_vrow(const uint8_t *base, size_t stride, const int32_t *k,
                          int32_t taps, uint8_t *out, size_t n)
{
    const __m256i half = _mm256_set1_epi32(RS_HALF);
    const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m256i a0 = half, a1 = half, a2 = half, a3 = half;
        const uint8_t *p = base + i;
        for (int32_t t = 0; t < taps; t++, p += stride) {
            __m256i w = _mm256_set1_epi32(k[t]);
#define RS_TAP(a, off)                                                      \
    a = _mm256_add_epi32(                                                   \
        a, _mm256_mullo_epi32(_mm256_cvtepu8_epi32(_mm_loadl_epi64(         \
                                  (const __m128i *)(p + (off)))),           \
                              w))
            RS_TAP(a0, 0);
            RS_TAP(a1, 8);
            RS_TAP(a2, 16);
            RS_TAP(a3, 24);
#undef RS_TAP
        }
        __m256i ab = _mm256_packus_epi32(_mm256_srai_epi32(a0, RS_PREC),
                                         _mm256_srai_epi32(a1, RS_PREC));
        __m256i cd = _mm256_packus_epi32(_mm256_srai_epi32(a2, RS_PREC),
                                         _mm256_srai_epi32(a3, RS_PREC));
        __m256i b = _mm256_permutevar8x32_epi32(_mm256_packus_epi16(ab, cd),
                                                perm);
        _mm256_storeu_si256((__m256i *)(out + i), b);
    }
    for (; i + 8 <= n; i += 8) {
        __m256i a = half;
        const uint8_t *p = base + i;
        for (int32_t t = 0; t < taps; t++, p += stride)
            a = _mm256_add_epi32(
                a, _mm256_mullo_epi32(
                       _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)p)),
                       _mm256_set1_epi32(k[t])));
        a = _mm256_srai_epi32(a, RS_PREC);
        __m256i b = _mm256_packus_epi16(_mm256_packus_epi32(a, a),
                                        _mm256_setzero_si256());
        b = _mm256_permutevar8x32_epi32(b, perm);
        _mm_storel_epi64((__m128i *)(out + i), _mm256_castsi256_si128(b));
    }
    for (; i < n; i++) {
        int32_t a = RS_HALF;
        const uint8_t *p = base + i;
        for (int32_t t = 0; t < taps; t++, p += stride) a += *p * k[t];
        out[i] = a <= 0 ? 0 : a >= (255 << RS_PREC) ? 255
                                                    : (uint8_t)(a >> RS_PREC);
    }
}

/* 16 columns under mask m (bits of the columns present). */
static inline RS_AVX512 __attribute__((always_inline)) void
vcol16(const uint8_t *p, size_t stride, const int32_t *k, int32_t taps,
       uint8_t *out, __mmask16 m)
{
    __m512i a = _mm512_set1_epi32(RS_HALF);
    for (int32_t t = 0; t < taps; t++, p += stride)
        a = _mm512_add_epi32(
            a, _mm512_mullo_epi32(_mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(m, p)),
                                  _mm512_set1_epi32(k[t])));
    a = _mm512_max_epi32(_mm512_srai_epi32(a, RS_PREC), _mm512_setzero_si512());
    _mm_mask_storeu_epi8(out, m, _mm512_cvtusepi32_epi8(a));
}

RS_AVX512 void rs_avx512_vrow(const uint8_t *base, size_t stride,
                              const int32_t *k, int32_t taps, uint8_t *out,
                              size_t n)
{
    const __m512i half = _mm512_set1_epi32(RS_HALF), zero = _mm512_setzero_si512();
    size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        __m512i a0 = half, a1 = half, a2 = half, a3 = half;
        const uint8_t *p = base + i;
        for (int32_t t = 0; t < taps; t++, p += stride) {
            __m512i w = _mm512_set1_epi32(k[t]);
#define RS_TAP(a, off)                                                      \
    a = _mm512_add_epi32(                                                   \
        a, _mm512_mullo_epi32(_mm512_cvtepu8_epi32(_mm_loadu_si128(         \
                                  (const __m128i *)(p + (off)))),           \
                              w))
            RS_TAP(a0, 0);
            RS_TAP(a1, 16);
            RS_TAP(a2, 32);
            RS_TAP(a3, 48);
#undef RS_TAP
        }
#define RS_OUT(a, off)                                                      \
    _mm_storeu_si128((__m128i *)(out + i + (off)),                          \
                     _mm512_cvtusepi32_epi8(_mm512_max_epi32(               \
                         _mm512_srai_epi32(a, RS_PREC), zero)))
        RS_OUT(a0, 0);
        RS_OUT(a1, 16);
        RS_OUT(a2, 32);
        RS_OUT(a3, 48);
#undef RS_OUT
    }
    for (; i < n; i += 16) {
        size_t left = n - i;
        __mmask16 m = left >= 16 ? (__mmask16)0xffff
                                 : (__mmask16)((1u << left) - 1);
        vcol16(base + i, stride, k, taps, out + i, m);
    }
}
