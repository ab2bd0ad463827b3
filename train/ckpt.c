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
    for (int i = 0; i < model_nlayers(m); i++)
        meta->widths[i] = (uint32_t)layer_out_size(model_layer(m, i));
    meta->nparams = model_param_count(m);
    meta->nstate = nstate;
}

size_t ckpt_file_bytes(size_t nparams, size_t nstate)
{
    return CKPT_HEADER + 4 * (nparams + nstate) + 8;
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
    for (int i = 0; i < MODEL_MAX_LAYERS; i++)
        st_put_u32(h + 36 + 4 * i, m->widths[i]);
    st_put_u64(h + 96, m->step);
    st_put_u64(h + 104, m->seed);
    st_put_u64(h + 112, m->epoch);
    st_put_u64(h + 120, m->next_batch);
    st_put_u64(h + 128, m->nparams);
    st_put_u64(h + 136, m->nstate);
    st_put_u64(h + 144, m->batch);
    st_put_u64(h + 152, m->samples);
}

static void decode_header(const uint8_t *h, ckpt_meta *m)
{
    memset(m, 0, sizeof *m);
    m->optim = st_get_u32(h + 16);
    m->layers = st_get_u32(h + 20);
    m->in_c = st_get_u32(h + 24);
    m->in_h = st_get_u32(h + 28);
    m->in_w = st_get_u32(h + 32);
    for (int i = 0; i < MODEL_MAX_LAYERS; i++)
        m->widths[i] = st_get_u32(h + 36 + 4 * i);
    m->step = st_get_u64(h + 96);
    m->seed = st_get_u64(h + 104);
    m->epoch = st_get_u64(h + 112);
    m->next_batch = st_get_u64(h + 120);
    m->nparams = st_get_u64(h + 128);
    m->nstate = st_get_u64(h + 136);
    m->batch = st_get_u64(h + 144);
    m->samples = st_get_u64(h + 152);
}

int ckpt_save(const char *path, const ckpt_meta *meta, const float *params,
              const float *state, uint8_t *buf, size_t cap, st_error *err)
{
    size_t len = ckpt_file_bytes(meta->nparams, meta->nstate);
    if (cap < len)
        return st_seterr(err, ST_EINVAL, "checkpoint %s: staging buffer of "
                         "%zu bytes, %zu needed", path, cap, len);
    encode_header(buf, meta);
    size_t pb = 4 * meta->nparams, sb = 4 * meta->nstate;
    memcpy(buf + CKPT_HEADER, params, pb);
    if (sb) memcpy(buf + CKPT_HEADER + pb, state, sb);
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

static void describe(const ckpt_meta *m, char *out, size_t len)
{
    size_t k = (size_t)snprintf(out, len, "%u", m->in_c * m->in_h * m->in_w);
    for (uint32_t i = 0; i < m->layers && i < MODEL_MAX_LAYERS && k < len; i++)
        k += (size_t)snprintf(out + k, len - k, "-%u", m->widths[i]);
    if (k < len)
        snprintf(out + k, len - k, " %s", optim_name((optim_kind)m->optim));
}

static int same_shape(const ckpt_meta *a, const ckpt_meta *b)
{
    return a->optim == b->optim && a->layers == b->layers &&
           a->in_c == b->in_c && a->in_h == b->in_h && a->in_w == b->in_w &&
           memcmp(a->widths, b->widths, sizeof a->widths) == 0 &&
           a->nparams == b->nparams && a->nstate == b->nstate;
}

/* Header checks that do not need the expected shape. */
static int check_file(const char *path, const uint8_t *buf, size_t len,
                      st_error *err)
{
    if (len < CKPT_HEADER + 8 || memcmp(buf, MAGIC, 8) != 0)
        return st_seterr(err, ST_EFORMAT, "%s is not a streamtrain checkpoint "
                         "(bad magic or shorter than a header)", path);
    uint32_t ver = st_get_u32(buf + 8);
    if (ver != CKPT_VERSION)
        return st_seterr(err, ST_EVERSION, "checkpoint %s has version %u; "
                         "this build reads version %u", path, ver,
                         CKPT_VERSION);
    if (st_get_u32(buf + 12) != CKPT_HEADER)
        return st_seterr(err, ST_EFORMAT, "checkpoint %s: header of %u bytes",
                         path, st_get_u32(buf + 12));
    return 0;
}

int ckpt_load(const char *path, const ckpt_meta *expect, ckpt_meta *got,
              float *params, float *state, uint8_t *buf, size_t cap,
              st_error *err)
{
    size_t len = 0;
    int more = 0;
    char want[160], have[160];
    ST_TRY(read_into(path, buf, cap, &len, &more, err));
    ST_TRY(check_file(path, buf, len, err));
    decode_header(buf, got);
    size_t need = ckpt_file_bytes(got->nparams, got->nstate);
    int whole = len == need && !more;
    /* checksum first when the file is complete: a damaged header byte must
     * read as damage, not as another model */
    if (whole && XXH3_64bits(buf, len - 8) != st_get_u64(buf + len - 8))
        return st_seterr(err, ST_ECHECKSUM, "checkpoint %s: checksum mismatch "
                         "(file damaged)", path);
    describe(expect, want, sizeof want);
    describe(got, have, sizeof have);
    if (!same_shape(expect, got))
        return st_seterr(err, ST_EINVAL, "checkpoint %s was saved by model %s; "
                         "this run builds %s: use the same --hidden and "
                         "--optimizer, or another checkpoint", path, have,
                         want);
    if (!whole)
        return st_seterr(err, ST_EFORMAT, "checkpoint %s is %s%zu bytes, its "
                         "header implies %zu (truncated or padded)", path,
                         more ? "more than " : "", len, need);
    size_t pb = 4 * got->nparams, sb = 4 * got->nstate;
    memcpy(params, buf + CKPT_HEADER, pb);
    if (sb) memcpy(state, buf + CKPT_HEADER + pb, sb);
    return 0;
}
