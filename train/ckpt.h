/* train/ckpt.h — checkpoints: the architecture, weights, optimizer state,
 * batch-norm running statistics, step and loader position in one
 * checksummed file, written atomically.
 *
 * defines: ckpt_meta, ckpt_file_bytes, ckpt_save, ckpt_load, CKPT_*
 *
 * File layout, version 2 (little-endian; floats as IEEE-754 binary32):
 *   0    8  magic "STCKPT\r\n"
 *   8    4  version (CKPT_VERSION)
 *   12   4  header bytes (CKPT_HEADER = 256)
 *   16   4  optimizer kind (1 sgd, 2 adamw)
 *   20   4  layers L
 *   24   12 input c, h, w
 *   36   60 version 1: the output width of each of up to 15 layers (an
 *           MLP's); version 2: zero
 *   96   8  step (optimizer steps taken)
 *   104  8  loader seed
 *   112  8  loader epoch
 *   120  8  loader next batch (within that epoch)
 *   128  8  P (parameter floats)
 *   136  8  S (optimizer-state floats)
 *   144  8  effective batch B: the loader position counts batches of B
 *           (0 in files that predate it: not checked)
 *   152  8  samples in the train split (0: not recorded, not checked)
 *   160  8  R (model-state floats: batch-norm running mean and variance)
 *   168  4  A (bytes of the architecture text)
 *   172  84 zero
 *   256  A  the architecture, model_arch(): "cnn: conv32k3s1p1,...",
 *           zero-padded to a multiple of 8 bytes (A8)
 *   256+A8  4P parameters (train/model.h layout)
 *   ...  4S optimizer state (train/optim.h layout)
 *   ...  4R model state (train/model.h layout)
 *   end  8  XXH3-64 of every byte before it
 * Version 1 files (an MLP; no architecture text, R = 0, parameters at 256)
 * still load: their architecture is rebuilt from the layer widths.
 * The file is written to "PATH.tmp-PID", fsynced and renamed over PATH
 * (datasets/fsutil.h), so a crash leaves the previous checkpoint intact.
 */
#ifndef ST_TRAIN_CKPT_H
#define ST_TRAIN_CKPT_H

#include <stddef.h>
#include <stdint.h>

#include "datasets/error.h"
#include "train/model.h"

#define CKPT_VERSION 2u
#define CKPT_HEADER 256u
#define CKPT_V1_LAYERS 15
#define CKPT_ARCH_MAX (SPEC_TEXT_MAX + 32)

typedef struct ckpt_meta {
    uint32_t optim;                     /* optim_kind */
    uint32_t layers;
    uint32_t in_c, in_h, in_w;
    uint32_t widths[CKPT_V1_LAYERS];    /* version 1 only: MLP widths */
    char arch[CKPT_ARCH_MAX];           /* model_arch() */
    uint64_t nmstate;                   /* R */
    uint64_t step;
    uint64_t seed, epoch, next_batch;   /* the loader's position */
    uint64_t batch;                     /* B of next_batch; 0: unknown */
    uint64_t samples;                   /* train split size; 0: unknown */
    uint64_t nparams, nstate;
} ckpt_meta;

/* Fills the shape fields of meta from a model and optimizer. */
void ckpt_meta_from_model(ckpt_meta *meta, const model *m, uint32_t optim,
                          size_t nstate);

/* Bytes of a (version 2) checkpoint file for meta's counts and
 * architecture: the caller's staging buffer, allocated once, before
 * training. */
size_t ckpt_file_bytes(const ckpt_meta *meta);

/* Encodes into buf (cap >= ckpt_file_bytes) and writes path atomically.
 * params (P), state (S) and mstate (R) are host copies.
 * @return 0, ST_EINVAL (cap too small), ST_EIO, ST_ENOSPC. */
int ckpt_save(const char *path, const ckpt_meta *meta, const float *params,
              const float *state, const float *mstate, uint8_t *buf,
              size_t cap, st_error *err);

/* Reads path into buf (cap bytes), validates magic, version, size and
 * checksum, and checks that its architecture, input shape and optimizer
 * match `expect` (arch by its canonical part, in_c/h/w, nparams, nstate,
 * nmstate); then fills *got and copies the parameters, optimizer state
 * and model state out (host memory, P, S and R floats).
 * @return 0, ST_ENOTFOUND, ST_EIO, ST_EFORMAT (not a checkpoint, truncated),
 *         ST_EVERSION, ST_ECHECKSUM, ST_EINVAL (another model shape or
 *         optimizer: the message names both). */
int ckpt_load(const char *path, const ckpt_meta *expect, ckpt_meta *got,
              float *params, float *state, float *mstate, uint8_t *buf,
              size_t cap, st_error *err);

#endif
