/* gpu/cpu_pool.c — the CPU backend's worker threads (contract in
 * gpu/cpu_pool.h): a job is one fn over [0, n) in contiguous blocks, block
 * 0 on the caller and block w on worker w. Between jobs a worker first
 * polls for the next one for SPIN_POLLS pause instructions (about 0.1
 * ms), then sleeps on a condition variable; the caller waits for
 * the workers the same way. A step issues hundreds of short jobs (every
 * GEMM block and op), and a sleep and wake-up for each cost ~9 % of a
 * step in the scheduler (perf, Zen 5 VM); a longer spin would take the
 * core from the loader's producers when the trainer waits for data.
 */
#include "gpu/cpu_pool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

/* Polls before sleeping: 4,096 pause instructions, 108 us on the Zen 5
 * VM (PAUSE takes 10 to 150 cycles, by CPU). */
enum { SPIN_POLLS = 1 << 12 };

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

typedef struct worker {
    cpu_pool *pool;
    int index;                 /* 1..threads-1: its block of every job */
    pthread_t tid;
} worker;

struct cpu_pool {
    int threads;               /* workers + the caller; immutable */
    int started;               /* workers created; immutable after create */
    worker *w;                 /* (threads - 1) */
    pthread_mutex_t mu;
    pthread_cond_t go;         /* a job or stop: workers wait on it */
    pthread_cond_t done;       /* pending reached 0: the caller waits */
    atomic_ulong gen;          /* written under mu: bumped per job; read
                                  without it only to poll */
    atomic_int pending;        /* written under mu: workers still in the
                                  job; read without it only to poll */
    atomic_int stop;           /* written under mu; polled likewise */
    cpu_pool_fn fn;            /* guarded by mu: the job */
    void *ctx;                 /* guarded by mu */
    size_t n;                  /* guarded by mu */
    int blocks;                /* guarded by mu: blocks of this job */
};

/* Block b of `blocks` over [0, n). */
static void block_range(size_t n, int blocks, int b, size_t *lo, size_t *hi)
{
    *lo = n * (size_t)b / (size_t)blocks;
    *hi = n * (size_t)(b + 1) / (size_t)blocks;
}

static void *worker_main(void *arg)
{
    worker *me = arg;
    cpu_pool *p = me->pool;
    unsigned long seen = 0;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        if (p->gen == seen && !p->stop) {
            /* poll a while for the next job before sleeping on it */
            pthread_mutex_unlock(&p->mu);
            for (int i = 0; i < SPIN_POLLS && atomic_load_explicit(
                     &p->gen, memory_order_relaxed) == seen &&
                 !atomic_load_explicit(&p->stop, memory_order_relaxed); i++)
                cpu_relax();
            pthread_mutex_lock(&p->mu);
        }
        while (p->gen == seen && !p->stop) pthread_cond_wait(&p->go, &p->mu);
        if (p->stop) break;
        seen = p->gen;
        cpu_pool_fn fn = p->fn;
        void *ctx = p->ctx;
        size_t n = p->n;
        int blocks = p->blocks;
        if (me->index >= blocks) continue; /* not in this job */
        pthread_mutex_unlock(&p->mu);
        size_t lo, hi;
        block_range(n, blocks, me->index, &lo, &hi);
        if (hi > lo) fn(ctx, lo, hi);
        pthread_mutex_lock(&p->mu);
        if (--p->pending == 0) pthread_cond_signal(&p->done);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

int cpu_pool_create(int threads, cpu_pool **out, st_error *err)
{
    *out = NULL;
    if (threads < 1 || threads > 1024)
        return st_seterr(err, ST_EINVAL, "cpu pool: %d threads", threads);
    cpu_pool *p = calloc(1, sizeof *p);
    if (p == NULL) return st_seterr(err, ST_ENOMEM, "cpu pool: out of memory");
    p->threads = threads;
    int rc = 0;
    if (threads == 1) goto ok;
    p->w = calloc((size_t)threads - 1, sizeof *p->w);
    if (p->w == NULL) {
        free(p);
        return st_seterr(err, ST_ENOMEM, "cpu pool: out of memory");
    }
    if ((rc = ST_PTHREAD(err, pthread_mutex_init(&p->mu, NULL))) < 0)
        goto fail_mu;
    if ((rc = ST_PTHREAD(err, pthread_cond_init(&p->go, NULL))) < 0)
        goto fail_go;
    if ((rc = ST_PTHREAD(err, pthread_cond_init(&p->done, NULL))) < 0)
        goto fail_done;
    for (int i = 0; i < threads - 1; i++) {
        p->w[i].pool = p;
        p->w[i].index = i + 1;
        rc = ST_PTHREAD(err, pthread_create(&p->w[i].tid, NULL, worker_main,
                                            &p->w[i]));
        if (rc < 0) break;
        p->started++;
    }
    if (rc < 0) {
        cpu_pool_destroy(p);
        return rc;
    }
ok:
    *out = p;
    return 0;
fail_done:
    pthread_cond_destroy(&p->go);
fail_go:
    pthread_mutex_destroy(&p->mu);
fail_mu:
    free(p->w);
    free(p);
    return rc;
}

void cpu_pool_destroy(cpu_pool *p)
{
    if (p == NULL) return;
    if (p->threads > 1) {
        pthread_mutex_lock(&p->mu);
        p->stop = 1;
        pthread_cond_broadcast(&p->go);
        pthread_mutex_unlock(&p->mu);
        for (int i = 0; i < p->started; i++) pthread_join(p->w[i].tid, NULL);
        pthread_cond_destroy(&p->done);
        pthread_cond_destroy(&p->go);
        pthread_mutex_destroy(&p->mu);
    }
    free(p->w);
    free(p);
}

int cpu_pool_threads(const cpu_pool *p) { return p ? p->threads : 1; }

int cpu_pool_for(cpu_pool *p, size_t n, size_t grain, cpu_pool_fn fn,
                 void *ctx, st_error *err)
{
    if (n == 0) return 0;
    if (grain == 0) grain = 1;
    size_t most = n / grain;
    int blocks = p == NULL ? 1 : p->threads;
    if ((size_t)blocks > most) blocks = most ? (int)most : 1;
    if (blocks == 1) {
        fn(ctx, 0, n);
        return 0;
    }
    ST_TRY(ST_PTHREAD(err, pthread_mutex_lock(&p->mu)));
    p->fn = fn;
    p->ctx = ctx;
    p->n = n;
    p->blocks = blocks;
    p->pending = blocks - 1;
    p->gen++;
    int rc = ST_PTHREAD(err, pthread_cond_broadcast(&p->go));
    if (rc < 0) {
        /* still under the lock: no worker has seen the job; withdraw it */
        p->gen--;
        p->pending = 0;
    }
    pthread_mutex_unlock(&p->mu);
    if (rc < 0) return rc;
    size_t lo, hi;
    block_range(n, blocks, 0, &lo, &hi);
    fn(ctx, lo, hi);
    for (int i = 0; i < SPIN_POLLS &&
         atomic_load_explicit(&p->pending, memory_order_relaxed) > 0; i++)
        cpu_relax();
    ST_TRY(ST_PTHREAD(err, pthread_mutex_lock(&p->mu)));
    while (p->pending > 0) pthread_cond_wait(&p->done, &p->mu);
    pthread_mutex_unlock(&p->mu);
    return 0;
}
