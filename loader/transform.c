/* loader/transform.c — the per-split sample transforms: their text form
 * (parse / format) and each sample's box and flip as a pure function of
 * (spec, seed, epoch, id, source size). See transform.h for the contract.
 *
 * Randomness: each sample has its own counter-based stream. Its key is a
 * splitmix64 chain over (seed, epoch, id) under a domain constant of this
 * module; number k of the stream is splitmix64's finalizer of key + (k + 1)
 * * golden, its top 53 bits as a double in [0, 1) (transform_uniform).
 * Number 0 decides the flip; numbers 1, 2, ... feed the transform's own
 * draws in the order torchvision makes them. Nothing is shared between
 * samples or threads.
 */
#include "transform.h"
#include "mix.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TF_MAX_SIDE 4096
#define TF_MAX_ATTEMPTS 1000
#define TF_MAX_WORDS 16
#define TF_DOMAIN 0x7472616e73666f72ull /* "transfor" */
#define TF_GOLDEN 0x9e3779b97f4a7c15ull

/* ---- the random stream ----------------------------------------------------- */

static uint64_t sample_key(uint64_t seed, uint64_t epoch, uint64_t id)
{
    uint64_t k = mix64(seed + TF_DOMAIN * TF_GOLDEN);
    k = mix64(k ^ (epoch + TF_GOLDEN));
    return mix64(k ^ (id * 0xd1b54a32d192ed03ull + TF_GOLDEN));
}

static inline double key_uniform(uint64_t key, uint32_t k)
{
    uint64_t z = mix64(key + ((uint64_t)k + 1) * TF_GOLDEN);
    return (double)(z >> 11) * 0x1.0p-53;
}

double transform_uniform(uint64_t seed, uint64_t epoch, uint64_t id,
                         uint32_t k)
{
    return key_uniform(sample_key(seed, epoch, id), k);
}

/* torch.randint(0, n): an integer uniform in [0, n) from u in [0, 1). */
static inline uint32_t randint(double u, uint32_t n)
{
    uint32_t v = (uint32_t)(u * (double)n);
    return v < n ? v : n - 1;
}

/* ---- parameters ------------------------------------------------------------ */

static void whole(uint32_t w, uint32_t h, transform_box *out)
{
    out->x0 = 0;
    out->y0 = 0;
    out->x1 = w;
    out->y1 = h;
}

/* torchvision's RandomResizedCrop.get_params (see transform.h). */
static void rrc_box(const transform_spec *t, uint64_t key, uint32_t W,
                    uint32_t H, transform_box *out)
{
    double area = (double)W * (double)H;
    double lr0 = log(t->ratio_min), lr1 = log(t->ratio_max);
    uint32_t k = 1;
    for (int a = 0; a < t->attempts; a++) {
        double ta = area * (t->scale_min + (t->scale_max - t->scale_min) *
                                               key_uniform(key, k++));
        double ar = exp(lr0 + (lr1 - lr0) * key_uniform(key, k++));
        double w = rint(sqrt(ta * ar)), h = rint(sqrt(ta / ar));
        if (w > 0 && w <= W && h > 0 && h <= H) {
            uint32_t i = randint(key_uniform(key, k++), H - (uint32_t)h + 1);
            uint32_t j = randint(key_uniform(key, k++), W - (uint32_t)w + 1);
            out->x0 = j;
            out->y0 = i;
            out->x1 = j + w;
            out->y1 = i + h;
            return;
        }
    }
    /* the fallback: the centre crop of the aspect clamped to the ratio */
    double in_ratio = (double)W / (double)H, w = W, h = H;
    if (in_ratio < t->ratio_min)
        h = rint(w / t->ratio_min);
    else if (in_ratio > t->ratio_max)
        w = rint(h * t->ratio_max);
    if (h < 1) h = 1; /* torchvision would give an empty crop here */
    if (w < 1) w = 1;
    uint32_t i = (H - (uint32_t)h) / 2, j = (W - (uint32_t)w) / 2;
    out->x0 = j;
    out->y0 = i;
    out->x1 = j + w;
    out->y1 = i + h;
}

/* torchvision's Resize(int(S / crop_frac)) then CenterCrop(S), as the box
 * of the original image that the S x S crop covers. The resize of the
 * whole image maps resized pixel p to the source centre (p + 0.5) * W /
 * new_w; this box, resampled to S x S, gives output o the centre x0 + (o +
 * 0.5) * (x1 - x0) / S = (left + o + 0.5) * W / new_w and the same filter
 * scale: the same taps, up to the float rounding of the box's ends. */
static void center_box(const transform_spec *t, uint32_t W, uint32_t H,
                       transform_box *out)
{
    uint32_t S = t->out_w;
    double R = floor((double)S / t->crop_frac);
    double nw, nh;
    if (W <= H) {
        nw = R;
        nh = floor(R * (double)H / (double)W);
    } else {
        nh = R;
        nw = floor(R * (double)W / (double)H);
    }
    double top = rint((nh - S) / 2.0), left = rint((nw - S) / 2.0);
    double sx = (double)W / nw, sy = (double)H / nh;
    out->x0 = fmax(0.0, left * sx);
    out->y0 = fmax(0.0, top * sy);
    out->x1 = fmin((double)W, (left + S) * sx);
    out->y1 = fmin((double)H, (top + S) * sy);
}

void transform_params(const transform_spec *t, uint64_t seed, uint64_t epoch,
                      uint64_t id, uint32_t src_w, uint32_t src_h,
                      transform_box *out)
{
    uint64_t key = sample_key(seed, epoch, id);
    out->flip = t->flip ? key_uniform(key, 0) < 0.5 : 0;
    out->crop_first = 0;
    if (src_w == 0 || src_h == 0) { /* outside the contract: an empty box */
        whole(0, 0, out);
        return;
    }
    switch (t->kind) {
    case TRANSFORM_RRC:
        rrc_box(t, key, src_w, src_h, out);
        out->crop_first = 1;
        break;
    case TRANSFORM_CENTER:
        center_box(t, src_w, src_h, out);
        break;
    case TRANSFORM_PAD_CROP: {
        uint32_t n = 2 * t->pad + 1;
        uint32_t i = randint(key_uniform(key, 1), n);
        uint32_t j = randint(key_uniform(key, 2), n);
        out->x0 = j;
        out->y0 = i;
        out->x1 = (double)j + src_w;
        out->y1 = (double)i + src_h;
        out->crop_first = 1;
        break;
    }
    case TRANSFORM_RESIZE:
    case TRANSFORM_NONE:
    default:
        whole(src_w, src_h, out);
        out->crop_first = t->kind == TRANSFORM_NONE;
        break;
    }
}

void transform_out_size(const transform_spec *t, uint32_t src_w,
                        uint32_t src_h, uint32_t *out_w, uint32_t *out_h)
{
    int fixed = t->kind == TRANSFORM_RRC || t->kind == TRANSFORM_CENTER ||
                t->kind == TRANSFORM_RESIZE;
    *out_w = fixed ? t->out_w : src_w;
    *out_h = fixed ? t->out_h : src_h;
}

int transform_dct_scale(double box_w, double box_h, uint32_t out_w,
                        uint32_t out_h)
{
    for (int s = 8; s > 1; s /= 2)
        if (box_w / s >= (double)out_w && box_h / s >= (double)out_h)
            return s;
    return 1;
}

/* ---- text form ------------------------------------------------------------- */

static const char *const kind_name[] = {
    [TRANSFORM_NONE] = "none",
    [TRANSFORM_RRC] = "random-resized-crop",
    [TRANSFORM_CENTER] = "center-crop",
    [TRANSFORM_RESIZE] = "resize",
    [TRANSFORM_PAD_CROP] = "pad-crop",
};

static const char *const kind_usage[] = {
    [TRANSFORM_NONE] = "none [flip] [erase=P]",
    [TRANSFORM_RRC] = "random-resized-crop S [scale=A,B] [ratio=A,B] "
                      "[attempts=N] [flip] [interp=bilinear|area] [erase=P]",
    [TRANSFORM_CENTER] = "center-crop S [crop-frac=F] [flip] "
                         "[interp=bilinear|area] [erase=P]",
    [TRANSFORM_RESIZE] = "resize WxH [flip] [interp=bilinear|area] [erase=P]",
    [TRANSFORM_PAD_CROP] = "pad-crop P [flip] [erase=P]",
};

void transform_spec_default(transform_spec *t, transform_kind kind)
{
    memset(t, 0, sizeof *t);
    t->kind = kind;
    t->scale_min = 0.08;
    t->scale_max = 1.0;
    t->ratio_min = 3.0 / 4.0;
    t->ratio_max = 4.0 / 3.0;
    t->attempts = 10;
    t->crop_frac = 0.875;
    t->interp = RESAMPLE_BILINEAR;
}

static int parse_u32(const char *s, uint32_t lo, uint32_t hi, uint32_t *out)
{
    if (*s < '0' || *s > '9') return -1;
    char *end;
    unsigned long v = strtoul(s, &end, 10);
    if (*end != '\0' || v < lo || v > hi) return -1;
    *out = (uint32_t)v;
    return 0;
}

static int parse_num(const char *s, double *out)
{
    if (*s == '\0') return -1;
    char *end;
    double v = strtod(s, &end);
    if (*end != '\0' || !isfinite(v)) return -1;
    *out = v;
    return 0;
}

/* "A,B" with both numbers finite. */
static int parse_pair(const char *s, double *a, double *b)
{
    char buf[64];
    const char *comma = strchr(s, ',');
    if (comma == NULL || (size_t)(comma - s) >= sizeof buf) return -1;
    memcpy(buf, s, (size_t)(comma - s));
    buf[comma - s] = '\0';
    return parse_num(buf, a) != 0 || parse_num(comma + 1, b) != 0 ? -1 : 0;
}

typedef struct parse_ctx {
    const char *text;
    st_error *err;
} parse_ctx;

#define PERR(ctx, ...) parse_fail((ctx), __VA_ARGS__)
static int parse_fail(const parse_ctx *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int parse_fail(const parse_ctx *p, const char *fmt, ...)
{
    char what[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return st_seterr(p->err, ST_EINVAL, "transform '%s': %s", p->text, what);
}

/* The size word of kind k into t. */
static int parse_size(const parse_ctx *p, transform_spec *t, const char *w)
{
    switch (t->kind) {
    case TRANSFORM_RRC:
    case TRANSFORM_CENTER:
        if (parse_u32(w, 1, TF_MAX_SIDE, &t->out_w) != 0)
            return PERR(p, "size %s: expected 1..%d", w, TF_MAX_SIDE);
        t->out_h = t->out_w;
        return 0;
    case TRANSFORM_RESIZE: {
        char buf[32];
        const char *x = strchr(w, 'x');
        size_t n = x ? (size_t)(x - w) : 0;
        if (x != NULL && n < sizeof buf) {
            memcpy(buf, w, n);
            buf[n] = '\0';
            if (parse_u32(buf, 1, TF_MAX_SIDE, &t->out_w) == 0 &&
                parse_u32(x + 1, 1, TF_MAX_SIDE, &t->out_h) == 0)
                return 0;
        }
        return PERR(p, "size %s: expected WxH, each 1..%d", w, TF_MAX_SIDE);
    }
    case TRANSFORM_PAD_CROP:
        if (parse_u32(w, 0, TF_MAX_SIDE, &t->pad) != 0)
            return PERR(p, "padding %s: expected 0..%d", w, TF_MAX_SIDE);
        return 0;
    default:
        return 0;
    }
}

enum { OPT_SCALE, OPT_RATIO, OPT_ATTEMPTS, OPT_CROPFRAC, OPT_FLIP, OPT_INTERP,
       OPT_ERASE, OPT_N };

/* Which options each kind takes, as a bit set of OPT_*: its own, and the
 * erase= that every kind takes. */
static unsigned kind_opts(transform_kind k)
{
    unsigned all = 1u << OPT_FLIP | 1u << OPT_ERASE;
    switch (k) {
    case TRANSFORM_RRC:
        return all | 1u << OPT_SCALE | 1u << OPT_RATIO | 1u << OPT_ATTEMPTS |
               1u << OPT_INTERP;
    case TRANSFORM_CENTER:
        return all | 1u << OPT_CROPFRAC | 1u << OPT_INTERP;
    case TRANSFORM_RESIZE: return all | 1u << OPT_INTERP;
    default: return all;
    }
}

static int parse_opt(const parse_ctx *p, transform_spec *t, const char *w,
                     unsigned *seen)
{
    static const char *const keys[OPT_N] = {"scale=", "ratio=", "attempts=",
                                            "crop-frac=", "flip", "interp=",
                                            "erase="};
    int o = -1;
    for (int i = 0; i < OPT_N && o < 0; i++) {
        size_t n = strlen(keys[i]);
        if (i == OPT_FLIP ? strcmp(w, keys[i]) == 0 : strncmp(w, keys[i], n) == 0)
            o = i;
    }
    if (o < 0 || !(kind_opts(t->kind) >> o & 1))
        return PERR(p, "'%s': expected %s", w, kind_usage[t->kind]);
    if (*seen >> o & 1) return PERR(p, "'%s': %.*s given twice", w,
                                    (int)strcspn(keys[o], "="), keys[o]);
    *seen |= 1u << o;
    const char *v = strchr(w, '=') ? strchr(w, '=') + 1 : "";
    switch (o) {
    case OPT_SCALE:
        if (parse_pair(v, &t->scale_min, &t->scale_max) != 0 ||
            !(t->scale_min > 0 && t->scale_min <= t->scale_max &&
              t->scale_max <= 1))
            return PERR(p, "'%s': expected scale=A,B with 0 < A <= B <= 1", w);
        return 0;
    case OPT_RATIO:
        if (parse_pair(v, &t->ratio_min, &t->ratio_max) != 0 ||
            !(t->ratio_min > 0 && t->ratio_min <= t->ratio_max))
            return PERR(p, "'%s': expected ratio=A,B with 0 < A <= B", w);
        return 0;
    case OPT_ATTEMPTS: {
        uint32_t n;
        if (parse_u32(v, 0, TF_MAX_ATTEMPTS, &n) != 0)
            return PERR(p, "'%s': expected attempts=N with N in 0..%d", w,
                        TF_MAX_ATTEMPTS);
        t->attempts = (int)n;
        return 0;
    }
    case OPT_CROPFRAC:
        if (parse_num(v, &t->crop_frac) != 0 ||
            !(t->crop_frac > 0 && t->crop_frac <= 1) ||
            t->out_w / t->crop_frac > 65536)
            return PERR(p, "'%s': expected crop-frac=F with 0 < F <= 1 (and "
                        "S / F <= 65536)", w);
        return 0;
    case OPT_FLIP:
        t->flip = 1;
        return 0;
    case OPT_ERASE:
        if (parse_num(v, &t->erase) != 0 || !(t->erase >= 0 && t->erase <= 1))
            return PERR(p, "'%s': expected erase=P with 0 <= P <= 1", w);
        return 0;
    default:
        if (strcmp(v, "bilinear") == 0) t->interp = RESAMPLE_BILINEAR;
        else if (strcmp(v, "area") == 0) t->interp = RESAMPLE_AREA;
        else return PERR(p, "'%s': expected interp=bilinear or interp=area", w);
        return 0;
    }
}

int transform_parse(const char *text, transform_spec *out, st_error *err)
{
    parse_ctx p = {text, err};
    char buf[512];
    if (strlen(text) >= sizeof buf)
        return st_seterr(err, ST_EINVAL, "transform '%.60s...': longer than "
                         "%zu characters", text, sizeof buf - 1);
    memcpy(buf, text, strlen(text) + 1);
    char *words[TF_MAX_WORDS], *save = NULL;
    int n = 0;
    for (char *w = strtok_r(buf, " \t", &save); w != NULL;
         w = strtok_r(NULL, " \t", &save)) {
        if (n == TF_MAX_WORDS)
            return PERR(&p, "more than %d words", TF_MAX_WORDS);
        words[n++] = w;
    }
    if (n == 0)
        return PERR(&p, "empty: expected random-resized-crop S, center-crop "
                    "S, resize WxH, pad-crop P or none");
    int kind = -1;
    for (int k = 0; k < (int)(sizeof kind_name / sizeof kind_name[0]); k++)
        if (strcmp(words[0], kind_name[k]) == 0) kind = k;
    if (kind < 0)
        return PERR(&p, "'%s': expected random-resized-crop, center-crop, "
                    "resize, pad-crop or none", words[0]);
    transform_spec t;
    transform_spec_default(&t, (transform_kind)kind);
    int first = 1;
    if (kind != TRANSFORM_NONE) {
        if (n < 2) return PERR(&p, "missing the size: expected %s",
                               kind_usage[kind]);
        ST_TRY(parse_size(&p, &t, words[1]));
        first = 2;
    }
    unsigned seen = 0;
    for (int i = first; i < n; i++) ST_TRY(parse_opt(&p, &t, words[i], &seen));
    *out = t;
    return 0;
}

/* The shortest %g form that reads back as v. */
static void fmt_num(char *buf, size_t len, double v)
{
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, len, "%.*g", prec, v);
        if (strtod(buf, NULL) == v) return;
    }
}

void transform_format(const transform_spec *t, char *buf, size_t len)
{
    transform_spec d;
    transform_spec_default(&d, t->kind);
    int k = t->kind >= TRANSFORM_NONE && t->kind <= TRANSFORM_PAD_CROP
                ? (int)t->kind : TRANSFORM_NONE;
    char a[32], b[32];
    size_t at = 0;
#define OUT(...)                                                        \
    do {                                                                \
        if (at < len) at += (size_t)snprintf(buf + at, len - at, __VA_ARGS__); \
    } while (0)
    if (len == 0) return;
    buf[0] = '\0';
    OUT("%s", kind_name[k]);
    if (k == TRANSFORM_RRC || k == TRANSFORM_CENTER) OUT(" %u", t->out_w);
    if (k == TRANSFORM_RESIZE) OUT(" %ux%u", t->out_w, t->out_h);
    if (k == TRANSFORM_PAD_CROP) OUT(" %u", t->pad);
    if (k == TRANSFORM_RRC) {
        if (t->scale_min != d.scale_min || t->scale_max != d.scale_max) {
            fmt_num(a, sizeof a, t->scale_min);
            fmt_num(b, sizeof b, t->scale_max);
            OUT(" scale=%s,%s", a, b);
        }
        if (t->ratio_min != d.ratio_min || t->ratio_max != d.ratio_max) {
            fmt_num(a, sizeof a, t->ratio_min);
            fmt_num(b, sizeof b, t->ratio_max);
            OUT(" ratio=%s,%s", a, b);
        }
        if (t->attempts != d.attempts) OUT(" attempts=%d", t->attempts);
    }
    if (k == TRANSFORM_CENTER && t->crop_frac != d.crop_frac) {
        fmt_num(a, sizeof a, t->crop_frac);
        OUT(" crop-frac=%s", a);
    }
    if (t->flip) OUT(" flip");
    if ((kind_opts((transform_kind)k) >> OPT_INTERP & 1) &&
        t->interp == RESAMPLE_AREA)
        OUT(" interp=area");
    if (t->erase != 0) {
        fmt_num(a, sizeof a, t->erase);
        OUT(" erase=%s", a);
    }
#undef OUT
}

/* ---- pixels ---------------------------------------------------------------- */

/* pad-crop: dst (H, W, c) = the window at (x0, y0) of src zero-padded by P,
 * mirrored when flip. */
static void pad_copy(const uint8_t *src, uint32_t W, uint32_t H, size_t stride,
                     int c, uint32_t P, uint32_t ox, uint32_t oy, int flip,
                     uint8_t *dst)
{
    size_t row = (size_t)W * (size_t)c;
    /* destination columns [xa, xb) come from source columns xa + ox - P */
    int64_t xa = (int64_t)P - ox, xb = xa + W;
    if (xa < 0) xa = 0;
    if (xb > W) xb = W;
    for (uint32_t y = 0; y < H; y++) {
        uint8_t *d = dst + (size_t)y * row;
        int64_t sy = (int64_t)y + oy - P;
        if (sy < 0 || sy >= H || xb <= xa) {
            memset(d, 0, row);
            continue;
        }
        const uint8_t *s = src + (size_t)sy * stride;
        memset(d, 0, (size_t)xa * c);
        memcpy(d + (size_t)xa * c, s + (size_t)(xa + ox - P) * c,
               (size_t)(xb - xa) * c);
        memset(d + (size_t)xb * c, 0, (size_t)(W - xb) * c);
        if (flip)
            for (uint32_t a = 0, b = W - 1; a < b; a++, b--)
                for (int ch = 0; ch < c; ch++) {
                    uint8_t v = d[(size_t)a * c + ch];
                    d[(size_t)a * c + ch] = d[(size_t)b * c + ch];
                    d[(size_t)b * c + ch] = v;
                }
    }
}

int transform_apply(const transform_spec *t, const transform_box *b,
                    resample *r, int c, const uint8_t *src, uint32_t sw,
                    uint32_t sh, size_t stride, uint8_t *dst, st_error *err)
{
    uint32_t ow, oh;
    transform_out_size(t, sw, sh, &ow, &oh);
    if (t->kind == TRANSFORM_PAD_CROP || t->kind == TRANSFORM_NONE) {
        int pad = t->kind == TRANSFORM_PAD_CROP;
        pad_copy(src, sw, sh, stride, c, pad ? t->pad : 0,
                 pad ? (uint32_t)b->x0 : 0, pad ? (uint32_t)b->y0 : 0, b->flip,
                 dst);
        return 0;
    }
    if (r == NULL)
        return st_seterr(err, ST_EINVAL, "transform_apply: %s needs a "
                         "resample context", kind_name[t->kind]);
    int flags = (b->flip ? RESAMPLE_FLIP : 0) |
                (b->crop_first ? RESAMPLE_CROP : 0);
    if (b->crop_first && b->x0 == floor(b->x0) && b->y0 == floor(b->y0) &&
        b->x0 >= 0 && b->y0 >= 0 && b->x1 <= sw && b->y1 <= sh) {
        /* the crop as its own image: PIL's img.crop(box).resize(size) to
         * the last bit (centres from 0, as PIL computes them) */
        uint32_t x = (uint32_t)b->x0, y = (uint32_t)b->y0;
        return resample_run(r, t->interp,
                            src + (size_t)y * stride + (size_t)x * c,
                            (uint32_t)ceil(b->x1) - x, (uint32_t)ceil(b->y1) - y,
                            stride, 0, 0, b->x1 - x, b->y1 - y, dst, ow, oh,
                            flags, err);
    }
    return resample_run(r, t->interp, src, sw, sh, stride, b->x0, b->y0,
                        b->x1, b->y1, dst, ow, oh, flags, err);
}

/* torchvision's RandomErasing.get_params with its defaults, after the
 * coin (see transform.h). */
int transform_erase_box(const transform_spec *t, uint64_t seed,
                        uint64_t epoch, uint64_t id, uint32_t out_w,
                        uint32_t out_h, uint32_t box[4])
{
    if (!(t->erase > 0) || out_w == 0 || out_h == 0) return 0;
    uint64_t key = sample_key(seed, epoch, id);
    uint32_t k = TF_ERASE_K;
    if (!(key_uniform(key, k++) < t->erase)) return 0;
    const double area = (double)out_w * (double)out_h;
    const double lr0 = log(0.3), lr1 = log(3.3);
    for (int a = 0; a < 10; a++, k += 4) {
        double ea = area * (0.02 + (0.33 - 0.02) * key_uniform(key, k));
        double ar = exp(lr0 + (lr1 - lr0) * key_uniform(key, k + 1));
        double h = rint(sqrt(ea * ar)), w = rint(sqrt(ea / ar));
        if (!(h < out_h && w < out_w)) continue;
        if (h < 1 || w < 1) return 0; /* accepted, but empty: as torchvision */
        box[0] = randint(key_uniform(key, k + 3), out_w - (uint32_t)w + 1);
        box[1] = randint(key_uniform(key, k + 2), out_h - (uint32_t)h + 1);
        box[2] = (uint32_t)w;
        box[3] = (uint32_t)h;
        return 1;
    }
    return 0;
}

void transform_erase(const transform_spec *t, uint64_t seed, uint64_t epoch,
                     uint64_t id, uint8_t *dst, uint32_t out_w,
                     uint32_t out_h, int c)
{
    uint32_t b[4];
    if (!transform_erase_box(t, seed, epoch, id, out_w, out_h, b)) return;
    for (uint32_t y = b[1]; y < b[1] + b[3]; y++)
        memset(dst + ((size_t)y * out_w + b[0]) * (size_t)c, 0,
               (size_t)b[2] * (size_t)c);
}

/* ---- the pair streamtrain uses --------------------------------------------- */

void transform_spec_train_default(transform_spec *t, uint32_t s)
{
    transform_spec_default(t, TRANSFORM_RRC);
    t->out_w = t->out_h = s;
    t->flip = 1;
}

/* Parses text (from option opt) into *t. */
static int parse_named(const char *opt, const char *text,
                       transform_spec *t, st_error *err)
{
    int rc = transform_parse(text, t, err);
    if (rc == 0) return 0;
    char inner[sizeof err->msg];
    memcpy(inner, err->msg, sizeof inner);
    return st_seterr_force(err, rc, "%s: %s", opt, inner);
}

int transform_pair_pick(transform_pair *p, const char *train_text,
                        const char *eval_text, uint32_t image_size,
                        uint32_t src_w, uint32_t src_h, int variable,
                        const char *dir, st_error *err)
{
    uint32_t s = image_size;
    memset(p, 0, sizeof *p);
    if (train_text) {
        ST_TRY(parse_named("--train-transform", train_text, &p->train, err));
        p->has_train = 1;
    } else if (s) {
        transform_spec_train_default(&p->train, s);
        p->has_train = 1;
    } else if (variable) {
        return st_seterr(err, ST_EINVAL, "%s holds images of different "
                         "sizes (up to %ux%u): give --image-size S "
                         "(random-resized-crop S flip for training, "
                         "center-crop S for evaluation) or "
                         "--train-transform", dir, src_w, src_h);
    }
    uint32_t w = src_w, h = src_h;
    if (p->has_train) transform_out_size(&p->train, src_w, src_h, &w, &h);
    if (eval_text) {
        ST_TRY(parse_named("--eval-transform", eval_text, &p->eval, err));
        p->has_eval = 1;
    } else if (s || (variable && w == h)) {
        transform_spec_default(&p->eval, TRANSFORM_CENTER);
        p->eval.out_w = p->eval.out_h = s ? s : w;
        p->has_eval = 1;
    }
    uint32_t ew = src_w, eh = src_h;
    if (p->has_eval) transform_out_size(&p->eval, src_w, src_h, &ew, &eh);
    if (ew != w || eh != h)
        return st_seterr(err, ST_EINVAL, "the evaluation transform gives "
                         "%ux%u images but training gives %ux%u: give "
                         "--eval-transform of the same size", ew, eh, w, h);
    p->out_w = w;
    p->out_h = h;
    return 0;
}
