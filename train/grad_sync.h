/* train/grad_sync.h — the data-parallel gradient sum: the model's
 * gradients cut into buckets in backward order, each all-reduced
 * (gpu/comm.h) as soon as the layers behind it have final gradients.
 *
 * defines: grad_sync, grad_sync_create, grad_sync_destroy,
 *          grad_sync_layer_done, grad_sync_all, grad_sync_finish,
 *          grad_sync_wait,
 *          grad_sync_state, grad_sync_buckets, grad_sync_seconds
 *
 * Buckets. Walking the layers from the last to the first, consecutive
 * layers are grouped until their parameters reach bucket_bytes (DDP's
 * 25 MB by default); a layer is never split. The model lays out all
 * weights, then all biases (train/model.h), so a bucket of layers
 * [lo, hi] is two contiguous ranges of the gradients, its weights and its
 * biases: two all-reduces. Every rank builds the same table from the same
 * model and issues the buckets in the same order.
 *
 * Per optimizer step, on the last micro-batch only: grad_sync_layer_done
 * after each layer's backward starts every bucket whose first layer it is;
 * grad_sync_finish then waits for all (CPU: host poll against timeout_s;
 * CUDA: the compute queue waits on the comm stream's events). The sums are
 * in place: no buffer beyond the gradients (the plan's), nothing
 * allocated after create.
 *
 * world 1: every call is a no-op.
 */
#ifndef ST_TRAIN_GRAD_SYNC_H
#define ST_TRAIN_GRAD_SYNC_H

#include <stddef.h>

#include "datasets/error.h"
#include "gpu/device.h"
#include "train/model.h"

typedef struct grad_sync grad_sync;

/* m must be bound (model_bind_mem). @return 0, ST_EINVAL, ST_ENOMEM or
 * gpu_comm_create's error. */
int grad_sync_create(grad_sync **out, gpu_device *d, model *m, int rank,
                     int world, size_t bucket_bytes, double timeout_s,
                     st_error *err);
void grad_sync_destroy(grad_sync *g); /* accepts NULL */

/* Layer i's backward of the step's last micro-batch is done: starts the
 * buckets that begin at layer i. */
int grad_sync_layer_done(grad_sync *g, int layer, st_error *err);

/* Starts every bucket not yet started (a rank with no sample this step,
 * whose gradients are zero). */
int grad_sync_all(grad_sync *g, st_error *err);

/* Waits for the step's buckets (see above). @return 0, or ST_ETIMEDOUT
 * / the comm's error: the job must abort. */
int grad_sync_finish(grad_sync *g, st_error *err);

/* Blocks the host until every started sum is done, or ST_ETIMEDOUT after
 * timeout_s. CUDA: before any host synchronization (statistics,
 * checkpoints), so that a sum that never ends (a dead rank) fails the job
 * instead of hanging it; CPU: nothing is in flight after finish. */
int grad_sync_wait(grad_sync *g, st_error *err);

/* state[0..n) (device) = the mean over ranks; waits. BN running
 * statistics at each epoch end. */
int grad_sync_state(grad_sync *g, float *state, size_t n, st_error *err);

int grad_sync_buckets(const grad_sync *g);
/* Host seconds spent in the all-reduce calls and waits so far: the part
 * of the communication that backward did not hide. */
double grad_sync_seconds(const grad_sync *g);

#endif
