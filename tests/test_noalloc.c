/* tests/test_noalloc.c — "nothing is allocated inside the training loop",
 * measured: this binary interposes malloc and its relatives (glibc's
 * __libc_* underneath) and counts every call made, by any thread, while a
 * whole run_train runs on a small generated pack. The count must not grow
 * with the number of steps or of epochs: setup may allocate, the loop may
 * not. Not built for the sanitizer runs, which interpose malloc themselves.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "datasets/fsutil.h"
#include "loader_fixture.h"
#include "train/run.h"

/* ---- the counting allocator ---------------------------------------------- */

extern void *__libc_malloc(size_t n);
extern void *__libc_calloc(size_t n, size_t size);
extern void *__libc_realloc(void *p, size_t n);
extern void *__libc_memalign(size_t align, size_t n);

static atomic_int g_armed;
static atomic_long g_allocs;

static void count(void)
{
    if (atomic_load_explicit(&g_armed, memory_order_relaxed))
        atomic_fetch_add_explicit(&g_allocs, 1, memory_order_relaxed);
}

void *malloc(size_t n)
{
    count();
    return __libc_malloc(n);
}

void *calloc(size_t n, size_t size)
{
    count();
    return __libc_calloc(n, size);
}

void *realloc(void *p, size_t n)
{
    count();
    return __libc_realloc(p, n);
}

void *aligned_alloc(size_t align, size_t n)
{
    count();
    return __libc_memalign(align, n);
}

int posix_memalign(void **out, size_t align, size_t n)
{
    count();
    void *p = __libc_memalign(align, n);
    if (p == NULL) return ENOMEM;
    *out = p;
    return 0;
}

void *memalign(size_t align, size_t n)
{
    count();
    return __libc_memalign(align, n);
}

/* ---- runs ------------------------------------------------------------------ */

enum { NTRAIN = 4096, NTEST = 512, B = 32 }; /* 128 batches an epoch */

static char g_dir[256], g_pack[300];

static int make_pack(void **state)
{
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/tmp/st-noalloc-XXXXXX");
    assert_non_null(mkdtemp(g_dir));
    snprintf(g_pack, sizeof g_pack, "%s/pack", g_dir);
    spec sp = {.codec = CODEC_ZSTD, .h = 8, .w = 8, .c = 1,
               .n_train = NTRAIN, .n_test = NTEST, .shard_bytes = 64 << 10,
               .garbage = NONE};
    st_error err = {0};
    if (write_pack(g_pack, &sp, &err)) fail_msg("%s", err.msg);
    return 0;
}

static int remove_pack(void **state)
{
    (void)state;
    fs_rmtree(g_dir, NULL);
    return 0;
}

/* Allocation calls made during one whole run (setup, loop, teardown) on
 * the CPU (kind GPU_KIND_CPU, staged or not) or on CUDA. */
static long allocs_of(const char *arch, int epochs, uint64_t max_steps,
                      int staged, gpu_kind kind)
{
    run_config c;
    run_config_init(&c);
    c.data = g_pack;
    c.epochs = epochs;
    c.max_steps = max_steps;
    c.trainer.batch = B;
    c.trainer.model.n_hidden = 1;
    c.trainer.model.hidden[0] = 32;
    if (arch) { /* a conv net with every kind of layer, TTA, smoothing */
        snprintf(c.trainer.model.arch, sizeof c.trainer.model.arch, "%s",
                 arch);
        c.trainer.model.tta_flip = 1;
        c.trainer.model.label_smoothing = 0.1f;
        c.trainer.micro_batch = B / 2;
    }
    c.device.kind = kind;
    c.device.cpu_threads = 1;
    c.device.cpu_staged = staged;
    c.loader_threads = 2;
    c.log_every = 10;
    char metrics[320], save[320];
    snprintf(metrics, sizeof metrics, "%s/m.jsonl", g_dir);
    snprintf(save, sizeof save, "%s/run.ckpt", g_dir);
    c.metrics = metrics;
    c.save = save;
    c.save_every = 25;
    FILE *out = fopen("/dev/null", "w");
    assert_non_null(out);
    fputs("warm the stream's buffer\n", out);
    run_result res;
    st_error err = {0};
    atomic_store(&g_allocs, 0);
    atomic_store(&g_armed, 1);
    int rc = run_train(&c, out, &res, &err);
    atomic_store(&g_armed, 0);
    fclose(out);
    if (rc != 0) fail_msg("%s", err.msg);
    return atomic_load(&g_allocs);
}

static long allocs_of_run(int epochs, uint64_t max_steps, int staged,
                          gpu_kind kind)
{
    return allocs_of(NULL, epochs, max_steps, staged, kind);
}

/* Widths 16 and 32: with 8 filters, OpenBLAS 0.3.21's SkylakeX small-
 * matrix kernel (sgemm_small_kernel_b0_nn, picked for some row-major NN
 * products with M*N*K <= 1e6 and N of 8 or 24 on AVX-512 machines) mallocs
 * a packing buffer on every call; that is gpu/cpu_backend.c's to avoid,
 * and this test would catch it with conv8. */
#define CONV_NET "conv16k3,bn,relu,maxpool2,res(conv16k3,bn,relu,conv16k3,bn," \
                 "relu),resp(conv32k3s2,bn,gelu,conv32k3,bn),gelu,gap,dense"

static void test_conv_epochs_allocate_nothing(void **state)
{
    (void)state;
    allocs_of(CONV_NET, 1, 5, 0, GPU_KIND_CPU);
    long one = allocs_of(CONV_NET, 1, 0, 0, GPU_KIND_CPU),
         three = allocs_of(CONV_NET, 3, 0, 0, GPU_KIND_CPU);
    print_message("conv net: %ld allocation calls with 1 epoch, %ld with 3 "
                  "(BN, pooling, residual blocks, TTA, checkpoints)\n", one,
                  three);
    assert_true(one > 0);
    assert_int_equal(one, three);
    long staged = allocs_of(CONV_NET, 1, 0, 1, GPU_KIND_CPU),
         staged3 = allocs_of(CONV_NET, 2, 0, 1, GPU_KIND_CPU);
    assert_int_equal(staged, staged3);
}

static void test_steps_allocate_nothing(void **state)
{
    (void)state;
    allocs_of_run(1, 5, 0, GPU_KIND_CPU); /* first use of anything lazy: not measured */
    long few = allocs_of_run(1, 20, 0, GPU_KIND_CPU),
         many = allocs_of_run(1, 120, 0, GPU_KIND_CPU);
    print_message("allocation calls in a whole run: %ld with 20 steps, %ld "
                  "with 120\n", few, many);
    assert_true(few > 0); /* the counter works: setup allocates */
    assert_int_equal(few, many);
}

static void test_epochs_allocate_nothing(void **state)
{
    (void)state;
    long one = allocs_of_run(1, 0, 0, GPU_KIND_CPU),
         three = allocs_of_run(3, 0, 0, GPU_KIND_CPU);
    print_message("allocation calls in a whole run: %ld with 1 epoch, %ld "
                  "with 3 (evaluation, logs and checkpoints included)\n", one,
                  three);
    assert_int_equal(one, three);
}

static void test_staged_steps_allocate_nothing(void **state)
{
    (void)state;
    long few = allocs_of_run(1, 20, 1, GPU_KIND_CPU),
         many = allocs_of_run(2, 0, 1, GPU_KIND_CPU);
    print_message("staged device: %ld allocation calls with 20 steps, %ld "
                  "with 2 epochs\n", few, many);
    assert_int_equal(few, many);
}

/* The same on CUDA, when a GPU is visible: our host code and the CUDA
 * runtime's calls in the loop (events, async copies, launches, cuBLAS). */
static void test_cuda_steps_allocate_nothing(void **state)
{
    (void)state;
    char why[256];
    if (!gpu_cuda_probe(why, sizeof why)) {
        print_message("skipped: %s\n", why);
        skip();
        return;
    }
    /* a whole epoch first, evaluation included, so that lazy module
     * loading is over; then runs with the same shapes (each ends with an
     * evaluation) that differ only in their number of epochs (1 and 2:
     * on cuemu, in make test, an epoch here takes ~5 s) */
    allocs_of_run(1, 0, 0, GPU_KIND_CUDA);
    long one = allocs_of_run(1, 0, 0, GPU_KIND_CUDA),
         two = allocs_of_run(2, 0, 0, GPU_KIND_CUDA);
    print_message("CUDA: %ld allocation calls with 1 epoch, %ld with 2\n",
                  one, two);
    assert_int_equal(one, two);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_steps_allocate_nothing),
        cmocka_unit_test(test_epochs_allocate_nothing),
        cmocka_unit_test(test_staged_steps_allocate_nothing),
        cmocka_unit_test(test_conv_epochs_allocate_nothing),
        cmocka_unit_test(test_cuda_steps_allocate_nothing),
    };
    return cmocka_run_group_tests(tests, make_pack, remove_pack);
}
