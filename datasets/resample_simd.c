/* datasets/resample_simd.c — AVX2 and AVX-512 kernels of the resampler
 * (see resample_simd.h; chosen in resample.c at resample_create).
 *
 * implements:
 * - the horizontal pass with 16-bit multiplies: a weight w < 2^23 is
 *   w_hi * 2^11 + w_lo with both halves below 2^11 + 1, so two
 *   _mm256_madd_epi16 (pixel pairs times weight pairs, summed into int32)
 *   give sum(p * w_hi) and sum(p * w_lo), and (hi << 11) + lo is the
 *   scalar int32 sum exactly (every term is >= 0 and the total < 2^31).
 *   One output pixel per 128-bit lane (2 with AVX2, 4 with AVX-512), 4
 *   taps per step: each lane loads 16 source bytes from its pixel's tap
 *   group, two byte shuffles put taps (0, 1) and (2, 3) of each channel
 *   as int16 pairs, multiplied by weights laid out by rs_hprep once per
 *   run. Blocks whose loads would pass the row's end go pixel by pixel
 *   (AVX2) or with masked loads (AVX-512); so do the last ow % lanes.
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
#define RS_AVX512VNNI                                                       \
    __attribute__((target("avx2,avx512f,avx512bw,avx512vl,avx512vnni")))

/* ---- horizontal ---------------------------------------------------------- */

/* Tap groups g a block of outputs o .. o + lanes - 1 runs (the most any
 * of them needs), or -g - 2 when one of its 16-byte loads would pass the
 * row's end (the block then goes pixel by pixel, or masked). */
static inline int32_t block_groups(const int32_t *lo, const int32_t *n,
                                   int lanes, int c, int64_t end)
{
    int32_t g = 0;
    for (int j = 0; j < lanes; j++) {
        int32_t gj = (n[j] + 3) / 4;
        g = gj > g ? gj : g;
    }
    for (int j = 0; g > 0 && j < lanes; j++)
        if (((int64_t)lo[j] + 4 * (int64_t)(g - 1)) * c + 16 > end)
            return -g - 2;
    return g;
}

RS_AVX2 void rs_hprep(const int32_t *coef, int ksize, const int32_t *lo,
                      const int32_t *n, uint32_t ow, int lanes, uint32_t sw,
                      int c, int16_t *wtab, int32_t *bg)
{
    const int groups = (ksize + 3) / 4;
    const size_t vstride = (size_t)lanes * 8; /* int16s of one vector */
    const __m128i iota = _mm_setr_epi32(0, 1, 2, 3);
    for (uint32_t b = 0; b + (uint32_t)lanes <= ow; b += (uint32_t)lanes) {
        bg[b / (uint32_t)lanes] =
            block_groups(lo + b, n + b, lanes, c, (int64_t)sw * c);
        int16_t *blk = wtab + (size_t)b / (size_t)lanes * (size_t)groups * 4 *
                                  vstride;
        for (int j = 0; j < lanes; j++) {
            const int32_t *k = coef + (size_t)(b + (uint32_t)j) * ksize;
            __m128i nn = _mm_set1_epi32(n[b + (uint32_t)j]);
            for (int g = 0; g < groups; g++) {
                /* taps 4g .. 4g + 3, those at or past n read as 0 */
                __m128i live = _mm_cmpgt_epi32(
                    nn, _mm_add_epi32(iota, _mm_set1_epi32(4 * g)));
                __m128i w = _mm_maskload_epi32(k + 4 * g, live);
                /* int16 h0 h1 h2 h3 l0 l1 l2 l3: dwords (h0,h1) (h2,h3)
                 * (l0,l1) (l2,l3), each repeated over a lane */
                __m128i hl =
                    _mm_packs_epi32(_mm_srli_epi32(w, 11),
                                    _mm_and_si128(w, _mm_set1_epi32(2047)));
                int16_t *d = blk + (size_t)g * 4 * vstride + (size_t)j * 8;
                _mm_storeu_si128((__m128i *)d, _mm_shuffle_epi32(hl, 0x00));
                _mm_storeu_si128((__m128i *)(d + vstride),
                                 _mm_shuffle_epi32(hl, 0x55));
                _mm_storeu_si128((__m128i *)(d + 2 * vstride),
                                 _mm_shuffle_epi32(hl, 0xaa));
                _mm_storeu_si128((__m128i *)(d + 3 * vstride),
                                 _mm_shuffle_epi32(hl, 0xff));
            }
        }
    }
}

/* The scalar pixel (resample.c's hpix) for outputs whose 16-byte loads
 * would pass the row's end, and for the last ow % lanes outputs. */
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

/* Byte shuffle of a lane's 16 source bytes (4 pixels of c channels) to
 * int16 pairs per channel: taps (2 * half, 2 * half + 1); channels past c
 * read as 0. The same 16 bytes for every lane. */
static void hmask(int c, int half, int8_t m[16])
{
    for (int ch = 0; ch < 4; ch++) {
        int first = 2 * half * c + ch;
        m[ch * 4 + 0] = ch < c ? (int8_t)first : -128;
        m[ch * 4 + 1] = -128;
        m[ch * 4 + 2] = ch < c ? (int8_t)(first + c) : -128;
        m[ch * 4 + 3] = -128;
    }
}

/* 4 or 3 bytes of each of the 4 pixels in the low dwords of v, stored
 * (flip: in reverse pixel order) as 4 consecutive pixels at q. */
static inline RS_AVX2 __attribute__((always_inline)) void
store4(__m128i v, int c, uint8_t *q)
{
    if (c == 4) {
        _mm_storeu_si128((__m128i *)q, v);
        return;
    }
    v = _mm_shuffle_epi8(v, _mm_setr_epi8(0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13,
                                          14, -128, -128, -128, -128));
    _mm_storel_epi64((__m128i *)q, v);
    int32_t t = _mm_cvtsi128_si32(_mm_srli_si128(v, 8));
    memcpy(q + 8, &t, 4);
}

/* Sums to bytes: (hi << 11) + lo + 2^21, >> 22, saturated to 0..255 (as
 * clip8), in the low dword of each 128-bit lane. */
#define RS_FINISH(W, ah, al)                                                \
    _mm##W##_packus_epi16(                                                  \
        _mm##W##_packus_epi32(                                              \
            _mm##W##_srai_epi32(                                            \
                _mm##W##_add_epi32(                                         \
                    _mm##W##_add_epi32(_mm##W##_slli_epi32(ah, 11), al),    \
                    _mm##W##_set1_epi32(RS_HALF)),                          \
                RS_PREC),                                                   \
            _mm##W##_setzero_si##W()),                                      \
        _mm##W##_setzero_si##W())

/* Two outputs, one per 128-bit lane: 4 taps per step, 16 source bytes a
 * lane, shuffled to taps (0, 1) (ma) and (2, 3) (mb) of each channel. */
static inline RS_AVX2 __attribute__((always_inline)) __m256i
hblock2(const uint8_t *in, int c, const int32_t *lo, int32_t g,
        const int16_t *w, __m256i ma, __m256i mb)
{
    const uint8_t *p0 = in + (size_t)lo[0] * c, *p1 = in + (size_t)lo[1] * c;
    __m256i ah = _mm256_setzero_si256(), al = _mm256_setzero_si256();
    for (int32_t i = 0; i < g; i++, p0 += 4 * c, p1 += 4 * c, w += 64) {
        __m256i x = _mm256_inserti128_si256(
            _mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)p0)),
            _mm_loadu_si128((const __m128i *)p1), 1);
        __m256i xa = _mm256_shuffle_epi8(x, ma);
        __m256i xb = _mm256_shuffle_epi8(x, mb);
        const __m256i *wv = (const __m256i *)w;
        ah = _mm256_add_epi32(ah, _mm256_madd_epi16(xa, wv[0]));
        ah = _mm256_add_epi32(ah, _mm256_madd_epi16(xb, wv[1]));
        al = _mm256_add_epi32(al, _mm256_madd_epi16(xa, wv[2]));
        al = _mm256_add_epi32(al, _mm256_madd_epi16(xb, wv[3]));
    }
    return RS_FINISH(256, ah, al);
}

RS_AVX2 void rs_avx2_hrow(const uint8_t *in, uint32_t sw, const int32_t *coef,
                          int ksize, const int32_t *lo, const int32_t *n,
                          const int16_t *wtab, const int32_t *bg, uint32_t ow,
                          int flip, int c, uint8_t *out)
{
    int8_t m[32];
    hmask(c, 0, m);
    hmask(c, 1, m + 16);
    const __m256i ma =
        _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)m));
    const __m256i mb =
        _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(m + 16)));
    const size_t bstride = (size_t)((ksize + 3) / 4) * 64;
    (void)sw;
    uint32_t o = 0;
    for (; o + 4 <= ow; o += 4) {
        int32_t g0 = bg[o / 2], g1 = bg[o / 2 + 1];
        uint8_t *q = out + (size_t)(flip ? ow - 4 - o : o) * c;
        if (g0 < 0 || g1 < 0) {
            for (uint32_t j = 0; j < 4; j++)
                hpix_c(in, coef + (size_t)(o + j) * ksize, lo[o + j], n[o + j],
                       c, out + (size_t)(flip ? ow - 1 - o - j : o + j) * c);
            continue;
        }
        __m256i v0 = hblock2(in, c, lo + o, g0, wtab + o / 2 * bstride, ma, mb);
        __m256i v1 = hblock2(in, c, lo + o + 2, g1,
                             wtab + (o / 2 + 1) * bstride, ma, mb);
        /* dword 0 of each lane: pixels o, o+1 (v0) and o+2, o+3 (v1) */
        __m256i v = _mm256_unpacklo_epi32(v0, v1); /* o, o+2 | o+1, o+3 */
        v = _mm256_permutevar8x32_epi32(
            v, flip ? _mm256_setr_epi32(5, 1, 4, 0, 0, 0, 0, 0)
                    : _mm256_setr_epi32(0, 4, 1, 5, 0, 0, 0, 0));
        store4(_mm256_castsi256_si128(v), c, q);
    }
    for (; o < ow; o++)
        hpix_c(in, coef + (size_t)o * ksize, lo[o], n[o], c,
               out + (size_t)(flip ? ow - 1 - o : o) * c);
}

/* 16 bytes at in + off, those at or past end read as 0 (masked, so
 * nothing past the row is touched). */
static inline RS_AVX512 __attribute__((always_inline)) __m128i
load_upto(const uint8_t *in, int64_t off, int64_t end)
{
    int64_t left = end - off;
    __mmask16 m = left >= 16  ? (__mmask16)0xffff
                  : left <= 0 ? (__mmask16)0
                              : (__mmask16)((1u << left) - 1);
    return _mm_maskz_loadu_epi8(m, in + (left > 0 ? off : 0));
}

/* The AVX-512 row kernel, twice: madd then add, and AVX512-VNNI's fused
 * vpdpwssd (the same sums: it neither saturates nor rounds). */
#define H4_TARGET RS_AVX512
#define H4_DP(acc, x, w) _mm512_add_epi32(acc, _mm512_madd_epi16(x, w))
#define H4_BLOCK hblock4
#define H4_ROW rs_avx512_hrow
#include "resample_simd_h4.inc"
#undef H4_TARGET
#undef H4_DP
#undef H4_BLOCK
#undef H4_ROW

#define H4_TARGET RS_AVX512VNNI
#define H4_DP(acc, x, w) _mm512_dpwssd_epi32(acc, x, w)
#define H4_BLOCK hblock4_vnni
#define H4_ROW rs_avx512vnni_hrow
#include "resample_simd_h4.inc"
#undef H4_TARGET
#undef H4_DP
#undef H4_BLOCK
#undef H4_ROW

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
                a, _mm256_mullo_epi32(_mm256_cvtepu8_epi32(_mm_loadl_epi64(
                                          (const __m128i *)p)),
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
            a, _mm512_mullo_epi32(
                   _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(m, p)),
                   _mm512_set1_epi32(k[t])));
    a = _mm512_max_epi32(_mm512_srai_epi32(a, RS_PREC), _mm512_setzero_si512());
    _mm_mask_storeu_epi8(out, m, _mm512_cvtusepi32_epi8(a));
}

RS_AVX512 void rs_avx512_vrow(const uint8_t *base, size_t stride,
                              const int32_t *k, int32_t taps, uint8_t *out,
                              size_t n)
{
    const __m512i half = _mm512_set1_epi32(RS_HALF);
    const __m512i zero = _mm512_setzero_si512();
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
