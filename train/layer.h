/* train/layer.h — one layer of the model behind a small table of
 * functions: dense, conv2d, max pool, global average pool, batch norm,
 * activations and residual blocks, so that the model, the plan and the
 * trainer walk any stack of them the same way.
 *
 * defines: layer, layer_ops, layer_kind, layer_win, layer_res_config,
 *          layer_dense_init, layer_conv_init, layer_maxpool_init,
 *          layer_avgpool_init, layer_bn_init, layer_act_init,
 *          layer_res_init, layer_release, LAYER_WORK_CAP_FLOATS,
 *          layer_in_size, layer_out_size, layer_state_count,
 *          layer_workspace_floats, layer_bind, layer_init_state,
 *          layer_rng_next, layer_rng_uniform
 *
 * Layout. Activations are NHWC (gpu/device.h): a batch of n samples of
 * shape (c, h, w) is stored (n, h, w, c) row-major, one sample's h*w*c
 * floats contiguous. A dense layer sees in = c*h*w floats per sample, so
 * "flatten into dense" is no operation at all: the dense input index of
 * pixel (y, x), channel k is (y*w + x)*c + k, and the dense weight rows
 * follow that order. A dense layer produces (out, 1, 1).
 *
 * Memory. A layer owns no tensor memory (a residual block owns only the
 * small table of its sub-layers, see layer_release). The model points
 * these fields into the arena (train/model.c), then calls layer_bind:
 *   w, gw   (weight_count)  decayed parameters and their gradients
 *   b, gb   (bias_count)    parameters never decayed: biases, BN gamma
 *                           and beta; the model lays ALL weights of all
 *                           layers first, then all biases (train/model.h)
 *   state   (state_count)   persistent, not trained: BN running mean and
 *                           variance; saved in checkpoints; layer_init_state
 *                           gives its initial values
 *   scratch (scratch_floats(micro_batch))  per micro-batch, written by
 *                           forward and read by backward of the same
 *                           micro-batch: BN saved mean/invstd, max pool
 *                           indices, a residual block's inner activations
 *                           and gradients
 *   work, work_floats       transient workspace, the SAME block for every
 *                           layer (contents undefined between calls): the
 *                           conv lowering buffer; sized as below.
 * The layer's own input x (n, in) and output y (n, out) belong to the
 * model and stay valid from forward through backward.
 *
 * Calls. forward(train=1) uses batch statistics (BN) and updates the
 * running state; forward(train=0) uses the running state and leaves it
 * untouched (it may reuse scratch), and backward must not follow it.
 * Forward and backward take any n <= the micro_batch the layer was bound
 * for.
 *
 * Workspace. A layer works with any work_floats >= workspace_floats(l, 1)
 * (a conv then lowers as many images per GEMM as fit). The model binds
 *   min(max_l workspace_floats(l, mb),
 *       max(LAYER_WORK_CAP_FLOATS, max_l workspace_floats(l, 1)))
 * floats: the whole micro-batch's lowering when it is small, otherwise a
 * cap at which groups of images still make large GEMMs but the lowering
 * stays in cache (measured in train/layer_conv.c: a group of 16 images
 * beat the whole batch of 128 on every layer).
 *
 * Batch norm under gradient accumulation uses each micro-batch's own
 * statistics and updates the running estimates once per micro-batch, as
 * PyTorch does.
 */
#ifndef ST_TRAIN_LAYER_H
#define ST_TRAIN_LAYER_H

#include <stddef.h>
#include <stdint.h>

#include "datasets/error.h"
#include "gpu/device.h"

typedef enum layer_kind {
    LAYER_DENSE = 1,   /* affine (in -> out) + optional fused ReLU */
    LAYER_CONV = 2,    /* conv2d, optional bias */
    LAYER_MAXPOOL = 3, /* max pool, argmax indices kept in scratch */
    LAYER_AVGPOOL = 4, /* global average pool: (c, h, w) -> (c, 1, 1) */
    LAYER_BN = 5,      /* batch norm 2d + optional fused ReLU */
    LAYER_ACT = 6,     /* ReLU or GELU on its own */
    LAYER_RES = 7,     /* residual block: a list of sub-layers */
} layer_kind;

typedef struct layer layer;

typedef struct layer_ops {
    const char *name;
    /* Parameter counts: weights (decayed) and biases (not decayed). */
    size_t (*weight_count)(const layer *l);
    size_t (*bias_count)(const layer *l);
    /* Floats of per-micro-batch scratch for n samples. */
    size_t (*scratch_floats)(const layer *l, int n);
    /* He initialization into host memory laid out like the device's:
     * w (weight_count), b (bias_count); rng is a splitmix64 state. */
    void (*init)(const layer *l, float *w, float *b, uint64_t *rng);
    /* y (n, out) = the layer applied to x (n, in); train as above.
     * @return 0 or the device's error code. */
    int (*forward)(const layer *l, gpu_device *d, const float *x, float *y,
                   int n, int train);
    /* After forward(train=1) on the same x, n: given y and dy (n, out) =
     * dL/dy, which it may overwrite, sets gw/gb to dL/dW, dL/db
     * (accumulate=0) or adds them (accumulate=1), and writes (never adds)
     * dx (n, in) = dL/dx unless dx is NULL (first layer). dx != dy. */
    int (*backward)(const layer *l, gpu_device *d, const float *x,
                    const float *y, float *dy, float *dx, int n,
                    int accumulate);

    /* Optional (NULL: none / 0). */
    size_t (*state_count)(const layer *l);
    /* Initial state into host memory (state_count floats): BN mean 0,
     * variance 1. */
    void (*init_state)(const layer *l, float *state);
    /* Workspace floats a call with n samples wants; a layer also works
     * with less, down to workspace_floats(l, 1), by splitting the batch
     * into groups. */
    size_t (*workspace_floats)(const layer *l, int n);
    /* After the model set the pointers above: a composite layer hands
     * pieces to its sub-layers. */
    void (*bind)(layer *l, int micro_batch);
    void (*release)(layer *l);
} layer_ops;

/* A conv or pooling window: kernel, stride, zero padding per axis. */
typedef struct layer_win {
    int kh, kw, sh, sw, ph, pw;
} layer_win;

/* Residual block: out = post(main(x) + shortcut(x)) with
 *   main     = conv kxk (stride) - BN - act - conv kxk (1) - BN [- act]
 *   shortcut = identity, or conv 1x1 (stride) - BN when proj
 *   post     = act when act_after_add, else nothing.
 * He et al.'s basic block: act_after_bn2 0, act_after_add 1. Page's
 * ResNet-9 residual (x + (conv-BN-act)(conv-BN-act)(x)): 1, 0. Convs have
 * no bias (BN follows each); padding k/2 keeps the size at stride 1. */
typedef struct layer_res_config {
    int out_c;
    int k;              /* odd kernel size of the two main convs, e.g. 3 */
    int stride;         /* of the first conv and of the projection */
    int proj;           /* 1: 1x1 conv + BN shortcut; 0: identity (needs
                           stride 1 and out_c == in_c) */
    gpu_act_kind act;
    int act_after_bn2;
    int act_after_add;
} layer_res_config;

#define LAYER_RES_MAX_SUB 8

/* The workspace cap of the formula above: 1M floats (4 MiB). */
#define LAYER_WORK_CAP_FLOATS ((size_t)1 << 20)

struct layer {
    layer_kind kind;
    const layer_ops *ops;
    int in_c, in_h, in_w;     /* input sample shape (stored h, w, c) */
    int out_c, out_h, out_w;  /* output sample shape */
    int relu;                 /* dense, conv, BN: ReLU fused after the map
                                 (set after the constructor for conv) */
    gpu_act_kind act;         /* LAYER_ACT: which one */
    layer_win win;            /* conv, max pool */
    int has_bias;             /* conv */
    float bn_eps, bn_momentum;/* BN: 1e-5 and 0.1 (PyTorch's defaults) */
    layer_res_config res;     /* LAYER_RES */
    int nsub;                 /* LAYER_RES: sub-layers in sub[] */
    int nmain;                /* LAYER_RES: sub[0..nmain) is the main
                                 branch, sub[nmain..nsub) the shortcut */
    layer *sub;               /* LAYER_RES: (LAYER_RES_MAX_SUB), owned */
    /* bound by the model, all device memory inside the arena */
    float *w;                 /* dense: (in, out); conv: (kh*kw*in_c, out_c)
                                 rows ordered (ky, kx, ci) */
    float *b;                 /* dense, conv: (out); BN: gamma (c), beta (c) */
    float *gw;                /* like w */
    float *gb;                /* like b */
    float *state;             /* BN: run_mean (c), run_var (c); or NULL */
    float *scratch;           /* (scratch_floats(micro_batch)) or NULL */
    float *work;              /* shared workspace, or NULL */
    size_t work_floats;       /* its size in floats */
};

/* Constructors. Each fills *l (in sample shape c, h, w) and computes the
 * output shape. @return 0 or ST_EINVAL with a one-line message naming the
 * layer and the shapes (a window larger than its padded input, a shape
 * that reaches zero, a bad size); layer_res_init also ST_ENOMEM. */

/* A dense layer in -> out with optional fused ReLU (in = c*h*w of the
 * layer before: NHWC flatten, see above). Never fails. */
void layer_dense_init(layer *l, int in, int out, int relu);
int layer_conv_init(layer *l, int c, int h, int w, int out_c, layer_win win,
                    int has_bias, st_error *err);
int layer_maxpool_init(layer *l, int c, int h, int w, layer_win win,
                       st_error *err);
int layer_avgpool_init(layer *l, int c, int h, int w, st_error *err);
int layer_bn_init(layer *l, int c, int h, int w, int relu, st_error *err);
int layer_act_init(layer *l, int c, int h, int w, gpu_act_kind act,
                   st_error *err);
int layer_res_init(layer *l, int c, int h, int w,
                   const layer_res_config *cfg, st_error *err);
/* Frees what a constructor allocated (a residual block's sub-layer table);
 * accepts any initialized layer, twice is harmless. */
void layer_release(layer *l);

static inline int layer_in_size(const layer *l)
{
    return l->in_c * l->in_h * l->in_w;
}

static inline int layer_out_size(const layer *l)
{
    return l->out_c * l->out_h * l->out_w;
}

/* The optional table entries, 0 / no-op when absent. */
size_t layer_state_count(const layer *l);
size_t layer_workspace_floats(const layer *l, int n);
void layer_init_state(const layer *l, float *state);
/* Call after setting w, b, gw, gb, state, scratch, work, work_floats. */
void layer_bind(layer *l, int micro_batch);

/* splitmix64 step and a uniform float in [-1, 1): deterministic on every
 * platform, so a seed gives the same initial weights everywhere. */
uint64_t layer_rng_next(uint64_t *state);
float layer_rng_uniform(uint64_t *state);

#endif
