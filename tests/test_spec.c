/* tests/test_spec.c — the architecture spec: parsing and the canonical
 * form (and its round trip), shape inference, the presets, and one clear
 * line for each kind of bad spec (a bad layer, a kernel larger than its
 * input, a shape that reaches zero, a block that does not add up, ...).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "train/spec.h"

#define CNN_DEFAULT_CANON                                                    \
    "conv32k3s1p1,bn,relu,maxpool2s2p0,conv32k3s1p1,bn,relu,maxpool2s2p0,"  \
    "conv64k3s1p1,bn,relu,dense128,relu,dense10"

/* Parses and shapes text on (c, h, w) with 10 classes; returns the code
 * and the canonical form or the error line in out. */
static int shape(const char *text, int c, int h, int w, spec_net *net,
                 char *out, size_t len)
{
    st_error err = {0};
    int rc = spec_parse(net, text, &err);
    if (rc == 0) rc = spec_shape(net, c, h, w, 10, &err);
    if (rc == 0) spec_format(net, out, len);
    else snprintf(out, len, "%s", err.msg);
    return rc;
}

static void expect_error(const char *text, int c, int h, int w,
                         const char *want)
{
    spec_net net;
    char msg[600];
    assert_int_equal(shape(text, c, h, w, &net, msg, sizeof msg), ST_EINVAL);
    if (strstr(msg, want) == NULL)
        fail_msg("spec '%s': got '%s', expected it to contain '%s'", text, msg,
                 want);
    assert_null(strchr(msg, '\n'));
    assert_non_null(strstr(msg, "--model"));
}

static void test_canonical(void **state)
{
    (void)state;
    spec_net net, again;
    char out[SPEC_TEXT_MAX], back[SPEC_TEXT_MAX];
    const char *text = "conv32k3,bn,relu,maxpool2,res(conv32k3,bn,relu,"
                       "conv32k3,bn,relu),conv64s2p0k1,gelu,gap,dense";
    assert_int_equal(shape(text, 3, 32, 32, &net, out, sizeof out), 0);
    assert_string_equal(out, "conv32k3s1p1,bn,relu,maxpool2s2p0,res(conv32k3"
                        "s1p1,bn,relu,conv32k3s1p1,bn,relu),conv64k1s2p0,gelu,"
                        "gap,dense10");
    /* shapes, per sample (c, h, w) */
    assert_int_equal(net.n, 15);
    assert_int_equal(net.items[3].out_h, 16);     /* maxpool2 */
    assert_int_equal(net.items[4].kind, SPEC_RES);
    assert_int_equal(net.items[4].len, 6);
    assert_int_equal(net.items[4].out_c, 32);
    assert_int_equal(net.items[4].res_act2, 1);
    assert_int_equal(net.items[11].out_h, 8);     /* 1x1 stride 2 */
    assert_int_equal(net.items[11].out_c, 64);
    assert_int_equal(net.items[13].out_h, 1);     /* gap */
    assert_int_equal(net.items[14].out_c, 10);
    /* biases: none in front of bn, else one */
    assert_int_equal(net.items[0].bias, 0);
    assert_int_equal(net.items[11].bias, 1);
    /* the canonical form parses back to itself */
    assert_int_equal(shape(out, 3, 32, 32, &again, back, sizeof back), 0);
    assert_string_equal(out, back);
    assert_int_equal(spec_canon_equal("cnn: a,b", "a,b"), 1);
    assert_int_equal(spec_canon_equal("cnn: a,b", "resnet: a,c"), 0);
}

static void test_presets(void **state)
{
    (void)state;
    char text[SPEC_TEXT_MAX], preset[16], out[SPEC_TEXT_MAX];
    int hidden[2] = {512, 256};
    st_error err = {0};
    spec_net net;
    assert_int_equal(spec_expand("mlp", hidden, 2, text, sizeof text, preset,
                                 &err), 0);
    assert_string_equal(text, "dense512,relu,dense256,relu,dense");
    assert_string_equal(preset, "mlp");
    assert_int_equal(spec_expand("mlp:7", hidden, 2, text, sizeof text, preset,
                                 &err), 0);
    assert_string_equal(text, "dense7,relu,dense");
    assert_int_equal(spec_expand("mlp", hidden, 0, text, sizeof text, preset,
                                 &err), 0);
    assert_string_equal(text, "dense");
    /* cnn: conv-bn-relu per width, pooled after each but the last, a
     * hidden dense layer and the classifier on the flat map */
    assert_int_equal(spec_expand("cnn", hidden, 2, text, sizeof text, preset,
                                 &err), 0);
    assert_int_equal(shape(text, 1, 28, 28, &net, out, sizeof out), 0);
    assert_string_equal(out, CNN_DEFAULT_CANON);
    assert_int_equal(net.items[net.n - 3].in_h, 7);  /* 28 -> 14 -> 7 */
    assert_int_equal(spec_expand("cnn:8,16", hidden, 2, text, sizeof text,
                                 preset, &err), 0);
    assert_int_equal(shape(text, 3, 32, 32, &net, out, sizeof out), 0);
    assert_string_equal(out, "conv8k3s1p1,bn,relu,maxpool2s2p0,conv16k3s1p1,"
                        "bn,relu,dense128,relu,dense10");
    assert_int_equal(net.items[net.n - 3].in_h, 16);  /* 32 -> 16 */
    /* resnet on 28x28 and 32x32: 28 -> 14 -> 7 -> 3, 32 -> 16 -> 8 -> 4 */
    assert_int_equal(spec_expand("resnet:16,32,64,128", hidden, 2, text,
                                 sizeof text, preset, &err), 0);
    assert_string_equal(preset, "resnet");
    assert_int_equal(shape(text, 1, 28, 28, &net, out, sizeof out), 0);
    assert_int_equal(net.items[net.n - 2].in_h, 3);
    assert_int_equal(shape(text, 3, 32, 32, &net, out, sizeof out), 0);
    assert_int_equal(net.items[net.n - 2].in_h, 4);
    assert_non_null(strstr(out, "res(conv32k3s1p1,bn,relu,conv32k3s1p1,bn,"
                           "relu)"));
    assert_int_equal(spec_expand("resnet", hidden, 2, text, sizeof text,
                                 preset, &err), 0);
    assert_non_null(strstr(text, "conv512k3"));
    /* a plain spec is copied */
    assert_int_equal(spec_expand("conv8,dense", hidden, 2, text, sizeof text,
                                 preset, &err), 0);
    assert_string_equal(text, "conv8,dense");
    assert_string_equal(preset, "");
    /* bad preset widths */
    assert_int_equal(spec_expand("cnn:0,4", hidden, 2, text, sizeof text,
                                 preset, &err), ST_EINVAL);
    assert_non_null(strstr(err.msg, "width 0: expected 1..4096"));
    st_clearerr(&err);
    assert_int_equal(spec_expand("resnet:8,8", hidden, 2, text, sizeof text,
                                 preset, &err), ST_EINVAL);
    assert_non_null(strstr(err.msg, "expected 4..4"));
}

static void test_bad_items(void **state)
{
    (void)state;
    expect_error("bn,relu,conv0k3,dense", 1, 8, 8,
                 "--model: item 3 'conv0k3': width 0: expected 1..4096");
    expect_error("conv8,foo,dense", 1, 8, 8, "item 2 'foo': unknown layer");
    expect_error("conv8k3x,dense", 1, 8, 8, "item 1 'conv8k3x': unexpected "
                 "'x'");
    expect_error("conv8k3k5,dense", 1, 8, 8, "'k' given twice");
    expect_error("conv8k40,dense", 1, 8, 8, "kernel 40: expected 1..32");
    expect_error("conv8s0,dense", 1, 8, 8, "stride 0: expected 1..16");
    expect_error("maxpool2p2,dense", 1, 8, 8, "padding 2: expected 0..1");
    expect_error("conv8,,dense", 1, 8, 8, "item 2 is empty");
    expect_error("dense0", 1, 8, 8, "item 1 'dense0': width 0");
    expect_error("", 1, 8, 8, "empty spec");
    expect_error("conv8;dense", 1, 8, 8, "unexpected ';'");
}

static void test_bad_shapes(void **state)
{
    (void)state;
    expect_error("conv8k9p0,dense", 1, 8, 8, "item 1 'conv8k9s1p0': kernel "
                 "9x9 is larger than its 8x8 input (padding 0)");
    expect_error("maxpool2,maxpool2,maxpool2,maxpool2,dense", 1, 8, 8,
                 "item 4 'maxpool2s2p0': a 2x2 pool on a 1x1 input (padding "
                 "0): the shape reaches zero");
    expect_error("dense32,conv8,dense", 1, 8, 8, "item 2 'conv8k3s1p1': needs "
                 "an image");
    expect_error("conv8,gap", 1, 8, 8, "item 2 'gap': the last item must be "
                 "a dense layer");
    expect_error("conv8,dense12", 1, 8, 8, "gives 12 outputs but the data "
                 "has 10 classes");
}

static void test_bad_blocks(void **state)
{
    (void)state;
    /* the identity cannot add 8x8x3 to 8x8x16 */
    expect_error("res(conv16k3,bn,relu,conv16k3,bn),dense", 3, 8, 8,
                 "item 1 'res(': the block turns 8x8x3 into 8x8x16, so the "
                 "identity shortcut cannot add up: use resp(");
    /* ... a projection can, at stride 2 too */
    spec_net net;
    char out[SPEC_TEXT_MAX];
    assert_int_equal(shape("resp(conv16k3s2,bn,relu,conv16k3,bn),dense", 3, 8,
                           8, &net, out, sizeof out), 0);
    assert_int_equal(net.items[0].proj, 1);
    assert_int_equal(net.items[0].proj_s, 2);
    assert_int_equal(net.items[0].out_h, 4);
    assert_int_equal(net.items[0].res_act2, 0);
    assert_string_equal(out, "resp(conv16k3s2p1,bn,relu,conv16k3s1p1,bn),"
                        "dense10");
    expect_error("res(conv8k3,relu),dense", 8, 8, 8, "a block must be");
    expect_error("res(conv8k3,bn,relu,conv8k3,bn,gelu),dense", 8, 8, 8,
                 "a block must be");
    expect_error("res(conv8k3,bn,relu,res(conv8k3,bn)),dense", 8, 8, 8,
                 "blocks do not nest");
    expect_error("res(conv8k3,bn,relu,conv8k3,bn,relu,dense", 8, 8, 8,
                 "not closed");
    expect_error("conv8),dense", 8, 8, 8, "')' without res(");
    expect_error("foo(conv8),dense", 8, 8, 8, "only res( and resp( open a "
                 "block");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_canonical),
        cmocka_unit_test(test_presets),
        cmocka_unit_test(test_bad_items),
        cmocka_unit_test(test_bad_shapes),
        cmocka_unit_test(test_bad_blocks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
