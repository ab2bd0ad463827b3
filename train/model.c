/* train/model.c — layer stack, parameter/activation layout, forward,
 * softmax cross-entropy and backward. Layouts are documented in model.h.
 */
#include "train/model.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MODEL_MAX_WIDTH (1 << 20)

struct model {
    model_spec spec;
    int nl;                          /* layers */
    layer layers[MODEL_MAX_LAYERS];
    size_t nparams, nweights;
    int micro_batch;                 /* bound capacity, 0 before bind */
    float *params, *grads;           /* (P) device */
    float *x;                        /* (mb, in) normalized input */
    float *y[MODEL_MAX_LAYERS];      /* (mb, out_i) */
    float *d0, *d1;                  /* (mb, max out) */
};

static size_t align64f(size_t n) { return (n + 63) & ~(size_t)63; }

int model_parse_hidden(model_spec *spec, const char *text, st_error *err)
{
    spec->n_hidden = 0;
    if (text[0] == '\0' || strcmp(text, "none") == 0) return 0;
    const char *p = text;
    for (;;) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < 1 || v > MODEL_MAX_WIDTH ||
            (*end != ',' && *end != '\0'))
            return st_seterr(err, ST_EINVAL, "--hidden %s: '%.*s' is not a "
                             "width in 1..%d", text, (int)strcspn(p, ","), p,
                             MODEL_MAX_WIDTH);
        if (spec->n_hidden == MODEL_MAX_HIDDEN)
            return st_seterr(err, ST_EINVAL, "--hidden %s: more than %d layers",
                             text, MODEL_MAX_HIDDEN);
        spec->hidden[spec->n_hidden++] = (int)v;
        if (*end == '\0') return 0;
        p = end + 1;
    }
}

static int check_spec(const model_spec *s, st_error *err)
{
    long long in = (long long)s->in_c * s->in_h * s->in_w;
    if (s->in_c < 1 || s->in_h < 1 || s->in_w < 1 || in > MODEL_MAX_WIDTH)
        return st_seterr(err, ST_EINVAL, "model input %dx%dx%d out of range",
                         s->in_c, s->in_h, s->in_w);
    if (s->classes < 2 || s->classes > MODEL_MAX_WIDTH)
        return st_seterr(err, ST_EINVAL, "model: %d classes (need >= 2)",
                         s->classes);
    if (s->n_hidden < 0 || s->n_hidden > MODEL_MAX_HIDDEN)
        return st_seterr(err, ST_EINVAL, "model: %d hidden layers (max %d)",
                         s->n_hidden, MODEL_MAX_HIDDEN);
    for (int i = 0; i < s->n_hidden; i++)
        if (s->hidden[i] < 1 || s->hidden[i] > MODEL_MAX_WIDTH)
            return st_seterr(err, ST_EINVAL, "model: hidden width %d out of "
                             "range", s->hidden[i]);
    return 0;
}

int model_create(model **out, const model_spec *spec, st_error *err)
{
    *out = NULL;
    ST_TRY(check_spec(spec, err));
    model *m = calloc(1, sizeof *m);
    if (m == NULL) return st_seterr(err, ST_ENOMEM, "model: out of memory");
    m->spec = *spec;
    m->nl = spec->n_hidden + 1;
    int in = spec->in_c * spec->in_h * spec->in_w;
    for (int i = 0; i < m->nl; i++) {
        int last = i == m->nl - 1;
        int out_w = last ? spec->classes : spec->hidden[i];
        layer_dense_init(&m->layers[i], in, out_w, !last);
        in = out_w;
    }
    for (int i = 0; i < m->nl; i++) {
        const layer *l = &m->layers[i];
        m->nweights += l->ops->weight_count(l);
        m->nparams += l->ops->weight_count(l) + l->ops->bias_count(l);
    }
    *out = m;
    return 0;
}

void model_destroy(model *m) { free(m); }

const model_spec *model_get_spec(const model *m) { return &m->spec; }
int model_nlayers(const model *m) { return m->nl; }
const layer *model_layer(const model *m, int i) { return &m->layers[i]; }
int model_in_size(const model *m) { return layer_in_size(&m->layers[0]); }
int model_classes(const model *m) { return m->spec.classes; }
size_t model_param_count(const model *m) { return m->nparams; }
size_t model_weight_count(const model *m) { return m->nweights; }
float *model_params(const model *m) { return m->params; }
float *model_grads(const model *m) { return m->grads; }
int model_micro_batch(const model *m) { return m->micro_batch; }
const float *model_logits(const model *m) { return m->y[m->nl - 1]; }

static int max_out(const model *m)
{
    int w = 0;
    for (int i = 0; i < m->nl; i++)
        if (layer_out_size(&m->layers[i]) > w) w = layer_out_size(&m->layers[i]);
    return w;
}

/* Walks the activation layout; when acts is non-NULL, binds it. */
static size_t act_layout(model *m, int n, float *acts)
{
    size_t off = 0, nn = (size_t)n;
    if (acts) m->x = acts + off;
    off += align64f(nn * (size_t)model_in_size(m));
    for (int i = 0; i < m->nl; i++) {
        if (acts) m->y[i] = acts + off;
        off += align64f(nn * (size_t)layer_out_size(&m->layers[i]));
    }
    size_t dsz = align64f(nn * (size_t)max_out(m));
    if (acts) m->d0 = acts + off, m->d1 = acts + off + dsz;
    off += 2 * dsz;
    for (int i = 0; i < m->nl; i++) {
        layer *l = &m->layers[i];
        size_t s = align64f(l->ops->scratch_floats(l, n));
        if (acts) l->scratch = s ? acts + off : NULL;
        off += s;
    }
    return off;
}

size_t model_act_floats(const model *m, int n)
{
    return act_layout((model *)m, n, NULL);
}

void model_describe(const model *m, char *buf, size_t len)
{
    size_t k = 0;
    buf[0] = '\0';
    k += snprintf(buf, len, "%d", model_in_size(m));
    for (int i = 0; i < m->nl && k < len; i++)
        k += snprintf(buf + k, len - k, "-%d", layer_out_size(&m->layers[i]));
}

void model_bind(model *m, float *params, float *grads, float *acts,
                int micro_batch)
{
    m->params = params;
    m->grads = grads;
    m->micro_batch = micro_batch;
    size_t w = 0, b = m->nweights;
    for (int i = 0; i < m->nl; i++) {
        layer *l = &m->layers[i];
        l->w = params + w;
        l->gw = grads + w;
        l->b = params + b;
        l->gb = grads + b;
        w += l->ops->weight_count(l);
        b += l->ops->bias_count(l);
    }
    act_layout(m, micro_batch, acts);
}

void model_init_params(const model *m, uint64_t seed, float *params)
{
    uint64_t rng = seed ^ 0x5EED5EED5EED5EEDull;
    size_t w = 0, b = m->nweights;
    for (int i = 0; i < m->nl; i++) {
        const layer *l = &m->layers[i];
        l->ops->init(l, params + w, params + b, &rng);
        w += l->ops->weight_count(l);
        b += l->ops->bias_count(l);
    }
}

static int forward_layers(model *m, gpu_device *d, const uint8_t *pixels,
                          int n, int train)
{
    if (n < 1 || n > m->micro_batch) return ST_EINVAL;
    ST_TRY(gpu_normalize_u8(d, pixels, (size_t)n * model_in_size(m),
                            m->spec.in_scale, m->spec.in_shift, m->x));
    const float *x = m->x;
    for (int i = 0; i < m->nl; i++) {
        const layer *l = &m->layers[i];
        ST_TRY(l->ops->forward(l, d, x, m->y[i], n, train));
        x = m->y[i];
    }
    return 0;
}

int model_forward(model *m, gpu_device *d, const uint8_t *pixels, int n)
{
    return forward_layers(m, d, pixels, n, 1);
}

int model_backward(model *m, gpu_device *d, const int32_t *labels, int n,
                   float grad_scale, gpu_loss_stats *stats, int accumulate)
{
    if (n < 1 || n > m->micro_batch) return ST_EINVAL;
    float *dy = m->d0, *dx = m->d1;
    ST_TRY(gpu_softmax_xent(d, m->y[m->nl - 1], labels, n, m->spec.classes,
                            grad_scale, dy, stats));
    for (int i = m->nl - 1; i >= 0; i--) {
        const layer *l = &m->layers[i];
        const float *x = i > 0 ? m->y[i - 1] : m->x;
        ST_TRY(l->ops->backward(l, d, x, m->y[i], dy, i > 0 ? dx : NULL, n,
                                accumulate));
        float *t = dy;
        dy = dx;
        dx = t;
    }
    return 0;
}

int model_eval(model *m, gpu_device *d, const uint8_t *pixels,
               const int32_t *labels, int n, gpu_loss_stats *stats)
{
    ST_TRY(forward_layers(m, d, pixels, n, 0));
    return gpu_softmax_xent(d, m->y[m->nl - 1], labels, n, m->spec.classes,
                            0.0f, NULL, stats);
}
