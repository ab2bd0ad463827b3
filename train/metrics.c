/* train/metrics.c — JSONL metrics writer and the host RSS probe. */
#include "train/metrics.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct metrics {
    FILE *f;      /* owned */
    char *path;   /* owned, for messages */
};

int metrics_open(metrics **out, const char *path, int append, st_error *err)
{
    *out = NULL;
    metrics *m = calloc(1, sizeof *m);
    if (m == NULL) return st_seterr(err, ST_ENOMEM, "metrics: out of memory");
    m->path = strdup(path);
    if (m->path == NULL) {
        free(m);
        return st_seterr(err, ST_ENOMEM, "metrics: out of memory");
    }
    m->f = fopen(path, append ? "a" : "w");
    if (m->f == NULL) {
        int rc = st_seterr(err, ST_EIO, "--metrics %s: %s", path,
                           strerror(errno));
        free(m->path);
        free(m);
        return rc;
    }
    *out = m;
    return 0;
}

void metrics_close(metrics *m)
{
    if (m == NULL) return;
    fclose(m->f);
    free(m->path);
    free(m);
}

/* JSON has no NaN/Inf: write null for them. */
static void num(FILE *f, const char *key, double v, const char *fmt)
{
    fprintf(f, ",\"%s\":", key);
    if (isfinite(v)) fprintf(f, fmt, v);
    else fputs("null", f);
}

int metrics_write(metrics *m, const metrics_row *r, st_error *err)
{
    if (m == NULL) return 0;
    FILE *f = m->f;
    fprintf(f, "{\"kind\":\"%s\",\"epoch\":%llu,\"step\":%llu", r->kind,
            (unsigned long long)r->epoch, (unsigned long long)r->step);
    num(f, "elapsed_s", r->elapsed_s, "%.3f");
    num(f, "lr", r->lr, "%.6g");
    num(f, "loss", r->loss, "%.6f");
    num(f, "acc", r->acc, "%.6f");
    num(f, "samples_per_s", r->samples_per_s, "%.1f");
    num(f, "loader_wait_pct", r->loader_wait_pct, "%.3f");
    num(f, "h2d_gbps", r->h2d_gbps, "%.3f");
    if (r->world > 1) {
        fprintf(f, ",\"world\":%d", r->world);
        num(f, "allreduce_ms", r->allreduce_ms, "%.3f");
        num(f, "allreduce_pct", r->allreduce_pct, "%.2f");
    }
    fprintf(f, ",\"dev_mem_used\":%zu,\"dev_mem_peak\":%zu,\"host_rss\":%zu",
            r->dev_mem_used, r->dev_mem_peak, r->host_rss);
    if (r->has_test) {
        num(f, "test_loss", r->test_loss, "%.6f");
        num(f, "test_acc", r->test_acc, "%.6f");
    }
    fputs("}\n", f);
    if (fflush(f) != 0 || ferror(f))
        return st_seterr(err, ST_EIO, "--metrics %s: write: %s", m->path,
                         strerror(errno));
    return 0;
}

/* open/read into a stack buffer: no stdio allocation inside the loop. */
size_t metrics_host_rss(void)
{
    char buf[128];
    int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return 0;
    buf[n] = '\0';
    unsigned long long size = 0, res = 0;
    if (sscanf(buf, "%llu %llu", &size, &res) != 2) return 0;
    return (size_t)res * (size_t)sysconf(_SC_PAGESIZE);
}
