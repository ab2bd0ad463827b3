/* train/metrics.h — the metrics log: one JSON object per line (JSONL),
 * one per log interval and one per epoch.
 *
 * defines: metrics, metrics_row, metrics_open, metrics_close,
 *          metrics_write, metrics_host_rss
 *
 * Every object has: kind ("log" | "epoch" | "eval"), epoch, step,
 * elapsed_s, lr, loss, acc, samples_per_s, loader_wait_pct, h2d_gbps,
 * dev_mem_used, dev_mem_peak, host_rss; epoch rows add test_loss and
 * test_acc when an evaluation ran; an "eval" row (the weights --max-steps
 * stopped at, mid-epoch: epoch is the one in progress) has them, and its
 * train fields are 0; a job of several ranks adds world, allreduce_ms (host
 * milliseconds per step in the gradient all-reduce calls and waits, the
 * part backward did not hide; the max over ranks) and allreduce_pct (its
 * share of the step). loss, acc and samples_per_s are global (all ranks);
 * loader_wait_pct is the max over ranks. Lines are flushed as written, so a crashed run keeps its
 * log.
 */
#ifndef ST_TRAIN_METRICS_H
#define ST_TRAIN_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "datasets/error.h"

typedef struct metrics metrics;

typedef struct metrics_row {
    const char *kind;          /* "log" | "epoch" | "eval" */
    uint64_t epoch;            /* 1-based */
    uint64_t step;             /* optimizer steps so far */
    double elapsed_s;
    double lr;
    double loss, acc;          /* train, over the interval / epoch */
    double samples_per_s;
    double loader_wait_pct;    /* host time waiting for the loader, % */
    double h2d_gbps;           /* 0 on the CPU backend (no copies) */
    int world;                 /* ranks; > 1 adds the two below */
    double allreduce_ms;       /* per step, max over ranks */
    double allreduce_pct;      /* of the step's wall time */
    size_t dev_mem_used, dev_mem_peak, host_rss;
    int has_test;
    double test_loss, test_acc;
} metrics_row;

/* Opens path: truncated for a new run, appended to when append is set (a
 * resumed run continues its log). @return 0 or ST_EIO. */
int metrics_open(metrics **out, const char *path, int append, st_error *err);
void metrics_close(metrics *m); /* accepts NULL */
/* Appends one line. m may be NULL (no log): returns 0. @return 0 or ST_EIO. */
int metrics_write(metrics *m, const metrics_row *r, st_error *err);

/* Resident set size of this process in bytes (/proc/self/statm), 0 when
 * unknown. */
size_t metrics_host_rss(void);

#endif
