/* datasets/fsutil.c — whole-file reads, atomic writes, directory fsync and
 * tree removal. */
#include "fsutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

int fs_errno_err(st_error *err, const char *path, const char *what)
{
    int e = errno;
    int code = e == ENOSPC || e == EDQUOT || e == EFBIG ? ST_ENOSPC : ST_EIO;
    return st_seterr(err, code, "%s: %s: %s", path, what, strerror(e));
}

int fs_read_file(const char *path, size_t max, void **data, size_t *len,
                 st_error *err)
{
    *data = NULL;
    *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return st_seterr(err, ST_ENOTFOUND, "%s: no such file", path);
        return fs_errno_err(err, path, "cannot open");
    }
    struct stat st;
    int rc = 0;
    uint8_t *buf = NULL;
    if (fstat(fd, &st) != 0) { rc = fs_errno_err(err, path, "stat failed"); goto out; }
    if (!S_ISREG(st.st_mode)) {
        rc = st_seterr(err, ST_EIO, "%s: not a regular file", path);
        goto out;
    }
    if ((uint64_t)st.st_size > max) {
        rc = st_seterr(err, ST_EFORMAT, "%s: %lld bytes is larger than the "
                       "%zu this file may hold", path, (long long)st.st_size, max);
        goto out;
    }
    size_t n = (size_t)st.st_size;
    buf = malloc(n ? n : 1);
    if (buf == NULL) { rc = st_seterr(err, ST_ENOMEM, "%s: out of memory", path); goto out; }
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) { rc = fs_errno_err(err, path, "read failed"); goto out; }
        if (r == 0) break;
        got += (size_t)r;
    }
    if (got != n) {
        rc = st_seterr(err, ST_EIO, "%s: file shrank while reading", path);
        goto out;
    }
    *data = buf;
    *len = n;
    buf = NULL;
out:
    free(buf);
    close(fd);
    return rc;
}

int fs_fsync_dir(const char *dir, st_error *err)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return fs_errno_err(err, dir, "cannot open directory");
    int rc = fsync(fd) == 0 ? 0 : fs_errno_err(err, dir, "fsync failed");
    close(fd);
    return rc;
}

void fs_parent_dir(const char *path, char *out, size_t cap)
{
    const char *slash = strrchr(path, '/');
    if (slash == NULL) {
        snprintf(out, cap, ".");
    } else if (slash == path) {
        snprintf(out, cap, "/");
    } else {
        snprintf(out, cap, "%.*s", (int)(slash - path), path);
    }
}

int fs_check_replaceable(const char *path, st_error *err)
{
    /* a rename replaces whatever path is: only ever a file or a link */
    struct stat st;
    if (lstat(path, &st) != 0 || S_ISREG(st.st_mode) || S_ISLNK(st.st_mode))
        return 0;
    return st_seterr(err, ST_EINVAL, "%s: %s; refusing to replace it", path,
                     S_ISDIR(st.st_mode) ? "is a directory"
                                         : "exists and is not a regular file");
}

void fs_sweep_stale_tmp(const char *path)
{
    char dir[PATH_MAX], prefix[PATH_MAX], full[PATH_MAX];
    fs_parent_dir(path, dir, sizeof dir);
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    int plen = snprintf(prefix, sizeof prefix, "%s.tmp-", base);
    DIR *d = opendir(dir);
    if (d == NULL) return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, prefix, (size_t)plen) != 0) continue;
        char *end;
        long pid = strtol(e->d_name + plen, &end, 10);
        if (*end != '\0' || pid <= 0 || pid == (long)getpid()) continue;
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue; /* alive */
        snprintf(full, sizeof full, "%s/%s", dir, e->d_name);
        struct stat st;
        if (lstat(full, &st) == 0 && S_ISREG(st.st_mode)) unlink(full);
    }
    closedir(d);
}

int fs_write_atomic(const char *path, const void *data, size_t len,
                    st_error *err)
{
    char tmp[PATH_MAX], dir[PATH_MAX];
    ST_TRY(fs_check_replaceable(path, err));
    snprintf(tmp, sizeof tmp, "%s.tmp-%ld", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return fs_errno_err(err, tmp, "cannot create");
    const char *p = data;
    size_t left = len;
    int rc = 0;
    while (left > 0 && rc == 0) {
        ssize_t n = write(fd, p, left);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            if (n == 0) errno = ENOSPC;
            rc = fs_errno_err(err, tmp, "write failed");
            break;
        }
        p += n;
        left -= (size_t)n;
    }
    if (rc == 0 && fsync(fd) != 0) rc = fs_errno_err(err, tmp, "fsync failed");
    if (close(fd) != 0 && rc == 0) rc = fs_errno_err(err, tmp, "close failed");
    if (rc == 0 && rename(tmp, path) != 0) rc = fs_errno_err(err, path, "rename failed");
    if (rc != 0) {
        unlink(tmp);
        return rc;
    }
    fs_parent_dir(path, dir, sizeof dir);
    return fs_fsync_dir(dir, err);
}

int fs_rmtree(const char *dir, st_error *err)
{
    /* dir itself may be a symbolic link: remove the link, never what it
     * points to (opendir would follow it) */
    struct stat top;
    if (lstat(dir, &top) != 0)
        return errno == ENOENT ? 0 : fs_errno_err(err, dir, "cannot stat");
    if (!S_ISDIR(top.st_mode))
        return unlink(dir) == 0 ? 0 : fs_errno_err(err, dir, "unlink failed");
    DIR *d = opendir(dir);
    if (d == NULL) return fs_errno_err(err, dir, "cannot open directory");
    int rc = 0;
    struct dirent *e;
    char path[PATH_MAX];
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        struct stat st;
        if (lstat(path, &st) != 0) continue;
        if (S_ISDIR(st.st_mode)) {
            if (fs_rmtree(path, err) != 0) rc = ST_EIO;
        } else if (unlink(path) != 0) {
            rc = fs_errno_err(err, path, "unlink failed");
        }
    }
    closedir(d);
    if (rmdir(dir) != 0 && rc == 0) rc = fs_errno_err(err, dir, "rmdir failed");
    return rc;
}

int fs_raise_open_files(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return -1;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0) return -1;
    }
    return rl.rlim_cur > (rlim_t)INT32_MAX ? INT32_MAX : (int)rl.rlim_cur;
}
