/* tools/streamtrain.c — streamtrain: trains a model on a pack directory,
 * streaming batches from the loader to the device. Parses arguments and
 * calls train/run; everything else lives there.
 *
 * Exit status: 0 done, 1 a run-time error (bad pack, bad checkpoint, plan
 * too large, device), 2 a usage error, 130 interrupted.
 */
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "datasets/fsutil.h"
#include "datasets/units.h"
#include "gpu/prefetch.h"
#include "loader/transform.h"
#include "train/dist.h"
#include "train/run.h"

static volatile sig_atomic_t g_stop; /* the signal that asked to stop */
static double g_dist_timeout = 60;   /* --dist-timeout */

/* The default model and the conv models' recipe (README.md, "Conv nets",
 * says how they were chosen). */
#define DEFAULT_MODEL "cnn"
#define CONV_LR 0.05
#define CONV_BATCH 64
#define CONV_WD 5e-4
#define CONV_SMOOTHING 0.0

static void on_signal(int sig) { g_stop = sig; }

static void usage(FILE *f)
{
    fprintf(f,
"usage: streamtrain --data DIR [options]\n"
"\n"
"Trains a model on the train split of pack DIR and evaluates it on the\n"
"test (or val) split after every epoch. The last line is parseable:\n"
"  final epochs=N test_acc=A test_loss=L samples_per_s=S\n"
"\n"
"data and model\n"
"      --data DIR           pack directory (required)\n"
"      --model M            mlp | cnn | resnet | SPEC (%s; --hidden alone\n"
"                           means mlp). Presets take widths: mlp:512,256,\n"
"                           cnn:C1,..,Cn (2..4, default 32,32,64), resnet:\n"
"                           C1,C2,C3,C4 (ResNet-9, default 64,128,256,512)\n"
"      --widths LIST        the preset's widths, as after the colon\n"
"      --epochs N           epochs in all, resumed ones included (5)\n"
"      --batch B            effective batch (mlp 128, conv models %d)\n"
"      --micro-batch M      micro-batch; B must be a multiple (default B;\n"
"                           lowered automatically to fit --device-mem).\n"
"                           Batch norm then uses each micro-batch's own\n"
"                           statistics, as PyTorch does\n"
"      --hidden LIST        mlp hidden layer widths, e.g. 512,256, or none\n"
"                           (512,256)\n"
"      --normalize N        auto | none | M1,..:S1,.. input normalization on\n"
"                           the device, per channel in [0,1] units: auto =\n"
"                           the pack's mean/std, none = pixel/255 (mlp:\n"
"                           none; other models: auto)\n"
"      --seed N             weight init and sample order (1)\n"
"      --train-split NAME   (train)\n"
"      --eval-split NAME    test | val | none | another split (test, else\n"
"                           val)\n"
"      --image-size S       crop/resize samples to S x S: training takes\n"
"                           'random-resized-crop S flip', evaluation\n"
"                           'center-crop S' (required for packs of\n"
"                           images of different sizes)\n"
"      --train-transform T  the training split's transform instead:\n"
"                           random-resized-crop S [scale=A,B] [ratio=A,B],\n"
"                           center-crop S [crop-frac=F], resize WxH,\n"
"                           pad-crop P or none; add 'flip' for a random\n"
"                           horizontal flip, interp=bilinear|area,\n"
"                           erase=P for random erasing (a rectangle of\n"
"                           2-33 %% of the image set to 0 with probability P)\n"
"      --eval-transform T   the evaluation split's (same forms)\n"
"optimization\n"
"      --optimizer O        sgd | adamw (sgd)\n"
"      --lr F               peak learning rate (sgd 0.05, adamw 0.001)\n"
"      --momentum F         SGD momentum (0.9)\n"
"      --nesterov           SGD with Nesterov momentum\n"
"      --weight-decay F     on conv/dense weights, never on biases or BN\n"
"                           (sgd: mlp 0, conv models %g; adamw 0.01)\n"
"      --schedule S         constant | step | cosine: cosine decays to 0\n"
"                           over the run, after --warmup (cosine)\n"
"      --warmup N           steps of linear warmup (0)\n"
"      --lr-step-epochs N   step schedule: epochs between decays\n"
"                           (max(1, epochs/3))\n"
"      --lr-gamma F         step schedule: decay factor (0.1)\n"
"      --label-smoothing F  training loss target (1-F) onehot + F/classes\n"
"                           (%g)\n"
"      --tta flip           evaluate on the mean logits of each image and\n"
"                           its mirror (none)\n"
"      --init I             he | torch: conv and dense weights drawn from\n"
"                           U(+-sqrt(6/fan_in)) or PyTorch's default bound\n"
"                           U(+-1/sqrt(fan_in)); biases start at 0 (he)\n"
"device and pipeline\n"
"      --device D           auto | cuda | cpu | cpu-staged (auto: CUDA\n"
"                           when a GPU is visible; cpu-staged: the CPU,\n"
"                           copying each batch into device buffers as on\n"
"                           a GPU, to check that path without one)\n"
"      --device-mem BYTES   memory budget for the plan, e.g. 512M, or auto\n"
"                           (free memory minus a margin; on the CPU\n"
"                           under mpirun, a rank's share of its host);\n"
"                           the ranks of a job plan with the least (auto)\n"
"      --threads N          loader threads per split (max(1, C/2), C =\n"
"                           cores / ranks on this host)\n"
"      --blas-threads N     CPU backend: its threads, over which each GEMM\n"
"                           (OpenBLAS, 1 thread a call) and op splits (C)\n"
"      --tf32               CUDA backend: cuBLAS's GEMMs may round their\n"
"                           inputs to TF32 on tensor cores (sm_80+; ~1e-3\n"
"                           relative error; off: fp32, as the CPU)\n"
"      --prefetch D         device batch buffers, 2..%d (2)\n"
"output and checkpoints\n"
"      --metrics FILE       JSONL: one object per log interval and epoch\n"
"      --log-every N        steps between log rows and progress (50)\n"
"      --save PATH          checkpoint after every epoch (atomic)\n"
"      --save-every N       also every N steps (0: epochs only)\n"
"      --resume PATH        continue the same run from a checkpoint\n"
"      --max-steps N        stop after N optimizer steps in all (saving\n"
"                           with --save), and evaluate the weights there;\n"
"                           --resume continues from there\n"
"      --plan               print the memory plan and exit\n"
"data-parallel (mpirun -np N streamtrain ...; rank 0 alone prints, writes\n"
"metrics and checkpoints; --batch is the global batch, a multiple of N x\n"
"the micro-batch)\n"
"      --bucket-mb F        gradient all-reduce bucket size in MB (25)\n"
"      --dist-timeout S     a collective that takes longer fails the job\n"
"                           (60)\n"
"  -q, --quiet              no progress line\n"
"  -h, --help               this help\n"
"\n"
"SPEC: comma-separated layers, e.g.\n"
"  conv32k3,bn,relu,maxpool2,res(conv32k3,bn,relu,conv32k3,bn,relu),gap,dense\n"
"  conv<C>[k<K>][s<S>][p<P>]  C filters KxK (3), stride S (1), padding P\n"
"                             ((K-1)/2); no bias when a bn follows\n"
"  bn | relu | gelu           batch norm, activations\n"
"  maxpool<K>[s<S>][p<P>]     max pool (stride K, padding 0)\n"
"  gap | gmp                  global average | max pool\n"
"  dense<N> | dense           fully connected; bare: one output per class\n"
"  res(conv<C>k<K>s<S>,bn,ACT,conv<C>k<K>,bn[,ACT])  identity shortcut\n"
"  resp(...)                  the same with a 1x1 conv + bn shortcut\n"
"The last item is the classifier (dense). The model line prints the\n"
"canonical form; checkpoints store it.\n",
            DEFAULT_MODEL, CONV_BATCH, CONV_WD, CONV_SMOOTHING,
            PREFETCH_MAX_DEPTH);
}

static int die_usage(const char *fmt, const char *arg)
{
    fprintf(stderr, "streamtrain: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, " (see streamtrain --help)\n");
    return 2;
}

enum {
    OPT_DATA = 256, OPT_EPOCHS, OPT_BATCH, OPT_MICRO, OPT_HIDDEN, OPT_SEED,
    OPT_TRAIN_SPLIT, OPT_EVAL_SPLIT, OPT_OPTIM, OPT_LR, OPT_MOMENTUM,
    OPT_NESTEROV, OPT_WD, OPT_SCHEDULE, OPT_WARMUP, OPT_STEP_EPOCHS,
    OPT_GAMMA, OPT_DEVICE, OPT_DEVICE_MEM, OPT_THREADS, OPT_BLAS, OPT_PREFETCH,
    OPT_METRICS, OPT_LOG_EVERY, OPT_SAVE, OPT_SAVE_EVERY, OPT_RESUME, OPT_PLAN,
    OPT_MAX_STEPS, OPT_MODEL, OPT_WIDTHS, OPT_NORMALIZE, OPT_SMOOTHING,
    OPT_TTA, OPT_INIT, OPT_IMAGE_SIZE, OPT_TRAIN_TF, OPT_EVAL_TF, OPT_BUCKET_MB,
    OPT_DIST_TIMEOUT, OPT_TF32,
};

static const struct option LONG_OPTS[] = {
    {"data", required_argument, 0, OPT_DATA},
    {"epochs", required_argument, 0, OPT_EPOCHS},
    {"batch", required_argument, 0, OPT_BATCH},
    {"micro-batch", required_argument, 0, OPT_MICRO},
    {"hidden", required_argument, 0, OPT_HIDDEN},
    {"seed", required_argument, 0, OPT_SEED},
    {"train-split", required_argument, 0, OPT_TRAIN_SPLIT},
    {"eval-split", required_argument, 0, OPT_EVAL_SPLIT},
    {"optimizer", required_argument, 0, OPT_OPTIM},
    {"lr", required_argument, 0, OPT_LR},
    {"momentum", required_argument, 0, OPT_MOMENTUM},
    {"nesterov", no_argument, 0, OPT_NESTEROV},
    {"weight-decay", required_argument, 0, OPT_WD},
    {"schedule", required_argument, 0, OPT_SCHEDULE},
    {"warmup", required_argument, 0, OPT_WARMUP},
    {"lr-step-epochs", required_argument, 0, OPT_STEP_EPOCHS},
    {"lr-gamma", required_argument, 0, OPT_GAMMA},
    {"device", required_argument, 0, OPT_DEVICE},
    {"device-mem", required_argument, 0, OPT_DEVICE_MEM},
    {"threads", required_argument, 0, OPT_THREADS},
    {"blas-threads", required_argument, 0, OPT_BLAS},
    {"tf32", no_argument, 0, OPT_TF32},
    {"prefetch", required_argument, 0, OPT_PREFETCH},
    {"metrics", required_argument, 0, OPT_METRICS},
    {"log-every", required_argument, 0, OPT_LOG_EVERY},
    {"save", required_argument, 0, OPT_SAVE},
    {"save-every", required_argument, 0, OPT_SAVE_EVERY},
    {"resume", required_argument, 0, OPT_RESUME},
    {"plan", no_argument, 0, OPT_PLAN},
    {"max-steps", required_argument, 0, OPT_MAX_STEPS},
    {"model", required_argument, 0, OPT_MODEL},
    {"widths", required_argument, 0, OPT_WIDTHS},
    {"normalize", required_argument, 0, OPT_NORMALIZE},
    {"label-smoothing", required_argument, 0, OPT_SMOOTHING},
    {"tta", required_argument, 0, OPT_TTA},
    {"init", required_argument, 0, OPT_INIT},
    {"image-size", required_argument, 0, OPT_IMAGE_SIZE},
    {"train-transform", required_argument, 0, OPT_TRAIN_TF},
    {"eval-transform", required_argument, 0, OPT_EVAL_TF},
    {"bucket-mb", required_argument, 0, OPT_BUCKET_MB},
    {"dist-timeout", required_argument, 0, OPT_DIST_TIMEOUT},
    {"quiet", no_argument, 0, 'q'},
    {"help", no_argument, 0, 'h'},
    {0, 0, 0, 0},
};

static const char *opt_name(int val)
{
    for (const struct option *o = LONG_OPTS; o->name; o++)
        if (o->val == val) return o->name;
    return "?";
}

/* What a value of option val must be, for the error line; keep in step
 * with the ranges in parse_train_opt and parse_run_opt. */
static const char *opt_expect(int val)
{
    switch (val) {
    case OPT_EPOCHS: return "an integer 1..1000000";
    case OPT_BATCH: case OPT_MICRO: return "an integer 1..1048576";
    case OPT_HIDDEN: return "widths such as 512,256, or none";
    case OPT_SEED: case OPT_SAVE_EVERY: return "an integer >= 0";
    case OPT_OPTIM: return "sgd or adamw";
    case OPT_LR: return "a number in [1e-9, 100]";
    case OPT_MOMENTUM: case OPT_WD: return "a number in [0, 1)";
    case OPT_SCHEDULE: return "constant, step or cosine";
    case OPT_WARMUP: return "an integer 0..1073741824";
    case OPT_GAMMA: return "a number in [1e-6, 1]";
    case OPT_DEVICE: return "auto, cuda, cpu or cpu-staged";
    case OPT_DEVICE_MEM: return "a size such as 512M or 4G, or auto";
    case OPT_THREADS: return "an integer 1..256";
    case OPT_BLAS: return "an integer 1..1024";
    case OPT_PREFETCH: return "an integer 2..8";
    case OPT_MODEL: return "mlp, cnn, resnet or a spec";
    case OPT_WIDTHS: return "widths such as 32,64,128";
    case OPT_NORMALIZE: return "auto, none or M1,..:S1,.. in [0, 1] units";
    case OPT_SMOOTHING: return "a number in [0, 1)";
    case OPT_TTA: return "flip or none";
    case OPT_INIT: return "he or torch";
    case OPT_IMAGE_SIZE: return "an integer 1..4096";
    case OPT_BUCKET_MB: return "a number of MB in [0.001, 4096]";
    case OPT_DIST_TIMEOUT: return "seconds in [1, 86400]";
    default: return "an integer >= 1";
    }
}

/* 1 when paths a and b name one file: the same string, or (both existing)
 * the same device and inode. */
static int same_file(const char *a, const char *b)
{
    struct stat sa, sb;
    if (strcmp(a, b) == 0) return 1;
    return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev &&
           sa.st_ino == sb.st_ino;
}

/* Parsed values that need a second look once every flag is known. */
typedef struct pending {
    int optimizer;       /* optim_kind */
    int have_lr, have_wd, have_momentum, have_smoothing;
    float lr, wd, momentum, smoothing;
    int nesterov, quiet, have_batch;
    const char *model;   /* --model, or NULL */
    const char *widths;  /* --widths, or NULL */
    int have_hidden;
} pending;

static int parse_float(const char *s, double lo, double hi, float *out)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end != '\0' || !(v >= lo && v <= hi)) return -1;
    *out = (float)v;
    return 0;
}

static int parse_int(const char *s, long lo, long hi, int *out)
{
    long v;
    if (units_parse_int(s, lo, hi, &v) != 0) return -1;
    *out = (int)v;
    return 0;
}

static int parse_device(const char *s, gpu_device_config *dc)
{
    dc->cpu_staged = 0;
    if (strcmp(s, "auto") == 0) dc->kind = GPU_KIND_AUTO;
    else if (strcmp(s, "cuda") == 0) dc->kind = GPU_KIND_CUDA;
    else if (strcmp(s, "cpu") == 0) dc->kind = GPU_KIND_CPU;
    else if (strcmp(s, "cpu-staged") == 0) {
        dc->kind = GPU_KIND_CPU;
        dc->cpu_staged = 1;
    } else return -1;
    return 0;
}

/* "M1,..:S1,.." (1 or per-channel values, each side the same count). */
static int parse_norm_values(const char *s, run_config *c)
{
    const char *colon = strchr(s, ':');
    if (colon == NULL) return -1;
    float *dst[2] = {c->norm_mean, c->norm_std};
    int count[2] = {0, 0};
    const char *p = s;
    for (int side = 0; side < 2; side++) {
        for (;;) {
            char *end;
            double v = strtod(p, &end);
            if (end == p || count[side] == 4) return -1;
            if (side == 0 ? !(v >= -1 && v <= 2) : !(v > 0 && v <= 10))
                return -1;
            dst[side][count[side]++] = (float)v;
            p = end;
            if (*p == ',') { p++; continue; }
            break;
        }
        if (side == 0 && p != colon) return -1;
        if (side == 0) p = colon + 1;
    }
    if (*p != '\0' || count[0] != count[1]) return -1;
    c->norm_n = count[0];
    c->normalize = RUN_NORM_GIVEN;
    return 0;
}

static int parse_normalize(const char *s, run_config *c)
{
    if (strcmp(s, "auto") == 0) c->normalize = RUN_NORM_AUTO;
    else if (strcmp(s, "none") == 0) c->normalize = RUN_NORM_NONE;
    else return parse_norm_values(s, c);
    return 0;
}

static int parse_mem(const char *s, run_config *c)
{
    uint64_t v;
    if (strcmp(s, "auto") == 0) {
        c->device_mem_auto = 1;
        return 0;
    }
    if (units_parse_bytes(s, &v) != 0 || v == 0) return -1;
    c->device_mem_auto = 0;
    c->device_mem = (size_t)v;
    return 0;
}

/* One option of the data/model/optimizer groups; 1 when not ours, -1 for
 * a bad value, -2 for one already reported. */
static int parse_train_opt(int o, const char *a, run_config *c, pending *p)
{
    trainer_config *t = &c->trainer;
    st_error err = {0};
    int s;
    switch (o) {
    case OPT_DATA: c->data = a; return 0;
    case OPT_EPOCHS: return parse_int(a, 1, 1000000, &c->epochs);
    case OPT_BATCH:
        p->have_batch = 1;
        return parse_int(a, 1, 1 << 20, &t->batch);
    case OPT_MICRO: return parse_int(a, 1, 1 << 20, &t->micro_batch);
    case OPT_HIDDEN:
        p->have_hidden = 1;
        if (model_parse_hidden(&t->model, a, &err) == 0) return 0;
        die_usage("%s", err.msg); /* its own, more precise line */
        return -2;
    case OPT_MODEL: p->model = a; return 0;
    case OPT_WIDTHS: p->widths = a; return 0;
    case OPT_NORMALIZE: return parse_normalize(a, c);
    case OPT_SMOOTHING:
        p->have_smoothing = 1;
        return parse_float(a, 0, 0.999999, &p->smoothing);
    case OPT_TTA:
        if (strcmp(a, "flip") == 0) t->model.tta_flip = 1;
        else if (strcmp(a, "none") == 0) t->model.tta_flip = 0;
        else return -1;
        return 0;
    case OPT_INIT:
        if (strcmp(a, "torch") == 0) t->model.init_torch = 1;
        else if (strcmp(a, "he") == 0) t->model.init_torch = 0;
        else return -1;
        return 0;
    case OPT_SEED: {
        long v;
        if (units_parse_int(a, 0, 0x7fffffffffffffffL, &v)) return -1;
        t->seed = (uint64_t)v;
        return 0;
    }
    case OPT_IMAGE_SIZE:
        if (parse_int(a, 1, 4096, &s)) return -1;
        c->image_size = (uint32_t)s;
        return 0;
    case OPT_TRAIN_TF:
    case OPT_EVAL_TF: {
        transform_spec tf;
        if (transform_parse(a, &tf, &err) != 0) {
            die_usage("%s", err.msg); /* its own, more precise line */
            return -2;
        }
        if (o == OPT_TRAIN_TF) c->train_transform = a;
        else c->eval_transform = a;
        return 0;
    }
    case OPT_TRAIN_SPLIT: c->train_split = a; return 0;
    case OPT_EVAL_SPLIT: c->eval_split = a; return 0;
    case OPT_OPTIM: return (p->optimizer = optim_parse(a)) < 0 ? -1 : 0;
    case OPT_LR: p->have_lr = 1; return parse_float(a, 1e-9, 100, &p->lr);
    case OPT_MOMENTUM:
        p->have_momentum = 1;
        return parse_float(a, 0, 0.999999, &p->momentum);
    case OPT_NESTEROV: p->nesterov = 1; return 0;
    case OPT_WD: p->have_wd = 1; return parse_float(a, 0, 0.999999, &p->wd);
    case OPT_SCHEDULE:
        if ((s = sched_parse(a)) < 0) return -1;
        t->sched.kind = (sched_kind)s;
        return 0;
    case OPT_WARMUP: return parse_int(a, 0, 1 << 30, &s) ? -1
                            : (t->sched.warmup = (uint64_t)s, 0);
    case OPT_STEP_EPOCHS: return parse_int(a, 1, 1000000, &c->lr_step_epochs);
    case OPT_GAMMA: return parse_float(a, 1e-6, 1, &t->sched.gamma);
    default: return 1;
    }
}

/* One option of the device/output groups; 1 when not ours. */
static int parse_run_opt(int o, const char *a, run_config *c, pending *p)
{
    long v;
    switch (o) {
    case OPT_DEVICE: return parse_device(a, &c->device);
    case OPT_DEVICE_MEM: return parse_mem(a, c);
    case OPT_THREADS: return parse_int(a, 1, 256, &c->loader_threads);
    case OPT_BLAS: return parse_int(a, 1, 1024, &c->device.cpu_threads);
    case OPT_PREFETCH:
        return parse_int(a, 2, PREFETCH_MAX_DEPTH, &c->trainer.depth);
    case OPT_METRICS: c->metrics = a; return 0;
    case OPT_LOG_EVERY: return parse_int(a, 1, 1 << 30, &c->log_every);
    case OPT_SAVE: c->save = a; return 0;
    case OPT_SAVE_EVERY:
        if (units_parse_int(a, 0, 1L << 40, &v)) return -1;
        c->save_every = (uint64_t)v;
        return 0;
    case OPT_RESUME: c->resume = a; return 0;
    case OPT_PLAN: c->plan_only = 1; return 0;
    case OPT_TF32: c->device.tf32 = 1; return 0;
    case OPT_MAX_STEPS:
        if (units_parse_int(a, 1, 1L << 40, &v)) return -1;
        c->max_steps = (uint64_t)v;
        return 0;
    case 'q': p->quiet = 1; return 0;
    case OPT_BUCKET_MB: {
        float mb;
        if (parse_float(a, 0.001, 4096, &mb)) return -1;
        c->trainer.bucket_bytes = (size_t)((double)mb * 1e6);
        return 0;
    }
    case OPT_DIST_TIMEOUT: {
        float t;
        if (parse_float(a, 1, 86400, &t)) return -1;
        g_dist_timeout = t;
        return 0;
    }
    default: return 1;
    }
}

/* --model and --widths into the model spec; checks the spec's syntax now
 * (its shapes need the pack). @return 0 or 2 after a usage line. */
static int set_model(run_config *c, const pending *p, int *conv)
{
    model_spec *ms = &c->trainer.model;
    const char *m = p->model ? p->model
                    : p->have_hidden ? "mlp" : DEFAULT_MODEL;
    char text[SPEC_TEXT_MAX], preset[16];
    st_error err = {0};
    if (p->widths) {
        if (strchr(m, ':') || (strcmp(m, "mlp") && strcmp(m, "cnn") &&
                               strcmp(m, "resnet")))
            return die_usage("--widths %s: needs --model mlp, cnn or resnet "
                             "without widths of its own", p->widths);
        snprintf(ms->arch, sizeof ms->arch, "%s:%s", m, p->widths);
    } else {
        snprintf(ms->arch, sizeof ms->arch, "%s", m);
    }
    if (strlen(m) >= sizeof ms->arch)
        return die_usage("--model: a spec of more than %d characters",
                         (const char *)"1023");
    spec_net net;
    if (spec_expand(ms->arch, ms->hidden, ms->n_hidden, text, sizeof text,
                    preset, &err) < 0 ||
        spec_parse(&net, text, &err) < 0)
        return die_usage("%s", err.msg);
    *conv = strcmp(preset, "mlp") != 0;
    if (*conv && p->have_hidden)
        return die_usage("--hidden applies to --model mlp, not to --model "
                         "%s", m);
    return 0;
}

/* Applies the optimizer- and model-dependent defaults and what was
 * given. */
static void finish(run_config *c, const pending *p, int conv)
{
    trainer_config *t = &c->trainer;
    optim_config_init(&t->optim, (optim_kind)p->optimizer);
    t->sched.lr = p->have_lr ? p->lr
                  : p->optimizer == OPTIM_ADAMW ? 1e-3f
                  : conv ? (float)CONV_LR : 0.05f;
    if (conv && p->optimizer == OPTIM_SGD)
        t->optim.weight_decay = (float)CONV_WD;
    if (conv && !p->have_batch) t->batch = CONV_BATCH;
    t->model.label_smoothing = p->have_smoothing ? p->smoothing
                               : conv ? (float)CONV_SMOOTHING : 0.0f;
    if (p->have_wd) t->optim.weight_decay = p->wd;
    if (p->have_momentum) t->optim.momentum = p->momentum;
    t->optim.nesterov = p->nesterov;
    c->progress = !p->quiet && isatty(STDERR_FILENO);
}

static int parse_args(int argc, char **argv, run_config *c)
{
    pending p = {.optimizer = OPTIM_SGD};
    int o;
    opterr = 0; /* one line of our own instead of getopt's */
    while ((o = getopt_long(argc, argv, "qh", LONG_OPTS, NULL)) != -1) {
        if (o == 'h') {
            usage(stdout);
            exit(0);
        }
        if (o == '?')
            return die_usage("unknown option or missing value: '%s'",
                             argv[optind - 1]);
        int rc = parse_train_opt(o, optarg, c, &p);
        if (rc == 1) rc = parse_run_opt(o, optarg, c, &p);
        if (rc == -2) return 2;
        if (rc != 0) {
            char what[128];
            snprintf(what, sizeof what, "--%s %s", opt_name(o),
                     optarg ? optarg : "");
            char line[256];
            snprintf(line, sizeof line, "%s: expected %s", what,
                     opt_expect(o));
            return die_usage("%s", line);
        }
    }
    if (optind < argc) return die_usage("unexpected argument '%s'", argv[optind]);
    if (c->data == NULL) return die_usage("%s", "--data DIR is required");
    if (c->save_every && c->save == NULL)
        return die_usage("%s", "--save-every needs --save PATH");
    if (c->metrics && ((c->save && same_file(c->metrics, c->save)) ||
                       (c->resume && same_file(c->metrics, c->resume))))
        return die_usage("--metrics %s: is also the checkpoint file",
                         c->metrics);
    int conv = 0;
    if (set_model(c, &p, &conv)) return 2;
    finish(c, &p, conv);
    const trainer_config *t = &c->trainer;
    if (t->micro_batch && t->batch % t->micro_batch)
        return die_usage("--batch must be a multiple of --micro-batch%s", "");
    return 0;
}

/* OpenBLAS's idle threads spin (sched_yield) for up to 2^28 cycles after
 * each product before they sleep, fighting the loader and the trainer's own
 * thread for the cores: on the 2-core reference machine epochs then take
 * 1.1 s or 1.9 s at random. OPENBLAS_THREAD_TIMEOUT is read when libopenblas
 * loads, before main(), so main sets it (unless the user did) and re-executes
 * itself once; with it, epochs stay at 1.0-1.4 s. */
static void tame_openblas(char **argv)
{
    if (getenv("OPENBLAS_THREAD_TIMEOUT") != NULL) return;
    if (setenv("OPENBLAS_THREAD_TIMEOUT", "4", 1) != 0) return;
    execv("/proc/self/exe", argv);
    /* exec failed: carry on with OpenBLAS's default */
}

/* The job's share of the host: each of the L ranks on this host gets
 * cores/L OpenBLAS threads unless --blas-threads says otherwise (the
 * loader's producers follow in train/run.c) and, on CUDA, GPU local_rank;
 * rank 0 alone prints and shows progress (train/run writes metrics and
 * checkpoints on rank 0 alone). @return 1 on the other ranks. */
static int job_config(run_config *c, const dist_job *job)
{
    c->job = job;
    if (job->local_world > 1) /* one process per GPU */
        c->device.cuda_device = job->local_rank;
    if (job->local_world > 1 && c->device.cpu_threads == 0) {
        int n = gpu_cpu_default_threads() / job->local_world;
        c->device.cpu_threads = n < 1 ? 1 : n;
    }
    if (job->rank == 0) return 0;
    c->progress = 0; /* train/run writes metrics and checkpoints on 0 */
    return 1;
}

/* A failed rank: one line naming it, and the whole job goes down. A
 * timeout is followed by a roll call that names the rank that hangs; an
 * error several ranks hit is printed once, by rank 0, with the ranks that
 * share it (train/dist.h). */
static int fail(const dist_job *job, const run_config *c, int rc,
                const st_error *err)
{
    const char *msg = err->msg[0] ? err->msg : st_strerror(rc);
    if (c->progress) fprintf(stderr, "\r\033[K");
    /* 128 + the signal, as a shell reports it: 130 SIGINT, 143 SIGTERM */
    int code = rc == ST_ECLOSED ? 128 + (g_stop ? (int)g_stop : SIGINT) : 1;
    if (job->world == 1) {
        fprintf(stderr, "streamtrain: %s\n", msg);
        return code;
    }
    if (rc == ST_ECLOSED) return code; /* every rank agreed to stop */
    /* every rank finds a disagreement at once: rank 0 says it, all exit */
    if (rc == ST_EINVAL && strncmp(msg, "ranks disagree", 14) == 0) {
        if (job->rank == 0) fprintf(stderr, "streamtrain: %s\n", msg);
        return code;
    }
    /* a timeout says only that some rank did not come: ask who is there */
    char who[256];
    if (rc == ST_ETIMEDOUT && dist_roll_call(job, 2.0, who, sizeof who))
        fprintf(stderr, "streamtrain: rank 0: %s; %s\n", msg, who);
    else if (rc == ST_ETIMEDOUT && job->rank != 0)
        fprintf(stderr, "streamtrain: rank %d: %s; rank 0 did not end the "
                "job after a roll call: rank 0 may be the one that hangs\n",
                job->rank, msg);
    else if (rc != ST_ETIMEDOUT && dist_fail_together(job, msg, 1.0, stderr,
                                                      who, sizeof who))
        fprintf(stderr, "streamtrain: rank 0: %s%s\n", msg, who);
    else
        fprintf(stderr, "streamtrain: rank %d: %s\n", job->rank, msg);
    dist_abort(job, code);
    return code;
}

int main(int argc, char **argv)
{
    tame_openblas(argv);
    fs_raise_open_files(); /* the loaders keep every shard open */
    run_config c;
    run_config_init(&c);
    int rc = parse_args(argc, argv, &c);
    if (rc) return rc;
    dist_job job;
    st_error err = {0};
    if (dist_init(&job, &argc, &argv, &err) < 0) {
        fprintf(stderr, "streamtrain: %s\n", err.msg);
        return 1;
    }
    job.timeout_s = g_dist_timeout;
    FILE *out = stdout;
    if (job_config(&c, &job) && (out = fopen("/dev/null", "w")) == NULL)
        out = stdout;
    /* SA_RESTART: the loader's preads must not see EINTR */
    struct sigaction sa = {.sa_handler = on_signal, .sa_flags = SA_RESTART};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    c.stop = &g_stop;
    run_result res;
    setvbuf(stdout, NULL, _IOLBF, 0);
    rc = run_train(&c, out, &res, &err);
    if (out != stdout) fclose(out);
    if (rc < 0) {
        rc = fail(&job, &c, rc, &err);
        dist_finalize(&job);
        return rc;
    }
    dist_finalize(&job);
    if (c.plan_only || job.rank != 0) return 0;
    printf("final epochs=%d test_acc=%.4f test_loss=%.4f samples_per_s=%.0f\n",
           res.epochs, res.test_acc, res.test_loss, res.samples_per_s);
    return 0;
}
