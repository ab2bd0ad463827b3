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
    char d[128];
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
    size_t nr = model_state_count(m);
    snprintf(d, sizeof d, nr ? "%zu floats: running mean and variance"
                             : "%zu floats: no batch norm", nr);
    item(p, PLAN_STATE, "bn state", nr * sizeof(float), d);
    model_sizes sz;
    model_sizes_of(m, micro, &sz);
    snprintf(d, sizeof d, "%zu floats, micro-batch %d: input, %d layer "
             "outputs, 2 gradient buffers%s", sz.acts, micro,
             model_nlayers(m), model_get_spec(m)->tta_flip ? ", tta" : "");
    item(p, PLAN_ACTS, "activations", sz.acts * sizeof(float), d);
    snprintf(d, sizeof d, "%zu floats: bn saved stats, pool indices, "
             "residual insides", sz.scratch);
    item(p, PLAN_SCRATCH, "layer scratch", sz.scratch * sizeof(float), d);
    snprintf(d, sizeof d, "%zu floats: conv lowering, shared by all layers",
             sz.work);
    item(p, PLAN_LOWER, "lowering", sz.work * sizeof(float), d);
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
    char b[11][32];
    return st_seterr(err, ST_ENOMEM,
        "memory plan does not fit even with micro-batch 1: needs %s "
        "(weights %s, gradients %s, optimizer %s, bn state %s, activations "
        "%s, layer scratch %s, lowering %s, batch buffers %s, workspace %s) "
        "but the budget is %s; lower --batch or the model's size (--model, "
        "--hidden), or raise --device-mem",
        plan_fmt_bytes(p->total, b[0], 32),
        plan_fmt_bytes(p->items[PLAN_WEIGHTS].bytes, b[1], 32),
        plan_fmt_bytes(p->items[PLAN_GRADS].bytes, b[2], 32),
        plan_fmt_bytes(p->items[PLAN_OPTIM].bytes, b[3], 32),
        plan_fmt_bytes(p->items[PLAN_STATE].bytes, b[8], 32),
        plan_fmt_bytes(p->items[PLAN_ACTS].bytes, b[4], 32),
        plan_fmt_bytes(p->items[PLAN_SCRATCH].bytes, b[9], 32),
        plan_fmt_bytes(p->items[PLAN_LOWER].bytes, b[10], 32),
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

void plan_print_layers(const plan *p, const model *m, FILE *f)
{
    int n = p->micro_batch;
    fprintf(f, "per layer (micro-batch %d; bytes):\n", n);
    fprintf(f, "  %-3s %-4s %-8s %-14s %10s %12s %12s %12s\n", "#", "item",
            "layer", "output", "params", "activation", "scratch",
            "workspace");
    for (int i = 0; i < model_nlayers(m); i++) {
        const layer *l = model_layer(m, i);
        char shape[48];
        snprintf(shape, sizeof shape, "%dx%dx%d", l->out_h, l->out_w,
                 l->out_c);
        size_t np = l->ops->weight_count(l) + l->ops->bias_count(l);
        fprintf(f, "  %-3d %-4d %-8s %-14s %10zu %12zu %12zu %12zu\n", i + 1,
                model_layer_item(m, i), l->ops->name, shape, np,
                (size_t)n * (size_t)layer_out_size(l) * sizeof(float),
                l->ops->scratch_floats(l, n) * sizeof(float),
                layer_workspace_floats(l, n) * sizeof(float));
    }
}
