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
#include "train/run.h"

static volatile sig_atomic_t g_stop; /* the signal that asked to stop */

static void on_signal(int sig) { g_stop = sig; }

static void usage(FILE *f)
{
    fprintf(f,
"usage: streamtrain --data DIR [options]\n"
"\n"
"Trains an MLP on the train split of pack DIR and evaluates it on the test\n"
"(or val) split after every epoch. The last line is parseable:\n"
"  final epochs=N test_acc=A test_loss=L samples_per_s=S\n"
"\n"
"data and model\n"
"      --data DIR           pack directory (required)\n"
"      --epochs N           epochs in all, resumed ones included (5)\n"
"      --batch B            effective batch (128)\n"
"      --micro-batch M      micro-batch; B must be a multiple (default B;\n"
"                           lowered automatically to fit --device-mem)\n"
"      --hidden LIST        hidden layer widths, e.g. 512,256, or none\n"
"                           (512,256)\n"
"      --seed N             weight init and sample order (1)\n"
"      --train-split NAME   (train)\n"
"      --eval-split NAME    test | val | none | another split (test, else\n"
"                           val)\n"
"optimization\n"
"      --optimizer O        sgd | adamw (sgd)\n"
"      --lr F               peak learning rate (sgd 0.05, adamw 0.001)\n"
"      --momentum F         SGD momentum (0.9)\n"
"      --nesterov           SGD with Nesterov momentum\n"
"      --weight-decay F     on weights, not biases (sgd 0, adamw 0.01)\n"
"      --schedule S         constant | step | cosine: cosine decays to 0\n"
"                           over the run, after --warmup (cosine)\n"
"      --warmup N           steps of linear warmup (0)\n"
"      --lr-step-epochs N   step schedule: epochs between decays\n"
"                           (max(1, epochs/3))\n"
"      --lr-gamma F         step schedule: decay factor (0.1)\n"
"device and pipeline\n"
"      --device D           auto | cuda | cpu | cpu-staged (auto: CUDA\n"
"                           when a GPU is visible; cpu-staged: the CPU,\n"
"                           copying each batch into device buffers as on\n"
"                           a GPU, to check that path without one)\n"
"      --device-mem BYTES   memory budget for the plan, e.g. 512M, or auto\n"
"                           (free memory minus a margin) (auto)\n"
"      --threads N          loader threads per split (max(1, cores/2))\n"
"      --blas-threads N     CPU backend: OpenBLAS threads (cores)\n"
"      --prefetch D         device batch buffers, 2..%d (2)\n"
"output and checkpoints\n"
"      --metrics FILE       JSONL: one object per log interval and epoch\n"
"      --log-every N        steps between log rows and progress (50)\n"
"      --save PATH          checkpoint after every epoch (atomic)\n"
"      --save-every N       also every N steps (0: epochs only)\n"
"      --resume PATH        continue the same run from a checkpoint\n"
"      --max-steps N        stop after N optimizer steps in all (saving\n"
"                           with --save); --resume continues from there\n"
"      --plan               print the memory plan and exit\n"
"  -q, --quiet              no progress line\n"
"  -h, --help               this help\n", PREFETCH_MAX_DEPTH);
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
    OPT_MAX_STEPS,
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
    {"prefetch", required_argument, 0, OPT_PREFETCH},
    {"metrics", required_argument, 0, OPT_METRICS},
    {"log-every", required_argument, 0, OPT_LOG_EVERY},
    {"save", required_argument, 0, OPT_SAVE},
    {"save-every", required_argument, 0, OPT_SAVE_EVERY},
    {"resume", required_argument, 0, OPT_RESUME},
    {"plan", no_argument, 0, OPT_PLAN},
    {"max-steps", required_argument, 0, OPT_MAX_STEPS},
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
    int have_lr, have_wd, have_momentum;
    float lr, wd, momentum;
    int nesterov, quiet;
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
    case OPT_BATCH: return parse_int(a, 1, 1 << 20, &t->batch);
    case OPT_MICRO: return parse_int(a, 1, 1 << 20, &t->micro_batch);
    case OPT_HIDDEN:
        if (model_parse_hidden(&t->model, a, &err) == 0) return 0;
        die_usage("%s", err.msg); /* its own, more precise line */
        return -2;
    case OPT_SEED: {
        long v;
        if (units_parse_int(a, 0, 0x7fffffffffffffffL, &v)) return -1;
        t->seed = (uint64_t)v;
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
    case OPT_MAX_STEPS:
        if (units_parse_int(a, 1, 1L << 40, &v)) return -1;
        c->max_steps = (uint64_t)v;
        return 0;
    case 'q': p->quiet = 1; return 0;
    default: return 1;
    }
}

/* Applies the optimizer-dependent defaults and what was given. */
static void finish(run_config *c, const pending *p)
{
    trainer_config *t = &c->trainer;
    optim_config_init(&t->optim, (optim_kind)p->optimizer);
    t->sched.lr = p->have_lr ? p->lr
                  : p->optimizer == OPTIM_ADAMW ? 1e-3f : 0.05f;
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
    const trainer_config *t = &c->trainer;
    if (t->micro_batch && t->batch % t->micro_batch)
        return die_usage("--batch must be a multiple of --micro-batch%s", "");
    if (c->metrics && ((c->save && same_file(c->metrics, c->save)) ||
                       (c->resume && same_file(c->metrics, c->resume))))
        return die_usage("--metrics %s: is also the checkpoint file",
                         c->metrics);
    finish(c, &p);
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

int main(int argc, char **argv)
{
    tame_openblas(argv);
    fs_raise_open_files(); /* the loaders keep every shard open */
    run_config c;
    run_config_init(&c);
    int rc = parse_args(argc, argv, &c);
    if (rc) return rc;
    /* SA_RESTART: the loader's preads must not see EINTR */
    struct sigaction sa = {.sa_handler = on_signal, .sa_flags = SA_RESTART};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    c.stop = &g_stop;
    run_result res;
    st_error err = {0};
    setvbuf(stdout, NULL, _IOLBF, 0);
    rc = run_train(&c, stdout, &res, &err);
    if (rc < 0) {
        if (c.progress) fprintf(stderr, "\r\033[K");
        fprintf(stderr, "streamtrain: %s\n", err.msg[0] ? err.msg
                                                        : st_strerror(rc));
        /* 128 + the signal, as a shell reports it: 130 SIGINT, 143 SIGTERM */
        return rc == ST_ECLOSED ? 128 + (g_stop ? (int)g_stop : SIGINT) : 1;
    }
    if (c.plan_only) return 0;
    printf("final epochs=%d test_acc=%.4f test_loss=%.4f samples_per_s=%.0f\n",
           res.epochs, res.test_acc, res.test_loss, res.samples_per_s);
    return 0;
}
