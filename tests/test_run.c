/* tests/test_run.c — whole runs on a small generated pack, CPU backend:
 * it learns (accuracy far above chance), a run stopped mid-epoch and
 * resumed ends with bitwise the same weights and optimizer state as an
 * uninterrupted one, bad input is refused with a clear error, and the
 * streamtrain CLI (next to this test binary) keeps its contract. With a
 * GPU (or cuemu), the same run on CUDA agrees with the CPU's. Conv nets on
 * a generated pack of 32x32x3 images (colour x orientation classes): they
 * learn far above chance, resume bitwise (BN running statistics
 * included), and a bad spec or a checkpoint of another architecture gets
 * one clear line.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "datasets/bytes.h"
#include "datasets/fsutil.h"
#include "datasets/pack.h"
#include "datasets/shard.h"
#include "gpu/device.h"
#include "train/ckpt.h"
#include "train/run.h"

enum { H = 8, W = 8, CLASSES = 4, NTRAIN = 1024, NTEST = 256, B = 32 };

static char g_dir[256], g_pack[300], g_cpack[300];

enum { CH = 32, CC = 3 };   /* the conv pack: 32x32x3 */

/* Class k of the conv pack: bit 0 picks the stripes' orientation
 * (horizontal or vertical), bit 1 the colour channel they are brightest
 * in (red or blue); random phase and period, noise in every channel. */
static void csample(uint64_t i, uint64_t salt, uint8_t *px, int32_t *lab)
{
    uint64_t s = (i + 1) * 0x9E3779B97F4A7C15ull ^ salt;
    s ^= s >> 29;
    int k = (int)(s % CLASSES), vertical = k & 1, ch = k & 2 ? 2 : 0;
    int period = 4 + (int)((s >> 8) % 5), phase = (int)((s >> 16) % 8);
    *lab = k;
    for (int y = 0; y < CH; y++)
        for (int x = 0; x < CH; x++)
            for (int c = 0; c < CC; c++) {
                s = s * 6364136223846793005ull + 1442695040888963407ull;
                int t = ((vertical ? x : y) + phase) % period < period / 2;
                int v = (int)((s >> 33) % 120) + (t && c == ch ? 110 : 0);
                px[(y * CH + x) * CC + c] = (uint8_t)v;
            }
}

static int write_csplit(pack_writer *w, const char *name, int n,
                        uint64_t salt)
{
    st_error err = {0};
    static uint8_t px[CH * CH * CC];
    int32_t lab;
    if (pack_writer_begin_split(w, name, &err)) return -1;
    for (int i = 0; i < n; i++) {
        csample((uint64_t)i, salt, px, &lab);
        if (pack_writer_add(w, px, sizeof px, lab, CH, CH, &err)) return -1;
    }
    return pack_writer_end_split(w, &err);
}

static void make_conv_pack(void)
{
    snprintf(g_cpack, sizeof g_cpack, "%s/cpack", g_dir);
    const char *classes[CLASSES] = {"red-h", "red-v", "blue-h", "blue-v"};
    pack_writer_config pc = {.codec = CODEC_RAW, .height = CH, .width = CH,
                             .channels = CC, .shard_bytes = 1 << 20,
                             .nclasses = CLASSES, .classes = classes};
    pack_writer *w = NULL;
    st_error err = {0};
    assert_int_equal(pack_writer_open(g_cpack, &pc, &w, &err), 0);
    assert_int_equal(write_csplit(w, "train", NTRAIN, 3), 0);
    assert_int_equal(write_csplit(w, "test", NTEST, 4), 0);
    if (pack_writer_commit(w, &err)) fail_msg("%s", err.msg);
}

/* Class k brightens rows 2k, 2k+1 of an 8x8 image over uniform noise. */
static void sample(uint64_t i, uint64_t salt, uint8_t *px, int32_t *lab)
{
    uint64_t s = (i + 1) * 0x9E3779B97F4A7C15ull ^ salt;
    s ^= s >> 29;
    int k = (int)(s % CLASSES);
    *lab = k;
    for (int p = 0; p < H * W; p++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        px[p] = (uint8_t)((s >> 33) % 150 + ((p / W) / 2 == k ? 60 : 0));
    }
}

static int write_split(pack_writer *w, const char *name, int n, uint64_t salt)
{
    st_error err = {0};
    uint8_t px[H * W];
    int32_t lab;
    if (pack_writer_begin_split(w, name, &err)) return -1;
    for (int i = 0; i < n; i++) {
        sample((uint64_t)i, salt, px, &lab);
        if (pack_writer_add(w, px, sizeof px, lab, H, W, &err)) return -1;
    }
    return pack_writer_end_split(w, &err);
}

static int make_pack(void **state)
{
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/tmp/st-run-XXXXXX");
    assert_non_null(mkdtemp(g_dir));
    snprintf(g_pack, sizeof g_pack, "%s/pack", g_dir);
    const char *classes[CLASSES] = {"a", "b", "c", "d"};
    pack_writer_config pc = {.codec = CODEC_RAW, .height = H, .width = W,
                             .channels = 1, .shard_bytes = 16 << 10,
                             .nclasses = CLASSES, .classes = classes};
    pack_writer *w = NULL;
    st_error err = {0};
    assert_int_equal(pack_writer_open(g_pack, &pc, &w, &err), 0);
    assert_int_equal(write_split(w, "train", NTRAIN, 1), 0);
    assert_int_equal(write_split(w, "test", NTEST, 2), 0);
    if (pack_writer_commit(w, &err)) fail_msg("%s", err.msg);
    make_conv_pack();
    return 0;
}

static int remove_pack(void **state)
{
    (void)state;
    fs_rmtree(g_dir, NULL);
    return 0;
}

static void config(run_config *c)
{
    run_config_init(c);
    c->data = g_pack;
    c->epochs = 3;
    c->trainer.batch = B;
    c->trainer.model.n_hidden = 1;
    c->trainer.model.hidden[0] = 32;
    c->device.kind = GPU_KIND_CPU;
    c->device.cpu_threads = 1;
    c->loader_threads = 2;
    c->log_every = 10;
}

static FILE *sink(void)
{
    FILE *f = fopen("/dev/null", "w");
    assert_non_null(f);
    return f;
}

/* A small text file (a metrics log), NUL-terminated; the caller frees. */
static char *read_text(const char *path)
{
    void *text;
    size_t len;
    st_error err = {0};
    assert_int_equal(fs_read_file(path, 1 << 20, &text, &len, &err), 0);
    char *t = realloc(text, len + 1);
    assert_non_null(t);
    t[len] = '\0';
    return t;
}

static void test_learns(void **state)
{
    (void)state;
    run_config c;
    config(&c);
    char metrics[320];
    snprintf(metrics, sizeof metrics, "%s/m.jsonl", g_dir);
    c.metrics = metrics;
    run_result res;
    st_error err = {0};
    FILE *out = sink();
    if (run_train(&c, out, &res, &err) != 0) fail_msg("%s", err.msg);
    fclose(out);
    print_message("end-to-end: test accuracy %.3f after %d epochs (chance "
                  "%.2f), %.0f samples/s\n", res.test_acc, res.epochs,
                  1.0 / CLASSES, res.samples_per_s);
    assert_int_equal(res.epochs, 3);
    assert_int_equal(res.steps, 3 * NTRAIN / B);
    assert_true(res.has_test);
    assert_true(res.test_acc > 0.9);
    /* metrics: log rows and one epoch row per epoch */
    char *text = read_text(metrics);
    int epochs = 0;
    for (const char *p = text; (p = strstr(p, "\"kind\":\"epoch\"")); p++)
        epochs++;
    assert_int_equal(epochs, 3);
    assert_non_null(strstr(text, "\"kind\":\"log\""));
    assert_non_null(strstr(text, "\"test_acc\":"));
    free(text);
}

/* Reads a checkpoint's parameters + state as raw bytes (after the
 * header, before the checksum). */
static uint8_t *ckpt_body(const char *path, size_t *len)
{
    void *data;
    st_error err = {0};
    assert_int_equal(fs_read_file(path, 1 << 26, &data, len, &err), 0);
    *len -= CKPT_HEADER + 8;
    memmove(data, (uint8_t *)data + CKPT_HEADER, *len);
    return data;
}

/* Two checkpoints hold bitwise the same weights and optimizer state. */
static void assert_same_ckpt(const char *a, const char *b)
{
    size_t la, lb;
    uint8_t *ba = ckpt_body(a, &la), *bb = ckpt_body(b, &lb);
    assert_int_equal(la, lb);
    assert_memory_equal(ba, bb, la);
    free(ba), free(bb);
}

static void test_resume_bitwise(void **state)
{
    (void)state;
    char a[320], b[320];
    snprintf(a, sizeof a, "%s/a.ckpt", g_dir);
    snprintf(b, sizeof b, "%s/b.ckpt", g_dir);
    run_config c;
    config(&c);
    optim_config_init(&c.trainer.optim, OPTIM_ADAMW);
    c.trainer.sched.lr = 3e-3f;
    c.trainer.sched.kind = SCHED_COSINE;
    c.trainer.micro_batch = 8;
    run_result res;
    st_error err = {0};
    FILE *out = sink();
    c.save = a;
    if (run_train(&c, out, &res, &err) != 0) fail_msg("%s", err.msg);
    /* the same run, stopped mid-epoch 2 (32 batches an epoch) ... */
    c.save = b;
    c.max_steps = 45;
    if (run_train(&c, out, &res, &err) != 0) fail_msg("%s", err.msg);
    assert_true(res.stopped);
    assert_int_equal(res.steps, 45);
    assert_int_equal(res.epochs, 1);
    /* ... then resumed to the end */
    c.max_steps = 0;
    c.resume = b;
    if (run_train(&c, out, &res, &err) != 0) fail_msg("%s", err.msg);
    fclose(out);
    assert_int_equal(res.epochs, 3);
    assert_int_equal(res.steps, 3 * NTRAIN / B);
    assert_same_ckpt(a, b);
}

/* The staged CPU device copies every batch into device buffers as a GPU
 * does (prefetcher copies, events, early release of the host batch); the
 * arithmetic is the CPU's, so the weights must come out bitwise equal. */
static void test_staged_bitwise(void **state)
{
    (void)state;
    char a[320], b[320];
    snprintf(a, sizeof a, "%s/plain.ckpt", g_dir);
    snprintf(b, sizeof b, "%s/staged.ckpt", g_dir);
    run_config c;
    config(&c);
    c.epochs = 2;
    c.trainer.micro_batch = 8;
    c.trainer.depth = 3;
    run_result res;
    st_error err = {0};
    FILE *out = sink();
    c.save = a;
    if (run_train(&c, out, &res, &err) != 0) fail_msg("%s", err.msg);
    double acc = res.test_acc;
    c.save = b;
    c.device.cpu_staged = 1;
    if (run_train(&c, out, &res, &err) != 0) fail_msg("%s", err.msg);
    fclose(out);
    assert_true(res.test_acc == acc);
    assert_same_ckpt(a, b);
}

/* The same pipeline on CUDA when a GPU (or cuemu, `make EMU=1`) is there:
 * the loader's pinned ring feeds the prefetcher's copies. It learns as the
 * CPU run does, and a run stopped mid-epoch resumes to the same end.
 * ST_REQUIRE_GPU=1 turns the skip into a failure. */
static void test_cuda_run(void **state)
{
    (void)state;
    char why[256];
    if (!gpu_cuda_probe(why, sizeof why)) {
        const char *req = getenv("ST_REQUIRE_GPU");
        if (req && req[0] && strcmp(req, "0") != 0)
            fail_msg("ST_REQUIRE_GPU is set but %s", why);
        print_message("skipped: %s\n", why);
        skip();
        return;
    }
    char ck[320];
    snprintf(ck, sizeof ck, "%s/cuda.ckpt", g_dir);
    run_config c;
    config(&c);
    c.epochs = 2;
    c.trainer.micro_batch = 8;
    c.trainer.depth = 3;
    run_result cpu, gpu, resumed;
    st_error err = {0};
    FILE *out = sink();
    if (run_train(&c, out, &cpu, &err) != 0) fail_msg("%s", err.msg);
    c.device.kind = GPU_KIND_CUDA;
    if (run_train(&c, out, &gpu, &err) != 0) fail_msg("%s", err.msg);
    print_message("CUDA: test accuracy %.4f, loss %.4f (CPU %.4f, %.4f)\n",
                  gpu.test_acc, gpu.test_loss, cpu.test_acc, cpu.test_loss);
    assert_int_equal(gpu.steps, 2 * NTRAIN / B);
    assert_true(gpu.test_acc > 0.9);
    assert_true(fabs(gpu.test_acc - cpu.test_acc) <= 0.02);
    assert_true(fabs(gpu.test_loss - cpu.test_loss) <= 0.02);
    c.save = ck;
    c.max_steps = 45;
    if (run_train(&c, out, &resumed, &err) != 0) fail_msg("%s", err.msg);
    assert_true(resumed.stopped);
    c.max_steps = 0;
    c.resume = ck;
    if (run_train(&c, out, &resumed, &err) != 0) fail_msg("%s", err.msg);
    fclose(out);
    assert_int_equal(resumed.steps, gpu.steps);
    assert_true(fabs(resumed.test_loss - gpu.test_loss) <= 0.02);
}

/* A plan larger than the device: the cudaMalloc failure names the
 * request and the free memory. Only on cuemu, whose device size CUEMU_MEM
 * sets (a real GPU would hold this plan). */
static void test_cuda_too_big(void **state)
{
    (void)state;
    gpu_device_config dc;
    gpu_device_config_init(&dc);
    dc.kind = GPU_KIND_CUDA;
    gpu_device *d = NULL;
    st_error err = {0};
    int emu = gpu_device_create(&d, &dc, NULL, 0, &err) == 0 &&
              strstr(gpu_device_name(d), "cuemu") != NULL;
    gpu_device_destroy(d);
    if (!emu) {
        print_message("skipped: needs cuemu (make EMU=1), whose size "
                      "CUEMU_MEM sets\n");
        skip();
        return;
    }
    setenv("CUEMU_MEM", "300000000", 1); /* 31.5 MB free after the context */
    run_config c;
    config(&c);
    c.device.kind = GPU_KIND_CUDA;
    c.device_mem_auto = 0;
    c.device_mem = (size_t)1 << 30;
    c.trainer.model.n_hidden = 2;
    c.trainer.model.hidden[0] = c.trainer.model.hidden[1] = 2048; /* ~50 MB */
    run_result res;
    st_clearerr(&err);
    FILE *out = sink();
    int rc = run_train(&c, out, &res, &err);
    fclose(out);
    unsetenv("CUEMU_MEM");
    assert_int_equal(rc, ST_ENOMEM);
    assert_non_null(strstr(err.msg, "cudaMalloc("));
    assert_non_null(strstr(err.msg, "--device-mem 1.00 GiB is more than the "
                                    "30.10 MiB free"));
}

/* Stopping never loses an evaluation, and a resume with nothing left to
 * train changes nothing and still reports the weights' accuracy. */
static void test_stops_keep_evaluations(void **state)
{
    (void)state;
    char ck[320];
    snprintf(ck, sizeof ck, "%s/stops.ckpt", g_dir);
    run_config c;
    config(&c);
    c.save = ck;
    c.max_steps = NTRAIN / B; /* exactly the end of epoch 1 */
    run_result res;
    st_error err = {0};
    FILE *out = sink();
    if (run_train(&c, out, &res, &err) != 0) fail_msg("%s", err.msg);
    assert_true(res.stopped);
    assert_int_equal(res.epochs, 1);
    assert_true(res.has_test && res.test_acc > 0.5); /* epoch 1 evaluated */
    double acc1 = res.test_acc;
    /* resumed with a --max-steps already reached: no step is taken */
    c.resume = ck;
    c.max_steps = 5;
    if (run_train(&c, out, &res, &err) != 0) fail_msg("%s", err.msg);
    assert_int_equal(res.steps, NTRAIN / B);
    assert_true(res.has_test && res.test_acc == acc1); /* the same weights */
    /* resumed with fewer --epochs than done: evaluates, trains nothing */
    c.max_steps = 0;
    c.epochs = 1;
    c.save = NULL;
    if (run_train(&c, out, &res, &err) != 0) fail_msg("%s", err.msg);
    assert_int_equal(res.steps, NTRAIN / B);
    assert_true(res.has_test);
    assert_true(res.test_acc == acc1);
    fclose(out);
}

/* --max-steps in the middle of an epoch evaluates the final weights: the
 * final result is theirs (not nothing, nor an older epoch's), and the
 * checkpoint saved there evaluates to the same numbers when resumed. */
static void test_stop_evaluates_final_weights(void **state)
{
    (void)state;
    char ck[320], mx[320];
    snprintf(ck, sizeof ck, "%s/midstop.ckpt", g_dir);
    snprintf(mx, sizeof mx, "%s/midstop.jsonl", g_dir);
    run_config c;
    config(&c);
    c.save = ck;
    c.metrics = mx;
    c.max_steps = NTRAIN / B + NTRAIN / B / 2; /* half-way through epoch 2 */
    run_result res;
    st_error err = {0};
    FILE *out = sink();
    if (run_train(&c, out, &res, &err) != 0) fail_msg("%s", err.msg);
    assert_true(res.stopped);
    assert_int_equal(res.epochs, 1);
    assert_true(res.has_test && res.test_acc > 0.5 && isfinite(res.test_loss));
    double acc = res.test_acc, loss = res.test_loss;
    /* and the metrics log ends with it, an "eval" row of epoch 2 */
    char *text = read_text(mx);
    const char *ev = strstr(text, "{\"kind\":\"eval\",\"epoch\":2,");
    assert_non_null(ev);
    assert_non_null(strstr(ev, "\"test_acc\":"));
    assert_null(strchr(ev, '\n') ? strstr(strchr(ev, '\n'), "\"kind\"") : NULL);
    free(text);
    c.metrics = NULL;
    c.resume = ck;
    c.save = NULL;
    if (run_train(&c, out, &res, &err) != 0) fail_msg("%s", err.msg);
    assert_int_equal(res.steps, NTRAIN / B + NTRAIN / B / 2);
    assert_true(res.has_test);
    assert_true(res.test_acc == acc && res.test_loss == loss);
    fclose(out);
}

static void test_bad_input(void **state)
{
    (void)state;
    run_config c;
    run_result res;
    st_error err = {0};
    FILE *out = sink();
    config(&c);
    c.data = "/nonexistent/pack";
    assert_true(run_train(&c, out, &res, &err) < 0);
    assert_non_null(strstr(err.msg, "/nonexistent/pack"));

    config(&c);
    c.trainer.micro_batch = 12; /* 32 is no multiple of 12 */
    st_clearerr(&err);
    assert_int_equal(run_train(&c, out, &res, &err), ST_EINVAL);
    assert_non_null(strstr(err.msg, "multiple"));

    config(&c);
    c.eval_split = "val";
    st_clearerr(&err);
    assert_int_equal(run_train(&c, out, &res, &err), ST_ENOTFOUND);
    assert_non_null(strstr(err.msg, "'val'"));

    /* a checkpoint of another shape */
    char ck[320];
    snprintf(ck, sizeof ck, "%s/shape.ckpt", g_dir);
    config(&c);
    c.epochs = 1;
    c.save = ck;
    c.max_steps = 2;
    st_clearerr(&err);
    assert_int_equal(run_train(&c, out, &res, &err), 0);
    c.trainer.model.hidden[0] = 16;
    c.resume = ck;
    c.save = NULL;
    st_clearerr(&err);
    assert_int_equal(run_train(&c, out, &res, &err), ST_EINVAL);
    assert_non_null(strstr(err.msg, "'mlp: dense32,relu,dense4' on 8x8x1, "
                           "sgd"));
    /* the same shape with another --batch: the position would not map */
    c.trainer.model.hidden[0] = 32;
    c.trainer.batch = 64;
    st_clearerr(&err);
    assert_int_equal(run_train(&c, out, &res, &err), ST_EINVAL);
    assert_non_null(strstr(err.msg, "--batch 32"));

    /* a budget too small for micro-batch 1 */
    config(&c);
    c.device_mem_auto = 0;
    c.device_mem = 1000;
    st_clearerr(&err);
    assert_int_equal(run_train(&c, out, &res, &err), ST_ENOMEM);
    assert_non_null(strstr(err.msg, "micro-batch 1"));

    /* --save into a missing directory: refused before any training */
    config(&c);
    c.save = "/nonexistent/dir/run.ckpt";
    st_clearerr(&err);
    assert_int_equal(run_train(&c, out, &res, &err), ST_ENOTFOUND);
    assert_non_null(strstr(err.msg, "/nonexistent/dir"));
    assert_int_equal(res.steps, 0);
    fclose(out);
}

/* ---- conv nets ------------------------------------------------------------ */

#define CONV_SPEC "conv8k3s2,bn,relu,conv16k3,bn,relu,maxpool2,res(conv16k3," \
                  "bn,relu,conv16k3,bn,relu),gap,dense"

static void conv_config(run_config *c)
{
    config(c);
    c->data = g_cpack;
    snprintf(c->trainer.model.arch, sizeof c->trainer.model.arch, "%s",
             CONV_SPEC);
    c->trainer.sched.lr = 0.1f;
    c->trainer.optim.weight_decay = 5e-4f;
    c->trainer.model.label_smoothing = 0.1f;
}

static void test_conv_learns(void **state)
{
    (void)state;
    run_config c;
    conv_config(&c);
    c.trainer.model.tta_flip = 1;
    run_result res;
    st_error err = {0};
    FILE *out = sink();
    if (run_train(&c, out, &res, &err) != 0) fail_msg("%s", err.msg);
    fclose(out);
    print_message("conv net on 32x32x3: test accuracy %.3f after %d epochs "
                  "(chance %.2f), %.0f samples/s\n", res.test_acc,
                  res.epochs, 1.0 / CLASSES, res.samples_per_s);
    assert_int_equal(res.steps, 3 * NTRAIN / B);
    assert_true(res.test_acc > 0.9);
}

/* Stopped mid-epoch 2 and resumed: bitwise the same weights, optimizer
 * state and BN running statistics (all in the checkpoint's body) as the
 * uninterrupted run; BN under accumulation (micro-batch 8). */
static void test_conv_resume_bitwise(void **state)
{
    (void)state;
    char a[320], b[320];
    snprintf(a, sizeof a, "%s/ca.ckpt", g_dir);
    snprintf(b, sizeof b, "%s/cb.ckpt", g_dir);
    run_config c;
    conv_config(&c);
    c.epochs = 2;
    c.trainer.micro_batch = 8;
    run_result res;
    st_error err = {0};
    FILE *out = sink();
    c.save = a;
    if (run_train(&c, out, &res, &err) != 0) fail_msg("%s", err.msg);
    double acc = res.test_acc;
    c.save = b;
    c.max_steps = 45;
    if (run_train(&c, out, &res, &err) != 0) fail_msg("%s", err.msg);
    assert_true(res.stopped);
    c.max_steps = 0;
    c.resume = b;
    if (run_train(&c, out, &res, &err) != 0) fail_msg("%s", err.msg);
    fclose(out);
    assert_int_equal(res.steps, 2 * NTRAIN / B);
    assert_true(res.test_acc == acc);
    assert_same_ckpt(a, b);
    /* the file holds the spec and R = 2 x (8 + 16 + 16 + 16) floats */
    size_t len;
    uint8_t *body = ckpt_body(a, &len);
    assert_memory_equal(body, "conv8k3s2p1,bn,relu,conv16k3s1p1", 32);
    free(body);
    void *data;
    assert_int_equal(fs_read_file(a, 1 << 26, &data, &len, &err), 0);
    assert_int_equal(st_get_u64((uint8_t *)data + 160), 2 * (8 + 3 * 16));
    free(data);
}

static void test_conv_bad_input(void **state)
{
    (void)state;
    run_config c;
    run_result res;
    st_error err = {0};
    FILE *out = sink();
    /* a checkpoint of another architecture is refused by name */
    char ck[320];
    snprintf(ck, sizeof ck, "%s/arch.ckpt", g_dir);
    conv_config(&c);
    c.epochs = 1;
    c.save = ck;
    c.max_steps = 2;
    assert_int_equal(run_train(&c, out, &res, &err), 0);
    snprintf(c.trainer.model.arch, sizeof c.trainer.model.arch, "cnn:8,16");
    c.resume = ck;
    c.save = NULL;
    st_clearerr(&err);
    assert_int_equal(run_train(&c, out, &res, &err), ST_EINVAL);
    assert_non_null(strstr(err.msg, "is model 'conv8k3s2p1,bn,relu,"));
    assert_non_null(strstr(err.msg, "this run is 'cnn: conv8k3s1p1,bn,relu,"));
    assert_null(strchr(err.msg, '\n'));
    /* the same network written as its preset resumes: same canonical form */
    conv_config(&c);
    snprintf(c.trainer.model.arch, sizeof c.trainer.model.arch,
             "conv8k3s2p1,bn,relu,conv16k3s1p1,bn,relu,maxpool2s2p0,res("
             "conv16k3s1p1,bn,relu,conv16k3s1p1,bn,relu),gap,dense4");
    c.epochs = 1;
    c.max_steps = 3;
    c.resume = ck;
    st_clearerr(&err);
    if (run_train(&c, out, &res, &err) != 0) fail_msg("%s", err.msg);
    assert_int_equal(res.steps, 3);
    /* shapes are checked against the pack: 32x32 input, pooled to 8x8 */
    conv_config(&c);
    snprintf(c.trainer.model.arch, sizeof c.trainer.model.arch,
             "maxpool2,maxpool2,conv8k9p0,dense");
    st_clearerr(&err);
    assert_int_equal(run_train(&c, out, &res, &err), ST_EINVAL);
    assert_non_null(strstr(err.msg, "--model: item 3 'conv8k9s1p0': kernel "
                           "9x9 is larger than its 8x8 input"));
    fclose(out);
}

/* ---- the CLI, when it was built next to this test ----------------------- */

static char g_cli[4096];

static int have_cli(void)
{
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) return 0;
    self[n] = '\0';
    snprintf(g_cli, sizeof g_cli, "%s/../streamtrain", dirname(self));
    if (access(g_cli, X_OK) == 0) return 1;
    print_message("skipped: %s not built\n", g_cli);
    return 0;
}

/* Runs the CLI with args; returns its exit status, output in *text. */
static int cli(const char *args, char **text)
{
    char cmd[8192], log[320];
    snprintf(log, sizeof log, "%s/cli.log", g_dir);
    snprintf(cmd, sizeof cmd, "%s %s >%s 2>&1", g_cli, args, log);
    int st = system(cmd);
    size_t len;
    st_error err = {0};
    void *data = NULL;
    if (fs_read_file(log, 1 << 20, &data, &len, &err) == 0) {
        *text = realloc(data, len + 1);
        (*text)[len] = '\0';
    } else {
        *text = strdup("");
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_cli(void **state)
{
    (void)state;
    if (!have_cli()) { skip(); return; }
    char *t, args[1024];
    assert_int_equal(cli("--help", &t), 0);
    assert_non_null(strstr(t, "--micro-batch"));
    assert_non_null(strstr(t, "--device-mem"));
    free(t);
    assert_int_equal(cli("--epochs 0 --data x", &t), 2);
    assert_non_null(strstr(t, "--epochs"));
    free(t);
    assert_int_equal(cli("--data /nonexistent", &t), 1);
    free(t);
    /* an unknown option: one line of ours, not getopt's as well */
    assert_int_equal(cli("--data x --bogus", &t), 2);
    assert_non_null(strstr(t, "'--bogus'"));
    int lines = 0;
    for (const char *q = t; *q; q++) lines += *q == '\n';
    assert_int_equal(lines, 1);
    free(t);
    char why[256];
    if (!gpu_cuda_probe(why, sizeof why)) {
        snprintf(args, sizeof args, "--data %s --device cuda", g_pack);
        assert_int_equal(cli(args, &t), 1);
        assert_non_null(strstr(t, "--device cuda"));
        free(t);
    }
    snprintf(args, sizeof args, "--data %s --epochs 1 --batch 32 --hidden 32 "
             "--device cpu --blas-threads 1", g_pack);
    assert_int_equal(cli(args, &t), 0);
    assert_non_null(strstr(t, "memory plan"));
    const char *last = strstr(t, "final epochs=1 test_acc=");
    assert_non_null(last);
    assert_non_null(strstr(last, "samples_per_s="));
    assert_null(strchr(last, '\r')); /* not a TTY: plain lines */
    free(t);
    /* --tf32 is CUDA's: the CPU runs, saying it computes in fp32 */
    snprintf(args, sizeof args, "--data %s --max-steps 2 --batch 32 --hidden "
             "32 --device cpu --tf32", g_pack);
    assert_int_equal(cli(args, &t), 0);
    assert_non_null(strstr(t, "note: --tf32 is for the CUDA backend"));
    free(t);
    snprintf(args, sizeof args, "--data %s --plan --device-mem 64M", g_pack);
    assert_int_equal(cli(args, &t), 0);
    assert_non_null(strstr(t, "budget"));
    assert_null(strstr(t, "final"));
    free(t);
    /* conv nets: the default model, --plan per layer */
    snprintf(args, sizeof args, "--data %s --plan --model resnet:8,8,16,16",
             g_cpack);
    assert_int_equal(cli(args, &t), 0);
    assert_non_null(strstr(t, "model: resnet: conv8k3s1p1,bn,relu,"));
    assert_non_null(strstr(t, "per layer (micro-batch 64"));
    assert_non_null(strstr(t, "res "));
    assert_non_null(strstr(t, "normalize: "));
    free(t);
    snprintf(args, sizeof args, "--data %s --epochs 1 --max-steps 3 --device "
             "cpu --model cnn:4,8 --tta flip --label-smoothing 0.2 "
             "--normalize 0.5,0.4,0.3:0.2,0.2,0.2", g_cpack);
    assert_int_equal(cli(args, &t), 0);
    assert_non_null(strstr(t, "label smoothing 0.2, tta flip"));
    free(t);
    /* bad specs: one line, exit 2 for syntax, 1 for a shape */
    const char *bad[][3] = {
        {"--model conv0k3,dense", "2",
         "--model: item 1 'conv0k3': width 0: expected 1..4096"},
        {"--model conv8,pool2,dense", "2", "item 2 'pool2': unknown layer"},
        {"--model cnn --widths 0", "2", "width 0: expected 1..4096"},
        {"--normalize 0.5,0.5:0.2", "2", "--normalize 0.5,0.5:0.2: expected"},
        {"--tta mirror", "2", "--tta mirror: expected flip or none"},
        {"--model cnn --hidden 64", "2", "--hidden applies to --model mlp"},
        {"--model conv8k33,dense", "2", "kernel 33: expected 1..32"},
        {"--model maxpool4,conv8k9p0,dense", "1", "item 2 'conv8k9s1p0': "
         "kernel 9x9 is larger than its 8x8 input"},
        {"--model maxpool8,maxpool4,maxpool2,dense", "1", "item 3 "
         "'maxpool2s2p0': a 2x2 pool on a 1x1 input (padding 0): the shape "
         "reaches zero"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(args, sizeof args, "--data %s --epochs 1 --device cpu %s",
                 g_cpack, bad[i][0]);
        int rc = cli(args, &t);
        if (rc != atoi(bad[i][1]) || strstr(t, bad[i][2]) == NULL)
            fail_msg("streamtrain %s: exit %d, '%s'", bad[i][0], rc, t);
        int nl = 0;
        for (const char *q = strstr(t, "streamtrain: "); q && *q; q++)
            nl += *q == '\n';
        assert_int_equal(nl, 1);
        free(t);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_learns),
        cmocka_unit_test(test_resume_bitwise),
        cmocka_unit_test(test_staged_bitwise),
        cmocka_unit_test(test_stops_keep_evaluations),
        cmocka_unit_test(test_stop_evaluates_final_weights),
        cmocka_unit_test(test_cuda_run),
        cmocka_unit_test(test_cuda_too_big),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_conv_learns),
        cmocka_unit_test(test_conv_resume_bitwise),
        cmocka_unit_test(test_conv_bad_input),
        cmocka_unit_test(test_cli),
    };
    return cmocka_run_group_tests(tests, make_pack, remove_pack);
}
