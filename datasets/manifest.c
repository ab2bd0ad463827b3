/* datasets/manifest.c — parsing and formatting the pack's MANIFEST.
 *
 * The text is line-based (grammar in datasets/FORMAT.md): fixed keywords in
 * a fixed order, one record per line, ending with "checksum <16 hex>" over
 * every byte before that line. The parser works on an untrusted buffer and
 * bounds every count before allocating.
 */
#include "manifest.h"
#include "shard.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#define LINE_MAX_BYTES 1024

/* ---- names ------------------------------------------------------------- */

int manifest_valid_split_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n >= 64) return 0;
    for (const char *p = s; *p; p++) {
        char c = *p;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.'))
            return 0;
    }
    return s[0] != '.';
}

static int valid_file_name(const char *s)
{
    return manifest_valid_split_name(s) && strlen(s) < MANIFEST_NAME_MAX;
}

int manifest_valid_class_name(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s);
    if (n == 0 || n >= MANIFEST_NAME_MAX) return 0;
    while (*p) {
        unsigned c = *p;
        int extra;
        uint32_t cp;
        if (c < 0x20 || c == 0x7f) return 0;
        if (c < 0x80) { p++; continue; }
        if ((c & 0xe0) == 0xc0) { extra = 1; cp = c & 0x1f; }
        else if ((c & 0xf0) == 0xe0) { extra = 2; cp = c & 0x0f; }
        else if ((c & 0xf8) == 0xf0) { extra = 3; cp = c & 0x07; }
        else return 0;
        for (int i = 1; i <= extra; i++) {
            if ((p[i] & 0xc0) != 0x80) return 0;
            cp = cp << 6 | (p[i] & 0x3f);
        }
        /* overlong forms, surrogates and values past U+10FFFF */
        if ((extra == 1 && cp < 0x80) || (extra == 2 && cp < 0x800) ||
            (extra == 3 && cp < 0x10000) || cp > 0x10ffff ||
            (cp >= 0xd800 && cp <= 0xdfff) || (cp >= 0x80 && cp < 0xa0))
            return 0;
        p += extra + 1;
    }
    return 1;
}

static const char *const codec_names[] = {"raw", "zstd", "png", "jpeg"};

const char *manifest_codec_name(uint32_t codec)
{
    return codec <= CODEC_JPEG ? codec_names[codec] : "unknown";
}

int manifest_codec_parse(const char *s)
{
    for (int i = 0; i <= CODEC_JPEG; i++)
        if (strcmp(s, codec_names[i]) == 0) return i;
    return -1;
}

/* ---- parsing ----------------------------------------------------------- */

typedef struct cursor {
    const char *p, *end;
    const char *path;
    int lineno;
    char line[LINE_MAX_BYTES];
} cursor;

/* Copies the next line into c->line (without '\n'). */
static int next_line(cursor *c, st_error *err)
{
    if (c->p >= c->end)
        return st_seterr(err, ST_EFORMAT, "%s: unexpected end after line %d",
                         c->path, c->lineno);
    const char *nl = memchr(c->p, '\n', (size_t)(c->end - c->p));
    size_t n = nl ? (size_t)(nl - c->p) : (size_t)(c->end - c->p);
    c->lineno++;
    if (n >= LINE_MAX_BYTES || memchr(c->p, '\0', n) != NULL)
        return st_seterr(err, ST_EFORMAT, "%s: line %d is malformed",
                         c->path, c->lineno);
    memcpy(c->line, c->p, n);
    c->line[n] = '\0';
    c->p += n + (nl ? 1 : 0);
    return 0;
}

static int bad(cursor *c, st_error *err, const char *what)
{
    return st_seterr(err, ST_EFORMAT, "%s: line %d: expected %s", c->path,
                     c->lineno, what);
}

/* Reads "KEY rest" and returns rest, or NULL. */
static const char *keyed(cursor *c, const char *key)
{
    size_t k = strlen(key);
    if (strncmp(c->line, key, k) != 0 || c->line[k] != ' ') return NULL;
    return c->line + k + 1;
}

static int parse_u64(const char **s, uint64_t *v)
{
    const char *p = *s;
    uint64_t x = 0;
    if (*p < '0' || *p > '9') return -1;
    while (*p >= '0' && *p <= '9') {
        if (x > (UINT64_MAX - 9) / 10) return -1;
        x = x * 10 + (uint64_t)(*p++ - '0');
    }
    if (*p != ' ' && *p != '\0') return -1;
    if (*p == ' ') p++;
    *s = p;
    *v = x;
    return 0;
}

static int parse_hex64(const char **s, uint64_t *v)
{
    const char *p = *s;
    uint64_t x = 0;
    for (int i = 0; i < 16; i++, p++) {
        int d = (*p >= '0' && *p <= '9') ? *p - '0'
              : (*p >= 'a' && *p <= 'f') ? *p - 'a' + 10 : -1;
        if (d < 0) return -1;
        x = x << 4 | (uint64_t)d;
    }
    if (*p != ' ' && *p != '\0') return -1;
    if (*p == ' ') p++;
    *s = p;
    *v = x;
    return 0;
}

/* Copies one space-delimited word into dst (cap bytes). */
static int parse_word(const char **s, char *dst, size_t cap)
{
    const char *p = *s, *e = strchr(p, ' ');
    size_t n = e ? (size_t)(e - p) : strlen(p);
    if (n == 0 || n >= cap) return -1;
    memcpy(dst, p, n);
    dst[n] = '\0';
    *s = p + n + (e ? 1 : 0);
    return 0;
}

/* A decimal "D+[.D+]" in 0..max (channel statistics). Strict, so that
 * what parses formats back to the same text. */
static int parse_fixed(const char **s, double max, double *v)
{
    const char *p = *s, *start = p;
    while (*p >= '0' && *p <= '9') p++;
    if (p == start || p - start > 3) return -1;
    if (*p == '.') {
        const char *f = ++p;
        while (*p >= '0' && *p <= '9') p++;
        if (p == f || p - f > 6) return -1;
    }
    if (*p != ' ' && *p != '\0') return -1;
    char tmp[16];
    memcpy(tmp, start, (size_t)(p - start));
    tmp[p - start] = '\0';
    double x = strtod(tmp, NULL);
    if (!(x >= 0.0 && x <= max)) return -1;
    *v = x;
    *s = p + (*p == ' ');
    return 0;
}

/* "shape H W C", or in version 2 "shape variable MAXH MAXW C". */
static int parse_shape(cursor *c, manifest *m, st_error *err)
{
    const char *r;
    uint64_t a, b, d;
    const char *what = m->version == 1
        ? "'shape H W C' (1..65535, 1..65535, 1..4)"
        : "'shape H W C' or 'shape variable MAXH MAXW C' (1..65535, "
          "1..65535, 1..4)";
    ST_TRY(next_line(c, err));
    if (!(r = keyed(c, "shape"))) return bad(c, err, what);
    if (m->version >= 2 && strncmp(r, "variable ", 9) == 0) {
        m->variable = 1;
        r += 9;
    }
    if (parse_u64(&r, &a) || parse_u64(&r, &b) || parse_u64(&r, &d) || *r ||
        a == 0 || b == 0 || d == 0 || a > 65535 || b > 65535 || d > 4)
        return bad(c, err, what);
    m->height = m->max_h = (uint32_t)a;
    m->width = m->max_w = (uint32_t)b;
    m->channels = (uint32_t)d;
    return 0;
}

/* Version 2: "max-record BYTES" and "channel-stats SPLIT M.. S.." or
 * "channel-stats none". */
static int parse_v2_extras(cursor *c, manifest *m, st_error *err)
{
    const char *r;
    uint64_t a;
    ST_TRY(next_line(c, err));
    if (!(r = keyed(c, "max-record")) || parse_u64(&r, &a) || *r || a == 0 ||
        a > (1u << 30))
        return bad(c, err, "'max-record BYTES' (1..2^30)");
    m->max_record = a;
    ST_TRY(next_line(c, err));
    if (strcmp(c->line, "channel-stats none") == 0) return 0;
    const char *what = "'channel-stats none' or 'channel-stats SPLIT MEAN.. "
                       "STD..' (one of each per channel, 0..255)";
    if (!(r = keyed(c, "channel-stats")) ||
        parse_word(&r, m->stats_split, sizeof m->stats_split) ||
        !manifest_valid_split_name(m->stats_split))
        return bad(c, err, what);
    for (uint32_t i = 0; i < m->channels; i++)
        if (parse_fixed(&r, 255.0, &m->mean[i])) return bad(c, err, what);
    for (uint32_t i = 0; i < m->channels; i++)
        if (parse_fixed(&r, 255.0, &m->std[i])) return bad(c, err, what);
    if (*r) return bad(c, err, what);
    m->has_stats = 1;
    return 0;
}

static int parse_header(cursor *c, manifest *m, st_error *err)
{
    const char *r;
    uint64_t a;
    char word[MANIFEST_NAME_MAX];
    uint32_t max_codec = m->version == 1 ? CODEC_PNG : CODEC_JPEG;
    ST_TRY(next_line(c, err));
    if (!(r = keyed(c, "codec")) || parse_word(&r, word, sizeof word) ||
        *r || manifest_codec_parse(word) < 0 ||
        (uint32_t)manifest_codec_parse(word) > max_codec)
        return bad(c, err, m->version == 1 ? "'codec raw|zstd|png'"
                                           : "'codec raw|zstd|png|jpeg'");
    m->codec = (uint32_t)manifest_codec_parse(word);
    ST_TRY(next_line(c, err));
    if (!(r = keyed(c, "level")) || parse_u64(&r, &a) || *r || a > 22)
        return bad(c, err, "'level N'");
    m->level = (int)a;
    ST_TRY(parse_shape(c, m, err));
    ST_TRY(next_line(c, err));
    if (strcmp(c->line, "dtype uint8") != 0) return bad(c, err, "'dtype uint8'");
    ST_TRY(next_line(c, err));
    if (strcmp(c->line, "label int32") != 0) return bad(c, err, "'label int32'");
    if (m->version >= 2) ST_TRY(parse_v2_extras(c, m, err));
    if (m->codec == CODEC_JPEG && m->channels != 1 && m->channels != 3)
        return bad(c, err, "1 or 3 channels with the jpeg codec");
    return 0;
}

static int parse_dict(cursor *c, manifest *m, st_error *err)
{
    const char *r;
    uint64_t bytes, id;
    ST_TRY(next_line(c, err));
    if (strcmp(c->line, "dict none") == 0) return 0;
    if (!(r = keyed(c, "dict")) ||
        parse_word(&r, m->dict_file, sizeof m->dict_file) ||
        !valid_file_name(m->dict_file) || parse_u64(&r, &bytes) ||
        parse_u64(&r, &id) || parse_hex64(&r, &m->dict_xxh3) || *r ||
        id > UINT32_MAX || bytes == 0 || bytes > (64u << 20))
        return bad(c, err, "'dict none' or 'dict FILE BYTES ID XXH3'");
    m->dict_bytes = bytes;
    m->dict_id = (uint32_t)id;
    return 0;
}

static int parse_classes(cursor *c, manifest *m, st_error *err)
{
    const char *r;
    uint64_t n;
    ST_TRY(next_line(c, err));
    if (!(r = keyed(c, "classes")) || parse_u64(&r, &n) || *r ||
        n > MANIFEST_MAX_CLASSES)
        return bad(c, err, "'classes N' (N <= 65536)");
    m->classes = calloc(n ? n : 1, sizeof *m->classes);
    if (m->classes == NULL)
        return st_seterr(err, ST_ENOMEM, "%s: out of memory", c->path);
    for (uint64_t i = 0; i < n; i++) {
        ST_TRY(next_line(c, err));
        if (!(r = keyed(c, "class")) || !manifest_valid_class_name(r))
            return bad(c, err, "'class NAME' (valid UTF-8)");
        if ((m->classes[i] = strdup(r)) == NULL)
            return st_seterr(err, ST_ENOMEM, "%s: out of memory", c->path);
        m->nclasses = (uint32_t)(i + 1);
    }
    return 0;
}

static int parse_split(cursor *c, manifest_split *s, st_error *err)
{
    const char *r = keyed(c, "split");
    uint64_t samples, nshards, total = 0;
    if (!r || parse_word(&r, s->name, sizeof s->name) ||
        !manifest_valid_split_name(s->name) || parse_u64(&r, &samples) ||
        parse_u64(&r, &nshards) || *r || nshards == 0 || nshards > 1000000)
        return bad(c, err, "'split NAME SAMPLES SHARDS'");
    s->shards = calloc(nshards, sizeof *s->shards);
    if (s->shards == NULL)
        return st_seterr(err, ST_ENOMEM, "%s: out of memory", c->path);
    for (uint64_t i = 0; i < nshards; i++) {
        manifest_shard *sh = &s->shards[i];
        ST_TRY(next_line(c, err));
        if (!(r = keyed(c, "shard")) ||
            parse_word(&r, sh->file, sizeof sh->file) ||
            !valid_file_name(sh->file) || parse_u64(&r, &sh->records) ||
            parse_u64(&r, &sh->bytes) || parse_hex64(&r, &sh->file_xxh3) ||
            parse_hex64(&r, &sh->index_xxh3) || *r || sh->records == 0 ||
            sh->records > UINT64_MAX / 2 - total)
            return bad(c, err, "'shard FILE RECORDS BYTES XXH3 INDEX_XXH3'");
        total += sh->records;
        s->nshards = (uint32_t)(i + 1);
    }
    if (total != samples)
        return st_seterr(err, ST_EFORMAT, "%s: split %s lists %llu samples "
                         "but its shards hold %llu", c->path, s->name,
                         (unsigned long long)samples, (unsigned long long)total);
    s->samples = samples;
    return 0;
}

static int parse_body(cursor *c, manifest *m, st_error *err)
{
    ST_TRY(parse_header(c, m, err));
    ST_TRY(parse_dict(c, m, err));
    ST_TRY(parse_classes(c, m, err));
    for (;;) {
        ST_TRY(next_line(c, err));
        if (keyed(c, "checksum")) break;
        if (m->nsplits == MANIFEST_MAX_SPLITS)
            return bad(c, err, "at most 16 splits");
        ST_TRY(parse_split(c, &m->splits[m->nsplits], err));
        for (uint32_t i = 0; i < m->nsplits; i++)
            if (strcmp(m->splits[i].name, m->splits[m->nsplits].name) == 0)
                return bad(c, err, "distinct split names");
        m->nsplits++;
    }
    if (m->nsplits == 0) return bad(c, err, "at least one split");
    if (m->dict_file[0] != 0 && m->codec != CODEC_ZSTD)
        return bad(c, err, "a dictionary only with the zstd codec");
    return 0;
}

/* Checks the first line's version, then the checksum over everything
 * before the last line. */
static int check_envelope(const char *text, size_t len, const char *path,
                          size_t *body_end, uint32_t *version, st_error *err)
{
    static const char magic[] = "streamtrain-pack ";
    size_t mlen = sizeof magic - 1;
    if (len < mlen || memcmp(text, magic, mlen) != 0)
        return st_seterr(err, ST_EFORMAT, "%s: not a streamtrain pack "
                         "manifest (bad magic)", path);
    unsigned long v = 0;
    size_t i = mlen;
    while (i < len && i < mlen + 9 && text[i] >= '0' && text[i] <= '9')
        v = v * 10 + (unsigned long)(text[i++] - '0');
    if (i == mlen || i >= len || text[i] != '\n')
        return st_seterr(err, ST_EFORMAT, "%s: line 1: malformed version",
                         path);
    if (v < MANIFEST_VERSION_MIN || v > MANIFEST_VERSION)
        return st_seterr(err, ST_EVERSION, "%s: pack format version %lu is "
                         "not supported (this build reads versions %u and %u)",
                         path, v, MANIFEST_VERSION_MIN, MANIFEST_VERSION);
    if (version) *version = (uint32_t)v;
    /* last line: "checksum " + 16 hex + "\n" */
    const size_t tail = 9 + 16 + 1;
    if (len < tail + i + 1 || text[len - 1] != '\n' ||
        memcmp(text + len - tail, "checksum ", 9) != 0 ||
        text[len - tail - 1] != '\n')
        return st_seterr(err, ST_EFORMAT, "%s: missing checksum line "
                         "(truncated manifest?)", path);
    const char *h = text + len - tail + 9;
    char hex[17];
    memcpy(hex, h, 16);
    hex[16] = '\0';
    const char *hp = hex;
    uint64_t want;
    if (parse_hex64(&hp, &want) != 0)
        return st_seterr(err, ST_EFORMAT, "%s: malformed checksum line", path);
    if (XXH3_64bits(text, len - tail) != want)
        return st_seterr(err, ST_ECHECKSUM, "%s: checksum mismatch (the "
                         "manifest was modified or is corrupt)", path);
    *body_end = len - tail;
    return 0;
}

int manifest_parse(const char *text, size_t len, const char *path,
                   manifest **out, st_error *err)
{
    *out = NULL;
    size_t body_end = 0;
    uint32_t version = 0;
    ST_TRY(check_envelope(text, len, path, &body_end, &version, err));
    manifest *m = calloc(1, sizeof *m);
    if (m == NULL) return st_seterr(err, ST_ENOMEM, "%s: out of memory", path);
    m->version = version;
    cursor c = {.p = memchr(text, '\n', len) + 1, .end = text + len,
                .path = path, .lineno = 1};
    int rc = parse_body(&c, m, err);
    if (rc == 0 && (size_t)(c.p - text) != len && body_end > 0)
        rc = st_seterr(err, ST_EFORMAT, "%s: data after the checksum line",
                       path);
    if (rc != 0) {
        manifest_free(m);
        return rc;
    }
    *out = m;
    return 0;
}

/* ---- formatting -------------------------------------------------------- */

typedef struct sbuf { char *p; size_t len, cap; int oom; } sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void sb_printf(sbuf *b, const char *fmt, ...)
{
    if (b->p == NULL && !b->oom) {
        b->cap = 4096;
        if ((b->p = malloc(b->cap)) == NULL) b->oom = 1;
    }
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        size_t room = b->cap - b->len;
        int n = b->oom ? 0 : vsnprintf(b->p + b->len, room, fmt, ap);
        va_end(ap);
        if (b->oom || n < 0) { b->oom = 1; return; }
        if ((size_t)n < room) { b->len += (size_t)n; return; }
        size_t cap = (b->cap + (size_t)n + 1) * 2;
        char *np = realloc(b->p, cap);
        if (np == NULL) { b->oom = 1; return; }
        b->p = np;
        b->cap = cap;
    }
}

/* Channel statistics with 4 decimals: far below one pixel level, and the
 * text parses back to the value it prints. */
static void format_v2_extras(sbuf *b, const manifest *m)
{
    sb_printf(b, "max-record %" PRIu64 "\n", m->max_record);
    if (!m->has_stats) {
        sb_printf(b, "channel-stats none\n");
        return;
    }
    sb_printf(b, "channel-stats %s", m->stats_split);
    for (uint32_t i = 0; i < m->channels; i++) sb_printf(b, " %.4f", m->mean[i]);
    for (uint32_t i = 0; i < m->channels; i++) sb_printf(b, " %.4f", m->std[i]);
    sb_printf(b, "\n");
}

int manifest_format(const manifest *m, char **text, size_t *len,
                    st_error *err)
{
    sbuf b = {0};
    *text = NULL;
    if (m->version == 1 && (m->variable || m->codec > CODEC_PNG))
        return st_seterr(err, ST_EINVAL, "manifest: version 1 holds neither "
                         "variable shapes nor the %s codec",
                         manifest_codec_name(m->codec));
    sb_printf(&b, "streamtrain-pack %u\ncodec %s\nlevel %d\nshape %s%u %u %u\n"
              "dtype uint8\nlabel int32\n", m->version == 1 ? 1 : MANIFEST_VERSION,
              manifest_codec_name(m->codec), m->level,
              m->variable ? "variable " : "", m->height, m->width,
              m->channels);
    if (m->version != 1) format_v2_extras(&b, m);
    if (m->dict_file[0])
        sb_printf(&b, "dict %s %" PRIu64 " %u %016" PRIx64 "\n", m->dict_file,
                  m->dict_bytes, m->dict_id, m->dict_xxh3);
    else
        sb_printf(&b, "dict none\n");
    sb_printf(&b, "classes %u\n", m->nclasses);
    for (uint32_t i = 0; i < m->nclasses; i++) {
        if (!manifest_valid_class_name(m->classes[i])) {
            free(b.p);
            return st_seterr(err, ST_EINVAL, "class %u: name is not valid "
                             "UTF-8 or holds control characters", i);
        }
        sb_printf(&b, "class %s\n", m->classes[i]);
    }
    for (uint32_t s = 0; s < m->nsplits; s++) {
        const manifest_split *sp = &m->splits[s];
        sb_printf(&b, "split %s %" PRIu64 " %u\n", sp->name, sp->samples,
                  sp->nshards);
        for (uint32_t k = 0; k < sp->nshards; k++) {
            const manifest_shard *sh = &sp->shards[k];
            sb_printf(&b, "shard %s %" PRIu64 " %" PRIu64 " %016" PRIx64
                      " %016" PRIx64 "\n", sh->file, sh->records, sh->bytes,
                      sh->file_xxh3, sh->index_xxh3);
        }
    }
    if (!b.oom)
        sb_printf(&b, "checksum %016" PRIx64 "\n", XXH3_64bits(b.p, b.len));
    if (b.oom) {
        free(b.p);
        return st_seterr(err, ST_ENOMEM, "manifest: out of memory");
    }
    *text = b.p;
    *len = b.len;
    return 0;
}

void manifest_free(manifest *m)
{
    if (m == NULL) return;
    for (uint32_t i = 0; i < m->nclasses; i++) free(m->classes[i]);
    free(m->classes);
    for (uint32_t s = 0; s < MANIFEST_MAX_SPLITS; s++) free(m->splits[s].shards);
    free(m);
}
