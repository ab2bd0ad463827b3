/* datasets/fsutil.h — small file-system helpers shared by the pack writer,
 * the checkpoint writer and the tools: whole-file reads, atomic writes,
 * directory fsync and removal of a directory tree we created.
 *
 * defines: fs_errno_err, fs_read_file, fs_write_atomic, fs_fsync_dir, fs_rmtree,
 *          fs_parent_dir, fs_raise_open_files, fs_sweep_stale_tmp,
 *          fs_check_replaceable
 */
#ifndef ST_FSUTIL_H
#define ST_FSUTIL_H

#include <stddef.h>

#include "error.h"

/* Records errno as "PATH: WHAT: strerror" with ST_ENOSPC for a full disk
 * (ENOSPC, EDQUOT, EFBIG) and ST_EIO otherwise. @return that code. */
int fs_errno_err(st_error *err, const char *path, const char *what);

/* Reads all of path into a new malloc'd buffer (*data, *len), refusing
 * files larger than max bytes.
 * @return 0, ST_ENOTFOUND (no such file), ST_EIO or ST_EFORMAT (too big). */
int fs_read_file(const char *path, size_t max, void **data, size_t *len,
                 st_error *err);

/* Writes data to path atomically: "path.tmp-PID", fsync, rename, fsync of
 * the directory. A failure leaves any previous file at path untouched.
 * A path that exists as anything but a file or a symbolic link (a device,
 * FIFO, socket or directory) is refused, never replaced. Allocates
 * nothing: checkpoints are written from inside the training loop.
 * @return 0 or ST_EIO / ST_ENOSPC / ST_EINVAL. */
int fs_write_atomic(const char *path, const void *data, size_t len,
                    st_error *err);

/* The rule fs_write_atomic applies, for callers that check before their
 * first write: 0 when path is missing, a file or a symbolic link, else
 * ST_EINVAL naming what it is. */
int fs_check_replaceable(const char *path, st_error *err);

/* Removes the "path.tmp-PID" files fs_write_atomic left behind in
 * processes that no longer exist (a kill -9 mid-write): each can be as
 * large as a checkpoint. Files of live processes are left alone. Call it
 * once, before the writes (it allocates: opendir). */
void fs_sweep_stale_tmp(const char *path);

/* fsyncs a directory so that renames inside it are durable. */
int fs_fsync_dir(const char *dir, st_error *err);

/* Removes dir and everything below it. No symbolic link is followed: when
 * dir itself is one, the link is removed, not its target.
 * @return 0 or ST_EIO. */
int fs_rmtree(const char *dir, st_error *err);

/* Writes the parent directory of path into out (cap bytes): "." when path
 * has no slash. */
void fs_parent_dir(const char *path, char *out, size_t cap);

/* Raises this process's soft limit of open files to its hard limit: a
 * reader keeps every shard of a pack open, and packs of more than ~1,000
 * shards exist. Called by the tools' main()s. @return the new limit, or
 * -1 when it cannot be read or set. */
int fs_raise_open_files(void);

#endif
