/* train/plan.c — the memory plan's arithmetic (layout in train/plan.h). */
#include "train/plan.h"

#include <stdint.h>

#include "gpu/prefetch.h"

static size_t align256(size_t n) { return (n + 255) & ~(size_t)255; }

static void item(plan *p, int k, const char *name, size_t bytes,
                 const char *detail)
{
    p->items[k].name = name;
    p->items[k].bytes = bytes;
    snprintf(p->items[k].detail, sizeof p->items[k].detail, "%s", detail);
}

int plan_build(plan *p, const model *m, optim_kind opt, const plan_env *env,
               int batch, int micro, st_error *err)
{
    char d[96];
    if (batch < 1 || micro < 1 || micro > batch || batch % micro != 0)
        return st_seterr(err, ST_EINVAL, "--batch %d must be a positive "
                         "multiple of --micro-batch %d", batch, micro);
    if (env->depth < 2)
        return st_seterr(err, ST_EINVAL, "plan: %d batch buffers (need >= 2)",
                         env->depth);
    *p = (plan){.batch = batch, .micro_batch = micro,
                .requested_micro = micro, .depth = env->depth};
    size_t np = model_param_count(m), ns = optim_state_floats(opt, np);
    size_t sample = (size_t)model_in_size(m);
    snprintf(d, sizeof d, "%zu floats", np);
    item(p, PLAN_WEIGHTS, "weights", np * sizeof(float), d);
    item(p, PLAN_GRADS, "gradients", np * sizeof(float), d);
    snprintf(d, sizeof d, "%zu floats (%s)", ns, optim_name(opt));
    item(p, PLAN_OPTIM, "optimizer", ns * sizeof(float), d);
    size_t na = model_act_floats(m, micro);
    snprintf(d, sizeof d, "%zu floats, micro-batch %d", na, micro);
    item(p, PLAN_ACTS, "activations", na * sizeof(float), d);
    size_t nb = prefetch_plan_bytes(env->unified, env->depth, batch, sample);
    if (env->unified)
        snprintf(d, sizeof d, "none: CPU reads the loader's ring in place");
    else
        snprintf(d, sizeof d, "%d x (%d x %zu B + labels)", env->depth, batch,
                 sample);
    item(p, PLAN_BATCHES, "batch buffers", nb, d);
    item(p, PLAN_WORKSPACE, "workspace", env->workspace,
         env->workspace ? "cuBLAS" : "none");
    item(p, PLAN_STATS, "loss stats", 2 * sizeof(gpu_loss_stats),
         "train + eval");
    size_t off = 0;
    for (int k = 0; k < PLAN_NITEMS; k++) {
        p->items[k].offset = off;
        off += align256(p->items[k].bytes);
    }
    p->total = off;
    return 0;
}

int plan_choose(plan *p, const model *m, optim_kind opt, const plan_env *env,
                int batch, int micro, size_t budget, st_error *err)
{
    if (micro == 0) micro = batch;
    ST_TRY(plan_build(p, m, opt, env, batch, micro, err));
    p->budget = budget;
    if (budget == 0 || p->total <= budget) return 0;
    /* divisors of B below the request, largest first */
    for (int mb = micro - 1; mb >= 1; mb--) {
        if (batch % mb) continue;
        ST_TRY(plan_build(p, m, opt, env, batch, mb, err));
        p->requested_micro = micro;
        p->budget = budget;
        if (p->total <= budget) return 0;
    }
    char b[8][32];
    return st_seterr(err, ST_ENOMEM,
        "memory plan does not fit even with micro-batch 1: needs %s "
        "(weights %s, gradients %s, optimizer %s, activations %s, batch "
        "buffers %s, workspace %s) but the budget is %s; lower --batch or "
        "--hidden, or raise --device-mem",
        plan_fmt_bytes(p->total, b[0], 32),
        plan_fmt_bytes(p->items[PLAN_WEIGHTS].bytes, b[1], 32),
        plan_fmt_bytes(p->items[PLAN_GRADS].bytes, b[2], 32),
        plan_fmt_bytes(p->items[PLAN_OPTIM].bytes, b[3], 32),
        plan_fmt_bytes(p->items[PLAN_ACTS].bytes, b[4], 32),
        plan_fmt_bytes(p->items[PLAN_BATCHES].bytes, b[5], 32),
        plan_fmt_bytes(p->items[PLAN_WORKSPACE].bytes, b[6], 32),
        plan_fmt_bytes(budget, b[7], 32));
}

const char *plan_fmt_bytes(size_t bytes, char *buf, size_t len)
{
    if (bytes < 1024) snprintf(buf, len, "%zu B", bytes);
    else if (bytes < ((size_t)1 << 20)) snprintf(buf, len, "%.1f KiB", bytes / 1024.0);
    else if (bytes < ((size_t)1 << 30)) snprintf(buf, len, "%.2f MiB", bytes / 1048576.0);
    else snprintf(buf, len, "%.2f GiB", bytes / 1073741824.0);
    return buf;
}

void plan_print(const plan *p, FILE *f)
{
    char b[32];
    fprintf(f, "memory plan: batch %d, micro-batch %d (%d accumulation "
            "step%s), %d batch buffers\n", p->batch, p->micro_batch,
            p->batch / p->micro_batch, p->batch == p->micro_batch ? "" : "s",
            p->depth);
    fprintf(f, "  %-14s %12s %14s  %s\n", "item", "offset", "bytes", "detail");
    for (int k = 0; k < PLAN_NITEMS; k++) {
        const plan_item *it = &p->items[k];
        fprintf(f, "  %-14s %12zu %14zu  %s\n", it->name, it->offset,
                it->bytes, it->detail);
    }
    fprintf(f, "  %-14s %12s %14zu  %s, one allocation\n", "total", "",
            p->total, plan_fmt_bytes(p->total, b, sizeof b));
    if (p->budget)
        fprintf(f, "  %-14s %12s %14zu  %s\n", "budget", "", p->budget,
                plan_fmt_bytes(p->budget, b, sizeof b));
}
