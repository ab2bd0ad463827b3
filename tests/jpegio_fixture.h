/* tests/jpegio_fixture.h — the fixtures of datasets/jpegio's own tests
 * (tests/test_jpegio.c, tests/test_jpegio_robust.c): a picture encoded
 * with libjpeg directly (tests/jpeg_fixture.h) next to the pixels it was
 * made from, and a checked full decode through jpegio. Include it after
 * <cmocka.h>.
 *
 * defines: fixture, make, drop, full_decode
 *
 * Only static functions: each test binary compiles its own copy.
 */
#ifndef TEST_JPEGIO_FIXTURE_H
#define TEST_JPEGIO_FIXTURE_H

#include <stdint.h>
#include <stdlib.h>

#include "datasets/jpegio.h"
#include "jpeg_fixture.h"

typedef struct fixture {
    uint8_t *src;    /* (h, w, jfx_in_channels) what was encoded */
    uint8_t *jpg;
    size_t len;
} fixture;

JFX_FN fixture make(const jfx_opt *o, uint32_t seed)
{
    fixture f;
    int nc = jfx_in_channels(o->cs);
    f.src = malloc((size_t)o->w * o->h * nc);
    jfx_pattern(f.src, o->w, o->h, nc, seed);
    f.jpg = jfx_encode(o, f.src, &f.len);
    return f;
}

JFX_FN void drop(fixture *f)
{
    free(f->src);
    free(f->jpg);
}

/* A full decode at 1/scale into c channels, checked (size, no error); a
 * new malloc'd (h, w, c) buffer. */
JFX_FN uint8_t *full_decode(jpegio_dec *d, const fixture *f, int scale,
                            int c, uint32_t *w, uint32_t *h)
{
    st_error err = {0, ""};
    jpegio_info info;
    assert_int_equal(jpegio_read_info(d, f->jpg, f->len, &info, &err), 0);
    size_t cap = (size_t)jpegio_scaled(info.width, scale) *
                 jpegio_scaled(info.height, scale) * c;
    uint8_t *px = malloc(cap);
    int rc = jpegio_decode(d, f->jpg, f->len, scale, c, px,
                           (size_t)jpegio_scaled(info.width, scale) * c, cap,
                           w, h, &err);
    if (rc != 0) fail_msg("decode: %s", err.msg);
    assert_int_equal(*w, jpegio_scaled(info.width, scale));
    assert_int_equal(*h, jpegio_scaled(info.height, scale));
    return px;
}

#endif
