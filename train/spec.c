/* train/spec.c — the architecture spec's parser, shape inference,
 * canonical printer and presets (grammar in train/spec.h).
 */
#include "train/spec.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- presets ------------------------------------------------------------ */

/* Parses "W1,W2,.." (n between lo_n and hi_n widths in 1..4096). */
static int parse_widths(const char *name, const char *list, int lo_n,
                        int hi_n, int *w, int *n, st_error *err)
{
    const char *p = list;
    *n = 0;
    for (;;) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        int len = (int)strcspn(p, ",");
        if (end == p || errno || (*end != ',' && *end != '\0'))
            return st_seterr(err, ST_EINVAL, "--model %s:%s: '%.*s' is not a "
                             "width", name, list, len, p);
        if (v < 1 || v > SPEC_MAX_CONV_WIDTH)
            return st_seterr(err, ST_EINVAL, "--model %s:%s: width %ld: "
                             "expected 1..%d", name, list, v,
                             SPEC_MAX_CONV_WIDTH);
        if (*n == hi_n)
            return st_seterr(err, ST_EINVAL, "--model %s:%s: more than %d "
                             "widths", name, list, hi_n);
        w[(*n)++] = (int)v;
        if (*end == '\0') break;
        p = end + 1;
    }
    if (*n < lo_n)
        return st_seterr(err, ST_EINVAL, "--model %s:%s: %d width%s, expected "
                         "%d..%d", name, list, *n, *n == 1 ? "" : "s", lo_n,
                         hi_n);
    return 0;
}

static size_t put(char *out, size_t len, size_t k, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static size_t put(char *out, size_t len, size_t k, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (k < len) k += (size_t)vsnprintf(out + k, len - k, fmt, ap);
    va_end(ap);
    return k;
}

/* cnn:C1,..,Cn (n = 2..4): conv3x3-bn-relu per width, a maxpool2 after
 * each but the last, then on the flattened map (28x28 -> 7x7 with three
 * widths, 32x32 -> 8x8) a hidden dense layer of CNN_HEAD with ReLU and
 * the classifier. A flattened map keeps where things are, which
 * Fashion-MNIST needs: global average pooling there cost 0.6 points at
 * equal cost, a last pool (7x7 -> 3x3) 0.24, and the classifier without
 * the hidden layer 0.6 (bench/results/recipes-2026-12-01.md). */
#define CNN_HEAD 128
static void cnn_text(const int *w, int n, char *out, size_t len)
{
    size_t k = 0;
    out[0] = '\0';
    for (int i = 0; i < n; i++)
        k = put(out, len, k, "conv%dk3,bn,relu,%s", w[i],
                i < n - 1 ? "maxpool2," : "");
    put(out, len, k, "dense%d,relu,dense", CNN_HEAD);
}

/* resnet:C1,C2,C3,C4, after Page's DAWNBench ResNet-9: prep conv C1;
 * layer1 conv C2 + pool + a residual block of two conv C2; layer2 conv C3
 * + pool; layer3 conv C4 + pool + a residual block; global max pool;
 * classifier. */
static void resnet_text(const int *w, char *out, size_t len)
{
    snprintf(out, len,
             "conv%dk3,bn,relu,"
             "conv%dk3,bn,relu,maxpool2,res(conv%dk3,bn,relu,conv%dk3,bn,relu),"
             "conv%dk3,bn,relu,maxpool2,"
             "conv%dk3,bn,relu,maxpool2,res(conv%dk3,bn,relu,conv%dk3,bn,relu),"
             "gmp,dense",
             w[0], w[1], w[1], w[1], w[2], w[3], w[3], w[3]);
}

int spec_expand(const char *text, const int *hidden, int n_hidden,
                char *out, size_t out_len, char preset[16], st_error *err)
{
    const char *colon = strchr(text, ':');
    size_t nl = colon ? (size_t)(colon - text) : strlen(text);
    const char *list = colon ? colon + 1 : NULL;
    int w[16], n = 0;
    preset[0] = '\0';
    if (nl == 3 && strncmp(text, "mlp", 3) == 0) {
        if (list) ST_TRY(parse_widths("mlp", list, 1, 14, w, &n, err));
        else {
            for (n = 0; n < n_hidden && n < 16; n++) w[n] = hidden[n];
        }
        size_t k = 0;
        out[0] = '\0';
        for (int i = 0; i < n; i++) k = put(out, out_len, k, "dense%d,relu,",
                                            w[i]);
        put(out, out_len, k, "dense");
        snprintf(preset, 16, "mlp");
        return 0;
    }
    if (nl == 3 && strncmp(text, "cnn", 3) == 0) {
        static const int def[3] = {32, 32, 64};
        if (list) ST_TRY(parse_widths("cnn", list, 2, 4, w, &n, err));
        else memcpy(w, def, sizeof def), n = 3;
        cnn_text(w, n, out, out_len);
        snprintf(preset, 16, "cnn");
        return 0;
    }
    if (nl == 6 && strncmp(text, "resnet", 6) == 0) {
        static const int def[4] = {64, 128, 256, 512};
        if (list) ST_TRY(parse_widths("resnet", list, 4, 4, w, &n, err));
        else memcpy(w, def, sizeof def);
        resnet_text(w, out, out_len);
        snprintf(preset, 16, "resnet");
        return 0;
    }
    if (strlen(text) >= out_len)
        return st_seterr(err, ST_EINVAL, "--model: spec of %zu characters "
                         "(at most %zu)", strlen(text), out_len - 1);
    snprintf(out, out_len, "%s", text);
    return 0;
}

/* ---- parser ----------------------------------------------------------- */

typedef struct cursor {
    const char *item;   /* start of the item, for messages */
    int len;            /* its length */
    int no;             /* 1-based item number */
} cursor;

static int bad(st_error *err, const cursor *c, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int bad(st_error *err, const cursor *c, const char *fmt, ...)
{
    char what[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return st_seterr(err, ST_EINVAL, "--model: item %d '%.*s': %s", c->no,
                     c->len, c->item, what);
}

/* Reads an unsigned number at *p; -1 when there is none. */
static long number(const char **p)
{
    if (!isdigit((unsigned char)**p)) return -1;
    long v = 0;
    while (isdigit((unsigned char)**p)) {
        if (v < 100000000) v = v * 10 + (**p - '0');
        (*p)++;
    }
    return v;
}

/* Tagged numbers after a conv or pool: k<K> s<S> p<P>, each at most once,
 * in any order. *end is where parsing stopped. */
static int tags(const cursor *c, const char *p, const char *end, int allow_k,
                spec_item *it, int *have_p, st_error *err)
{
    int seen[3] = {0, 0, 0};
    while (p < end) {
        char t = *p++;
        int slot = t == 'k' ? 0 : t == 's' ? 1 : t == 'p' ? 2 : -1;
        if (slot < 0 || (slot == 0 && !allow_k))
            return bad(err, c, "unexpected '%c'", t);
        if (seen[slot]) return bad(err, c, "'%c' given twice", t);
        seen[slot] = 1;
        long v = number(&p);
        if (v < 0) return bad(err, c, "'%c' needs a number", t);
        if (slot == 0) {
            if (v < 1 || v > 32)
                return bad(err, c, "kernel %ld: expected %d..%d", v, 1, 32);
            it->k = (int)v;
        } else if (slot == 1) {
            if (v < 1 || v > 16)
                return bad(err, c, "stride %ld: expected %d..%d", v, 1, 16);
            it->s = (int)v;
        } else {
            if (v > 16)
                return bad(err, c, "padding %ld: expected %d..%d", v, 0, 16);
            it->p = (int)v;
        }
    }
    *have_p = seen[2];
    if (!seen[1]) it->s = -1;
    return 0;
}

static int word(const cursor *c, const char *name, const char **rest)
{
    size_t n = strlen(name);
    if ((size_t)c->len < n || strncmp(c->item, name, n) != 0) return 0;
    *rest = c->item + n;
    return 1;
}

/* One item (not a block opener) into it. */
static int parse_item(const cursor *c, spec_item *it, st_error *err)
{
    const char *p, *end = c->item + c->len;
    int have_p = 0;
    memset(it, 0, sizeof *it);
    if (c->len == 2 && strncmp(c->item, "bn", 2) == 0) it->kind = SPEC_BN;
    else if (c->len == 4 && strncmp(c->item, "relu", 4) == 0) it->kind = SPEC_RELU;
    else if (c->len == 4 && strncmp(c->item, "gelu", 4) == 0) it->kind = SPEC_GELU;
    else if (c->len == 3 && strncmp(c->item, "gap", 3) == 0) it->kind = SPEC_GAP;
    else if (c->len == 3 && strncmp(c->item, "gmp", 3) == 0) it->kind = SPEC_GMP;
    else if (word(c, "conv", &p)) {
        it->kind = SPEC_CONV;
        long v = number(&p);
        if (v < 0) return bad(err, c, "conv needs a width, e.g. conv32k3");
        if (v < 1 || v > SPEC_MAX_CONV_WIDTH)
            return bad(err, c, "width %ld: expected %d..%d", v, 1,
                       SPEC_MAX_CONV_WIDTH);
        it->out = (int)v;
        it->k = 3;
        ST_TRY(tags(c, p, end, 1, it, &have_p, err));
        if (it->s < 0) it->s = 1;
        if (!have_p) it->p = (it->k - 1) / 2;
    } else if (word(c, "maxpool", &p)) {
        it->kind = SPEC_MAXPOOL;
        long v = number(&p);
        if (v < 1 || v > 32)
            return bad(err, c, "pool size %ld: expected %d..%d", v, 1, 32);
        it->k = (int)v;
        ST_TRY(tags(c, p, end, 0, it, &have_p, err));
        if (it->s < 0) it->s = it->k;
        if (it->p > it->k / 2)
            return bad(err, c, "padding %ld: expected %d..%d", (long)it->p, 0,
                       it->k / 2);
    } else if (word(c, "dense", &p)) {
        it->kind = SPEC_DENSE;
        it->bias = 1;
        if (p == end) return 0; /* the class count, at spec_shape */
        long v = number(&p);
        if (v < 1 || v > SPEC_MAX_DENSE_WIDTH || p != end)
            return bad(err, c, "width %ld: expected %d..%d", v, 1,
                       SPEC_MAX_DENSE_WIDTH);
        it->out = (int)v;
    } else {
        return bad(err, c, "unknown layer (conv, bn, relu, gelu, maxpool, gap, "
                   "gmp, dense, res, resp)");
    }
    return 0;
}

/* Sets conv biases: none when a bn follows. */
static void fix_bias(spec_net *net)
{
    for (int i = 0; i < net->n; i++) {
        spec_item *it = &net->items[i];
        if (it->kind != SPEC_CONV) continue;
        it->bias = !(i + 1 < net->n && net->items[i + 1].kind == SPEC_BN &&
                     net->items[i + 1].in_block == it->in_block);
    }
}

int spec_parse(spec_net *net, const char *text, st_error *err)
{
    memset(net->items, 0, sizeof net->items);
    net->n = 0;
    const char *p = text;
    int no = 0, block = -1; /* index of the open block header */
    if (*p == '\0')
        return st_seterr(err, ST_EINVAL, "--model: empty spec");
    for (;;) {
        cursor c = {.item = p, .len = (int)strcspn(p, ",()"), .no = ++no};
        if (net->n == SPEC_MAX_ITEMS)
            return st_seterr(err, ST_EINVAL, "--model: more than %d items",
                             SPEC_MAX_ITEMS);
        spec_item *it = &net->items[net->n];
        const char *q = p + c.len;
        if (*q == '(') {
            int proj = c.len == 4 && strncmp(p, "resp", 4) == 0;
            c.len = (int)(q - p) + 1;
            if (!proj && !(c.len == 4 && strncmp(p, "res(", 4) == 0))
                return bad(err, &c, "only res( and resp( open a block");
            if (block >= 0)
                return bad(err, &c, "blocks do not nest");
            memset(it, 0, sizeof *it);
            it->kind = SPEC_RES;
            it->proj = proj;
            block = net->n++;
            p = q + 1;
            continue;
        }
        if (c.len == 0)
            return st_seterr(err, ST_EINVAL, "--model: item %d is empty (at "
                             "'%s')", no, p);
        ST_TRY(parse_item(&c, it, err));
        it->in_block = block >= 0;
        net->n++;
        if (block >= 0) net->items[block].len++;
        if (*q == ')') {
            if (block < 0)
                return bad(err, &c, "')' without res(");
            block = -1;
            q++;
        }
        if (*q == '\0') break;
        if (*q != ',')
            return st_seterr(err, ST_EINVAL, "--model: expected ',' after item "
                             "%d '%.*s', at '%s'", no, c.len, c.item, q);
        p = q + 1;
    }
    if (block >= 0)
        return st_seterr(err, ST_EINVAL, "--model: res( opened at item %d is "
                         "not closed", block + 1);
    fix_bias(net);
    return 0;
}

/* ---- shapes ------------------------------------------------------------- */

static void item_text(const spec_item *it, char *buf, size_t len)
{
    switch (it->kind) {
    case SPEC_CONV:
        snprintf(buf, len, "conv%dk%ds%dp%d", it->out, it->k, it->s, it->p);
        break;
    case SPEC_BN: snprintf(buf, len, "bn"); break;
    case SPEC_RELU: snprintf(buf, len, "relu"); break;
    case SPEC_GELU: snprintf(buf, len, "gelu"); break;
    case SPEC_MAXPOOL:
        snprintf(buf, len, "maxpool%ds%dp%d", it->k, it->s, it->p);
        break;
    case SPEC_GAP: snprintf(buf, len, "gap"); break;
    case SPEC_GMP: snprintf(buf, len, "gmp"); break;
    case SPEC_DENSE:
        if (it->out) snprintf(buf, len, "dense%d", it->out);
        else snprintf(buf, len, "dense");
        break;
    case SPEC_RES: snprintf(buf, len, it->proj ? "resp(" : "res("); break;
    }
}

static int shape_err(st_error *err, const spec_net *net, int i,
                     const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int shape_err(st_error *err, const spec_net *net, int i,
                     const char *fmt, ...)
{
    char what[200], name[48];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    item_text(&net->items[i], name, sizeof name);
    return st_seterr(err, ST_EINVAL, "--model: item %d '%s': %s", i + 1, name,
                     what);
}

/* A window of k (stride s, padding p) over (h, w): the output size, or an
 * error naming the item. */
static int window(st_error *err, const spec_net *net, int i, int h, int w,
                  int *oh, int *ow)
{
    const spec_item *it = &net->items[i];
    if (it->k > h + 2 * it->p || it->k > w + 2 * it->p) {
        if (it->kind == SPEC_MAXPOOL)
            return shape_err(err, net, i, "a %dx%d pool on a %dx%d input "
                             "(padding %d): the shape reaches zero", it->k,
                             it->k, h, w, it->p);
        return shape_err(err, net, i, "kernel %dx%d is larger than its "
                         "%dx%d input (padding %d)", it->k, it->k, h, w,
                         it->p);
    }
    *oh = (h + 2 * it->p - it->k) / it->s + 1;
    *ow = (w + 2 * it->p - it->k) / it->s + 1;
    return 0;
}

/* A block's items must have the residual layer's form (train/layer.h). */
static int block_form(spec_net *net, int b, st_error *err)
{
    spec_item *r = &net->items[b];
    const spec_item *it = &net->items[b + 1];
    int n = r->len, ok = n == 5 || n == 6;
    if (ok) {
        const spec_item *c1 = &it[0], *c2 = &it[3];
        ok = c1->kind == SPEC_CONV && it[1].kind == SPEC_BN &&
             (it[2].kind == SPEC_RELU || it[2].kind == SPEC_GELU) &&
             c2->kind == SPEC_CONV && it[4].kind == SPEC_BN &&
             (n == 5 || it[5].kind == it[2].kind) && c1->k % 2 == 1 &&
             c1->k == c2->k && c1->out == c2->out && c2->s == 1 &&
             c1->p == c1->k / 2 && c2->p == c2->k / 2;
    }
    if (!ok)
        return shape_err(err, net, b, "a block must be conv<C>k<K>s<S>,bn,"
                         "ACT,conv<C>k<K>,bn[,ACT] (K odd, padding K/2, ACT "
                         "relu or gelu, the same in both places)");
    r->out = it[0].out, r->k = it[0].k, r->s = it[0].s, r->p = it[0].p;
    r->res_act = it[2].kind;
    r->res_act2 = n == 6;
    return 0;
}

static int close_block(spec_net *net, int b, st_error *err)
{
    spec_item *r = &net->items[b];
    const spec_item *last = &net->items[b + r->len];
    r->out_c = last->out_c, r->out_h = last->out_h, r->out_w = last->out_w;
    if (r->len == 0) return shape_err(err, net, b, "an empty block");
    ST_TRY(block_form(net, b, err));
    int same = r->out_c == r->in_c && r->out_h == r->in_h &&
               r->out_w == r->in_w;
    if (!r->proj) {
        if (same) return 0;
        return shape_err(err, net, b, "the block turns %dx%dx%d into "
                         "%dx%dx%d, so the identity shortcut cannot add up: "
                         "use resp( for a 1x1 projection", r->in_h, r->in_w,
                         r->in_c, r->out_h, r->out_w, r->out_c);
    }
    r->proj_s = r->s;
    return 0;
}

int spec_shape(spec_net *net, int in_c, int in_h, int in_w, int classes,
               st_error *err)
{
    int c = in_c, h = in_h, w = in_w, flat = 0, block = -1, left = 0;
    for (int i = 0; i < net->n; i++) {
        spec_item *it = &net->items[i];
        it->in_c = c, it->in_h = h, it->in_w = w;
        switch (it->kind) {
        case SPEC_CONV:
        case SPEC_MAXPOOL:
            if (flat)
                return shape_err(err, net, i, "needs an image, but a dense "
                                 "layer before it gives a vector of %d", c);
            ST_TRY(window(err, net, i, h, w, &h, &w));
            if (it->kind == SPEC_CONV) c = it->out;
            break;
        case SPEC_GAP:
        case SPEC_GMP:
            if (flat)
                return shape_err(err, net, i, "needs an image, but a dense "
                                 "layer before it gives a vector of %d", c);
            h = w = 1;
            break;
        case SPEC_DENSE:
            if (it->out == 0) it->out = classes;
            c = it->out, h = w = 1, flat = 1;
            break;
        case SPEC_RES:
            block = i, left = it->len;
            it->out_c = c, it->out_h = h, it->out_w = w;
            continue;
        default: /* bn, relu, gelu keep the shape */
            break;
        }
        it->out_c = c, it->out_h = h, it->out_w = w;
        if (block >= 0 && --left == 0) {
            ST_TRY(close_block(net, block, err));
            block = -1;
        }
    }
    const spec_item *last = &net->items[net->n - 1];
    if (last->kind != SPEC_DENSE || last->in_block)
        return shape_err(err, net, net->n - 1, "the last item must be a dense "
                         "layer with one output per class (dense or dense%d)",
                         classes);
    if (last->out != classes)
        return shape_err(err, net, net->n - 1, "gives %d outputs but the "
                         "data has %d classes", last->out, classes);
    return 0;
}

void spec_format(const spec_net *net, char *buf, size_t len)
{
    size_t k = 0;
    int left = 0;
    buf[0] = '\0';
    for (int i = 0; i < net->n && k < len; i++) {
        char t[48];
        const spec_item *it = &net->items[i];
        item_text(it, t, sizeof t);
        int close = left > 0 && --left == 0;
        k = put(buf, len, k, "%s%s%s", t, close ? ")" : "",
                it->kind == SPEC_RES || i == net->n - 1 ? "" : ",");
        if (it->kind == SPEC_RES) left = it->len;
    }
}

/* The canonical part of "NAME: CANON". */
static const char *canon_part(const char *s)
{
    const char *c = strstr(s, ": ");
    return c ? c + 2 : s;
}

int spec_canon_equal(const char *a, const char *b)
{
    return strcmp(canon_part(a), canon_part(b)) == 0;
}
