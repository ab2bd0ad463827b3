/* tests/fuzz/fuzz_transform.c — libFuzzer target for transform_parse.
 * Round trip: whatever parses must format to text that parses to the same
 * spec and formats to the same text; transform_params on it must give a
 * non-empty box inside the (padded) image for a source size taken from
 * the input.
 * The fuzz build links datasets/ only, so the module comes in whole. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "loader/transform.c"

static int spec_eq(const transform_spec *a, const transform_spec *b)
{
    return a->kind == b->kind && a->out_w == b->out_w &&
           a->out_h == b->out_h && a->scale_min == b->scale_min &&
           a->scale_max == b->scale_max && a->ratio_min == b->ratio_min &&
           a->ratio_max == b->ratio_max && a->attempts == b->attempts &&
           a->crop_frac == b->crop_frac && a->pad == b->pad &&
           a->flip == b->flip && a->interp == b->interp;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char text[600];
    if (size >= sizeof text) return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    st_error err = {0, ""};
    transform_spec t, u;
    if (transform_parse(text, &t, &err) != 0) {
        if (err.code != ST_EINVAL || strncmp(err.msg, "transform '", 11) != 0)
            abort();
        return 0;
    }
    char a[600], b[600];
    transform_format(&t, a, sizeof a);
    if (transform_parse(a, &u, &err) != 0) abort();
    transform_format(&u, b, sizeof b);
    if (strcmp(a, b) != 0 || !spec_eq(&t, &u)) abort();
    uint32_t w = 1 + (uint32_t)(size * 37 % 3000), h = 1 + (uint32_t)(size * 91 % 2000);
    transform_box box;
    transform_params(&t, size, 1, 2, w, h, &box);
    double pw = w, ph = h;
    if (t.kind == TRANSFORM_PAD_CROP) {
        pw += 2.0 * t.pad;
        ph += 2.0 * t.pad;
    }
    /* integer boxes of at least a pixel, except center-crop's fractional
     * one (under a pixel when crop-frac is tiny) */
    double min = t.kind == TRANSFORM_CENTER ? 0 : 1;
    if (!(box.x0 >= 0 && box.y0 >= 0 && box.x1 <= pw && box.y1 <= ph &&
          box.x1 - box.x0 > 0 && box.y1 - box.y0 > 0 &&
          box.x1 - box.x0 >= min && box.y1 - box.y0 >= min))
        abort();
    return 0;
}
