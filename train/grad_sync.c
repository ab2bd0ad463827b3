/* train/grad_sync.c — gradient buckets in backward order and their
 * all-reduce (contract in train/grad_sync.h).
 */
#include "train/grad_sync.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gpu/comm.h"

typedef struct bucket {
    int lo, hi;             /* layers [lo, hi] */
    float *w, *b;           /* first weight / bias gradient (device) */
    size_t nw, nb;          /* floats of each range */
} bucket;

struct grad_sync {
    gpu_device *d;          /* borrowed */
    gpu_comm *comm;         /* owned; NULL when world == 1 */
    int world;
    int cpu;                /* CPU backend: host wait with the timeout */
    double timeout_s;
    bucket *bk;             /* (nbk) from the last layers to the first */
    int nbk;
    int next;               /* next bucket to start this step */
    double secs;
};

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Groups layers L-1 .. 0 into buckets of about `bytes`. */
static int build_buckets(grad_sync *g, model *m, size_t bytes, st_error *err)
{
    int L = model_nlayers(m);
    g->bk = calloc((size_t)L, sizeof *g->bk);
    if (g->bk == NULL) return st_seterr(err, ST_ENOMEM, "grad_sync: buckets");
    size_t acc = 0;
    bucket *cur = NULL;
    for (int i = L - 1; i >= 0; i--) {
        const layer *l = model_layer(m, i);
        size_t nw = l->ops->weight_count(l), nb = l->ops->bias_count(l);
        if (cur == NULL) {
            cur = &g->bk[g->nbk++];
            *cur = (bucket){.lo = i, .hi = i, .w = l->gw, .b = l->gb};
            acc = 0;
        }
        /* walking down, a layer's ranges sit just below the bucket's */
        cur->lo = i;
        cur->w = l->gw;
        cur->b = l->gb;
        cur->nw += nw;
        cur->nb += nb;
        acc += (nw + nb) * sizeof(float);
        if (acc >= bytes) cur = NULL;
    }
    return 0;
}

int grad_sync_create(grad_sync **out, gpu_device *d, model *m, int rank,
                     int world, size_t bucket_bytes, double timeout_s,
                     st_error *err)
{
    *out = NULL;
    grad_sync *g = calloc(1, sizeof *g);
    if (g == NULL) return st_seterr(err, ST_ENOMEM, "grad_sync: no memory");
    g->d = d;
    g->world = world;
    g->cpu = gpu_device_kind(d) != GPU_KIND_CUDA;
    g->timeout_s = timeout_s > 0 ? timeout_s : 60;
    int rc = build_buckets(g, m, bucket_bytes ? bucket_bytes : 1, err);
    if (rc == 0)
        rc = gpu_comm_create(d, rank, world, 2 * (size_t)g->nbk + 2,
                             &g->comm, err);
    if (rc < 0) {
        grad_sync_destroy(g);
        return rc;
    }
    *out = g;
    return 0;
}

void grad_sync_destroy(grad_sync *g)
{
    if (g == NULL) return;
    gpu_comm_destroy(g->comm);
    free(g->bk);
    free(g);
}

static int start(grad_sync *g, const bucket *b, st_error *err)
{
    ST_TRY(gpu_comm_allreduce(g->comm, b->w, b->nw, err));
    return gpu_comm_allreduce(g->comm, b->b, b->nb, err);
}

int grad_sync_layer_done(grad_sync *g, int layer, st_error *err)
{
    if (g->world == 1) return 0;
    double t0 = mono_s();
    int rc = 0;
    while (rc == 0 && g->next < g->nbk && g->bk[g->next].lo >= layer)
        rc = start(g, &g->bk[g->next++], err);
    g->secs += mono_s() - t0;
    return rc;
}

int grad_sync_all(grad_sync *g, st_error *err)
{
    return grad_sync_layer_done(g, -1, err);
}

/* A timeout's message says what it was and what to think of it. */
static int name_timeout(int rc, st_error *err)
{
    if (rc != ST_ETIMEDOUT) return rc;
    char inner[sizeof err->msg];
    memcpy(inner, err->msg, sizeof inner);
    return st_seterr_force(err, rc, "gradient sum: %s (--dist-timeout): "
                           "another rank died or hangs", inner);
}

int grad_sync_finish(grad_sync *g, st_error *err)
{
    if (g->world == 1) return 0;
    double t0 = mono_s();
    int rc = g->next < g->nbk
                 ? st_seterr(err, ST_EINTERNAL, "grad_sync: %d of %d buckets "
                             "started", g->next, g->nbk)
             : g->cpu ? gpu_comm_wait(g->comm, g->timeout_s, err)
                      : gpu_comm_join(g->comm, err);
    g->next = 0;
    g->secs += mono_s() - t0;
    return name_timeout(rc, err);
}

int grad_sync_wait(grad_sync *g, st_error *err)
{
    if (g->world == 1) return 0;
    return name_timeout(gpu_comm_wait(g->comm, g->timeout_s, err), err);
}

int grad_sync_state(grad_sync *g, float *state, size_t n, st_error *err)
{
    if (g->world == 1 || n == 0) return 0;
    ST_TRY(gpu_comm_allreduce(g->comm, state, n, err));
    ST_TRY(grad_sync_wait(g, err));
    if (gpu_axpby(g->d, n, 0.0f, state, 1.0f / (float)g->world, state) < 0)
        return gpu_device_check(g->d, err);
    return 0;
}

int grad_sync_buckets(const grad_sync *g) { return g->nbk; }
double grad_sync_seconds(const grad_sync *g) { return g->secs; }
