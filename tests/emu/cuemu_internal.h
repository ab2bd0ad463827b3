/* tests/emu/cuemu_internal.h — what the three parts of cuemu share:
 * the queued operation, the lock, and the memory checks.
 *
 * defines: cuemu_op, cuemu_gemm_args, cuemu_host_poll, cuemu_lock/unlock,
 *          cuemu_op_push,
 *          cuemu_range_kind, cuemu_set_last_error, cuemu_fatal, cuemu_grid_run, cuemu_gemm_run
 *
 * Every public call takes the one process-wide lock (cuemu_lock); queued
 * work runs under it too, so at most one host thread is ever "the device".
 */
#ifndef CUEMU_INTERNAL_H
#define CUEMU_INTERNAL_H

#include "cublas_v2.h"
#include "cuda_runtime.h"

enum cuemu_op_kind { OP_KERNEL, OP_COPY, OP_SET, OP_RECORD, OP_WAIT, OP_GEMM,
                     OP_HOST };

/* OP_HOST: host_poll(op->args) runs when the op reaches the head of its
 * stream, and again at each later forcing while it answers 0 ("not done"):
 * the stream stops there meanwhile, as behind a kernel spinning on a flag
 * (tests/emu/cuemu_nccl.cpp's reductions). Device memory is readable while
 * it runs. */
typedef int (*cuemu_host_poll)(void *state);

struct cuemu_gemm_args {
    int ta, tb, m, n, k;
    float alpha, beta;
    const float *A, *B;
    float *C;
    int lda, ldb, ldc;
};

struct cuemu_op {
    int kind;
    uint64_t seq; /* position in its stream, from 1 */
    /* OP_KERNEL */
    const char *name;
    dim3 grid, block;
    cuemu_tramp run;
    alignas(16) unsigned char args[CUEMU_ARG_BYTES];
    /* OP_COPY, OP_SET */
    void *dst;
    const void *src;
    size_t n;
    int value;
    /* OP_RECORD: ev recorded at seq; OP_WAIT: until wait_stream ran
     * wait_seq (the record that was latest when the wait was queued) */
    cudaEvent_t ev;
    cudaStream_t wait_stream;
    uint64_t wait_seq;
    /* OP_GEMM */
    cuemu_gemm_args gemm;
    /* OP_HOST: its state lives in args */
    cuemu_host_poll host_poll;
};

enum cuemu_mem { CUEMU_HOST = 0, CUEMU_DEVICE = 1, CUEMU_PINNED = 2 };

void cuemu_lock(void);
void cuemu_unlock(void);

/* Under the lock: the next free slot at the tail of s's queue (the legacy
 * stream for s == 0), with kind and seq set; runs the oldest op first when
 * the queue is full, as a real launch blocks. NULL for a destroyed s. */
cuemu_op *cuemu_op_push(cudaStream_t s, int kind);

/* Under the lock: CUEMU_DEVICE or CUEMU_PINNED when [p, p+n) lies inside
 * one allocation of that kind, CUEMU_HOST when p is in none; -1 when the
 * range starts inside an allocation and runs past its end. */
int cuemu_range_kind(const void *p, size_t n);

/* Under the lock: the error cudaGetLastError returns next. */
void cuemu_set_last_error(cudaError_t e);

/* A bug in the program under test: print "cuemu: ..." and abort. */
[[noreturn]] void cuemu_fatal(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

/* Run one kernel launch to completion (tests/emu/cuemu_grid.cpp). */
void cuemu_grid_run(const cuemu_op *op);
/* Run one queued cublasSgemm (tests/emu/cuemu_blas.cpp). */
void cuemu_gemm_run(const cuemu_gemm_args *g);

#endif
