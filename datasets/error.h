/* datasets/error.h — the project's one error type.
 *
 * defines: st_error, st_errcode, st_strerror, st_seterr, ST_TRY
 *
 * Every library function in datasets/, loader/, gpu/ and train/ returns an
 * int: 0 on success or a negative st_errcode, and fills an st_error that the
 * caller owns with a one-line message naming the file, shard and record
 * involved. Library code never prints and never exits; main() does.
 */
#ifndef ST_ERROR_H
#define ST_ERROR_H

#include <stddef.h>

typedef enum st_errcode {
    ST_OK = 0,
    ST_EIO = -1,        /* read/write/open/fsync failed (errno text in msg) */
    ST_ENOMEM = -2,     /* an allocation failed or a memory cap was exceeded */
    ST_EFORMAT = -3,    /* bad magic, bad header, inconsistent counts */
    ST_EVERSION = -4,   /* a pack/shard/checkpoint version this build can't read */
    ST_ECHECKSUM = -5,  /* a checksum did not match */
    ST_EDECODE = -6,    /* zstd/png/gzip decode failed */
    ST_EINVAL = -7,     /* bad argument or option */
    ST_ENOTFOUND = -8,  /* missing file, split or class */
    ST_EEXIST = -9,     /* output already exists */
    ST_ENOSPC = -10,    /* disk full */
    ST_ECLOSED = -11,   /* handle closed while waiting */
    ST_EDEVICE = -12,   /* CUDA / cuBLAS / device error */
    ST_EEND = -13,      /* not an error: end of epoch */
    ST_EINTERNAL = -14, /* library misuse or a bug (pthread failure, ...) */
    ST_ETIMEDOUT = -15, /* a bounded wait ran out; the call may be retried */
} st_errcode;

typedef struct st_error {
    int code;       /* st_errcode of the first failure, 0 when none */
    char msg[512];  /* one line, no trailing newline */
} st_error;

/* @return a static description of code ("I/O error", ...). */
const char *st_strerror(int code);

/* Records the failure in err (when err is non-NULL and holds no earlier
 * failure) and returns code, so that `return st_seterr(err, ST_EIO, ...)`
 * reads naturally. The first failure wins: a cleanup error never hides the
 * cause. */
int st_seterr(st_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Like st_seterr, but overwrites any earlier message. */
int st_seterr_force(st_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Clears err to "no failure". */
void st_clearerr(st_error *err);

/* Propagates a negative return: `ST_TRY(shard_read(...));` */
#define ST_TRY(expr)                 \
    do {                             \
        int st__rc = (expr);         \
        if (st__rc < 0) return st__rc; \
    } while (0)

/* Checks a pthread call (which returns an errno value) and records
 * file:line, the expression and strerror. Evaluates to 0 or ST_EINTERNAL. */
#define ST_PTHREAD(err, expr) \
    st__pthread_check((err), (expr), #expr, __FILE__, __LINE__)
int st__pthread_check(st_error *err, int rc, const char *expr,
                      const char *file, int line);

#endif
