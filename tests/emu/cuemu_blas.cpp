// tests/emu/cuemu_blas.cpp — cuemu's cuBLAS: handles and Sgemm.
//
// defines: the calls declared in tests/emu/cublas_v2.h, cuemu_gemm_run
//
// cublasSgemm checks its arguments as cuBLAS documents (sizes >= 0, leading
// dimensions at least the rows of what they describe), reads alpha and beta
// at the call (pointer mode host), requires every operand to lie inside one
// device block, and queues the product on the handle's stream. There it
// runs as OpenBLAS's column-major sgemm with the very same arguments.
#include "cuemu_internal.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>

struct cuemu_blas {
    cudaStream_t stream;
    cublasMath_t math; // kept for cublasGetMathMode; FP32 either way here
    void *workspace;
    size_t workspace_bytes;
};

namespace {

// The bytes a column-major rows x cols operand with leading dimension ld
// spans.
size_t span(int rows, int cols, int ld)
{
    if (rows == 0 || cols == 0) return 0;
    return ((size_t)(cols - 1) * ld + rows) * sizeof(float);
}

void need_device(const char *what, const void *p, size_t bytes)
{
    if (bytes == 0) return;
    if (cuemu_range_kind(p, bytes) != CUEMU_DEVICE)
        cuemu_fatal("cublasSgemm: %s (%zu bytes at %p) is not inside one "
                    "device block", what, bytes, p);
}

} // namespace

cublasStatus_t cublasCreate(cublasHandle_t *h)
{
    cuemu_blas *b = (cuemu_blas *)calloc(1, sizeof *b);
    if (b == nullptr) return CUBLAS_STATUS_ALLOC_FAILED;
    *h = b;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasDestroy(cublasHandle_t h)
{
    if (h == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
    cudaStreamSynchronize(h->stream);
    free(h);
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetStream(cublasHandle_t h, cudaStream_t s)
{
    if (h == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
    h->stream = s;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetPointerMode(cublasHandle_t h, cublasPointerMode_t m)
{
    if (h == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
    return m == CUBLAS_POINTER_MODE_HOST ? CUBLAS_STATUS_SUCCESS
                                         : CUBLAS_STATUS_NOT_SUPPORTED;
}

cublasStatus_t cublasSetMathMode(cublasHandle_t h, cublasMath_t m)
{
    if (h == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (m != CUBLAS_DEFAULT_MATH && m != CUBLAS_TF32_TENSOR_OP_MATH)
        return CUBLAS_STATUS_INVALID_VALUE;
    h->math = m; // FP32 either way on the CPU
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasGetMathMode(cublasHandle_t h, cublasMath_t *m)
{
    if (h == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (m == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
    *m = h->math;
    return CUBLAS_STATUS_SUCCESS;
}

// cuBLAS wants the workspace 256-byte aligned and in device memory.
cublasStatus_t cublasSetWorkspace(cublasHandle_t h, void *p, size_t bytes)
{
    if (h == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
    cuemu_lock();
    int kind = bytes ? cuemu_range_kind(p, bytes) : CUEMU_DEVICE;
    cuemu_unlock();
    if ((uintptr_t)p % 256 != 0 || kind != CUEMU_DEVICE) {
        fprintf(stderr, "cuemu: cublasSetWorkspace(%p, %zu): not a 256-byte "
                "aligned range of one device block\n", p, bytes);
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    h->workspace = p;
    h->workspace_bytes = bytes;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSgemm(cublasHandle_t h, cublasOperation_t ta,
                           cublasOperation_t tb, int m, int n, int k,
                           const float *alpha, const float *A, int lda,
                           const float *B, int ldb, const float *beta,
                           float *C, int ldc)
{
    if (h == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
    int a_rows = ta == CUBLAS_OP_N ? m : k, a_cols = ta == CUBLAS_OP_N ? k : m;
    int b_rows = tb == CUBLAS_OP_N ? k : n, b_cols = tb == CUBLAS_OP_N ? n : k;
    if (m < 0 || n < 0 || k < 0 || lda < (a_rows > 1 ? a_rows : 1) ||
        ldb < (b_rows > 1 ? b_rows : 1) || ldc < (m > 1 ? m : 1) ||
        alpha == nullptr || beta == nullptr)
        return CUBLAS_STATUS_INVALID_VALUE;
    if (m == 0 || n == 0) return CUBLAS_STATUS_SUCCESS;
    cuemu_lock();
    if (k > 0 && *alpha != 0.0f) {
        need_device("A", A, span(a_rows, a_cols, lda));
        need_device("B", B, span(b_rows, b_cols, ldb));
    }
    need_device("C", C, span(m, n, ldc));
    cuemu_op *op = cuemu_op_push(h->stream, OP_GEMM);
    if (op == nullptr) {
        cuemu_unlock();
        return CUBLAS_STATUS_EXECUTION_FAILED;
    }
    op->gemm = cuemu_gemm_args{ta != CUBLAS_OP_N, tb != CUBLAS_OP_N, m, n, k,
                               *alpha, *beta, A, B, C, lda, ldb, ldc};
    cuemu_unlock();
    return CUBLAS_STATUS_SUCCESS;
}

void cuemu_gemm_run(const cuemu_gemm_args *g)
{
    cblas_sgemm(CblasColMajor, g->ta ? CblasTrans : CblasNoTrans,
                g->tb ? CblasTrans : CblasNoTrans, g->m, g->n, g->k, g->alpha,
                g->A, g->lda, g->B, g->ldb, g->beta, g->C, g->ldc);
}

const char *cublasGetStatusString(cublasStatus_t s)
{
    switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    }
    return "CUBLAS_STATUS_UNKNOWN";
}
