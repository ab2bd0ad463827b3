/* train/ckpt.c — checkpoint encode/decode (layout in train/ckpt.h). */
#include "train/ckpt.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#include "datasets/bytes.h"
#include "datasets/fsutil.h"
#include "train/optim.h"
#include "train/spec.h"

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "checkpoints store floats little-endian; add byte swapping here"
#endif

static const uint8_t MAGIC[8] = {'S', 'T', 'C', 'K', 'P', 'T', '\r', '\n'};

void ckpt_meta_from_model(ckpt_meta *meta, const model *m, uint32_t optim,
                          size_t nstate)
{
    const model_spec *s = model_get_spec(m);
    memset(meta, 0, sizeof *meta);
    meta->optim = optim;
    meta->layers = (uint32_t)model_nlayers(m);
    meta->in_c = (uint32_t)s->in_c;
    meta->in_h = (uint32_t)s->in_h;
    meta->in_w = (uint32_t)s->in_w;
    snprintf(meta->arch, sizeof meta->arch, "%s", model_arch(m));
    meta->nparams = model_param_count(m);
    meta->nstate = nstate;
    meta->nmstate = model_state_count(m);
}

static size_t arch_bytes(const ckpt_meta *m) { return strlen(m->arch); }
static size_t align8(size_t n) { return (n + 7) & ~(size_t)7; }

static size_t data_offset(const ckpt_meta *m)
{
    return CKPT_HEADER + align8(arch_bytes(m));
}

size_t ckpt_file_bytes(const ckpt_meta *m)
{
    return data_offset(m) + 4 * (m->nparams + m->nstate + m->nmstate) + 8;
}

static void encode_header(uint8_t *h, const ckpt_meta *m)
{
    memset(h, 0, CKPT_HEADER);
    memcpy(h, MAGIC, 8);
    st_put_u32(h + 8, CKPT_VERSION);
    st_put_u32(h + 12, CKPT_HEADER);
    st_put_u32(h + 16, m->optim);
    st_put_u32(h + 20, m->layers);
    st_put_u32(h + 24, m->in_c);
    st_put_u32(h + 28, m->in_h);
    st_put_u32(h + 32, m->in_w);
    st_put_u64(h + 96, m->step);
    st_put_u64(h + 104, m->seed);
    st_put_u64(h + 112, m->epoch);
    st_put_u64(h + 120, m->next_batch);
    st_put_u64(h + 128, m->nparams);
    st_put_u64(h + 136, m->nstate);
    st_put_u64(h + 144, m->batch);
    st_put_u64(h + 152, m->samples);
    st_put_u64(h + 160, m->nmstate);
    st_put_u32(h + 168, (uint32_t)arch_bytes(m));
    memcpy(h + CKPT_HEADER, m->arch, arch_bytes(m));
    memset(h + CKPT_HEADER + arch_bytes(m), 0,
           align8(arch_bytes(m)) - arch_bytes(m));
}

/* A version 1 file's MLP as model_arch() would name it. */
static void v1_arch(ckpt_meta *m)
{
    size_t k = (size_t)snprintf(m->arch, sizeof m->arch, "mlp: ");
    for (uint32_t i = 0; i < m->layers && i < CKPT_V1_LAYERS; i++)
        k += (size_t)snprintf(m->arch + k, sizeof m->arch - k, "dense%u%s",
                              m->widths[i], i + 1 < m->layers ? ",relu," : "");
}

/* The fixed header (and, for version 2, the arch length in *alen). */
static void decode_header(const uint8_t *h, ckpt_meta *m, uint32_t *alen)
{
    uint32_t ver = st_get_u32(h + 8);
    memset(m, 0, sizeof *m);
    m->optim = st_get_u32(h + 16);
    m->layers = st_get_u32(h + 20);
    m->in_c = st_get_u32(h + 24);
    m->in_h = st_get_u32(h + 28);
    m->in_w = st_get_u32(h + 32);
    if (ver == 1)
        for (int i = 0; i < CKPT_V1_LAYERS; i++)
            m->widths[i] = st_get_u32(h + 36 + 4 * i);
    m->step = st_get_u64(h + 96);
    m->seed = st_get_u64(h + 104);
    m->epoch = st_get_u64(h + 112);
    m->next_batch = st_get_u64(h + 120);
    m->nparams = st_get_u64(h + 128);
    m->nstate = st_get_u64(h + 136);
    m->batch = st_get_u64(h + 144);
    m->samples = st_get_u64(h + 152);
    *alen = 0;
    if (ver == 1) {
        v1_arch(m);
        return;
    }
    m->nmstate = st_get_u64(h + 160);
    *alen = st_get_u32(h + 168);
}

int ckpt_save(const char *path, const ckpt_meta *meta, const float *params,
              const float *state, const float *mstate, uint8_t *buf,
              size_t cap, st_error *err)
{
    size_t len = ckpt_file_bytes(meta);
    if (cap < len)
        return st_seterr(err, ST_EINVAL, "checkpoint %s: staging buffer of "
                         "%zu bytes, %zu needed", path, cap, len);
    encode_header(buf, meta);
    size_t off = data_offset(meta);
    size_t pb = 4 * meta->nparams, sb = 4 * meta->nstate;
    size_t rb = 4 * meta->nmstate;
    memcpy(buf + off, params, pb);
    if (sb) memcpy(buf + off + pb, state, sb);
    if (rb) memcpy(buf + off + pb + sb, mstate, rb);
    st_put_u64(buf + len - 8, XXH3_64bits(buf, len - 8));
    return fs_write_atomic(path, buf, len, err);
}

/* Reads up to cap bytes of path into buf without allocating; *more is set
 * when the file goes on past cap. */
static int read_into(const char *path, uint8_t *buf, size_t cap, size_t *len,
                     int *more, st_error *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    *len = 0;
    *more = 0;
    if (fd < 0)
        return st_seterr(err, errno == ENOENT ? ST_ENOTFOUND : ST_EIO,
                         "checkpoint %s: %s", path, strerror(errno));
    size_t n = 0;
    int rc = 0;
    for (;;) {
        char extra;
        ssize_t r = n < cap ? read(fd, buf + n, cap - n) : read(fd, &extra, 1);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            rc = st_seterr(err, ST_EIO, "checkpoint %s: read: %s", path,
                           strerror(errno));
            break;
        }
        if (r == 0) break;
        if (n == cap) {
            *more = 1;
            break;
        }
        n += (size_t)r;
    }
    close(fd);
    *len = n;
    return rc;
}

/* "'cnn: conv...' on 28x28x1, sgd" (the architecture kept short) */
static void describe(const ckpt_meta *m, char *out, size_t len)
{
    snprintf(out, len, "'%.300s' on %ux%ux%u, %s", m->arch, m->in_h, m->in_w,
             m->in_c, optim_name((optim_kind)m->optim));
}

static int same_shape(const ckpt_meta *a, const ckpt_meta *b)
{
    return a->optim == b->optim && spec_canon_equal(a->arch, b->arch) &&
           a->in_c == b->in_c && a->in_h == b->in_h && a->in_w == b->in_w &&
           a->nparams == b->nparams && a->nstate == b->nstate &&
           a->nmstate == b->nmstate;
}

/* Header checks that do not need the expected shape. */
static int check_file(const char *path, const uint8_t *buf, size_t len,
                      st_error *err)
{
    if (len < CKPT_HEADER + 8 || memcmp(buf, MAGIC, 8) != 0)
        return st_seterr(err, ST_EFORMAT, "%s is not a streamtrain checkpoint "
                         "(bad magic or shorter than a header)", path);
    uint32_t ver = st_get_u32(buf + 8);
    if (ver != CKPT_VERSION && ver != 1)
        return st_seterr(err, ST_EVERSION, "checkpoint %s has version %u; "
                         "this build reads versions 1 and %u", path, ver,
                         CKPT_VERSION);
    if (st_get_u32(buf + 12) != CKPT_HEADER)
        return st_seterr(err, ST_EFORMAT, "checkpoint %s: header of %u bytes",
                         path, st_get_u32(buf + 12));
    return 0;
}

int ckpt_load(const char *path, const ckpt_meta *expect, ckpt_meta *got,
              float *params, float *state, float *mstate, uint8_t *buf,
              size_t cap, st_error *err)
{
    size_t len = 0;
    int more = 0;
    uint32_t alen = 0;
    char want[400], have[400];
    ST_TRY(read_into(path, buf, cap, &len, &more, err));
    ST_TRY(check_file(path, buf, len, err));
    decode_header(buf, got, &alen);
    if (alen >= sizeof got->arch || CKPT_HEADER + (size_t)alen + 8 > len) {
        if (!more && XXH3_64bits(buf, len - 8) != st_get_u64(buf + len - 8))
            return st_seterr(err, ST_ECHECKSUM, "checkpoint %s: checksum "
                             "mismatch (file damaged)", path);
        return st_seterr(err, ST_EFORMAT, "checkpoint %s: architecture text "
                         "of %u bytes (damaged or truncated)", path, alen);
    }
    if (alen) memcpy(got->arch, buf + CKPT_HEADER, alen), got->arch[alen] = 0;
    size_t off = st_get_u32(buf + 8) == 1 ? CKPT_HEADER : data_offset(got);
    size_t need = off + 4 * (got->nparams + got->nstate + got->nmstate) + 8;
    int whole = len == need && !more;
    /* checksum first when the file is complete: a damaged header byte must
     * read as damage, not as another model */
    if (whole && XXH3_64bits(buf, len - 8) != st_get_u64(buf + len - 8))
        return st_seterr(err, ST_ECHECKSUM, "checkpoint %s: checksum mismatch "
                         "(file damaged)", path);
    describe(expect, want, sizeof want);
    describe(got, have, sizeof have);
    if (!same_shape(expect, got))
        return st_seterr(err, ST_EINVAL, "checkpoint %s is model %s; this run "
                         "is %s: use the same --model, --hidden and "
                         "--optimizer, or another checkpoint", path, have,
                         want);
    if (!whole)
        return st_seterr(err, ST_EFORMAT, "checkpoint %s is %s%zu bytes, its "
                         "header implies %zu (truncated or padded)", path,
                         more ? "more than " : "", len, need);
    size_t pb = 4 * got->nparams, sb = 4 * got->nstate;
    size_t rb = 4 * got->nmstate;
    memcpy(params, buf + off, pb);
    if (sb) memcpy(state, buf + off + pb, sb);
    if (rb) memcpy(mstate, buf + off + pb + sb, rb);
    return 0;
}
