/* tests/test_ckpt.c — checkpoint round trip, and every way a bad file is
 * refused: damaged byte, truncation, bad magic, unknown version, another
 * model shape, another optimizer, a missing file; a conv net's spec and BN
 * running statistics, another architecture refused by name, and version 1
 * files (MLPs) still read.
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

#include <xxhash.h>

#include "datasets/bytes.h"
#include "datasets/fsutil.h"
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

/* A conv net's checkpoint carries its canonical spec and the BN running
 * statistics; another architecture is refused by name. */
static void test_conv_arch_and_state(void **state)
{
    fx *f = *state;
    st_error err = {0};
    model_spec s = {.in_c = 3, .in_h = 8, .in_w = 8, .classes = 3,
                    .arch = "cnn:4,6"};
    model *m = NULL;
    assert_int_equal(model_create(&m, &s, &err), 0);
    size_t np = model_param_count(m), ns = optim_state_floats(OPTIM_SGD, np);
    size_t nr = model_state_count(m);
    assert_int_equal(nr, 2 * (4 + 6));
    ckpt_meta meta, got;
    ckpt_meta_from_model(&meta, m, OPTIM_SGD, ns);
    assert_string_equal(meta.arch, "cnn: conv4k3s1p1,bn,relu,maxpool2s2p0,"
                        "conv6k3s1p1,bn,relu,dense128,relu,dense3");
    size_t cap = ckpt_file_bytes(&meta);
    uint8_t *buf = malloc(cap);
    float *p = malloc(np * 4), *st = malloc(ns * 4), *r = malloc(nr * 4);
    float *p2 = malloc(np * 4), *st2 = malloc(ns * 4), *r2 = malloc(nr * 4);
    for (size_t i = 0; i < np; i++) p[i] = (float)i / 7;
    for (size_t i = 0; i < ns; i++) st[i] = -(float)i;
    for (size_t i = 0; i < nr; i++) r[i] = 1.0f + (float)i / 3;
    assert_int_equal(ckpt_save(f->path, &meta, p, st, r, buf, cap, &err), 0);
    assert_int_equal(ckpt_load(f->path, &meta, &got, p2, st2, r2, buf, cap,
                               &err), 0);
    assert_memory_equal(p, p2, np * 4);
    assert_memory_equal(st, st2, ns * 4);
    assert_memory_equal(r, r2, nr * 4);
    assert_string_equal(got.arch, meta.arch);
    assert_int_equal(got.nmstate, nr);
    /* the same network as a spec string: the same canonical part loads */
    ckpt_meta same = meta;
    snprintf(same.arch, sizeof same.arch, "conv4k3s1p1,bn,relu,maxpool2s2p0,"
             "conv6k3s1p1,bn,relu,dense128,relu,dense3");
    assert_int_equal(ckpt_load(f->path, &same, &got, p2, st2, r2, buf, cap,
                               &err), 0);
    /* another architecture with the very same counts: refused by name */
    ckpt_meta other = meta;
    snprintf(other.arch, sizeof other.arch, "cnn: conv4k3s1p1,bn,gelu,"
             "maxpool2s2p0,conv6k3s1p1,bn,relu,dense128,relu,dense3");
    assert_int_equal(ckpt_load(f->path, &other, &got, p2, st2, r2, buf, cap,
                               &err), ST_EINVAL);
    assert_non_null(strstr(err.msg, "is model 'cnn: conv4k3s1p1,bn,relu,"));
    assert_non_null(strstr(err.msg, "this run is 'cnn: conv4k3s1p1,bn,gelu,"));
    assert_non_null(strstr(err.msg, "on 8x8x3, sgd"));
    /* and the MLP checkpoint of the fixture is not this model either */
    st_clearerr(&err);
    assert_int_equal(ckpt_load(f->path, &f->meta, &got, f->p2, f->s2, NULL,
                               buf, cap, &err), ST_EINVAL);
    assert_non_null(strstr(err.msg, "this run is 'mlp: dense5,relu,dense3'"));
    free(buf), free(p), free(st), free(r), free(p2), free(st2), free(r2);
    model_destroy(m);
}

/* A version 1 file (an MLP: widths in the header, no architecture text,
 * no model state) still loads. */
static void test_version1(void **state)
{
    fx *f = *state;
    st_error err = {0};
    size_t len = CKPT_HEADER + 4 * (f->np + f->ns) + 8;
    uint8_t *b = calloc(1, len);
    memcpy(b, "STCKPT\r\n", 8);
    st_put_u32(b + 8, 1);
    st_put_u32(b + 12, CKPT_HEADER);
    st_put_u32(b + 16, OPTIM_ADAMW);
    st_put_u32(b + 20, 2);
    st_put_u32(b + 24, 1), st_put_u32(b + 28, 4), st_put_u32(b + 32, 4);
    st_put_u32(b + 36, 5), st_put_u32(b + 40, 3);
    st_put_u64(b + 96, 77);
    st_put_u64(b + 128, f->np);
    st_put_u64(b + 136, f->ns);
    memcpy(b + CKPT_HEADER, f->params, 4 * f->np);
    memcpy(b + CKPT_HEADER + 4 * f->np, f->state, 4 * f->ns);
    st_put_u64(b + len - 8, XXH3_64bits(b, len - 8));
    assert_int_equal(fs_write_atomic(f->path, b, len, &err), 0);
    ckpt_meta got;
    assert_int_equal(ckpt_load(f->path, &f->meta, &got, f->p2, f->s2, NULL,
                               f->buf, f->cap, &err), 0);
    assert_string_equal(got.arch, "mlp: dense5,relu,dense3");
    assert_int_equal(got.step, 77);
    assert_memory_equal(f->params, f->p2, f->np * 4);
    assert_memory_equal(f->state, f->s2, f->ns * 4);
    free(b);
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
        cmocka_unit_test_setup_teardown(test_conv_arch_and_state, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_version1, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
