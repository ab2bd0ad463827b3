/* datasets/error.c — st_error formatting and the pthread check helper. */
#include "error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *st_strerror(int code)
{
    switch (code) {
    case ST_OK: return "success";
    case ST_EIO: return "I/O error";
    case ST_ENOMEM: return "out of memory";
    case ST_EFORMAT: return "bad format";
    case ST_EVERSION: return "unsupported version";
    case ST_ECHECKSUM: return "checksum mismatch";
    case ST_EDECODE: return "decode error";
    case ST_EINVAL: return "invalid argument";
    case ST_ENOTFOUND: return "not found";
    case ST_EEXIST: return "already exists";
    case ST_ENOSPC: return "no space left on device";
    case ST_ECLOSED: return "closed";
    case ST_EDEVICE: return "device error";
    case ST_EEND: return "end of epoch";
    case ST_EINTERNAL: return "internal error";
    case ST_ETIMEDOUT: return "timed out";
    default: return "unknown error";
    }
}

static int vset(st_error *err, int force, int code, const char *fmt, va_list ap)
{
    if (err == NULL || (!force && err->code != 0)) return code;
    err->code = code;
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    for (char *p = err->msg; *p; p++)
        if (*p == '\n') *p = ' ';
    return code;
}

int st_seterr(st_error *err, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vset(err, 0, code, fmt, ap);
    va_end(ap);
    return code;
}

int st_seterr_force(st_error *err, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vset(err, 1, code, fmt, ap);
    va_end(ap);
    return code;
}

void st_clearerr(st_error *err)
{
    if (err == NULL) return;
    err->code = 0;
    err->msg[0] = '\0';
}

int st__pthread_check(st_error *err, int rc, const char *expr,
                      const char *file, int line)
{
    if (rc == 0) return 0;
    return st_seterr(err, ST_EINTERNAL, "%s:%d: %s failed: %s", file, line,
                     expr, strerror(rc));
}
