// tests/emu/cuemu.cpp — cuemu's runtime: memory, streams, events, errors.
//
// defines: the cudart calls declared in tests/emu/cuda_runtime.h,
//          cuemu_lock/unlock, cuemu_op_push, cuemu_range_kind, cuemu_fatal
//
// Memory. cudaMalloc maps its own pages, filled with 0xFF (every float a
// NaN), and keeps them PROT_NONE except while queued work runs: host code
// that dereferences a device pointer faults, and the SIGSEGV handler names
// the allocation. Each device and pinned block ends against a guard page.
// Streams. Each stream is a FIFO of queued ops that runs only when the host
// forces it: cudaStreamSynchronize, cudaEventSynchronize, a full queue, a
// stream reaching a cudaStreamWaitEvent (which runs the other stream up to
// the record), and every second cudaEventQuery of a pending event (the
// first answers cudaErrorNotReady). A host operation (OP_HOST: an emulated
// NCCL reduction) may answer "not done yet": its stream stops there, a
// query says not ready, and a synchronize polls it until it is done.
// Copies from pinned memory read their
// source when they run, not when they are queued; copies from pageable
// memory run at once after the stream drains, as cudart's do.
// Environment: CUEMU_DEVICES (default 1), CUEMU_MEM (bytes, default 16 GiB),
// CUEMU_TRACE=1 (one stderr line per allocation), CUEMU_PROTECT=0 (device
// memory stays readable by host code: no check, but no mprotect per sync,
// which dominates the time of many small copies).
#include "cuemu_internal.h"

#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

namespace {

enum { MAX_ALLOCS = 1024, MAX_STREAMS = 64, MAX_EVENTS = 1024, RING = 512 };
constexpr size_t kContext = (size_t)256 << 20; // reported as in use

struct alloc {
    char *map;         // mmap'd: prot_bytes of data pages, then one guard
    size_t prot_bytes;
    char *base;        // what the caller got: ends at the guard page
    size_t bytes;
    int kind;          // CUEMU_DEVICE | CUEMU_PINNED; 0: free slot
};

struct queue {
    int used;
    cuemu_op ring[RING];
    size_t head, count;
    uint64_t next_seq; // seq of the next op queued
    uint64_t done_seq; // ops with seq < done_seq have run
};

struct event {
    int used;
    unsigned flags;
    queue *s;      // stream of the latest record; NULL: never recorded
    uint64_t seq;  // that record's seq
    double t;      // when it ran (CLOCK_MONOTONIC seconds)
    unsigned queries;
};

pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
// all below: g_lock
alloc g_allocs[MAX_ALLOCS];
queue g_legacy = {1, {}, 0, 0, 1, 1};
queue *g_streams[MAX_STREAMS];
event g_events[MAX_EVENTS];
size_t g_used;
int g_device_depth; // > 0 while queued work runs: device pages readable
cudaError_t g_last = cudaSuccess;
int g_current_dev;
size_t g_page;
int g_protect = 1; // CUEMU_PROTECT=0: device memory stays readable (faster)
// read by the SIGSEGV handler without the lock: only ever set once
volatile sig_atomic_t g_ready;

double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

size_t round_up(size_t n, size_t to) { return (n + to - 1) / to * to; }

cudaError_t fail(cudaError_t e)
{
    g_last = e;
    return e;
}

size_t env_size(const char *name, size_t dflt)
{
    const char *v = getenv(name);
    if (v == nullptr || v[0] == '\0') return dflt;
    char *end;
    unsigned long long x = strtoull(v, &end, 10);
    if (*end != '\0') cuemu_fatal("%s=%s: expected a number", name, v);
    return (size_t)x;
}

// Read at every call, not once: a test may change them while it runs.
int env_devices(void) { return (int)env_size("CUEMU_DEVICES", 1); }
size_t env_mem(void) { return env_size("CUEMU_MEM", (size_t)16 << 30); }

void say_fault(int sig, siginfo_t *si, void *uc)
{
    (void)uc;
    char *addr = (char *)si->si_addr;
    char msg[256];
    int n = 0;
    for (int i = 0; i < MAX_ALLOCS && n == 0; i++) {
        const alloc *a = &g_allocs[i];
        if (!a->kind || addr < a->map || addr >= a->map + a->prot_bytes + g_page)
            continue;
        if (addr >= a->map + a->prot_bytes || addr < a->base)
            n = snprintf(msg, sizeof msg, "cuemu: access at %p, past the end "
                         "of a %zu-byte %s block at %p\n", (void *)addr,
                         a->bytes, a->kind == CUEMU_DEVICE ? "device" : "pinned",
                         (void *)a->base);
        else if (g_device_depth == 0)
            n = snprintf(msg, sizeof msg, "cuemu: host code touched device "
                         "memory at %p (cudaMalloc'd %zu bytes at %p)\n",
                         (void *)addr, a->bytes, (void *)a->base);
    }
    if (n > 0 && write(2, msg, (size_t)n) < 0) n = 0;
    signal(sig, SIG_DFL); // fault again, with the default action
}

void install_handler(void)
{
    struct sigaction sa = {};
    sa.sa_sigaction = say_fault;
    sa.sa_flags = SA_SIGINFO | SA_RESETHAND;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, nullptr);
}

void init_locked(void)
{
    if (g_ready) return;
    g_page = (size_t)sysconf(_SC_PAGESIZE);
    g_protect = env_size("CUEMU_PROTECT", 1) != 0;
    install_handler();
    g_ready = 1;
}

void protect_all(int prot)
{
    if (!g_protect) return;
    for (int i = 0; i < MAX_ALLOCS; i++)
        if (g_allocs[i].kind == CUEMU_DEVICE &&
            mprotect(g_allocs[i].map, g_allocs[i].prot_bytes, prot) != 0)
            cuemu_fatal("mprotect: %m");
}

void device_enter(void)
{
    if (g_device_depth++ == 0) protect_all(PROT_READ | PROT_WRITE);
}

void device_leave(void)
{
    if (--g_device_depth == 0) protect_all(PROT_NONE);
}

alloc *find_alloc(const void *p)
{
    const char *c = (const char *)p;
    for (int i = 0; i < MAX_ALLOCS; i++) {
        alloc *a = &g_allocs[i];
        if (a->kind && c >= a->base && c < a->base + a->bytes) return a;
    }
    return nullptr;
}

queue *queue_of(cudaStream_t s)
{
    if (s == nullptr) return &g_legacy;
    queue *q = (queue *)s;
    for (int i = 0; i < MAX_STREAMS; i++)
        if (g_streams[i] == q) return q->used ? q : nullptr;
    return nullptr;
}

event *event_of(cudaEvent_t e)
{
    event *ev = (event *)e;
    if (ev < g_events || ev >= g_events + MAX_EVENTS || !ev->used) return nullptr;
    return ev;
}

bool run_some(queue *q, uint64_t seq);

// Runs one op; false when it cannot complete yet (an OP_HOST answering
// "not done", or a wait on a stream stopped at one).
bool exec(queue *q, cuemu_op *op)
{
    switch (op->kind) {
    case OP_KERNEL: cuemu_grid_run(op); break;
    case OP_COPY: memcpy(op->dst, op->src, op->n); break;
    case OP_SET: memset(op->dst, op->value, op->n); break;
    case OP_RECORD: {
        event *ev = (event *)op->ev;
        if (ev->used && ev->s == q && ev->seq == op->seq) ev->t = now_s();
        break;
    }
    case OP_WAIT: return run_some((queue *)op->wait_stream, op->wait_seq);
    case OP_GEMM: cuemu_gemm_run(&op->gemm); break;
    case OP_HOST: return op->host_poll(op->args) != 0;
    }
    return true;
}

// Runs q's ops in order until the op numbered seq has run, or until one
// that cannot complete yet. @return whether seq has run.
bool run_some(queue *q, uint64_t seq)
{
    device_enter();
    while (q->done_seq <= seq && q->count > 0) {
        cuemu_op *op = &q->ring[q->head];
        if (!exec(q, op)) break;
        q->head = (q->head + 1) % RING;
        q->count--;
        q->done_seq = op->seq + 1;
    }
    device_leave();
    return q->done_seq > seq;
}

// run_some until seq has run: the host blocks, as in a synchronize. Only
// an OP_HOST can hold it up (another process's part of a reduction); past
// CUEMU_HOST_WAIT seconds (default 120) that is a hang, and cuemu says so.
void run_until(queue *q, uint64_t seq)
{
    if (run_some(q, seq)) return;
    double t0 = now_s(), limit = (double)env_size("CUEMU_HOST_WAIT", 120);
    while (!run_some(q, seq)) {
        if (now_s() - t0 > limit)
            cuemu_fatal("a stream waited %.0f s for a host operation (an "
                        "emulated NCCL reduction whose peers never issued "
                        "it, or are blocked elsewhere: cuemu runs their "
                        "streams only when their host forces them)", limit);
        struct timespec ts = {0, 20000};
        nanosleep(&ts, nullptr);
    }
}

void drain(queue *q) { run_until(q, q->next_seq - 1); }

// A copy that happens at the call, after the work queued on q before it.
void copy_now(queue *q, void *dst, const void *src, size_t n)
{
    drain(q);
    device_enter();
    memcpy(dst, src, n);
    device_leave();
}

void drain_all(void)
{
    drain(&g_legacy);
    for (int i = 0; i < MAX_STREAMS; i++)
        if (g_streams[i] && g_streams[i]->used) drain(g_streams[i]);
}

bool event_done(const event *ev)
{
    return ev->s == nullptr || ev->seq < ev->s->done_seq;
}

struct guard {
    guard() { cuemu_lock(); init_locked(); }
    ~guard() { cuemu_unlock(); }
};

cudaError_t map_block(void **p, size_t bytes, int kind)
{
    int slot = -1;
    for (int i = 0; i < MAX_ALLOCS && slot < 0; i++)
        if (!g_allocs[i].kind) slot = i;
    if (slot < 0) cuemu_fatal("more than %d live allocations", MAX_ALLOCS);
    alloc *a = &g_allocs[slot];
    a->prot_bytes = round_up(bytes ? bytes : 1, g_page);
    void *m = mmap(nullptr, a->prot_bytes + g_page, PROT_NONE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) return fail(cudaErrorMemoryAllocation);
    a->map = (char *)m;
    a->bytes = bytes;
    a->base = a->map + a->prot_bytes - round_up(bytes ? bytes : 1, 256);
    a->kind = kind;
    if (mprotect(a->map, a->prot_bytes, PROT_READ | PROT_WRITE) != 0)
        cuemu_fatal("mprotect: %m");
    if (kind == CUEMU_DEVICE) {
        memset(a->map, 0xFF, a->prot_bytes); // uninitialized: NaN
        if (g_device_depth == 0 && g_protect)
            mprotect(a->map, a->prot_bytes, PROT_NONE);
        g_used += a->prot_bytes;
    }
    if (getenv("CUEMU_TRACE"))
        fprintf(stderr, "cuemu: %s %zu bytes at %p\n",
                kind == CUEMU_DEVICE ? "cudaMalloc" : "cudaHostAlloc", bytes,
                (void *)a->base);
    *p = a->base;
    return cudaSuccess;
}

cudaError_t unmap_block(void *p, int kind)
{
    alloc *a = find_alloc(p);
    if (a == nullptr || a->base != (char *)p || a->kind != kind)
        return fail(cudaErrorInvalidValue);
    drain_all(); // cudaFree and cudaFreeHost synchronize the device
    if (kind == CUEMU_DEVICE) g_used -= a->prot_bytes;
    munmap(a->map, a->prot_bytes + g_page);
    *a = alloc{};
    return cudaSuccess;
}

// cudaMemcpyAsync's rules: a device side must lie inside one device block;
// the host side must not be device memory.
cudaError_t check_copy(void *dst, const void *src, size_t n,
                       cudaMemcpyKind kind)
{
    int kd = cuemu_range_kind(dst, n), ks = cuemu_range_kind(src, n);
    bool ok;
    switch (kind) {
    case cudaMemcpyHostToDevice: ok = kd == CUEMU_DEVICE && ks >= 0 && ks != CUEMU_DEVICE; break;
    case cudaMemcpyDeviceToHost: ok = ks == CUEMU_DEVICE && kd >= 0 && kd != CUEMU_DEVICE; break;
    case cudaMemcpyDeviceToDevice: ok = kd == CUEMU_DEVICE && ks == CUEMU_DEVICE; break;
    default: ok = kd >= 0 && ks >= 0; break;
    }
    if (!ok)
        fprintf(stderr, "cuemu: cudaMemcpy kind %d of %zu bytes from %p "
                "(%d) to %p (%d) does not match the memory (0 host, 1 device, "
                "2 pinned, -1 past an end)\n", (int)kind, n, src, ks, dst, kd);
    return ok ? cudaSuccess : fail(cudaErrorInvalidValue);
}

} // namespace

void cuemu_catch_faults(void)
{
    guard g;
    install_handler();
}

void cuemu_lock(void)
{
    if (pthread_mutex_lock(&g_lock) != 0) cuemu_fatal("pthread_mutex_lock");
}

void cuemu_unlock(void)
{
    if (pthread_mutex_unlock(&g_lock) != 0) cuemu_fatal("pthread_mutex_unlock");
}

void cuemu_fatal(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("cuemu: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    abort();
}

void cuemu_set_last_error(cudaError_t e) { g_last = e; }

int cuemu_range_kind(const void *p, size_t n)
{
    const alloc *a = find_alloc(p);
    if (a == nullptr) return CUEMU_HOST;
    if ((const char *)p + n > a->base + a->bytes) return -1;
    return a->kind;
}

cuemu_op *cuemu_op_push(cudaStream_t s, int kind)
{
    queue *q = queue_of(s);
    if (q == nullptr) return nullptr;
    if (q->count == RING) run_until(q, q->ring[q->head].seq);
    cuemu_op *op = &q->ring[(q->head + q->count) % RING];
    q->count++;
    op->kind = kind;
    op->seq = q->next_seq++;
    return op;
}

/* ---- errors and the device ------------------------------------------- */

const char *cudaGetErrorString(cudaError_t e)
{
    switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInitializationError: return "initialization error";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorInvalidResourceHandle: return "invalid resource handle";
    case cudaErrorNotReady: return "device not ready";
    case cudaErrorInsufficientDriver: return "CUDA driver version is insufficient for CUDA runtime version";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    case cudaErrorLaunchFailure: return "unspecified launch failure";
    }
    return "unrecognized error code";
}

cudaError_t cudaGetLastError(void)
{
    guard g;
    cudaError_t e = g_last;
    g_last = cudaSuccess;
    return e;
}

cudaError_t cudaPeekAtLastError(void)
{
    guard g;
    return g_last;
}

cudaError_t cudaGetDeviceCount(int *n)
{
    guard g;
    *n = env_devices();
    return *n > 0 ? cudaSuccess : fail(cudaErrorNoDevice);
}

cudaError_t cudaSetDevice(int dev)
{
    guard g;
    if (dev < 0 || dev >= env_devices())
        return fail(cudaErrorInvalidDevice);
    g_current_dev = dev;
    return cudaSuccess;
}

cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int dev)
{
    guard g;
    if (dev < 0 || dev >= env_devices())
        return fail(cudaErrorInvalidDevice);
    *p = cudaDeviceProp{};
    snprintf(p->name, sizeof p->name, "cuemu (CUDA emulated on the CPU)");
    p->totalGlobalMem = env_mem();
    p->major = 9;
    p->minor = 0;
    p->multiProcessorCount = 1;
    return cudaSuccess;
}

cudaError_t cudaDeviceSynchronize(void)
{
    guard g;
    drain_all();
    return cudaSuccess;
}

cudaError_t cudaMemGetInfo(size_t *free_b, size_t *total_b)
{
    guard g;
    size_t total = env_mem();
    size_t in_use = kContext + g_used;
    *total_b = total;
    *free_b = in_use < total ? total - in_use : 0;
    return cudaSuccess;
}

/* ---- memory ---------------------------------------------------------- */

cudaError_t cudaMalloc(void **p, size_t bytes)
{
    guard g;
    size_t total = env_mem();
    if (kContext + g_used + round_up(bytes, g_page) > total)
        return fail(cudaErrorMemoryAllocation);
    return map_block(p, bytes, CUEMU_DEVICE);
}

cudaError_t cudaFree(void *p)
{
    guard g;
    if (p == nullptr) return cudaSuccess; // also: "create the context"
    return unmap_block(p, CUEMU_DEVICE);
}

cudaError_t cudaHostAlloc(void **p, size_t bytes, unsigned int flags)
{
    guard g;
    if (flags & ~0x0Fu) return fail(cudaErrorInvalidValue);
    return map_block(p, bytes, CUEMU_PINNED);
}

cudaError_t cudaMallocHost(void **p, size_t bytes)
{
    return cudaHostAlloc(p, bytes, cudaHostAllocDefault);
}

cudaError_t cudaFreeHost(void *p)
{
    guard g;
    if (p == nullptr) return cudaSuccess;
    return unmap_block(p, CUEMU_PINNED);
}

// Synchronous, on the legacy stream, which our non-blocking streams never
// wait for: it does not wait for them either.
cudaError_t cudaMemcpy(void *dst, const void *src, size_t n,
                       cudaMemcpyKind kind)
{
    guard g;
    if (n == 0) return cudaSuccess;
    cudaError_t e = check_copy(dst, src, n, kind);
    if (e != cudaSuccess) return e;
    copy_now(&g_legacy, dst, src, n);
    return cudaSuccess;
}

cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t n,
                            cudaMemcpyKind kind, cudaStream_t s)
{
    guard g;
    queue *q = queue_of(s);
    if (q == nullptr) return fail(cudaErrorInvalidResourceHandle);
    if (n == 0) return cudaSuccess;
    cudaError_t e = check_copy(dst, src, n, kind);
    if (e != cudaSuccess) return e;
    const void *host = kind == cudaMemcpyHostToDevice ? src : dst;
    bool pinned = kind == cudaMemcpyDeviceToDevice ||
                  cuemu_range_kind(host, n) == CUEMU_PINNED;
    if (!pinned) { // pageable: cudart stages it before returning
        copy_now(q, dst, src, n);
        return cudaSuccess;
    }
    cuemu_op *op = cuemu_op_push(s, OP_COPY);
    op->dst = dst;
    op->src = src;
    op->n = n;
    return cudaSuccess;
}

cudaError_t cudaMemsetAsync(void *dst, int value, size_t n, cudaStream_t s)
{
    guard g;
    if (queue_of(s) == nullptr) return fail(cudaErrorInvalidResourceHandle);
    if (n == 0) return cudaSuccess;
    if (cuemu_range_kind(dst, n) != CUEMU_DEVICE) {
        fprintf(stderr, "cuemu: cudaMemsetAsync of %zu bytes at %p: not "
                "inside one device block\n", n, dst);
        return fail(cudaErrorInvalidValue);
    }
    cuemu_op *op = cuemu_op_push(s, OP_SET);
    op->dst = dst;
    op->value = value;
    op->n = n;
    return cudaSuccess;
}

/* ---- streams and events ---------------------------------------------- */

cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned int flags)
{
    guard g;
    (void)flags; // every stream is independent of the others and of legacy
    for (int i = 0; i < MAX_STREAMS; i++) {
        if (g_streams[i] && g_streams[i]->used) continue;
        if (g_streams[i] == nullptr)
            g_streams[i] = (queue *)calloc(1, sizeof(queue));
        if (g_streams[i] == nullptr) return fail(cudaErrorMemoryAllocation);
        queue *q = g_streams[i];
        q->used = 1;
        q->head = q->count = 0;
        q->next_seq = q->done_seq = 1;
        *s = (cudaStream_t)q;
        return cudaSuccess;
    }
    cuemu_fatal("more than %d streams", MAX_STREAMS);
}

cudaError_t cudaStreamCreate(cudaStream_t *s)
{
    return cudaStreamCreateWithFlags(s, cudaStreamDefault);
}

cudaError_t cudaStreamDestroy(cudaStream_t s)
{
    guard g;
    queue *q = queue_of(s);
    if (q == nullptr || q == &g_legacy) return fail(cudaErrorInvalidResourceHandle);
    drain(q); // queued work still completes
    for (int i = 0; i < MAX_EVENTS; i++)
        if (g_events[i].s == q) g_events[i].s = nullptr;
    q->used = 0;
    return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t s)
{
    guard g;
    queue *q = queue_of(s);
    if (q == nullptr) return fail(cudaErrorInvalidResourceHandle);
    drain(q);
    return cudaSuccess;
}

cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e,
                                unsigned int flags)
{
    guard g;
    event *ev = event_of(e);
    if (queue_of(s) == nullptr || ev == nullptr)
        return fail(cudaErrorInvalidResourceHandle);
    if (flags != 0) return fail(cudaErrorInvalidValue);
    if (event_done(ev)) return cudaSuccess; // nothing to wait for
    cuemu_op *op = cuemu_op_push(s, OP_WAIT);
    op->wait_stream = (cudaStream_t)ev->s;
    op->wait_seq = ev->seq;
    return cudaSuccess;
}

cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned int flags)
{
    guard g;
    for (int i = 0; i < MAX_EVENTS; i++) {
        if (g_events[i].used) continue;
        g_events[i] = event{1, flags, nullptr, 0, 0.0, 0};
        *e = (cudaEvent_t)&g_events[i];
        return cudaSuccess;
    }
    cuemu_fatal("more than %d events", MAX_EVENTS);
}

cudaError_t cudaEventCreate(cudaEvent_t *e)
{
    return cudaEventCreateWithFlags(e, cudaEventDefault);
}

cudaError_t cudaEventDestroy(cudaEvent_t e)
{
    guard g;
    event *ev = event_of(e);
    if (ev == nullptr) return fail(cudaErrorInvalidResourceHandle);
    ev->used = 0; // a queued record of it still runs: it checks `used`
    return cudaSuccess;
}

cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s)
{
    guard g;
    event *ev = event_of(e);
    queue *q = queue_of(s);
    if (ev == nullptr || q == nullptr) return fail(cudaErrorInvalidResourceHandle);
    cuemu_op *op = cuemu_op_push(s, OP_RECORD);
    op->ev = e;
    ev->s = q;
    ev->seq = op->seq;
    ev->queries = 0;
    return cudaSuccess;
}

cudaError_t cudaEventQuery(cudaEvent_t e)
{
    guard g;
    event *ev = event_of(e);
    if (ev == nullptr) return fail(cudaErrorInvalidResourceHandle);
    if (event_done(ev)) return cudaSuccess;
    if (ev->queries++ % 2 == 0) return cudaErrorNotReady; // not sticky
    // as far as it can go: an OP_HOST not done yet leaves it pending
    return run_some(ev->s, ev->seq) ? cudaSuccess : cudaErrorNotReady;
}

cudaError_t cudaEventSynchronize(cudaEvent_t e)
{
    guard g;
    event *ev = event_of(e);
    if (ev == nullptr) return fail(cudaErrorInvalidResourceHandle);
    if (!event_done(ev)) run_until(ev->s, ev->seq);
    return cudaSuccess;
}

cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t a, cudaEvent_t b)
{
    guard g;
    event *ea = event_of(a), *eb = event_of(b);
    if (ea == nullptr || eb == nullptr) return fail(cudaErrorInvalidResourceHandle);
    if ((ea->flags | eb->flags) & cudaEventDisableTiming)
        return fail(cudaErrorInvalidResourceHandle);
    if (ea->s == nullptr || eb->s == nullptr) return fail(cudaErrorInvalidResourceHandle);
    if (!event_done(ea) || !event_done(eb)) return fail(cudaErrorNotReady);
    *ms = (float)((eb->t - ea->t) * 1e3);
    return cudaSuccess;
}
