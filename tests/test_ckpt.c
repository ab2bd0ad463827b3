/* tests/test_ckpt.c — checkpoint round trip, and every way a bad file is
 * refused: damaged byte, truncation, bad magic, unknown version, another
 * model shape, another optimizer, a missing file.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "train/ckpt.h"
#include "train/optim.h"

typedef struct fx {
    char dir[64], path[128];
    model *m;
    ckpt_meta meta;
    size_t np, ns, cap;
    float *params, *state, *p2, *s2;
    uint8_t *buf;
} fx;

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    strcpy(f->dir, "/tmp/st-ckpt-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof f->path, "%s/run.ckpt", f->dir);
    model_spec s = {.in_c = 1, .in_h = 4, .in_w = 4, .classes = 3,
                    .n_hidden = 1, .hidden = {5}};
    st_error err = {0};
    assert_int_equal(model_create(&f->m, &s, &err), 0);
    f->np = model_param_count(f->m);
    f->ns = optim_state_floats(OPTIM_ADAMW, f->np);
    ckpt_meta_from_model(&f->meta, f->m, OPTIM_ADAMW, f->ns);
    f->meta.step = 1234;
    f->meta.seed = 42;
    f->meta.epoch = 3;
    f->meta.next_batch = 17;
    f->meta.batch = 256;
    f->meta.samples = 60000;
    f->cap = ckpt_file_bytes(&f->meta);
    f->params = malloc(f->np * 4), f->p2 = malloc(f->np * 4);
    f->state = malloc(f->ns * 4), f->s2 = malloc(f->ns * 4);
    f->buf = malloc(f->cap);
    for (size_t i = 0; i < f->np; i++) f->params[i] = (float)i * 0.5f - 3;
    for (size_t i = 0; i < f->ns; i++) f->state[i] = (float)i * -0.25f;
    assert_int_equal(ckpt_save(f->path, &f->meta, f->params, f->state, NULL, f->buf,
                               f->cap, &err), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    unlink(f->path);
    rmdir(f->dir);
    free(f->buf), free(f->params), free(f->p2), free(f->state), free(f->s2);
    model_destroy(f->m);
    free(f);
    return 0;
}

static int load(fx *f, const ckpt_meta *expect, st_error *err)
{
    ckpt_meta got;
    st_clearerr(err);
    return ckpt_load(f->path, expect, &got, f->p2, f->s2, NULL, f->buf, f->cap,
                     err);
}

/* Rewrites one byte of the file at off (negative: from the end). */
static void poke(fx *f, long off, uint8_t xor)
{
    FILE *fp = fopen(f->path, "r+b");
    assert_non_null(fp);
    fseek(fp, off, off < 0 ? SEEK_END : SEEK_SET);
    int c = fgetc(fp);
    fseek(fp, -1, SEEK_CUR);
    fputc(c ^ xor, fp);
    fclose(fp);
}

static void test_round_trip(void **state)
{
    fx *f = *state;
    ckpt_meta got;
    st_error err = {0};
    assert_int_equal(ckpt_load(f->path, &f->meta, &got, f->p2, f->s2, NULL,
                               f->buf, f->cap, &err), 0);
    assert_memory_equal(f->params, f->p2, f->np * 4);
    assert_memory_equal(f->state, f->s2, f->ns * 4);
    assert_int_equal(got.step, 1234);
    assert_int_equal(got.seed, 42);
    assert_int_equal(got.epoch, 3);
    assert_int_equal(got.next_batch, 17);
    assert_int_equal(got.batch, 256);
    assert_int_equal(got.samples, 60000);
    assert_int_equal(got.layers, 2);
    assert_string_equal(got.arch, "mlp: dense5,relu,dense3");
    assert_int_equal(got.nmstate, 0);
    /* atomic write left no temp file behind */
    char cmd[160];
    snprintf(cmd, sizeof cmd, "test $(ls %s | wc -l) -eq 1", f->dir);
    assert_int_equal(system(cmd), 0);
}

static void test_damaged(void **state)
{
    fx *f = *state;
    st_error err = {0};
    poke(f, CKPT_HEADER + 5, 0x40);
    assert_int_equal(load(f, &f->meta, &err), ST_ECHECKSUM);
    assert_non_null(strstr(err.msg, "checksum"));
    poke(f, CKPT_HEADER + 5, 0x40);
    assert_int_equal(load(f, &f->meta, &err), 0);
    poke(f, 21, 0x01); /* a header byte (layers): damage, not "shape" */
    assert_int_equal(load(f, &f->meta, &err), ST_ECHECKSUM);
}

static void test_truncated(void **state)
{
    fx *f = *state;
    st_error err = {0};
    assert_int_equal(truncate(f->path, (off_t)f->cap - 10), 0);
    assert_int_equal(load(f, &f->meta, &err), ST_EFORMAT);
    assert_non_null(strstr(err.msg, "truncated"));
    assert_int_equal(truncate(f->path, 100), 0);
    assert_int_equal(load(f, &f->meta, &err), ST_EFORMAT);
}

static void test_magic_version(void **state)
{
    fx *f = *state;
    st_error err = {0};
    poke(f, 0, 0xFF);
    assert_int_equal(load(f, &f->meta, &err), ST_EFORMAT);
    assert_non_null(strstr(err.msg, "not a streamtrain checkpoint"));
    poke(f, 0, 0xFF);
    poke(f, 8, 0x01); /* version 2 -> 3 */
    assert_int_equal(load(f, &f->meta, &err), ST_EVERSION);
    assert_non_null(strstr(err.msg, "version 3"));
}

static void test_other_shape(void **state)
{
    fx *f = *state;
    st_error err = {0};
    model_spec s = {.in_c = 1, .in_h = 4, .in_w = 4, .classes = 3,
                    .n_hidden = 1, .hidden = {9}};
    model *m = NULL;
    assert_int_equal(model_create(&m, &s, &err), 0);
    size_t np = model_param_count(m);
    ckpt_meta other;
    ckpt_meta_from_model(&other, m, OPTIM_ADAMW,
                         optim_state_floats(OPTIM_ADAMW, np));
    /* a bigger model's buffers: the file is shorter than expected */
    size_t cap = ckpt_file_bytes(&other);
    uint8_t *buf = malloc(cap);
    float *p = malloc(np * 4), *s2 = malloc(np * 8);
    ckpt_meta got;
    assert_int_equal(ckpt_load(f->path, &other, &got, p, s2, NULL, buf, cap,
                               &err), ST_EINVAL);
    assert_non_null(strstr(err.msg, "is model 'mlp: dense5,relu,dense3' on "
                           "4x4x1, adamw"));
    assert_non_null(strstr(err.msg, "this run is 'mlp: dense9,relu,dense3' "
                           "on 4x4x1, adamw"));
    free(buf), free(p), free(s2);
    model_destroy(m);

    /* same shape, other optimizer (SGD state is half the size) */
    ckpt_meta sgd;
    ckpt_meta_from_model(&sgd, f->m, OPTIM_SGD, f->np);
    assert_int_equal(load(f, &sgd, &err), ST_EINVAL);
    assert_non_null(strstr(err.msg, "dense3' on 4x4x1, sgd"));
}

static void test_missing(void **state)
{
    fx *f = *state;
    st_error err = {0};
    ckpt_meta got;
    assert_int_equal(ckpt_load("/nonexistent/x.ckpt", &f->meta, &got, f->p2,
                               f->s2, NULL, f->buf, f->cap, &err),
                     ST_ENOTFOUND);
    assert_non_null(strstr(err.msg, "/nonexistent/x.ckpt"));
    /* save into a missing directory fails cleanly */
    st_clearerr(&err);
    assert_true(ckpt_save("/nonexistent/dir/x.ckpt", &f->meta, f->params,
                          f->state, NULL, f->buf, f->cap, &err) < 0);
    st_clearerr(&err);
    assert_int_equal(ckpt_save(f->path, &f->meta, f->params, f->state, NULL, f->buf,
                               10, &err), ST_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_damaged, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_magic_version, setup, teardown),
        cmocka_unit_test_setup_teardown(test_other_shape, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
