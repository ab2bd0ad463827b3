/* tests/emu/cuda_runtime.h — cuemu: the slice of the CUDA runtime that
 * streamtrain's CUDA backend uses, run on the CPU, for testing the backend
 * on machines without a GPU (`make EMU=1`, see tests/emu/README.md).
 *
 * defines: the cudart types and calls gpu/cuda_backend.cu makes; the
 *          device-side builtins gpu/kernels.cu uses (threadIdx..., uchar4,
 *          float4, __syncthreads, __shfl_xor_sync, atomicAdd); emu_launch,
 *          which the build substitutes for `kernel<<<grid, block, shmem,
 *          stream>>>(args)`.
 *
 * Not a simulator of speed: a checker of semantics. Work queued on a stream
 * runs only when the host forces it (a synchronize, an event query, a
 * stream waiting on another), so code that relies on timing instead of
 * events reads stale data; device memory is unreadable from host code; a
 * kernel's threads run as fibers with real barriers. The header is C++ only:
 * only .cu files include it.
 */
#ifndef CUEMU_CUDA_RUNTIME_H
#define CUEMU_CUDA_RUNTIME_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <tuple>
#include <type_traits>

/* ---- errors ------------------------------------------------------------ */
enum cudaError {
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorMemoryAllocation = 2,
    cudaErrorInitializationError = 3,
    cudaErrorInvalidConfiguration = 9,
    cudaErrorInvalidDevice = 101,
    cudaErrorInvalidResourceHandle = 400,
    cudaErrorNotReady = 600,
    cudaErrorInsufficientDriver = 35,
    cudaErrorNoDevice = 100,
    cudaErrorLaunchFailure = 719,
};
typedef enum cudaError cudaError_t;

enum cudaMemcpyKind {
    cudaMemcpyHostToHost = 0,
    cudaMemcpyHostToDevice = 1,
    cudaMemcpyDeviceToHost = 2,
    cudaMemcpyDeviceToDevice = 3,
    cudaMemcpyDefault = 4,
};

#define cudaStreamDefault 0x00u
#define cudaStreamNonBlocking 0x01u
#define cudaEventDefault 0x00u
#define cudaEventDisableTiming 0x02u
#define cudaHostAllocDefault 0x00u
#define cudaHostAllocPortable 0x01u

typedef struct cuemu_stream *cudaStream_t;
typedef struct cuemu_event *cudaEvent_t;

struct cudaDeviceProp {
    char name[256];
    size_t totalGlobalMem;
    int major;
    int minor;
    int multiProcessorCount;
};

struct uint3 { unsigned int x, y, z; };
struct dim3 {
    unsigned int x, y, z;
    dim3(unsigned int vx = 1, unsigned int vy = 1, unsigned int vz = 1)
        : x(vx), y(vy), z(vz) {}
};
struct uchar4 { unsigned char x, y, z, w; };
struct alignas(16) float4 { float x, y, z, w; };
static inline float4 make_float4(float x, float y, float z, float w)
{
    float4 f = {x, y, z, w};
    return f;
}

/* ---- host API (tests/emu/cuemu.cpp) ------------------------------------- */
const char *cudaGetErrorString(cudaError_t e);
cudaError_t cudaGetLastError(void);
cudaError_t cudaPeekAtLastError(void);
cudaError_t cudaGetDeviceCount(int *n);
cudaError_t cudaSetDevice(int dev);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int dev);
cudaError_t cudaDeviceSynchronize(void);
cudaError_t cudaMemGetInfo(size_t *free_b, size_t *total_b);
cudaError_t cudaMalloc(void **p, size_t bytes);
cudaError_t cudaFree(void *p);
cudaError_t cudaHostAlloc(void **p, size_t bytes, unsigned int flags);
cudaError_t cudaMallocHost(void **p, size_t bytes);
cudaError_t cudaFreeHost(void *p);
cudaError_t cudaMemcpy(void *dst, const void *src, size_t n,
                       cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t n,
                            cudaMemcpyKind kind, cudaStream_t s = 0);
cudaError_t cudaMemsetAsync(void *dst, int value, size_t n,
                            cudaStream_t s = 0);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned int flags);
cudaError_t cudaStreamCreate(cudaStream_t *s);
cudaError_t cudaStreamDestroy(cudaStream_t s);
cudaError_t cudaStreamSynchronize(cudaStream_t s);
cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e,
                                unsigned int flags = 0);
cudaError_t cudaEventCreate(cudaEvent_t *e);
cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned int flags);
cudaError_t cudaEventDestroy(cudaEvent_t e);
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s = 0);
cudaError_t cudaEventQuery(cudaEvent_t e);
cudaError_t cudaEventSynchronize(cudaEvent_t e);
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t a, cudaEvent_t b);

/* cuemu only: (re)install the SIGSEGV handler that names the device block
 * a fault hit (the first call of any API installs it). */
void cuemu_catch_faults(void);

/* ---- device side (tests/emu/cuemu_grid.cpp) ----------------------------- */
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __restrict__ __restrict
/* one copy per block: blocks of a launch run one after another */
#define __shared__ static

extern uint3 threadIdx, blockIdx;
extern dim3 blockDim, gridDim;

void __syncthreads(void);
uint64_t cuemu_shfl_xor(unsigned int mask, uint64_t bits, int lane_mask);

template <typename T>
T __shfl_xor_sync(unsigned int mask, T v, int lane_mask)
{
    static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value,
                  "cuemu: shuffles move at most 8 bytes");
    uint64_t bits = 0;
    memcpy(&bits, &v, sizeof v);
    bits = cuemu_shfl_xor(mask, bits, lane_mask);
    memcpy(&v, &bits, sizeof v);
    return v;
}

/* A kernel's threads never run at the same time, so a plain add is atomic. */
template <typename T> T atomicAdd(T *p, T v)
{
    T old = *p;
    *p = old + v;
    return old;
}

/* ---- launches ----------------------------------------------------------- */
typedef void (*cuemu_tramp)(const void *args);
enum { CUEMU_ARG_BYTES = 512 };
void cuemu_enqueue_kernel(const char *name, dim3 grid, dim3 block,
                          size_t shmem, cudaStream_t s, cuemu_tramp run,
                          const void *args, size_t bytes);

template <typename... P> struct cuemu_kernel_args {
    void (*fn)(P...);
    std::tuple<P...> a;
};

template <typename... P> void cuemu_run(const void *args)
{
    const cuemu_kernel_args<P...> *k = (const cuemu_kernel_args<P...> *)args;
    std::apply(k->fn, k->a);
}

template <typename... P> struct cuemu_launcher {
    void (*fn)(P...);
    const char *name;
    dim3 grid, block;
    size_t shmem;
    cudaStream_t stream;

    template <typename... A> void operator()(A... a) const
    {
        static_assert(sizeof...(A) == sizeof...(P), "cuemu: argument count");
        static_assert((std::is_trivially_copyable<P>::value && ...),
                      "cuemu: kernel arguments are copied as bytes");
        cuemu_kernel_args<P...> k{fn, std::tuple<P...>((P)a...)};
        static_assert(sizeof k <= CUEMU_ARG_BYTES, "cuemu: arguments too big");
        cuemu_enqueue_kernel(name, grid, block, shmem, stream, &cuemu_run<P...>,
                             &k, sizeof k);
    }
};

/* `k<<<g, b, sh, s>>>(args)` becomes `emu_launch(k, "k", g, b, sh, s)(args)` */
template <typename... P>
cuemu_launcher<P...> emu_launch(void (*fn)(P...), const char *name, dim3 grid,
                                dim3 block, size_t shmem = 0,
                                cudaStream_t s = 0)
{
    return cuemu_launcher<P...>{fn, name, grid, block, shmem, s};
}

#endif
