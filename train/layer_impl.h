/* train/layer_impl.h — internal: helpers shared by the layer files
 * (train/layer*.c); not part of the layer contract.
 *
 * defines: LAYER_MAX_FLOATS, layer__check_shape, layer__he_uniform,
 *          layer__align, layer__max_size
 */
#ifndef ST_TRAIN_LAYER_IMPL_H
#define ST_TRAIN_LAYER_IMPL_H

#include "train/layer.h"

/* Largest per-sample tensor (floats) a layer accepts: indices into one
 * sample stay int32 (max pool) with room to spare. */
#define LAYER_MAX_FLOATS (1 << 28)

/* 0 when 1 <= c, h, w and c*h*w <= LAYER_MAX_FLOATS; else ST_EINVAL with
 * "<what>: ...". */
int layer__check_shape(const char *what, int c, int h, int w, st_error *err);

/* w[0..n) = U(-sqrt(6/fan_in), sqrt(6/fan_in)) (He uniform). */
void layer__he_uniform(float *w, size_t n, int fan_in, uint64_t *rng);

/* n rounded up to 64 floats (256 bytes), as the model aligns blocks. */
static inline size_t layer__align(size_t n) { return (n + 63) & ~(size_t)63; }

#endif
