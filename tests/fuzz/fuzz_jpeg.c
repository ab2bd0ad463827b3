/* tests/fuzz/fuzz_jpeg.c — libFuzzer target for datasets/jpegio: the input
 * is a JPEG that jpegio_read_info must accept or refuse cleanly. An
 * accepted header of at most FUZZ_MAX_PIXELS pixels (a bigger one is
 * refused before anything is allocated, as the importers' --max-pixels
 * does) is decoded in full at a scale and channel count picked from the
 * input, then a region picked from the input is decoded; when both
 * succeed the region must equal the full decode (every pixel), and the
 * full decode must encode and decode back at its size (round trip). The
 * EXIF orientation is applied to the decoded pixels. Buffers are allocated
 * per input: the fuzzer's, not the library's. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "datasets/jpegio.h"

#define FUZZ_MAX_PIXELS (1u << 20)

static jpegio_dec *dec;
static jpegio_enc *enc;

static uint32_t pick(const uint8_t *data, size_t size, size_t at)
{
    return size > at ? data[size - 1 - at] : 0;
}

static void check_region(const uint8_t *data, size_t size,
                         const jpegio_info *in, int scale, int c,
                         const uint8_t *full, uint32_t w)
{
    jpegio_region r = {0, 0, 0, 0, scale};
    r.x = pick(data, size, 3) * in->width / 256;
    r.y = pick(data, size, 4) * in->height / 256;
    r.w = 1 + pick(data, size, 5) * (in->width - r.x - 1) / 255;
    r.h = 1 + pick(data, size, 6) * (in->height - r.y - 1) / 255;
    size_t cap = jpegio_region_cap(&r, c);
    uint8_t *blk = malloc(cap);
    if (blk == NULL) return;
    jpegio_decoded out;
    st_error err = {0, ""};
    if (jpegio_decode_region(dec, data, size, &r, c, blk, cap, &out,
                             &err) == 0 && full != NULL) {
        uint32_t sx0 = r.x / (uint32_t)scale, sy0 = r.y / (uint32_t)scale;
        uint32_t sx1 = jpegio_scaled(r.x + r.w, scale);
        uint32_t sy1 = jpegio_scaled(r.y + r.h, scale);
        if (out.x0 > sx0 || out.y0 > sy0 || out.x0 + out.w < sx1 ||
            out.y0 + out.h < sy1 || (size_t)out.w * out.h * c > cap)
            abort();
        for (uint32_t y = sy0; y < sy1; y++)
            if (memcmp(full + ((size_t)y * w + sx0) * c,
                       blk + ((size_t)(y - out.y0) * out.w + sx0 - out.x0) * c,
                       (size_t)(sx1 - sx0) * c) != 0)
                abort();
    }
    free(blk);
}

static void roundtrip(const uint8_t *px, uint32_t w, uint32_t h, int c)
{
    const uint8_t *jpg;
    size_t len;
    st_error err = {0, ""};
    if (jpegio_encode(enc, px, w, h, c, 75, &jpg, &len, &err) != 0) abort();
    uint8_t *back = malloc((size_t)w * h * c);
    uint32_t bw, bh;
    if (back == NULL) return;
    if (jpegio_decode(dec, jpg, len, 1, c, back, (size_t)w * c,
                      (size_t)w * h * c, &bw, &bh, &err) != 0 || bw != w ||
        bh != h)
        abort();
    free(back);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    st_error err = {0, ""};
    if (dec == NULL && jpegio_dec_create(&dec, &err) != 0) abort();
    if (enc == NULL && jpegio_enc_create(&enc, &err) != 0) abort();
    jpegio_info in;
    if (jpegio_read_info(dec, data, size, &in, &err) != 0) return 0;
    if (in.width == 0 || in.height == 0 || in.orientation < 1 ||
        in.orientation > 8)
        abort();
    if ((uint64_t)in.width * in.height > FUZZ_MAX_PIXELS) return 0;
    int scale = 1 << (pick(data, size, 1) % 4);
    int c = pick(data, size, 2) & 1 ? 3 : 1;
    uint32_t w = jpegio_scaled(in.width, scale);
    uint32_t h = jpegio_scaled(in.height, scale);
    size_t n = (size_t)w * h * c;
    uint8_t *full = malloc(n), *oriented = malloc(n);
    uint32_t gw, gh;
    int ok = full != NULL && oriented != NULL &&
             jpegio_decode(dec, data, size, scale, c, full, (size_t)w * c, n,
                           &gw, &gh, &err) == 0;
    if (ok && (gw != w || gh != h)) abort();
    if (ok) {
        jpegio_orient(in.orientation, full, w, h, c, oriented);
        roundtrip(full, w, h, c);
    }
    check_region(data, size, &in, scale, c, ok ? full : NULL, w);
    free(full);
    free(oriented);
    return 0;
}
