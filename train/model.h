/* train/model.h — the model: a stack of layers with softmax cross-entropy
 * on top (today an MLP: dense + ReLU layers, a dense output layer).
 *
 * defines: model, model_spec, model_create, model_destroy, model_bind,
 *          model_init_params, model_forward, model_backward, model_eval,
 *          model_param_count, model_weight_count, model_act_floats,
 *          model_describe, model_parse_hidden
 *
 * The model owns no tensor memory. model_bind points it into the arena:
 *
 *   params (P) = [ W_0 | W_1 | ... | W_{L-1} | b_0 | b_1 | ... | b_{L-1} ]
 *   grads  (P) = same layout
 *
 * Weights come first so the optimizer can decay the first
 * model_weight_count floats and leave the biases alone. The activations
 * of one micro-batch of m samples, each block 256-byte aligned:
 *
 *   x      (m, in)        normalized input
 *   y_i    (m, out_i)     output of layer i (post-ReLU); y_{L-1} = logits
 *   d0, d1 (m, max out_i) gradient ping-pong buffers
 *   s_i    (scratch_floats_i(m))  per-layer scratch (none for dense)
 */
#ifndef ST_TRAIN_MODEL_H
#define ST_TRAIN_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "datasets/error.h"
#include "gpu/device.h"
#include "train/layer.h"

#define MODEL_MAX_HIDDEN 14
#define MODEL_MAX_LAYERS (MODEL_MAX_HIDDEN + 1)

typedef struct model_spec {
    int in_c, in_h, in_w;          /* sample shape: channels, height, width */
    int classes;
    int n_hidden;                  /* 0..MODEL_MAX_HIDDEN */
    int hidden[MODEL_MAX_HIDDEN];  /* widths of the hidden layers */
    float in_scale, in_shift;      /* x = pixel * in_scale + in_shift */
} model_spec;

typedef struct model model;

/* Parses "512,256" into spec->hidden / n_hidden ("" or "none": no hidden
 * layer). @return 0 or ST_EINVAL naming the bad item. */
int model_parse_hidden(model_spec *spec, const char *text, st_error *err);

/* Validates spec and builds the layers (no tensor memory yet).
 * @return 0, ST_EINVAL (a size out of range), ST_ENOMEM. */
int model_create(model **out, const model_spec *spec, st_error *err);
void model_destroy(model *m); /* accepts NULL */

const model_spec *model_get_spec(const model *m);
int model_nlayers(const model *m);
const layer *model_layer(const model *m, int i);
int model_in_size(const model *m);   /* in_c*in_h*in_w */
int model_classes(const model *m);

size_t model_param_count(const model *m);  /* P floats */
size_t model_weight_count(const model *m); /* the decayed prefix of P */
/* Floats of activations + scratch for a micro-batch of n (see layout). */
size_t model_act_floats(const model *m, int n);

/* "784-512-256-10" into buf. */
void model_describe(const model *m, char *buf, size_t len);

/* Points the layers into device memory: params and grads (P floats each),
 * acts (model_act_floats(micro_batch) floats). Forward/backward then take
 * n <= micro_batch samples. */
void model_bind(model *m, float *params, float *grads, float *acts,
                int micro_batch);
float *model_params(const model *m); /* (P) device */
float *model_grads(const model *m);  /* (P) device */
int model_micro_batch(const model *m);

/* He-initializes host memory params (P floats, device layout) from seed. */
void model_init_params(const model *m, uint64_t seed, float *params);

/* Normalizes pixels (n, in) uint8 and runs every layer.
 * @return 0 or the device's error code. */
int model_forward(model *m, gpu_device *d, const uint8_t *pixels, int n);
/* The logits of the last forward: (n, classes) device. */
const float *model_logits(const model *m);

/* After model_forward on the same n samples: softmax cross-entropy against
 * labels (n) int32 (stats accumulate), dlogits scaled by grad_scale, then
 * back through every layer; grads are overwritten (accumulate=0) or added
 * to (accumulate=1). */
int model_backward(model *m, gpu_device *d, const int32_t *labels, int n,
                   float grad_scale, gpu_loss_stats *stats, int accumulate);

/* Forward + loss statistics only, no gradients. */
int model_eval(model *m, gpu_device *d, const uint8_t *pixels,
               const int32_t *labels, int n, gpu_loss_stats *stats);

#endif
