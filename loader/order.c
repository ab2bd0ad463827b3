/* loader/order.c — per-epoch sample order: Feistel bijections with
 * cycle-walking, window shuffling over shards, global batches and each
 * rank's part of them.
 * See order.h for the definitions; everything is a pure function of
 * (seed, epoch, position).
 */
#include "loader/order.h"
#include "loader/mix.h"

#include <stdlib.h>
#include <string.h>

/* Key-derivation tags: each bijection of an epoch gets its own key. */
enum { TAG_GLOBAL = 1, TAG_SHARDS = 2, TAG_WINDOW = 3 };

struct order {
    order_config cfg;
    uint64_t n;            /* samples in the split */
    uint64_t m;            /* samples this rank takes per epoch */
    uint64_t nbatches;     /* global batches per epoch */
    uint32_t nshards;
    uint64_t *first;       /* (nshards + 1) sample id of each shard's first
                              record, in file order; first[nshards] = n */
};

struct order_cursor {
    uint64_t gepoch;       /* epoch of gperm; UINT64_MAX: none */
    order_perm gperm;      /* global mode: the epoch's keyed bijection */
    uint64_t epoch;        /* epoch the tables describe; UINT64_MAX: none */
    uint32_t *perm;        /* (nshards) permuted position k -> shard number */
    uint64_t *prefix;      /* (nshards + 1) positions before permuted shard k */
};

void order_perm_init(order_perm *p, uint64_t n, uint64_t seed, uint64_t epoch,
                     uint64_t tag)
{
    uint32_t bits = 2;
    while (bits < 64 && (n - 1) >> bits) bits++;
    if (bits & 1) bits++;
    p->n = n;
    p->half = bits / 2;
    p->mask = p->half >= 64 ? ~0ull : (1ull << p->half) - 1;
    uint64_t base = mix64(seed ^ mix64(epoch + 0x9e3779b97f4a7c15ull) ^
                          mix64(tag * 0xd1b54a32d192ed03ull + 1));
    for (int r = 0; r < 4; r++)
        p->keys[r] = mix64(base + (uint64_t)(r + 1) * 0x9e3779b97f4a7c15ull);
}

static inline uint64_t feistel(const order_perm *p, uint64_t x)
{
    uint64_t l = x >> p->half, r = x & p->mask;
    for (int i = 0; i < 4; i++) {
        uint64_t nl = r;
        r = l ^ (mix64(r ^ p->keys[i]) & p->mask);
        l = nl;
    }
    return (l << p->half) | r;
}

uint64_t order_perm_apply(const order_perm *p, uint64_t x)
{
    if (p->n <= 1) return 0;
    /* Cycle-walking: x's cycle in the bigger domain returns to [0, n). */
    do {
        x = feistel(p, x);
    } while (x >= p->n);
    return x;
}

int order_create(const order_config *cfg, const uint64_t *shard_records,
                 uint32_t nshards, order **out, st_error *err)
{
    *out = NULL;
    if (cfg->batch == 0 || cfg->world == 0 || cfg->rank >= cfg->world)
        return st_seterr(err, ST_EINVAL,
                         "order: bad config (batch %u, rank %u of %u)",
                         cfg->batch, cfg->rank, cfg->world);
    if (cfg->batch % cfg->world != 0)
        return st_seterr(err, ST_EINVAL, "order: a global batch of %u does "
                         "not split over %u ranks (%u mod %u = %u): give a "
                         "multiple of %u", cfg->batch, cfg->world, cfg->batch,
                         cfg->world, cfg->batch % cfg->world, cfg->world);
    if (cfg->mode == ORDER_WINDOW && cfg->window == 0)
        return st_seterr(err, ST_EINVAL, "order: window of 0 shards");
    if (cfg->mode != ORDER_NONE && cfg->mode != ORDER_GLOBAL &&
        cfg->mode != ORDER_WINDOW)
        return st_seterr(err, ST_EINVAL, "order: unknown mode %d",
                         (int)cfg->mode);
    order *o = calloc(1, sizeof *o);
    if (o == NULL) return st_seterr(err, ST_ENOMEM, "order: out of memory");
    o->first = malloc((nshards + 1ull) * sizeof *o->first);
    if (o->first == NULL) {
        free(o);
        return st_seterr(err, ST_ENOMEM, "order: out of memory");
    }
    o->cfg = *cfg;
    o->nshards = nshards;
    uint64_t n = 0;
    for (uint32_t s = 0; s < nshards; s++) {
        o->first[s] = n;
        n += shard_records[s];
    }
    o->first[nshards] = n;
    o->n = n;
    uint64_t b = cfg->batch;
    o->nbatches = cfg->drop_last ? n / b : (n + b - 1) / b;
    if (n == 0 || o->nbatches == 0) {
        int rc = st_seterr(err, ST_EINVAL,
                           "order: %llu samples make no batch of %u%s",
                           (unsigned long long)n, cfg->batch,
                           cfg->drop_last ? " with drop_last" : "");
        order_destroy(o);
        return rc;
    }
    o->m = (o->nbatches - 1) * (b / cfg->world) +
           order_batch_len(o, o->nbatches - 1);
    *out = o;
    return 0;
}

void order_destroy(order *o)
{
    if (o == NULL) return;
    free(o->first);
    free(o);
}

uint64_t order_samples(const order *o) { return o->n; }
uint64_t order_rank_samples(const order *o) { return o->m; }
uint64_t order_batches(const order *o) { return o->nbatches; }

uint32_t order_global_batch_len(const order *o, uint64_t b)
{
    uint64_t left = o->n - b * o->cfg.batch;
    return left < o->cfg.batch ? (uint32_t)left : o->cfg.batch;
}

uint32_t order_batch_cap(const order *o)
{
    return o->cfg.batch / o->cfg.world;
}

/* This rank's part of global batch b: *off its first position inside the
 * batch; @return its length. */
static uint32_t rank_part(const order *o, uint64_t b, uint32_t *off)
{
    uint32_t len = order_global_batch_len(o, b), w = o->cfg.world;
    uint32_t r = o->cfg.rank, base = len / w, extra = len % w;
    *off = r * base + (r < extra ? r : extra);
    return base + (r < extra ? 1 : 0);
}

uint32_t order_batch_len(const order *o, uint64_t b)
{
    uint32_t off;
    return rank_part(o, b, &off);
}

uint64_t order_position(const order *o, uint64_t b, uint32_t i)
{
    uint32_t off;
    (void)rank_part(o, b, &off);
    return b * o->cfg.batch + off + i;
}

int order_cursor_create(const order *o, order_cursor **out, st_error *err)
{
    *out = NULL;
    order_cursor *c = calloc(1, sizeof *c);
    if (c == NULL) goto fail;
    c->epoch = UINT64_MAX;
    c->gepoch = UINT64_MAX;
    c->perm = malloc((o->nshards + 1ull) * sizeof *c->perm);
    c->prefix = malloc((o->nshards + 1ull) * sizeof *c->prefix);
    if (c->perm == NULL || c->prefix == NULL) goto fail;
    *out = c;
    return 0;
fail:
    order_cursor_destroy(c);
    return st_seterr(err, ST_ENOMEM, "order: out of memory for a cursor");
}

void order_cursor_destroy(order_cursor *c)
{
    if (c == NULL) return;
    free(c->perm);
    free(c->prefix);
    free(c);
}

/* Builds epoch's shard permutation and the prefix sums in permuted order. */
static void cursor_load(const order *o, order_cursor *c, uint64_t epoch)
{
    if (c->epoch == epoch) return;
    order_perm sp;
    order_perm_init(&sp, o->nshards, o->cfg.seed, epoch, TAG_SHARDS);
    uint64_t acc = 0;
    for (uint32_t k = 0; k < o->nshards; k++) {
        uint32_t s = (uint32_t)order_perm_apply(&sp, k);
        c->perm[k] = s;
        c->prefix[k] = acc;
        acc += o->first[s + 1] - o->first[s];
    }
    c->prefix[o->nshards] = acc;
    c->epoch = epoch;
}

/* @return the last k in [lo, hi) with prefix[k] <= pos (prefix[lo] <= pos). */
static uint32_t find_shard(const uint64_t *prefix, uint32_t lo, uint32_t hi,
                           uint64_t pos)
{
    while (hi - lo > 1) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (prefix[mid] <= pos) lo = mid;
        else hi = mid;
    }
    return lo;
}

static uint64_t window_sample(const order *o, order_cursor *c, uint64_t epoch,
                              uint64_t pos)
{
    cursor_load(o, c, epoch);
    uint32_t W = o->cfg.window, S = o->nshards;
    uint32_t k = find_shard(c->prefix, 0, S, pos);
    uint64_t w = k / W;
    uint32_t k0 = (uint32_t)(w * W);
    uint32_t k1 = S - k0 < W ? S : k0 + W;
    uint64_t lo = c->prefix[k0], hi = c->prefix[k1];
    order_perm wp;
    order_perm_init(&wp, hi - lo, o->cfg.seed, epoch,
                    TAG_WINDOW + (w << 2));
    uint64_t p2 = lo + order_perm_apply(&wp, pos - lo);
    uint32_t k2 = find_shard(c->prefix, k0, k1, p2);
    uint32_t s = c->perm[k2];
    return o->first[s] + (p2 - c->prefix[k2]);
}

uint64_t order_sample(const order *o, order_cursor *c, uint64_t epoch,
                      uint64_t pos)
{
    switch (o->cfg.mode) {
    case ORDER_GLOBAL: {
        order_perm local, *p = &local;
        if (c != NULL) { /* keys derived once per epoch per thread */
            if (c->gepoch != epoch) {
                order_perm_init(&c->gperm, o->n, o->cfg.seed, epoch,
                                TAG_GLOBAL);
                c->gepoch = epoch;
            }
            p = &c->gperm;
        } else {
            order_perm_init(p, o->n, o->cfg.seed, epoch, TAG_GLOBAL);
        }
        return order_perm_apply(p, pos);
    }
    case ORDER_WINDOW:
        return window_sample(o, c, epoch, pos);
    default:
        return pos;
    }
}

uint64_t order_window_of(const order *o, order_cursor *c, uint64_t epoch,
                         uint64_t pos)
{
    if (o->cfg.mode != ORDER_WINDOW) return 0;
    cursor_load(o, c, epoch);
    return find_shard(c->prefix, 0, o->nshards, pos) / o->cfg.window;
}

uint32_t order_window_shards(const order *o, order_cursor *c, uint64_t epoch,
                             uint64_t w, const uint32_t **shards)
{
    *shards = NULL;
    if (o->cfg.mode != ORDER_WINDOW) return 0;
    uint32_t W = o->cfg.window, S = o->nshards;
    if (w >= (S + (uint64_t)W - 1) / W) return 0;
    cursor_load(o, c, epoch);
    uint32_t k0 = (uint32_t)(w * W);
    *shards = c->perm + k0;
    return S - k0 < W ? S - k0 : W;
}
