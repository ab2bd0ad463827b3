// tests/emu/cuemu_grid.cpp — cuemu's kernel launches: a grid runs block by
// block, and a block's threads run as fibers (ucontext) with real barriers.
//
// defines: threadIdx, blockIdx, blockDim, gridDim, __syncthreads,
//          cuemu_shfl_xor, cuemu_enqueue_kernel, cuemu_grid_run
//
// Block 0 of every launch runs as fibers. __syncthreads parks a fiber until
// every live fiber of the block has parked; a shuffle is two such barriers,
// and reading a lane that has exited or sits at another shuffle is an
// error, as is a partial warp. When block 0 never reached a barrier, the
// other blocks run each thread to completion in turn, which is much faster;
// a barrier met there after all is reported, not emulated. Shared memory is
// `static` (one copy, reused by every block, never cleared between blocks).
#include "cuemu_internal.h"

#include <stdio.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

uint3 threadIdx, blockIdx;
dim3 blockDim, gridDim;

namespace {

enum { READY, PARKED, DONE };
enum { MODE_NONE, MODE_DIRECT, MODE_FIBERS };
constexpr size_t kStack = 64 << 10;

struct fiber {
    ucontext_t ctx;
    int state;
    uint32_t shuffles; // shuffles this thread has entered
    uint64_t value;    // its value in the latest one
};

// all below: the cuemu lock (kernels run under it)
ucontext_t g_sched;
fiber *g_fib;
char *g_stacks;       // g_cap stacks, each followed by a guard page
size_t g_stride;
unsigned g_cap, g_nthreads, g_cur;
int g_mode, g_barriers;
const cuemu_op *g_op;

void ensure_fibers(unsigned n)
{
    if (n <= g_cap) return;
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    if (g_stacks) munmap(g_stacks, g_stride * g_cap);
    if (g_fib) munmap(g_fib, sizeof(fiber) * g_cap);
    g_stride = kStack + page;
    void *s = mmap(nullptr, g_stride * n, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    void *f = mmap(nullptr, sizeof(fiber) * n, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (s == MAP_FAILED || f == MAP_FAILED) cuemu_fatal("mmap fiber stacks: %m");
    g_stacks = (char *)s;
    g_fib = (fiber *)f;
    g_cap = n;
    for (unsigned i = 0; i < n; i++)
        if (mprotect(g_stacks + i * g_stride + kStack, page, PROT_NONE) != 0)
            cuemu_fatal("mprotect: %m");
}

void set_thread(unsigned i)
{
    threadIdx.x = i % blockDim.x;
    threadIdx.y = i / blockDim.x % blockDim.y;
    threadIdx.z = i / (blockDim.x * blockDim.y);
}

void fiber_main(void)
{
    g_op->run(g_op->args);
    g_fib[g_cur].state = DONE; // then uc_link resumes the scheduler
}

// one function per getcontext, which returns twice
__attribute__((noinline)) void make_fiber(fiber *f, char *stack)
{
    if (getcontext(&f->ctx) != 0) cuemu_fatal("getcontext: %m");
    f->ctx.uc_stack.ss_sp = stack;
    f->ctx.uc_stack.ss_size = kStack;
    f->ctx.uc_link = &g_sched;
    makecontext(&f->ctx, fiber_main, 0);
    f->state = READY;
    f->shuffles = 0;
}

void run_block_fibers(void)
{
    g_mode = MODE_FIBERS;
    for (unsigned i = 0; i < g_nthreads; i++)
        make_fiber(&g_fib[i], g_stacks + i * g_stride);
    // a round resumes every live fiber once; each runs to its next barrier
    // or its end, so no fiber passes a barrier before all have reached it
    for (unsigned live = 1; live > 0;) {
        live = 0;
        for (unsigned i = 0; i < g_nthreads; i++) {
            if (g_fib[i].state == DONE) continue;
            g_cur = i;
            set_thread(i);
            g_fib[i].state = READY;
            if (swapcontext(&g_sched, &g_fib[i].ctx) != 0)
                cuemu_fatal("swapcontext: %m");
            if (g_fib[i].state != DONE) live++;
        }
    }
}

void where(char *buf, size_t n)
{
    snprintf(buf, n, "kernel %s, block (%u,%u,%u), thread (%u,%u,%u)",
             g_op ? g_op->name : "?", blockIdx.x, blockIdx.y, blockIdx.z,
             threadIdx.x, threadIdx.y, threadIdx.z);
}

void park(const char *what)
{
    if (g_mode != MODE_FIBERS) {
        char w[160];
        where(w, sizeof w);
        cuemu_fatal("%s: %s outside block 0's pattern (block 0 never reached "
                    "a barrier); cuemu cannot run this kernel", w, what);
    }
    g_barriers++;
    fiber *f = &g_fib[g_cur];
    f->state = PARKED;
    if (swapcontext(&f->ctx, &g_sched) != 0) cuemu_fatal("swapcontext: %m");
}

bool bad_dims(dim3 g, dim3 b)
{
    unsigned long long threads = (unsigned long long)b.x * b.y * b.z;
    return threads == 0 || threads > 1024 || b.x > 1024 || b.y > 1024 ||
           b.z > 64 || g.x == 0 || g.y == 0 || g.z == 0 ||
           g.x > 0x7fffffffu || g.y > 65535 || g.z > 65535;
}

} // namespace

void __syncthreads(void) { park("__syncthreads"); }

uint64_t cuemu_shfl_xor(unsigned int mask, uint64_t bits, int lane_mask)
{
    char w[160]; // where(): only on the way to an error (threadIdx is this
                 // thread's again once park returns)
    if (mask != 0xffffffffu || lane_mask < 0 || lane_mask > 31) {
        where(w, sizeof w);
        cuemu_fatal("%s: __shfl_xor_sync(0x%x, v, %d): cuemu does full-warp "
                    "shuffles with a lane mask in [0, 31] only", w, mask,
                    lane_mask);
    }
    unsigned me = g_cur;
    g_fib[me].value = bits;
    uint32_t round = ++g_fib[me].shuffles;
    park("__shfl_xor_sync");
    unsigned src = (me & ~31u) | ((me & 31u) ^ (unsigned)lane_mask);
    if (src >= g_nthreads || g_fib[src].shuffles != round ||
        g_fib[src].state == DONE) {
        where(w, sizeof w);
        cuemu_fatal("%s: __shfl_xor_sync reads lane %u, which %s", w, src & 31u,
                    src >= g_nthreads ? "is past the end of the block "
                                        "(a partial warp)"
                                      : "has exited or is at another shuffle");
    }
    uint64_t r = g_fib[src].value;
    park("__shfl_xor_sync");
    return r;
}

void cuemu_enqueue_kernel(const char *name, dim3 grid, dim3 block,
                          size_t shmem, cudaStream_t s, cuemu_tramp run,
                          const void *args, size_t bytes)
{
    cuemu_lock();
    if (bad_dims(grid, block) || shmem > 48 * 1024) {
        fprintf(stderr, "cuemu: launch %s: grid (%u,%u,%u) block (%u,%u,%u) "
                "shared %zu: invalid configuration\n", name, grid.x, grid.y,
                grid.z, block.x, block.y, block.z, shmem);
        cuemu_set_last_error(cudaErrorInvalidConfiguration);
        cuemu_unlock();
        return;
    }
    cuemu_op *op = cuemu_op_push(s, OP_KERNEL);
    if (op == nullptr) {
        cuemu_set_last_error(cudaErrorInvalidResourceHandle);
        cuemu_unlock();
        return;
    }
    op->name = name;
    op->grid = grid;
    op->block = block;
    op->run = run;
    memcpy(op->args, args, bytes);
    cuemu_unlock();
}

void cuemu_grid_run(const cuemu_op *op)
{
    g_op = op;
    gridDim = op->grid;
    blockDim = op->block;
    g_nthreads = op->block.x * op->block.y * op->block.z;
    ensure_fibers(g_nthreads);
    bool fibers = true;
    for (unsigned z = 0; z < gridDim.z; z++)
        for (unsigned y = 0; y < gridDim.y; y++)
            for (unsigned x = 0; x < gridDim.x; x++) {
                blockIdx = {x, y, z};
                if (fibers) {
                    g_barriers = 0;
                    run_block_fibers();
                    fibers = g_barriers > 0;
                    continue;
                }
                g_mode = MODE_DIRECT;
                for (unsigned i = 0; i < g_nthreads; i++) {
                    set_thread(i);
                    op->run(op->args);
                }
            }
    g_mode = MODE_NONE;
    g_op = nullptr;
}
