/* train/model.h — the model: a stack of layers (train/layer.h) built from
 * an architecture spec (train/spec.h), with softmax cross-entropy on top.
 *
 * defines: model, model_spec, model_sizes, model_mem, model_create,
 *          model_destroy, model_bind, model_bind_mem, model_sizes_of,
 *          model_init_params, model_init_state, model_forward,
 *          model_backward, model_backward_hook, model_grad_hook,
 *          model_eval, model_param_count,
 *          model_weight_count, model_state_count, model_act_floats,
 *          model_describe, model_arch, model_parse_hidden, MODEL_*
 *
 * The model owns no tensor memory. model_bind_mem points it into the
 * arena:
 *
 *   params (P) = [ W_0 | W_1 | ... | W_{L-1} | b_0 | b_1 | ... | b_{L-1} ]
 *   grads  (P) = same layout
 *   state  (R) = [ s_0 | s_1 | ... ]   persistent, not trained: BN running
 *                mean and variance (layers without state have none)
 *
 * Weights (dense and conv kernels) come first so the optimizer can decay
 * the first model_weight_count floats and leave the rest alone: biases and
 * batch-norm gamma and beta are "biases" (train/layer.h). Per micro-batch
 * of m samples, each block 256-byte aligned:
 *
 *   acts     x      (m, in)          normalized input (NHWC)
 *            y_i    (m, out_i)       output of layer i; y_{L-1} = logits
 *            d0, d1 (m, max out_i)   gradient ping-pong buffers
 *            xf, lg (m, in), (m, classes)   --tta flip only: the mirrored
 *                                    input and the first pass's logits
 *   scratch  s_i    (scratch_floats_i(m))   per layer, forward to backward:
 *                                    BN saved mean/invstd, max-pool
 *                                    indices, a residual block's insides
 *   work     (see MODEL_WORK_CAP)  one lowering workspace shared by
 *                                    every layer and direction
 *
 * Batch norm in training uses the statistics of the micro-batch it sees:
 * under accumulation (B/m > 1) each micro-batch normalizes with its own
 * statistics, as PyTorch does, and updates the running estimates once per
 * micro-batch. So a BN net's accumulated step is not the full-batch step;
 * a net without BN's is, up to rounding.
 */
#ifndef ST_TRAIN_MODEL_H
#define ST_TRAIN_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "datasets/error.h"
#include "gpu/device.h"
#include "train/layer.h"
#include "train/spec.h"

#define MODEL_MAX_HIDDEN 14
#define MODEL_MAX_LAYERS SPEC_MAX_ITEMS
/* The shared workspace: min(max_l workspace_floats(l, m),
 * max(MODEL_WORK_CAP, max_l workspace_floats(l, 1))) floats, the rule of
 * train/layer.h; layers split their batch into groups to fit. */
#define MODEL_WORK_CAP LAYER_WORK_CAP_FLOATS

typedef struct model_spec {
    int in_c, in_h, in_w;          /* sample shape: channels, height, width */
    int classes;
    /* Architecture: a preset or spec string (train/spec.h); "" is the MLP
     * of n_hidden / hidden (--hidden), as "mlp". */
    char arch[SPEC_TEXT_MAX];
    int n_hidden;                  /* 0..MODEL_MAX_HIDDEN */
    int hidden[MODEL_MAX_HIDDEN];  /* widths of the hidden layers */
    /* Input: norm_ch 0: x = pixel * in_scale + in_shift (all channels);
     * norm_ch 1: x = (pixel/255 - mean[k]) / std[k] per channel k (on the
     * device, gpu_normalize_u8_ch). */
    float in_scale, in_shift;
    int norm_ch;
    float mean[4], std[4];
    float label_smoothing;         /* [0, 1): training loss only */
    int tta_flip;                  /* eval: mean of the logits of x and its
                                      left-right mirror */
    int init_torch;                /* conv/dense weights U(+-1/sqrt(fan_in)),
                                      PyTorch's default bound; 0: He-uniform
                                      U(+-sqrt(6/fan_in)). Biases start at 0
                                      either way. */
} model_spec;

typedef struct model model;

/* Floats of each memory region for a micro-batch of n. */
typedef struct model_sizes {
    size_t acts, scratch, work;
} model_sizes;

/* Where model_bind_mem points the model (device memory). */
typedef struct model_mem {
    float *params, *grads;   /* (P) */
    float *state;            /* (R), may be NULL when R = 0 */
    float *acts, *scratch, *work;  /* model_sizes_of(micro_batch) */
} model_mem;

/* Parses "512,256" into spec->hidden / n_hidden ("" or "none": no hidden
 * layer). @return 0 or ST_EINVAL naming the bad item. */
int model_parse_hidden(model_spec *spec, const char *text, st_error *err);

/* Validates spec, parses the architecture against the input shape and
 * builds the layers (no tensor memory yet).
 * @return 0, ST_EINVAL (a bad spec item or size; the message names the
 *         item), ST_ENOMEM. */
int model_create(model **out, const model_spec *spec, st_error *err);
void model_destroy(model *m); /* accepts NULL */

const model_spec *model_get_spec(const model *m);
int model_nlayers(const model *m);
const layer *model_layer(const model *m, int i);
/* The spec item (1-based text order) layer i was built from. */
int model_layer_item(const model *m, int i);
int model_in_size(const model *m);   /* in_c*in_h*in_w */
int model_classes(const model *m);
/* 1 when some layer is batch norm. */
int model_has_bn(const model *m);

size_t model_param_count(const model *m);  /* P floats */
size_t model_weight_count(const model *m); /* the decayed prefix of P */
size_t model_state_count(const model *m);  /* R floats */
void model_sizes_of(const model *m, int n, model_sizes *out);
/* acts + scratch + work + R floats for n (model_bind's one block). */
size_t model_act_floats(const model *m, int n);

/* "784-512-256-10": the input size, then each layer's output size. */
void model_describe(const model *m, char *buf, size_t len);
/* The architecture, canonical: "mlp: dense512,relu,dense256,relu,dense10",
 * "cnn: conv32k3s1p1,...", or the canonical spec alone for a spec string.
 * Checkpoints store it; spec_canon_equal compares two. */
const char *model_arch(const model *m);

/* Binds the regions of mem. Forward/backward then take n <= micro_batch
 * samples. */
void model_bind_mem(model *m, const model_mem *mem, int micro_batch);
/* The same with state, acts, scratch and work carved in that order out of
 * one block of model_act_floats(micro_batch) floats (tests). */
void model_bind(model *m, float *params, float *grads, float *acts,
                int micro_batch);
float *model_params(const model *m); /* (P) device */
float *model_grads(const model *m);  /* (P) device */
float *model_state(const model *m);  /* (R) device, NULL when R = 0 */
int model_micro_batch(const model *m);

/* He-initializes host memory params (P floats, device layout) from seed. */
void model_init_params(const model *m, uint64_t seed, float *params);
/* Initial state into host memory (R floats): BN mean 0, variance 1. */
void model_init_state(const model *m, float *state);

/* Normalizes pixels (n, in) uint8 and runs every layer in training mode
 * (batch statistics; the running estimates move).
 * @return 0 or the device's error code. */
int model_forward(model *m, gpu_device *d, const uint8_t *pixels, int n);
/* The logits of the last forward: (n, classes) device. */
const float *model_logits(const model *m);

/* After model_forward on the same n samples: softmax cross-entropy
 * (label-smoothed when spec->label_smoothing > 0) against labels (n) int32
 * (stats accumulate), dlogits scaled by grad_scale, then back through
 * every layer; grads are overwritten (accumulate=0) or added to
 * (accumulate=1). */
int model_backward(model *m, gpu_device *d, const int32_t *labels, int n,
                   float grad_scale, gpu_loss_stats *stats, int accumulate);

/* model_backward that calls hook(ctx, i) right after layer i's backward
 * (i = L-1 down to 0), when that layer's gradients gw/gb are final for
 * this micro-batch: the data-parallel trainer starts the all-reduce of
 * the layers behind it there. A negative return stops the pass and is
 * returned. hook NULL: model_backward. */
typedef int (*model_grad_hook)(void *ctx, int layer);
int model_backward_hook(model *m, gpu_device *d, const int32_t *labels, int n,
                        float grad_scale, gpu_loss_stats *stats,
                        int accumulate, model_grad_hook hook, void *ctx);

/* Forward in evaluation mode (running statistics; with tta_flip the mean
 * of the logits of the batch and of its mirror) + plain cross-entropy
 * statistics; no gradients, no state change. */
int model_eval(model *m, gpu_device *d, const uint8_t *pixels,
               const int32_t *labels, int n, gpu_loss_stats *stats);

#endif
