/* tests/test_gpu_model.c — a whole small ResNet on the CUDA backend against
 * the CPU backend. Compiled always; skips, printing why, when no GPU is
 * visible (or the build has no CUDA); under ST_REQUIRE_GPU=1 (make test's
 * cuemu run, tests/gpu/check.sh) that is a failure instead.
 *
 * The model is the resnet preset with small widths on 16x16x3 inputs
 * (conv, BN, ReLU, max pool, two residual blocks, global max pool, dense),
 * per-channel input normalization. Both devices get the same initial
 * parameters (model_init_params from one seed, biases and BN gamma/beta
 * moved off their defaults), the same BN running statistics and the same
 * uint8 batch and labels. Then, in this order, and compared CPU vs CUDA:
 *
 *   train      forward logits, BN running statistics, loss statistics and
 *              every layer's weight and bias gradients; plain
 *              cross-entropy, then again with label smoothing 0.1
 *   SGD        two steps (momentum 0.9, Nesterov, weight decay on the
 *              weights only) from each device's own gradients: the change
 *              of the parameters and the momentum buffer
 *   eval       logits and loss statistics of the stepped model in
 *              evaluation mode (running statistics), plain and --tta flip
 *   train      a second training forward: logits and running statistics
 *   AdamW      two steps from the same initial parameters on the CPU's
 *              gradients, copied to both (see adamw_agrees for why)
 *
 * Tolerances, relative to the largest entry of each tensor (per layer for
 * gradients): the backends add GEMM and reduction terms in different
 * orders. Forward values (logits, running statistics): 1e-4, as
 * tests/test_gpu.c holds each layer to. Gradients and the SGD change that
 * follows them: 1e-3, as test_gpu.c's whole-trainer check, since backward
 * compounds the rounding of every layer above through batch norm's
 * divisions by small deviations. cuemu's GEMMs are OpenBLAS's, so there
 * the worst seen is ~1e-6; the line printed at the end shows the margin
 * on a real GPU.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpu/device.h"
#include "device_fixture.h"
#include "train/layer.h"
#include "train/model.h"
#include "train/optim.h"

/* Built with -DST_TEST_GPU_ON_CPU the "CUDA" side is a second CPU device:
 * a dry run of the test's own logic on a machine without a GPU. */
#ifdef ST_TEST_GPU_ON_CPU
#define GPU_UNDER_TEST GPU_KIND_CPU
#else
#define GPU_UNDER_TEST GPU_KIND_CUDA
#endif

enum { N = 8, H = 16, W = 16, C = 3, CLS = 10 };
#define ARCH "resnet:8,8,16,16"

/* forward; backward (see above) */
#define TOL_FWD 1e-4f
#define TOL_GRAD 1e-3f
/* AdamW on identical gradients: elementwise, rounding only (moments
 * relative to their largest entry, parameters to theirs) */
#define TOL_ELEM 1e-5f
#define TOL_ELEM_P 1e-6f

static int need_gpu(void)
{
    return GPU_UNDER_TEST == GPU_KIND_CPU || need_cuda();
}

static uint64_t rs = 17;
static float frand(void) /* [-1, 1) */
{
    rs = rs * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((rs >> 40) & 0xFFFFFF) / 8388608.0f - 1.0f;
}

/* The worst |a - b| / max|b| seen per kind of check, printed at the end:
 * the margin each tolerance has (on a real GPU, where it matters). */
static float worst_fwd, worst_grad, worst_elem;

/* |a[i] - b[i]| <= tol * max|b| for every i. */
static void close_rel(const char *what, const float *a, const float *b,
                      size_t n, float tol, float *worst)
{
    float mx = 0.0f, err = 0.0f;
    for (size_t i = 0; i < n; i++) mx = fmaxf(mx, fabsf(b[i]));
    if (!(mx > 0.0f)) fail_msg("%s: the cpu reference is all zero", what);
    for (size_t i = 0; i < n; i++) {
        float e = fabsf(a[i] - b[i]);
        if (!(e <= tol * mx))
            fail_msg("%s[%zu]: cuda %.9g vs cpu %.9g (max |cpu| %.3g, tol "
                     "%.1g)", what, i, a[i], b[i], mx, tol);
        err = fmaxf(err, e);
    }
    if (err / mx > *worst) *worst = err / mx;
}

/* What both devices start from (host memory). */
typedef struct host {
    size_t np, nw, ns;       /* params, the decayed prefix, BN state */
    float *p0;               /* (np) */
    float *s0;               /* (ns) */
    uint8_t px[N * H * W * C];  /* (N, H, W, C) uint8 */
    int32_t lab[N];
} host;

/* One device with the model bound twice to the same parameters,
 * gradients and BN state: m[0] plain, m[1] with label smoothing 0.1 and
 * --tta flip (own activations). Everything lives in one arena. */
typedef struct side {
    gpu_device *d;
    model *m[2];
    float *params, *grads;   /* (np) */
    float *opt;              /* (2 np): SGD v, or AdamW m | v */
    float *state;            /* (ns) */
    uint8_t *px;             /* (N, H, W, C) */
    int32_t *lab;            /* (N) */
    gpu_loss_stats *stats;   /* (4): train m[0], m[1]; eval m[0], m[1] */
} side;

static model_spec spec_of(int smooth_tta)
{
    model_spec s = {.in_c = C, .in_h = H, .in_w = W, .classes = CLS,
                    .norm_ch = 1, .mean = {0.49f, 0.48f, 0.45f},
                    .std = {0.25f, 0.24f, 0.26f}};
    snprintf(s.arch, sizeof s.arch, "%s", ARCH);
    if (smooth_tta) s.label_smoothing = 0.1f, s.tta_flip = 1;
    return s;
}

static void host_make(host *h)
{
    st_error err = {0};
    model *m = NULL;
    model_spec sp = spec_of(0);
    if (model_create(&m, &sp, &err)) fail_msg("model: %s", err.msg);
    h->np = model_param_count(m);
    h->nw = model_weight_count(m);
    h->ns = model_state_count(m);
    h->p0 = malloc(h->np * sizeof(float));
    h->s0 = malloc((h->ns + 1) * sizeof(float));
    assert_non_null(h->p0), assert_non_null(h->s0);
    model_init_params(m, 11, h->p0);
    /* biases: BN gamma near 1, beta and the dense bias near 0, not at
     * their defaults, so a missing term in their use shows */
    for (size_t i = h->nw; i < h->np; i++) h->p0[i] += 0.1f * frand();
    model_init_state(m, h->s0);
    for (size_t i = 0; i < sizeof h->px; i++)
        h->px[i] = (uint8_t)(frand() * 127.5f + 127.5f);
    for (int i = 0; i < N; i++) h->lab[i] = (int32_t)((i * 7 + 3) % CLS);
    model_destroy(m);
}

static size_t up256(size_t b) { return (b + 255) & ~(size_t)255; }

/* Creates the device and models, carves the arena (a size table, one
 * allocation) and uploads h. */
static void side_open(side *s, gpu_kind kind, const host *h)
{
    st_error err = {0};
    gpu_device_config cfg;
    gpu_device_config_init(&cfg);
    cfg.kind = kind;
    if (gpu_device_create(&s->d, &cfg, NULL, 0, &err) != 0)
        fail_msg("device: %s", err.msg);
    model_mem mem[2];
    model_sizes z[2];
    for (int j = 0; j < 2; j++) {
        model_spec sp = spec_of(j);
        if (model_create(&s->m[j], &sp, &err)) fail_msg("model: %s", err.msg);
        model_sizes_of(s->m[j], N, &z[j]);
    }
    void *ws = NULL;
    size_t wsb = gpu_device_workspace_bytes(s->d);
    struct { void **p; size_t bytes; } tab[] = {
        {(void **)&s->params, h->np * 4}, {(void **)&s->grads, h->np * 4},
        {(void **)&s->opt, 2 * h->np * 4}, {(void **)&s->state, h->ns * 4},
        {(void **)&mem[0].acts, z[0].acts * 4},
        {(void **)&mem[0].scratch, z[0].scratch * 4},
        {(void **)&mem[0].work, z[0].work * 4},
        {(void **)&mem[1].acts, z[1].acts * 4},
        {(void **)&mem[1].scratch, z[1].scratch * 4},
        {(void **)&mem[1].work, z[1].work * 4},
        {(void **)&s->px, sizeof h->px}, {(void **)&s->lab, sizeof h->lab},
        {(void **)&s->stats, 4 * sizeof(gpu_loss_stats)}, {&ws, wsb},
    };
    size_t nt = sizeof tab / sizeof tab[0], total = 0;
    for (size_t i = 0; i < nt; i++) total += up256(tab[i].bytes + 4);
    uint8_t *base = NULL;
    if (gpu_arena_alloc(s->d, total, (void **)&base, &err))
        fail_msg("arena: %s", err.msg);
    for (size_t i = 0, off = 0; i < nt; i++) {
        *tab[i].p = base + off;
        off += up256(tab[i].bytes + 4);
    }
    if (wsb && gpu_device_set_workspace(s->d, ws, wsb))
        fail_msg("workspace: %s", gpu_device_err(s->d)->msg);
    for (int j = 0; j < 2; j++) {
        mem[j].params = s->params, mem[j].grads = s->grads;
        mem[j].state = s->state;
        model_bind_mem(s->m[j], &mem[j], N);
    }
    if (gpu_to_device(s->d, s->params, h->p0, h->np * 4) ||
        gpu_to_device(s->d, s->state, h->s0, h->ns * 4) ||
        gpu_to_device(s->d, s->px, h->px, sizeof h->px) ||
        gpu_to_device(s->d, s->lab, h->lab, sizeof h->lab) ||
        gpu_zero(s->d, s->grads, h->np * 4) ||
        gpu_zero(s->d, s->opt, 2 * h->np * 4) ||
        gpu_zero(s->d, s->stats, 4 * sizeof(gpu_loss_stats)) ||
        gpu_sync(s->d))
        fail_msg("upload: %s", gpu_device_err(s->d)->msg);
}

static void side_check(const side *s, const char *what)
{
    st_error err = {0};
    if (gpu_device_check(s->d, &err) != 0)
        fail_msg("%s on %s: %s", what, gpu_device_name(s->d), err.msg);
}

static void side_close(side *s)
{
    side_check(s, "close");
    model_destroy(s->m[0]);
    model_destroy(s->m[1]);
    gpu_device_destroy(s->d);
}

/* Reads n floats at device pointers pg (CUDA side) and pc (CPU side) back
 * and compares them. */
static void agree(const char *what, side sd[2], const float *pg,
                  const float *pc, size_t n, float tol, float *worst)
{
    float *a = malloc((n + 1) * 4), *b = malloc((n + 1) * 4);
    assert_non_null(a), assert_non_null(b);
    if (gpu_to_host(sd[0].d, a, pg, n * 4) || gpu_to_host(sd[1].d, b, pc, n * 4))
        fail_msg("%s: readback failed", what);
    close_rel(what, a, b, n, tol, worst);
    free(a), free(b);
}

static void logits_agree(const char *what, side sd[2], int j)
{
    agree(what, sd, model_logits(sd[0].m[j]), model_logits(sd[1].m[j]),
          (size_t)N * CLS, TOL_FWD, &worst_fwd);
}

static void state_agree(const char *what, side sd[2], const host *h)
{
    agree(what, sd, sd[0].state, sd[1].state, h->ns, TOL_FWD, &worst_fwd);
}

/* Stats slot k: the same counts, loss sums within 1e-5 relative. */
static void stats_agree(const char *what, side sd[2], int k)
{
    gpu_loss_stats a, b;
    if (gpu_to_host(sd[0].d, &a, &sd[0].stats[k], sizeof a) ||
        gpu_to_host(sd[1].d, &b, &sd[1].stats[k], sizeof b))
        fail_msg("%s: readback failed", what);
    if (b.count != N || b.bad_labels != 0 || !(b.loss_sum > 0))
        fail_msg("%s: cpu count %lld, bad labels %lld, loss %g", what,
                 b.count, b.bad_labels, b.loss_sum);
    if (a.count != b.count || a.correct != b.correct ||
        a.bad_labels != b.bad_labels)
        fail_msg("%s: cuda count %lld correct %lld bad %lld vs cpu %lld "
                 "%lld %lld", what, a.count, a.correct, a.bad_labels,
                 b.count, b.correct, b.bad_labels);
    if (!(fabs(a.loss_sum - b.loss_sum) <= 1e-5 * b.loss_sum))
        fail_msg("%s: loss sum cuda %.9g vs cpu %.9g", what, a.loss_sum,
                 b.loss_sum);
}

/* Every top-level layer's slice of the gradients (a residual block's
 * sub-layers together), weights and biases apart. */
static void grads_agree(const char *when, side sd[2])
{
    const model *m = sd[0].m[0];
    size_t w = 0, b = model_weight_count(m);
    for (int i = 0; i < model_nlayers(m); i++) {
        const layer *l = model_layer(m, i);
        size_t wc = l->ops->weight_count(l), bc = l->ops->bias_count(l);
        char msg[128];
        snprintf(msg, sizeof msg, "%s: layer %d (%s) weight grads", when, i,
                 l->ops->name);
        if (wc) agree(msg, sd, sd[0].grads + w, sd[1].grads + w, wc,
                      TOL_GRAD, &worst_grad);
        snprintf(msg, sizeof msg, "%s: layer %d (%s) bias grads", when, i,
                 l->ops->name);
        if (bc) agree(msg, sd, sd[0].grads + b, sd[1].grads + b, bc,
                      TOL_GRAD, &worst_grad);
        w += wc, b += bc;
    }
}

/* Model j of both sides: a training forward, then backward into the
 * gradients (mean over the batch) and stats slot j. */
static void train_both(side sd[2], int j, const char *what)
{
    for (int k = 0; k < 2; k++) {
        side *s = &sd[k];
        if (model_forward(s->m[j], s->d, s->px, N) ||
            model_backward(s->m[j], s->d, s->lab, N, 1.0f / N, &s->stats[j],
                           0))
            fail_msg("%s: %s", what, gpu_device_err(s->d)->msg);
        side_check(s, what);
    }
}

/* The parameters after a step on both sides, weights and biases apart:
 * their change params - p0 (sub = p0; relative to it, since a step moves
 * weights of ~0.1 by ~1e-3), or the parameters themselves (sub = NULL). */
static void params_agree(const char *what, side sd[2], const host *h,
                         const float *sub, float tol, float *worst)
{
    float *a = malloc(h->np * 4), *b = malloc(h->np * 4);
    assert_non_null(a), assert_non_null(b);
    if (gpu_to_host(sd[0].d, a, sd[0].params, h->np * 4) ||
        gpu_to_host(sd[1].d, b, sd[1].params, h->np * 4))
        fail_msg("%s: readback failed", what);
    for (size_t i = 0; sub && i < h->np; i++) a[i] -= sub[i], b[i] -= sub[i];
    char msg[96];
    snprintf(msg, sizeof msg, "%s: weights%s", what, sub ? " change" : "");
    close_rel(msg, a, b, h->nw, tol, worst);
    snprintf(msg, sizeof msg, "%s: biases%s", what, sub ? " change" : "");
    close_rel(msg, a + h->nw, b + h->nw, h->np - h->nw, tol, worst);
    free(a), free(b);
}

/* Two optimizer steps (t = 1, 2) on both sides from their gradients. */
static void steps_both(side sd[2], const host *h, const optim_config *c,
                       float lr)
{
    for (int k = 0; k < 2; k++)
        for (uint64_t t = 1; t <= 2; t++)
            if (optim_step(c, sd[k].d, sd[k].params, sd[k].grads, sd[k].opt,
                           h->np, h->nw, lr, t))
                fail_msg("%s step %llu: %s", optim_name(c->kind),
                         (unsigned long long)t, gpu_device_err(sd[k].d)->msg);
}

/* lr 0.01: at 0.05 the two steps move the batch statistics so far from
 * the running ones that evaluation's logits reach ~150, next to which the
 * small ones would hardly be checked. */
static void sgd_agrees(side sd[2], const host *h)
{
    optim_config c;
    optim_config_init(&c, OPTIM_SGD);
    c.momentum = 0.9f, c.nesterov = 1, c.weight_decay = 5e-4f;
    steps_both(sd, h, &c, 0.01f);
    params_agree("SGD x2", sd, h, h->p0, TOL_GRAD, &worst_grad);
    agree("SGD x2: momentum", sd, sd[0].opt, sd[1].opt, h->np, TOL_GRAD,
          &worst_grad);
}

/* AdamW's step m/(sqrt(v) + eps) does not scale with the gradient: an
 * entry near zero whose sign differs within TOL_GRAD moves by +lr on one
 * device and -lr on the other. So both get the CPU's gradients and
 * identical parameters; what is left is the update's own rounding. */
static void adamw_agrees(side sd[2], const host *h)
{
    float *g = malloc(h->np * 4);
    assert_non_null(g);
    if (gpu_to_host(sd[1].d, g, sd[1].grads, h->np * 4) ||
        gpu_to_device(sd[0].d, sd[0].grads, g, h->np * 4))
        fail_msg("AdamW: gradient copy failed");
    free(g);
    for (int k = 0; k < 2; k++)
        if (gpu_to_device(sd[k].d, sd[k].params, h->p0, h->np * 4) ||
            gpu_zero(sd[k].d, sd[k].opt, 2 * h->np * 4))
            fail_msg("AdamW: reset: %s", gpu_device_err(sd[k].d)->msg);
    optim_config c;
    optim_config_init(&c, OPTIM_ADAMW);
    c.weight_decay = 0.05f;
    steps_both(sd, h, &c, 1e-3f);
    /* the parameters, not their change: a change of ~2e-3 next to gamma
     * ~1 carries an ulp of gamma, 1e-4 of the change */
    params_agree("AdamW x2", sd, h, NULL, TOL_ELEM_P, &worst_elem);
    agree("AdamW x2: m", sd, sd[0].opt, sd[1].opt, h->np, TOL_ELEM,
          &worst_elem);
    agree("AdamW x2: v", sd, sd[0].opt + h->np, sd[1].opt + h->np, h->np,
          TOL_ELEM, &worst_elem);
}

/* Model j of both sides in evaluation mode, into stats slot 2 + j. */
static void eval_both(side sd[2], int j, const char *what)
{
    for (int k = 0; k < 2; k++) {
        side *s = &sd[k];
        if (model_eval(s->m[j], s->d, s->px, s->lab, N, &s->stats[2 + j]))
            fail_msg("%s: %s", what, gpu_device_err(s->d)->msg);
        side_check(s, what);
    }
    logits_agree(what, sd, j);
    stats_agree(what, sd, 2 + j);
}

static void test_resnet_agrees(void **state)
{
    (void)state;
    if (!need_gpu()) { skip(); return; }
    host h;
    host_make(&h);
    side sd[2] = {{0}, {0}}; /* [0] CUDA, [1] CPU */
    side_open(&sd[0], GPU_UNDER_TEST, &h);
    side_open(&sd[1], GPU_KIND_CPU, &h);

    train_both(sd, 0, "train");
    logits_agree("train: logits", sd, 0);
    state_agree("train: BN running statistics", sd, &h);
    stats_agree("train: loss", sd, 0);
    grads_agree("train", sd);

    train_both(sd, 1, "train, label smoothing");
    logits_agree("train, label smoothing: logits", sd, 1);
    stats_agree("train, label smoothing: loss", sd, 1);
    grads_agree("train, label smoothing", sd);

    sgd_agrees(sd, &h);
    eval_both(sd, 0, "eval after SGD");
    eval_both(sd, 1, "eval after SGD, tta flip");
    for (int k = 0; k < 2; k++)
        if (model_forward(sd[k].m[0], sd[k].d, sd[k].px, N))
            fail_msg("train after SGD: %s", gpu_device_err(sd[k].d)->msg);
    logits_agree("train after SGD: logits", sd, 0);
    state_agree("train after SGD: BN running statistics", sd, &h);

    adamw_agrees(sd, &h);
    print_message("worst |cuda - cpu| / max|cpu|: forward %.2g (tol %.0g), "
                  "gradients and SGD %.2g (tol %.0g), AdamW %.2g (tol %.0g, "
                  "%.0g)\n",
                  worst_fwd, TOL_FWD, worst_grad, TOL_GRAD, worst_elem,
                  TOL_ELEM, TOL_ELEM_P);
    side_close(&sd[0]);
    side_close(&sd[1]);
    free(h.p0), free(h.s0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resnet_agrees),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
