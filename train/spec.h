/* train/spec.h — the architecture spec: a text such as
 * "conv32k3,bn,relu,maxpool2,res(conv32k3,bn,relu),gap,dense10" parsed into
 * a list of items, its shapes inferred from the input, printed back in one
 * canonical form; and the presets mlp, cnn and resnet.
 *
 * defines: spec_kind, spec_item, spec_net, spec_parse, spec_shape,
 *          spec_format, spec_expand, spec_canon_equal, SPEC_*
 *
 * Grammar (comma-separated items; spaces are not allowed):
 *   conv<C>[k<K>][s<S>][p<P>]  C filters of K x K (3), stride S (1), zero
 *                              padding P ((K-1)/2, "same" at stride 1);
 *                              C in 1..4096, K 1..32, S 1..16, P 0..16.
 *                              It has a bias unless a bn follows it.
 *   bn                         batch norm over channels (features after
 *                              a dense layer)
 *   relu | gelu                activation
 *   maxpool<K>[s<S>][p<P>]     max pool K x K, stride S (K), padding P
 *                              (0, at most K/2)
 *   gap | gmp                  global average | max pool: (c, h, w) -> c
 *   dense<N> | dense           fully connected, N outputs (1..1048576);
 *                              bare "dense": the pack's class count.
 *                              Flattens what it gets (h, w, c order).
 *   res(ITEMS)                 residual block: y = x + ITEMS(x), identity
 *                              shortcut (ITEMS must keep the shape).
 *                              ITEMS has the residual layer's form
 *                              (train/layer.h): conv<C>k<K>s<S>,bn,ACT,
 *                              conv<C>k<K>,bn[,ACT] with K odd, padding
 *                              K/2, ACT relu or gelu
 *   resp(ITEMS)                the same with a 1x1 conv (stride S) + bn
 *                              projection as the shortcut
 * The last item must be a dense layer giving one output per class.
 * Blocks do not nest. Canonical form: every number written out
 * ("conv32k3s1p1", "maxpool2s2p0", "dense10").
 *
 * Presets (spec_expand): mlp[:W1,W2..] (dense layers with ReLU; the
 * hidden widths, default 512,256), cnn[:C1,..,Cn] (conv-bn-relu per
 * width, a maxpool2 after each but the last, then on the flat map a
 * dense 128 with ReLU and the classifier; default 32,32,64),
 * resnet[:C1,C2,C3,C4] (ResNet-9 in the manner of David Page's DAWNBench
 * entry, default 64,128,256,512). See spec.c for their layers.
 *
 * Errors name the item, 1-based in text order (a block's items count
 * after the block itself): "--model: item 3 'conv0k3': width 0: expected
 * 1..4096".
 */
#ifndef ST_TRAIN_SPEC_H
#define ST_TRAIN_SPEC_H

#include <stddef.h>

#include "datasets/error.h"

#define SPEC_MAX_ITEMS 64
#define SPEC_TEXT_MAX 1024   /* canonical text, with its preset name */
#define SPEC_MAX_CONV_WIDTH 4096
#define SPEC_MAX_DENSE_WIDTH (1 << 20)

typedef enum spec_kind {
    SPEC_CONV = 1,
    SPEC_BN,
    SPEC_RELU,
    SPEC_GELU,
    SPEC_MAXPOOL,
    SPEC_GAP,
    SPEC_GMP,
    SPEC_DENSE,
    SPEC_RES,   /* block header; its `len` items follow */
} spec_kind;

typedef struct spec_item {
    spec_kind kind;
    int out;            /* conv / dense width; dense 0 = classes (parse) */
    int k, s, p;        /* conv / maxpool kernel, stride, padding */
    int bias;           /* conv / dense: has a bias (set by spec_parse) */
    int proj;           /* res: 1x1 projection shortcut */
    int len;            /* res: items in the block */
    int in_block;       /* 1 inside a res block */
    /* filled by spec_shape: per-sample shapes (c, h, w) */
    int in_c, in_h, in_w;
    int out_c, out_h, out_w;
    int proj_s;         /* res with proj: the projection's stride */
    int res_act;        /* res: SPEC_RELU or SPEC_GELU (spec_shape) */
    int res_act2;       /* res: 1 when ITEMS ends with ACT */
} spec_item;

typedef struct spec_net {
    int n;
    spec_item items[SPEC_MAX_ITEMS];
    char preset[16];    /* "cnn", "resnet", "mlp", or "" for a spec */
} spec_net;

/* Expands a preset ("cnn", "resnet:64,128,256,512", "mlp:512,256") into
 * its spec text, or copies any other text. hidden (n_hidden widths) is
 * what plain "mlp" uses. preset receives the preset's name or "".
 * @return 0 or ST_EINVAL ("--model cnn:0,4: width 0: ..."). */
int spec_expand(const char *text, const int *hidden, int n_hidden,
                char *out, size_t out_len, char preset[16], st_error *err);

/* Parses spec text (no presets) into net: syntax and ranges only.
 * @return 0 or ST_EINVAL naming the item. */
int spec_parse(spec_net *net, const char *text, st_error *err);

/* Infers every item's shapes from the input sample (c, h, w) and checks
 * them: kernels that do not fit their input, shapes that reach zero,
 * conv or pool after a dense layer, a block that changes the shape
 * without a projection, and the last item against `classes` (a bare
 * "dense" becomes classes). @return 0 or ST_EINVAL naming the item. */
int spec_shape(spec_net *net, int in_c, int in_h, int in_w, int classes,
               st_error *err);

/* The canonical text (no preset name). */
void spec_format(const spec_net *net, char *buf, size_t len);

/* Compares two model descriptions "NAME: CANON" or "CANON" by their
 * canonical part: 1 when they are the same network. */
int spec_canon_equal(const char *a, const char *b);

#endif
