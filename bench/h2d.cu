// bench/h2d.cu — the H2D ceiling for tests/gpu/bench.sh: plain cudaMemcpy
// host -> device from pinned (cudaMallocHost) and from pageable (malloc)
// memory, for one 256 MiB block and for streamtrain's batch (128 samples x
// (784 pixels + 4 label bytes) = 100,864 bytes). Built by the script:
//
//   nvcc -O2 -o build/bench/h2d bench/h2d.cu && build/bench/h2d
//
// Prints the device, then one parseable line per (memory, size), the best
// of 3 timed rounds (after one untimed round) measured with CUDA events:
//   h2d mem=pinned bytes=268435456 reps=4 gbps=24.61
#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

// Every CUDA call: file:line, the expression and CUDA's message, then exit.
#define CK(expr) check((expr), #expr, __FILE__, __LINE__)
static void check(cudaError_t rc, const char *expr, const char *file, int line)
{
    if (rc == cudaSuccess) return;
    std::fprintf(stderr, "h2d: %s:%d: %s: %s\n", file, line, expr,
                 cudaGetErrorString(rc));
    std::exit(1);
}

static double gbps(void *dst, const void *src, size_t bytes, int reps)
{
    cudaEvent_t a, b;
    CK(cudaEventCreate(&a));
    CK(cudaEventCreate(&b));
    float best = 0;
    for (int round = 0; round < 4; round++) { // round 0 warms up
        CK(cudaEventRecord(a));
        for (int r = 0; r < reps; r++)
            CK(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice));
        CK(cudaEventRecord(b));
        CK(cudaEventSynchronize(b));
        float ms;
        CK(cudaEventElapsedTime(&ms, a, b));
        if (round > 0 && (best == 0 || ms < best)) best = ms;
    }
    CK(cudaEventDestroy(a));
    CK(cudaEventDestroy(b));
    return (double)bytes * reps / (best * 1e-3) / 1e9;
}

int main()
{
    const size_t big = (size_t)256 << 20, batch = (size_t)128 * (784 + 4);
    cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    std::printf("h2d device=\"%s\"\n", prop.name);
    void *dst, *pinned;
    CK(cudaMalloc(&dst, big));
    CK(cudaMallocHost(&pinned, big));
    void *pageable = std::malloc(big);
    if (pageable == nullptr) {
        std::fprintf(stderr, "h2d: out of host memory (%zu bytes)\n", big);
        return 1;
    }
    std::memset(pinned, 1, big); // fault every page in before timing
    std::memset(pageable, 1, big);
    const size_t sizes[2] = {big, batch};
    const int reps[2] = {4, 2000};
    for (int m = 0; m < 2; m++)
        for (int s = 0; s < 2; s++)
            std::printf("h2d mem=%s bytes=%zu reps=%d gbps=%.2f\n",
                        m == 0 ? "pinned" : "pageable", sizes[s], reps[s],
                        gbps(dst, m == 0 ? pinned : pageable, sizes[s], reps[s]));
    std::free(pageable);
    CK(cudaFreeHost(pinned));
    CK(cudaFree(dst));
    return 0;
}
