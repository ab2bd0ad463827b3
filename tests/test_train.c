/* tests/test_train.c — the trainer on the CPU backend, fed through the
 * prefetcher from generated batches: it learns a synthetic task, resumes
 * from a checkpoint to bitwise the same weights, evaluates without
 * touching the weights, refuses bad labels, and writes JSONL metrics; a
 * conv net's BN running statistics survive save and load, and evaluation
 * uses them.
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
#include <unistd.h>

#include "gpu/device.h"
#include "device_fixture.h"
#include "gpu/prefetch.h"
#include "train/metrics.h"
#include "train/trainer.h"

enum { IN = 64, CLASSES = 4, B = 32 };


/* Class k lights up rows 2k and 2k+1 of an 8x8 image, plus noise. */
static void make_data(uint8_t *px, int32_t *lab, int n, uint64_t seed)
{
    uint64_t s = seed;
    for (int i = 0; i < n; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        int k = (int)((s >> 33) % CLASSES);
        lab[i] = k;
        for (int p = 0; p < IN; p++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            int noise = (int)((s >> 33) % 120);
            int row = p / 8;
            px[(size_t)i * IN + p] =
                (uint8_t)(noise + ((row / 2) == k ? 40 : 0));
        }
    }
}

static void config(trainer_config *c)
{
    trainer_config_init(c);
    c->model = (model_spec){.in_c = 1, .in_h = 8, .in_w = 8,
                            .classes = CLASSES, .n_hidden = 1,
                            .hidden = {32}, .in_scale = 1.0f / 255};
    c->batch = B;
}

/* Runs batches [first, last) of the data through prefetch + train. */
static void run_steps(trainer *t, const uint8_t *px, const int32_t *lab,
                      int first, int last)
{
    st_error err = {0};
    prefetch *pf = trainer_prefetch(t);
    for (int k = first; k < last; k++) {
        prefetch_batch b;
        void *tag;
        assert_int_equal(prefetch_submit(pf, px + (size_t)k * B * IN,
                                         lab + k * B, B, NULL, &b, &err), 0);
        assert_int_equal(trainer_train_batch(t, &b, &err), 0);
        assert_int_equal(prefetch_consumed(pf, &b, &err), 0);
        while (prefetch_poll(pf, 0, &tag, &err) == 1) {
        }
    }
}

static double eval_acc(trainer *t, const uint8_t *px, const int32_t *lab,
                       int nb)
{
    st_error err = {0};
    gpu_loss_stats st;
    for (int k = 0; k < nb; k++) {
        prefetch_batch b = {.pixels = px + (size_t)k * B * IN,
                            .labels = lab + k * B, .n = B};
        assert_int_equal(trainer_eval_batch(t, &b, &err), 0);
    }
    assert_int_equal(trainer_read_stats(t, 1, 1, &st, &err), 0);
    assert_int_equal(st.count, (long long)nb * B);
    return (double)st.correct / st.count;
}

static void test_learns(void **state)
{
    (void)state;
    enum { NB = 40 };
    uint8_t *px = malloc((size_t)NB * B * IN), *tpx = malloc(10 * B * IN);
    int32_t *lab = malloc(sizeof(int32_t) * NB * B), tlab[10 * B];
    make_data(px, lab, NB * B, 1);
    make_data(tpx, tlab, 10 * B, 2);
    gpu_device *d = cpu_dev();
    trainer_config c;
    config(&c);
    trainer *t = NULL;
    st_error err = {0};
    assert_int_equal(trainer_create(&t, d, &c, &err), 0);
    double before = eval_acc(t, tpx, tlab, 10);
    for (int epoch = 0; epoch < 3; epoch++) run_steps(t, px, lab, 0, NB);
    gpu_loss_stats st;
    assert_int_equal(trainer_read_stats(t, 0, 1, &st, &err), 0);
    assert_int_equal(st.count, 3 * NB * B);
    double after = eval_acc(t, tpx, tlab, 10);
    print_message("synthetic task: test accuracy %.3f -> %.3f (chance %.2f)\n",
                  before, after, 1.0 / CLASSES);
    assert_true(after > 0.9);
    assert_int_equal(trainer_step(t), 3 * NB);
    trainer_destroy(t);
    gpu_device_destroy(d);
    free(px), free(tpx), free(lab);
}

/* Uninterrupted 12 steps vs 5 steps + save + fresh trainer + load + 7:
 * bitwise the same weights and optimizer state (AdamW + cosine, so the
 * step counter matters too). */
static void test_resume_bitwise(void **state)
{
    (void)state;
    enum { NB = 12, CUT = 5 };
    uint8_t *px = malloc((size_t)NB * B * IN);
    int32_t *lab = malloc(sizeof(int32_t) * NB * B);
    make_data(px, lab, NB * B, 3);
    trainer_config c;
    config(&c);
    optim_config_init(&c.optim, OPTIM_ADAMW);
    c.sched.kind = SCHED_COSINE;
    c.sched.lr = 0.01f;
    c.sched.warmup = 2;
    c.sched.total = NB;
    c.micro_batch = 8;
    char path[] = "/tmp/st-train-ckpt-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);

    st_error err = {0};
    float *wa = NULL, *sa = NULL, *wb = NULL, *sb = NULL;
    size_t np = 0, ns = 0;
    for (int run = 0; run < 2; run++) {
        gpu_device *d = cpu_dev();
        trainer *t = NULL;
        assert_int_equal(trainer_create(&t, d, &c, &err), 0);
        np = model_param_count(trainer_model(t));
        ns = optim_state_floats(OPTIM_ADAMW, np);
        float *w = malloc(np * 4), *s = malloc(ns * 4);
        if (run == 0) {
            run_steps(t, px, lab, 0, CUT);
            trainer_stream ts = {.seed = 77, .epoch = 1, .next_batch = CUT,
                                 .samples = 1234};
            assert_int_equal(trainer_save(t, path, &ts, &err), 0);
            run_steps(t, px, lab, CUT, NB);
            wa = w, sa = s;
        } else {
            ckpt_meta got;
            assert_int_equal(trainer_load(t, path, &got, &err), 0);
            assert_int_equal(got.step, CUT);
            assert_int_equal(got.seed, 77);
            assert_int_equal(got.epoch, 1);
            assert_int_equal(got.next_batch, CUT);
            assert_int_equal(got.batch, c.batch);
            assert_int_equal(got.samples, 1234);
            assert_int_equal(trainer_step(t), CUT);
            run_steps(t, px, lab, (int)got.next_batch, NB);
            wb = w, sb = s;
        }
        assert_int_equal(trainer_get_params(t, w, s, &err), 0);
        trainer_destroy(t);
        gpu_device_destroy(d);
    }
    assert_memory_equal(wa, wb, np * 4);
    assert_memory_equal(sa, sb, ns * 4);

    /* another model shape refuses the checkpoint by name */
    c.model.hidden[0] = 16;
    gpu_device *d = cpu_dev();
    trainer *t = NULL;
    assert_int_equal(trainer_create(&t, d, &c, &err), 0);
    ckpt_meta got;
    assert_int_equal(trainer_load(t, path, &got, &err), ST_EINVAL);
    assert_non_null(strstr(err.msg, "is model 'mlp: dense32,relu,dense4'"));
    assert_non_null(strstr(err.msg, "this run is 'mlp: dense16,relu,dense4'"));
    trainer_destroy(t);
    gpu_device_destroy(d);
    unlink(path);
    free(wa), free(sa), free(wb), free(sb), free(px), free(lab);
}

static void test_eval_and_bad_labels(void **state)
{
    (void)state;
    uint8_t px[B * IN];
    int32_t lab[B];
    make_data(px, lab, B, 4);
    gpu_device *d = cpu_dev();
    trainer_config c;
    config(&c);
    c.micro_batch = 16;
    trainer *t = NULL;
    st_error err = {0};
    assert_int_equal(trainer_create(&t, d, &c, &err), 0);
    size_t np = model_param_count(trainer_model(t));
    float *w0 = malloc(np * 4), *w1 = malloc(np * 4);
    trainer_get_params(t, w0, NULL, &err);
    prefetch_batch b = {.pixels = px, .labels = lab, .n = 20};
    assert_int_equal(trainer_eval_batch(t, &b, &err), 0);
    trainer_get_params(t, w1, NULL, &err);
    assert_memory_equal(w0, w1, np * 4);
    gpu_loss_stats st;
    assert_int_equal(trainer_read_stats(t, 1, 1, &st, &err), 0);
    assert_int_equal(st.count, 20);
    assert_true(st.loss_sum > 0);
    assert_int_equal(trainer_read_stats(t, 1, 0, &st, &err), 0);
    assert_int_equal(st.count, 0);

    b.n = B + 1;
    assert_int_equal(trainer_train_batch(t, &b, &err), ST_EINVAL);
    lab[3] = CLASSES;
    b.n = B;
    st_clearerr(&err);
    assert_int_equal(trainer_train_batch(t, &b, &err), 0);
    assert_int_equal(trainer_read_stats(t, 0, 1, &st, &err), ST_EFORMAT);
    assert_non_null(strstr(err.msg, "outside 0..3"));
    free(w0), free(w1);
    trainer_destroy(t);
    gpu_device_destroy(d);
}

static void test_metrics_jsonl(void **state)
{
    (void)state;
    char path[] = "/tmp/st-metrics-XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    metrics *m = NULL;
    st_error err = {0};
    assert_int_equal(metrics_open(&m, path, 0, &err), 0);
    metrics_row r = {.kind = "log", .epoch = 1, .step = 50, .loss = 0.5,
                     .acc = 0.8, .samples_per_s = 1e5, .host_rss = 1};
    assert_int_equal(metrics_write(m, &r, &err), 0);
    r.kind = "epoch";
    r.has_test = 1;
    r.test_acc = 0.87;
    r.loss = 0.0 / 0.0; /* NaN must not break the JSON */
    assert_int_equal(metrics_write(m, &r, &err), 0);
    metrics_close(m);
    metrics_close(NULL);
    assert_int_equal(metrics_write(NULL, &r, &err), 0);
    /* append (a resumed run) keeps the first line; a new run truncates */
    assert_int_equal(metrics_open(&m, path, 1, &err), 0);
    assert_int_equal(metrics_write(m, &r, &err), 0);
    metrics_close(m);
    char text[2048] = {0};
    FILE *f = fopen(path, "r");
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    assert_true(n > 0);
    int lines = 0;
    for (size_t i = 0; i < n; i++) lines += text[i] == '\n';
    assert_int_equal(lines, 3);
    assert_int_equal(metrics_open(&m, path, 0, &err), 0);
    metrics_close(m);
    f = fopen(path, "r");
    assert_int_equal(fread(text, 1, sizeof text - 1, f), 0);
    fclose(f);
    unlink(path);
    const char *keys[] = {"\"kind\":\"log\"", "\"loss\":0.500000",
                          "\"samples_per_s\":", "\"loader_wait_pct\":",
                          "\"h2d_gbps\":", "\"dev_mem_used\":",
                          "\"dev_mem_peak\":", "\"host_rss\":1",
                          "\"test_acc\":0.870000", "\"loss\":null"};
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++)
        if (strstr(text, keys[i]) == NULL) fail_msg("missing %s in %s", keys[i], text);
    assert_true(metrics_host_rss() > 0);
    assert_int_equal(metrics_open(&m, "/nonexistent/m.jsonl", 0, &err), ST_EIO);
}

/* Eval loss and accuracy of batch [0, B) of the data (CPU: pixels are
 * read in place). */
static gpu_loss_stats eval_of(trainer *t, const uint8_t *px,
                              const int32_t *lab)
{
    st_error err = {0};
    prefetch_batch b = {.pixels = px, .labels = lab, .n = B};
    assert_int_equal(trainer_eval_batch(t, &b, &err), 0);
    gpu_loss_stats st;
    assert_int_equal(trainer_read_stats(t, 1, 1, &st, &err), 0);
    return st;
}

static void test_bn_state_survives(void **state)
{
    (void)state;
    enum { NB = 6 };
    uint8_t *px = malloc((size_t)NB * B * IN);
    int32_t *lab = malloc(sizeof(int32_t) * NB * B);
    make_data(px, lab, NB * B, 9);
    trainer_config c;
    config(&c);
    snprintf(c.model.arch, sizeof c.model.arch, "conv8k3,bn,relu,maxpool2,"
             "res(conv8k3,bn,relu,conv8k3,bn),gap,dense");
    c.micro_batch = 16;
    char path[] = "/tmp/st-train-bn-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    st_error err = {0};
    gpu_device *d = cpu_dev();
    trainer *a = NULL, *b = NULL, *fresh = NULL;
    assert_int_equal(trainer_create(&a, d, &c, &err), 0);
    run_steps(a, px, lab, 0, NB);
    trainer_stream ts = {.seed = 1, .epoch = 0, .next_batch = NB,
                         .samples = NB * B};
    assert_int_equal(trainer_save(a, path, &ts, &err), 0);
    size_t nr = model_state_count(trainer_model(a));
    assert_int_equal(nr, 2 * (8 + 8 + 8));
    float *ra = malloc(nr * 4), *rb = malloc(nr * 4), *rf = malloc(nr * 4);
    assert_int_equal(trainer_get_model_state(a, ra, &err), 0);
    gpu_loss_stats ea = eval_of(a, px, lab);
    gpu_device *d2 = cpu_dev(), *d3 = cpu_dev();
    assert_int_equal(trainer_create(&b, d2, &c, &err), 0);
    ckpt_meta got;
    assert_int_equal(trainer_load(b, path, &got, &err), 0);
    assert_int_equal(trainer_get_model_state(b, rb, &err), 0);
    assert_memory_equal(ra, rb, nr * 4);
    gpu_loss_stats eb = eval_of(b, px, lab);
    assert_true(ea.loss_sum == eb.loss_sum);
    assert_int_equal(ea.correct, eb.correct);
    /* evaluation changed nothing, and it does use the statistics: the
     * same weights with the initial ones (mean 0, var 1) score otherwise */
    assert_int_equal(trainer_get_model_state(b, rb, &err), 0);
    assert_memory_equal(ra, rb, nr * 4);
    assert_int_equal(trainer_create(&fresh, d3, &c, &err), 0);
    assert_int_equal(trainer_load(fresh, path, &got, &err), 0);
    float *init = calloc(nr, 4);
    model_init_state(trainer_model(fresh), init);
    assert_int_equal(trainer_get_model_state(fresh, rf, &err), 0);
    memcpy(model_state(trainer_model(fresh)), init, nr * 4); /* CPU memory */
    gpu_loss_stats ef = eval_of(fresh, px, lab);
    assert_true(fabs(ef.loss_sum - ea.loss_sum) > 1e-3);
    free(init), free(ra), free(rb), free(rf), free(px), free(lab);
    trainer_destroy(fresh), trainer_destroy(b), trainer_destroy(a);
    gpu_device_destroy(d3), gpu_device_destroy(d2), gpu_device_destroy(d);
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bn_state_survives),
        cmocka_unit_test(test_learns),
        cmocka_unit_test(test_resume_bitwise),
        cmocka_unit_test(test_eval_and_bad_labels),
        cmocka_unit_test(test_metrics_jsonl),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
