/* train/plan.h — the memory plan: every byte the run needs on the device,
 * known before step 1 and allocated as one arena.
 *
 * defines: plan, plan_item, plan_env, plan_build, plan_choose, plan_print,
 *          plan_print_layers, plan_fmt_bytes, PLAN_*
 *
 * Arena layout (each item 256-byte aligned, in this order):
 *   weights      (P) float                  model params, train/model.h
 *   gradients    (P) float
 *   optimizer    (S) float                  S = P (SGD) or 2P (AdamW)
 *   bn state     (R) float                  BN running mean and variance
 *   activations  model_sizes_of(m).acts     one micro-batch of m: input,
 *                                           every layer's output, the
 *                                           gradient ping-pong (+ TTA)
 *   layer scratch model_sizes_of(m).scratch BN saved statistics, max-pool
 *                                           indices, residual insides
 *   lowering     model_sizes_of(m).work     the conv lowering workspace,
 *                                           max over layers and directions
 *   batch bufs   D x ((B, sample) uint8 + (B) int32)   CUDA only
 *   workspace    cuBLAS workspace                      CUDA only
 *   loss stats   2 x gpu_loss_stats (train, eval)
 * Activations, scratch and lowering depend on the micro-batch m; the
 * batch buffers hold whole batches of B, which the trainer slices into
 * micro-batches.
 */
#ifndef ST_TRAIN_PLAN_H
#define ST_TRAIN_PLAN_H

#include <stddef.h>
#include <stdio.h>

#include "datasets/error.h"
#include "train/model.h"
#include "train/optim.h"

enum {
    PLAN_WEIGHTS = 0,
    PLAN_GRADS,
    PLAN_OPTIM,
    PLAN_STATE,
    PLAN_ACTS,
    PLAN_SCRATCH,
    PLAN_LOWER,
    PLAN_BATCHES,
    PLAN_WORKSPACE,
    PLAN_STATS,
    PLAN_NITEMS
};

typedef struct plan_item {
    const char *name;   /* "weights", ... (static) */
    size_t bytes;       /* unaligned size */
    size_t offset;      /* from the arena start, 256-aligned */
    char detail[128];   /* how the size comes about */
} plan_item;

/* What the device contributes to the plan. */
typedef struct plan_env {
    int unified;             /* gpu_device_unified: no batch buffers */
    size_t workspace;        /* gpu_device_workspace_bytes */
    int depth;               /* D device batch buffers (>= 2) */
} plan_env;

typedef struct plan {
    int batch;               /* B, the effective batch */
    int micro_batch;         /* m, B % m == 0 */
    int requested_micro;     /* m asked for; > micro_batch when lowered */
    int depth;
    size_t budget;           /* 0 = none */
    plan_item items[PLAN_NITEMS];
    size_t total;            /* arena bytes */
} plan;

/* Fills p for batch B and micro-batch m (no budget check).
 * @return 0 or ST_EINVAL (B < 1, m < 1, B % m != 0, depth < 2). */
int plan_build(plan *p, const model *m, optim_kind opt, const plan_env *env,
               int batch, int micro, st_error *err);

/* Like plan_build, then, if budget > 0 and the plan exceeds it, lowers the
 * micro-batch through the divisors of B until it fits (p->requested_micro
 * keeps the request). micro 0 means B.
 * @return 0 or ST_ENOMEM when even micro-batch 1 does not fit (the message
 *         names every size and the budget), ST_EINVAL. */
int plan_choose(plan *p, const model *m, optim_kind opt, const plan_env *env,
                int batch, int micro, size_t budget, st_error *err);

/* A table: one line per item with offset, bytes and detail, then the
 * total and the budget. */
void plan_print(const plan *p, FILE *f);

/* Per layer, for the plan's micro-batch: the spec item, the output shape,
 * parameters, and the bytes of its output activation, its scratch and the
 * workspace it asks for (the shared one is the largest, capped). */
void plan_print_layers(const plan *p, const model *m, FILE *f);

/* Human size: "1.23 MiB" into buf. */
const char *plan_fmt_bytes(size_t bytes, char *buf, size_t len);

#endif
