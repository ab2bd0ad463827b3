/* train/layer.h — one layer of the model behind a small table of
 * functions, so that a convolution can join the dense layer later without
 * touching the model, the plan or the trainer.
 *
 * defines: layer, layer_ops, layer_kind, layer_dense_init, layer_in_size,
 *          layer_out_size
 *
 * Shapes are per sample as (c, h, w); a dense layer sees in = c*h*w and
 * produces (out, 1, 1). Batches are row-major (n, c*h*w) float.
 *
 * Parameters, gradients and scratch are not owned by the layer: the model
 * points them into the arena (train/model.c) before the first call.
 */
#ifndef ST_TRAIN_LAYER_H
#define ST_TRAIN_LAYER_H

#include <stddef.h>
#include <stdint.h>

#include "datasets/error.h"
#include "gpu/device.h"

typedef enum layer_kind {
    LAYER_DENSE = 1,
    /* LAYER_CONV = 2: a later issue (im2col scratch via scratch_floats) */
} layer_kind;

typedef struct layer layer;

typedef struct layer_ops {
    const char *name;
    /* Parameter counts: weights (decayed) and biases (not decayed). */
    size_t (*weight_count)(const layer *l);
    size_t (*bias_count)(const layer *l);
    /* Extra floats of per-micro-batch scratch for n samples (0: dense). */
    size_t (*scratch_floats)(const layer *l, int n);
    /* He initialization into host memory laid out like the device's:
     * w (weight_count), b (bias_count); rng is a splitmix64 state. */
    void (*init)(const layer *l, float *w, float *b, uint64_t *rng);
    /* y (n, out) = act(x (n, in) . W + b). @return 0 or device error. */
    int (*forward)(const layer *l, gpu_device *d, const float *x, float *y,
                   int n);
    /* Given y from forward and dy (n, out) = dL/dy, masks dy through the
     * activation in place, then gw/gb = (accumulate ? g + : ) dL/dW, dL/db,
     * and dx (n, in) = dL/dx unless dx is NULL (first layer). */
    int (*backward)(const layer *l, gpu_device *d, const float *x,
                    const float *y, float *dy, float *dx, int n,
                    int accumulate);
} layer_ops;

struct layer {
    layer_kind kind;
    const layer_ops *ops;
    int in_c, in_h, in_w;     /* input sample shape */
    int out_c, out_h, out_w;  /* output sample shape */
    int relu;                 /* ReLU fused after the affine map */
    /* bound by the model, all device memory inside the arena */
    float *w;                 /* dense: (in, out) */
    float *b;                 /* (out) */
    float *gw;                /* like w */
    float *gb;                /* like b */
    float *scratch;           /* (scratch_floats(micro_batch)) or NULL */
};

/* A dense layer in -> out with optional fused ReLU. */
void layer_dense_init(layer *l, int in, int out, int relu);

static inline int layer_in_size(const layer *l)
{
    return l->in_c * l->in_h * l->in_w;
}

static inline int layer_out_size(const layer *l)
{
    return l->out_c * l->out_h * l->out_w;
}

/* splitmix64 step and a uniform float in [-1, 1): deterministic on every
 * platform, so a seed gives the same initial weights everywhere. */
uint64_t layer_rng_next(uint64_t *state);
float layer_rng_uniform(uint64_t *state);

#endif
