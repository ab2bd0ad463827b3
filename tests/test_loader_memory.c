/* tests/test_loader_memory.c — the loader's memory bound: a 1 GiB pack,
 * generated here, streamed through a small ring in a child process whose
 * peak RSS must stay under ring + scratch + index + a stated slack. Its own
 * binary so that the sanitizer builds (which skip it) stay small. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "datasets/fsutil.h"
#include "loader/loader.h"
#include "fixtures.h"
#include "loader_fixture.h"

static long status_kib(const char *key)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, key, strlen(key)) == 0) v = atol(line + strlen(key));
    if (f) fclose(f);
    return v;
}

/* In a forked child: resets the RSS high-water mark, streams one epoch of
 * the big pack, and compares the peak RSS (getrusage) with the bound.
 * @return the exit status for the parent. */
static int stream_big_child(const char *dir, uint64_t n)
{
    int fd = open("/proc/self/clear_refs", O_WRONLY);
    if (fd >= 0) { /* "5": reset the peak RSS to the current RSS */
        if (write(fd, "5", 1) != 1) fprintf(stderr, "clear_refs failed\n");
        close(fd);
    }
    long base_kib = status_kib("VmRSS:");
    loader_config c;
    loader_config_default(&c);
    c.batch_size = 4;
    c.slots = 2;
    c.threads = 2;
    c.epochs = 1;
    c.io = LOADER_IO_AUTO; /* 1 GiB: more than LOADER_MMAP_AUTO_MAX: pread */
    loader *l = NULL;
    st_error err = {0};
    if (loader_open(dir, &c, &l, &err) != 0) {
        fprintf(stderr, "loader_open: %s\n", err.msg);
        return 2;
    }
    uint64_t seen = 0, sum = 0;
    loader_batch b;
    int rc;
    while ((rc = loader_next_batch(l, &b, &err)) == 0) {
        size_t bytes = (size_t)b.n * b.height * b.width * b.channels;
        for (size_t i = 0; i < bytes; i += 64) sum += b.pixels[i];
        seen += b.n;
        loader_release(l, &b, NULL);
    }
    loader_stats st;
    loader_get_stats(l, &st);
    loader_close(l);
    if (st.io != LOADER_IO_PREAD) {
        fprintf(stderr, "auto I/O chose mmap for 1 GiB\n");
        return 2;
    }
    if (rc != ST_EEND || seen != n) {
        fprintf(stderr, "stream: %s, %llu of %llu samples\n", err.msg,
                (unsigned long long)seen, (unsigned long long)n);
        return 2;
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    loader_memory m = loader_memory_of(&c, 256 * 256 * 4, 256 * 256 * 4, n, 0);
    const long slack_kib = 32 << 10;
    long bound_kib = base_kib + (long)(m.total >> 10) + slack_kib;
    printf("memory: streamed %llu MiB; peak RSS %ld KiB (VmHWM %ld KiB), "
           "RSS before open %ld KiB, bound = before + ring %zu KiB + scratch "
           "%zu KiB + index %zu KiB + slack %ld KiB = %ld KiB (checksum %llu)\n",
           (unsigned long long)(n * 256 * 256 * 4 >> 20), ru.ru_maxrss,
           status_kib("VmHWM:"), base_kib, m.ring >> 10, m.scratch >> 10,
           m.index >> 10, slack_kib, bound_kib, (unsigned long long)sum);
    fflush(stdout);
    return ru.ru_maxrss <= bound_kib ? 0 : 1;
}

static void test_memory_bounded_1gib(void **state)
{
    (void)state;
    if (UNDER_SANITIZER) {
        printf("skipped: the 1 GiB stream is too slow under a sanitizer and "
               "sanitizer shadow memory breaks the RSS bound\n");
        skip();
    }
    char *root = fx_tmpdir("loader-mem"), dir[4200];
    assert_non_null(root);
    snprintf(dir, sizeof dir, "%s/big", root);
    /* 4100 raw samples of 256x256x4 = 1.0 GiB in ~17 shards of 64 MiB */
    const uint64_t n = 4100;
    spec big = {CODEC_RAW, 256, 256, 4, (uint32_t)n, 0, 64u << 20, NONE};
    st_error err = {0};
    if (write_pack(dir, &big, &err) != 0) fail_msg("big pack: %s", err.msg);
    fflush(stdout);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) _exit(stream_big_child(dir, n));
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    fx_rmtree(root);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_memory_bounded_1gib),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
