// tests/emu/selftest.cu — test_cuemu: cuemu itself, so that a pass of the
// CUDA backend's tests under it means something. Built by `make EMU=1`
// only (through the same <<<>>> rewrite as gpu/*.cu).
//
//   barriers     a shared-memory reduction is right with __syncthreads and
//                wrong without it (threads really interleave at barriers)
//   shuffles     a warp's xor-butterfly sum; a lane that exited is an error
//   launches     a bad block size is cudaErrorInvalidConfiguration
//   copies       from pinned memory they read the source when they run;
//                from pageable memory, at the call
//   events       a query of pending work first says "not ready"; a stream
//                waiting on an event runs the other stream up to it
//   host ops     an OP_HOST that answers "not done" stops its stream (and
//                a stream waiting on it); queries say not ready, a
//                synchronize polls it until done (cuemu_nccl.cpp's basis)
//   memory       host code touching device memory faults, with a message;
//                copies of the wrong kind are refused
//   gemm         column-major, transposes and leading dimensions as cuBLAS
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
extern "C" { // cmocka.h has no C++ guard
#include <cmocka.h>
}

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "cuemu_internal.h"
#include <stdio.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#define CK(expr) assert_int_equal((int)(expr), 0)

namespace {

__global__ void k_block_sum(const float *x, float *out, int sync)
{
    __shared__ float part[256];
    part[threadIdx.x] = x[blockIdx.x * 256 + threadIdx.x];
    if (sync) __syncthreads();
    if (threadIdx.x == 0) {
        float s = 0.0f;
        for (int i = 0; i < 256; i++) s += part[i];
        out[blockIdx.x] = s;
    }
}

__global__ void k_warp_sum(const int *x, int *out, int exit_lane)
{
    int v = x[threadIdx.x];
    if ((int)threadIdx.x == exit_lane) return;
    for (int off = 16; off > 0; off /= 2) v += __shfl_xor_sync(0xffffffffu, v, off);
    out[threadIdx.x] = v;
}

__global__ void k_add(float *y, float v, int n)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] += v;
}

// Runs f in a child; returns its exit status, and its stderr in `text`.
template <typename F> int in_child(F f, char *text, size_t len)
{
    int fd[2];
    if (pipe(fd) != 0) return -1;
    pid_t pid = fork();
    if (pid == 0) { // without cmocka's handlers, which would longjmp
        signal(SIGABRT, SIG_DFL);
        cuemu_catch_faults();
        dup2(fd[1], 2);
        close(fd[0]);
        f();
        _exit(0);
    }
    close(fd[1]);
    size_t got = 0;
    ssize_t n;
    while (got < len - 1 && (n = read(fd[0], text + got, len - 1 - got)) > 0)
        got += (size_t)n;
    text[got] = '\0';
    close(fd[0]);
    int st = 0;
    waitpid(pid, &st, 0);
    return st;
}

void test_barriers(void **state)
{
    (void)state;
    static float x[4 * 256];
    float out[4], *dx, *dout;
    for (int i = 0; i < 4 * 256; i++) x[i] = (float)(i % 7);
    CK(cudaMalloc((void **)&dx, sizeof x));
    CK(cudaMalloc((void **)&dout, sizeof out));
    CK(cudaMemcpy(dx, x, sizeof x, cudaMemcpyHostToDevice));
    for (int sync = 1; sync >= 0; sync--) {
        k_block_sum<<<4, 256>>>(dx, dout, sync);
        CK(cudaGetLastError());
        CK(cudaMemcpyAsync(out, dout, sizeof out, cudaMemcpyDeviceToHost, 0));
        for (int b = 0; b < 4; b++) {
            float want = 0;
            for (int i = 0; i < 256; i++) want += x[b * 256 + i];
            if (sync)
                assert_true(out[b] == want);
            else if (b == 0) // thread 0 runs first: it sees its own value only
                assert_true(out[b] != want);
        }
    }
    CK(cudaFree(dx));
    CK(cudaFree(dout));
}

void test_shuffles(void **state)
{
    (void)state;
    int x[64], out[64], *dx, *dout;
    for (int i = 0; i < 64; i++) x[i] = i;
    CK(cudaMalloc((void **)&dx, sizeof x));
    CK(cudaMalloc((void **)&dout, sizeof out));
    CK(cudaMemcpy(dx, x, sizeof x, cudaMemcpyHostToDevice));
    k_warp_sum<<<1, 64>>>(dx, dout, -1);
    CK(cudaMemcpyAsync(out, dout, sizeof out, cudaMemcpyDeviceToHost, 0));
    for (int i = 0; i < 64; i++) assert_int_equal(out[i], i < 32 ? 496 : 1520);
    char text[512];
    int st = in_child([&] {
        k_warp_sum<<<1, 64>>>(dx, dout, 40);
        cudaDeviceSynchronize();
    }, text, sizeof text);
    assert_true(WIFSIGNALED(st));
    assert_non_null(strstr(text, "has exited"));
    CK(cudaFree(dx));
    CK(cudaFree(dout));
}

void test_launches(void **state)
{
    (void)state;
    float *dy;
    CK(cudaMalloc((void **)&dy, 64));
    k_add<<<1, 1025>>>(dy, 1.0f, 16);
    assert_int_equal(cudaGetLastError(), cudaErrorInvalidConfiguration);
    assert_int_equal(cudaGetLastError(), cudaSuccess); // read and cleared
    k_add<<<dim3(1, 70000), 32>>>(dy, 1.0f, 16);
    assert_int_equal(cudaGetLastError(), cudaErrorInvalidConfiguration);
    CK(cudaFree(dy));
}

void test_copies(void **state)
{
    (void)state;
    cudaStream_t s;
    CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    float *pinned, pageable[4] = {1, 1, 1, 1}, back[4], *d;
    CK(cudaHostAlloc((void **)&pinned, 16, cudaHostAllocPortable));
    CK(cudaMalloc((void **)&d, 16));
    for (int i = 0; i < 4; i++) pinned[i] = 1;
    CK(cudaMemcpyAsync(d, pinned, 16, cudaMemcpyHostToDevice, s));
    pinned[0] = 2; // the copy has not run yet: it sees this
    CK(cudaMemcpyAsync(back, d, 16, cudaMemcpyDeviceToHost, s));
    assert_true(back[0] == 2.0f);
    CK(cudaMemcpyAsync(d, pageable, 16, cudaMemcpyHostToDevice, s));
    pageable[0] = 3; // staged at the call: it does not
    CK(cudaMemcpyAsync(back, d, 16, cudaMemcpyDeviceToHost, s));
    assert_true(back[0] == 1.0f);
    CK(cudaStreamDestroy(s));
    CK(cudaFree(d));
    CK(cudaFreeHost(pinned));
}

// OP_HOST state: done at the third poll; what the poll saw in d[0]
struct host_op {
    int polls;
    const float *d;
    float seen;
};

int host_poll(void *state)
{
    host_op *h = *(host_op **)state;
    h->seen = h->d[0]; // device memory is readable while it runs
    return ++h->polls >= 3;
}

void test_host_ops(void **state)
{
    (void)state;
    cudaStream_t a, b;
    cudaEvent_t e;
    CK(cudaStreamCreateWithFlags(&a, cudaStreamNonBlocking));
    CK(cudaStreamCreateWithFlags(&b, cudaStreamNonBlocking));
    CK(cudaEventCreate(&e));
    float *d, *pinned, back[4];
    CK(cudaMalloc((void **)&d, 16));
    CK(cudaHostAlloc((void **)&pinned, 16, 0));
    for (int i = 0; i < 4; i++) pinned[i] = 5;
    CK(cudaMemcpyAsync(d, pinned, 16, cudaMemcpyHostToDevice, a));
    host_op h = {0, d, 0.0f};
    host_op *hp = &h;
    cuemu_lock();
    cuemu_op *op = cuemu_op_push(a, OP_HOST);
    op->host_poll = host_poll;
    memcpy(op->args, &hp, sizeof hp);
    cuemu_unlock();
    CK(cudaEventRecord(e, a));
    CK(cudaStreamWaitEvent(b, e, 0));
    k_add<<<1, 32, 0, b>>>(d, 1.0f, 4);
    for (int q = 0; q < 4; q++) // every second query polls: twice, not done
        assert_int_equal(cudaEventQuery(e), cudaErrorNotReady);
    assert_int_equal(h.polls, 2);
    assert_true(h.seen == 5.0f); // after the copy before it
    assert_int_equal(cudaGetLastError(), cudaSuccess);
    CK(cudaStreamSynchronize(b)); // b waits on a, a polls until done
    assert_int_equal(h.polls, 3);
    assert_int_equal(cudaEventQuery(e), cudaSuccess);
    CK(cudaMemcpyAsync(back, d, 16, cudaMemcpyDeviceToHost, b));
    assert_true(back[0] == 6.0f);
    CK(cudaEventDestroy(e));
    CK(cudaStreamDestroy(b));
    CK(cudaStreamDestroy(a));
    CK(cudaFree(d));
    CK(cudaFreeHost(pinned));
}

void test_events(void **state)
{
    (void)state;
    cudaStream_t a, b;
    cudaEvent_t e;
    CK(cudaStreamCreateWithFlags(&a, cudaStreamNonBlocking));
    CK(cudaStreamCreateWithFlags(&b, cudaStreamNonBlocking));
    CK(cudaEventCreate(&e));
    assert_int_equal(cudaEventQuery(e), cudaSuccess); // never recorded
    float *d, *pinned;
    CK(cudaMalloc((void **)&d, 16));
    CK(cudaHostAlloc((void **)&pinned, 16, 0));
    for (int i = 0; i < 4; i++) pinned[i] = 5;
    CK(cudaMemcpyAsync(d, pinned, 16, cudaMemcpyHostToDevice, a));
    CK(cudaEventRecord(e, a));
    assert_int_equal(cudaEventQuery(e), cudaErrorNotReady);
    assert_int_equal(cudaGetLastError(), cudaSuccess); // not sticky
    CK(cudaStreamWaitEvent(b, e, 0));
    k_add<<<1, 32, 0, b>>>(d, 1.0f, 4);
    CK(cudaStreamSynchronize(b)); // runs a's copy first
    assert_int_equal(cudaEventQuery(e), cudaSuccess);
    float back[4];
    CK(cudaMemcpyAsync(back, d, 16, cudaMemcpyDeviceToHost, b));
    assert_true(back[3] == 6.0f);
    // without the wait, b's kernel runs on what d held before the copy
    for (int i = 0; i < 4; i++) pinned[i] = 9;
    CK(cudaMemcpyAsync(d, pinned, 16, cudaMemcpyHostToDevice, a));
    k_add<<<1, 32, 0, b>>>(d, 1.0f, 4);
    CK(cudaStreamSynchronize(b));
    CK(cudaMemcpyAsync(back, d, 16, cudaMemcpyDeviceToHost, b));
    assert_true(back[3] == 7.0f);
    CK(cudaStreamSynchronize(a));
    CK(cudaEventDestroy(e));
    CK(cudaStreamDestroy(a));
    CK(cudaStreamDestroy(b));
    CK(cudaFree(d));
    CK(cudaFreeHost(pinned));
}

void test_memory(void **state)
{
    (void)state;
    float *d, host[4] = {0, 0, 0, 0};
    CK(cudaMalloc((void **)&d, 16));
    char text[512];
    int st = in_child([&] {
        volatile float v = d[1]; // host code reading device memory
        (void)v;
    }, text, sizeof text);
    assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV);
    assert_non_null(strstr(text, "host code touched device memory"));
    // the kind must match the memory; device memory starts as NaNs
    assert_int_equal(cudaMemcpy(host, d, 16, cudaMemcpyHostToDevice),
                     cudaErrorInvalidValue);
    cudaGetLastError();
    CK(cudaMemcpy(host, d, 16, cudaMemcpyDeviceToHost));
    assert_true(host[0] != host[0]);
    assert_int_equal(cudaMemcpy(host, d, 32, cudaMemcpyDeviceToHost),
                     cudaErrorInvalidValue); // past the block's end
    cudaGetLastError();
    CK(cudaFree(d));
}

void test_gemm(void **state)
{
    (void)state;
    enum { M = 5, N = 3, K = 4, LD = 7 };
    float A[LD * LD], B[LD * LD], C[LD * LD], want[LD * LD];
    for (int i = 0; i < LD * LD; i++) A[i] = (float)(i % 5) - 2, B[i] = (float)(i % 3) - 1, C[i] = 1;
    float *dA, *dB, *dC;
    CK(cudaMalloc((void **)&dA, sizeof A));
    CK(cudaMalloc((void **)&dB, sizeof B));
    CK(cudaMalloc((void **)&dC, sizeof C));
    CK(cudaMemcpy(dA, A, sizeof A, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dB, B, sizeof B, cudaMemcpyHostToDevice));
    cublasHandle_t h;
    CK(cublasCreate(&h));
    float alpha = 2, beta = 0.5f;
    for (int t = 0; t < 4; t++) {
        int ta = t & 1, tb = t >> 1;
        CK(cudaMemcpy(dC, C, sizeof C, cudaMemcpyHostToDevice));
        CK(cublasSgemm(h, ta ? CUBLAS_OP_T : CUBLAS_OP_N, tb ? CUBLAS_OP_T : CUBLAS_OP_N,
                       M, N, K, &alpha, dA, LD, dB, LD, &beta, dC, LD));
        float got[LD * LD];
        CK(cudaDeviceSynchronize());
        CK(cudaMemcpy(got, dC, sizeof got, cudaMemcpyDeviceToHost));
        for (int j = 0; j < N; j++)
            for (int i = 0; i < M; i++) { // column-major: (i, j) at i + j*ld
                float s = 0;
                for (int k = 0; k < K; k++)
                    s += (ta ? A[k + i * LD] : A[i + k * LD]) *
                         (tb ? B[j + k * LD] : B[k + j * LD]);
                want[i + j * LD] = alpha * s + beta * C[i + j * LD];
                assert_float_equal(got[i + j * LD], want[i + j * LD], 1e-5);
            }
    }
    assert_int_equal(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, M, N, K, &alpha,
                                 dA, M - 1, dB, LD, &beta, dC, LD),
                     CUBLAS_STATUS_INVALID_VALUE); // lda < m
    CK(cublasDestroy(h));
    CK(cudaFree(dA));
    CK(cudaFree(dB));
    CK(cudaFree(dC));
}

} // namespace

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_barriers), cmocka_unit_test(test_shuffles),
        cmocka_unit_test(test_launches), cmocka_unit_test(test_copies),
        cmocka_unit_test(test_events),   cmocka_unit_test(test_host_ops),
        cmocka_unit_test(test_memory),
        cmocka_unit_test(test_gemm),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
