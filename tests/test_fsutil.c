/* tests/test_fsutil.c — the file-system helpers' promises about what they
 * will not touch: fs_rmtree never follows a symbolic link, fs_write_atomic
 * never replaces a device, FIFO or directory, and fs_sweep_stale_tmp
 * clears the temporary files of dead writers (and only those).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "datasets/fsutil.h"

static char g_dir[64];

static int setup(void **state)
{
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/tmp/st-fsutil-XXXXXX");
    assert_non_null(mkdtemp(g_dir));
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    fs_rmtree(g_dir, NULL);
    return 0;
}

static void touch(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static int exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

static void test_rmtree_keeps_link_targets(void **state)
{
    (void)state;
    char target[128], file[160], link[128], tree[128], inner[160];
    snprintf(target, sizeof target, "%s/target", g_dir);
    snprintf(file, sizeof file, "%s/keep.txt", target);
    snprintf(link, sizeof link, "%s/link", g_dir);
    snprintf(tree, sizeof tree, "%s/tree", g_dir);
    snprintf(inner, sizeof inner, "%s/inner-link", tree);
    assert_int_equal(mkdir(target, 0755), 0);
    touch(file, "user data");
    assert_int_equal(symlink(target, link), 0);
    assert_int_equal(mkdir(tree, 0755), 0);
    assert_int_equal(symlink(target, inner), 0);
    st_error err = {0};
    /* a link given as the tree: the link goes, the target stays */
    assert_int_equal(fs_rmtree(link, &err), 0);
    assert_false(exists(link));
    assert_true(exists(file));
    /* a link inside the tree: the same */
    assert_int_equal(fs_rmtree(tree, &err), 0);
    assert_false(exists(tree));
    assert_true(exists(file));
}

static void test_write_atomic_refuses_special_files(void **state)
{
    (void)state;
    char fifo[128], dir[128], file[128];
    snprintf(fifo, sizeof fifo, "%s/fifo", g_dir);
    snprintf(dir, sizeof dir, "%s/adir", g_dir);
    snprintf(file, sizeof file, "%s/file", g_dir);
    assert_int_equal(mkfifo(fifo, 0644), 0);
    assert_int_equal(mkdir(dir, 0755), 0);
    st_error err = {0};
    assert_int_equal(fs_write_atomic(fifo, "x", 1, &err), ST_EINVAL);
    assert_non_null(strstr(err.msg, "not a regular file"));
    struct stat st;
    assert_int_equal(lstat(fifo, &st), 0);
    assert_true(S_ISFIFO(st.st_mode));
    st_clearerr(&err);
    assert_int_equal(fs_write_atomic(dir, "x", 1, &err), ST_EINVAL);
    assert_int_equal(lstat(dir, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    /* a regular file is replaced */
    touch(file, "old");
    st_clearerr(&err);
    assert_int_equal(fs_write_atomic(file, "new", 3, &err), 0);
    void *data;
    size_t len;
    assert_int_equal(fs_read_file(file, 64, &data, &len, &err), 0);
    assert_memory_equal(data, "new", 3);
    free(data);
}

static void test_write_atomic_sweeps_dead_writers(void **state)
{
    (void)state;
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) _exit(0);
    assert_int_equal(waitpid(child, NULL, 0), child); /* now dead */
    char path[128], dead[160], alive[160];
    snprintf(path, sizeof path, "%s/run.ckpt", g_dir);
    snprintf(dead, sizeof dead, "%s.tmp-%ld", path, (long)child);
    snprintf(alive, sizeof alive, "%s.tmp-%ld", path, (long)getppid());
    touch(dead, "left by kill -9");
    touch(alive, "another writer, still running");
    st_error err = {0};
    fs_sweep_stale_tmp(path);
    assert_int_equal(fs_write_atomic(path, "ckpt", 4, &err), 0);
    assert_false(exists(dead));
    assert_true(exists(alive));
    assert_true(exists(path));
}

static void test_raise_open_files(void **state)
{
    (void)state;
    struct rlimit rl;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
    int got = fs_raise_open_files();
    assert_true(got > 0);
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
    assert_true(rl.rlim_cur == rl.rlim_max);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rmtree_keeps_link_targets),
        cmocka_unit_test(test_write_atomic_refuses_special_files),
        cmocka_unit_test(test_write_atomic_sweeps_dead_writers),
        cmocka_unit_test(test_raise_open_files),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
