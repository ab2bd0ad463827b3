/* datasets/pack_writer.c — writes a pack directory atomically.
 *
 * Everything goes to ".NAME.tmp-PID-XXXXXX" beside the output. MANIFEST is
 * written last, then every file and the directory are fsynced, and the
 * directory is renamed to its final name. A run that dies at any point
 * leaves at most a hidden temporary directory without a MANIFEST, which
 * never opens as a dataset; the next packdata run for the same output
 * removes such leftovers of dead processes.
 */
#include "pack.h"
#include "codec.h"
#include "fsutil.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#define DICT_FILE "dictionary.zstd"

struct pack_writer {
    char out[PATH_MAX];      /* final directory */
    char tmp[PATH_MAX];      /* temporary directory being filled */
    int force;
    uint64_t shard_bytes;
    manifest m;              /* filled as shards are finished */
    manifest_split *cur;     /* split being written, or NULL */
    shard_writer *sw;        /* shard being written, or NULL */
    shard_header hdr;        /* template for every shard */
    uint64_t record_bytes;
    uint32_t max_record;     /* largest record added */
};

static void base_name(const char *path, char *out, size_t cap)
{
    const char *s = strrchr(path, '/');
    snprintf(out, cap, "%s", s ? s + 1 : path);
}

/* Removes ".NAME.tmp-PID-*" directories whose process is gone. */
static void sweep_stale(const char *parent, const char *name)
{
    DIR *d = opendir(parent);
    if (d == NULL) return;
    char prefix[NAME_MAX + 16], path[PATH_MAX];
    snprintf(prefix, sizeof prefix, ".%s.tmp-", name);
    size_t plen = strlen(prefix);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, prefix, plen) != 0) continue;
        long pid = strtol(e->d_name + plen, NULL, 10);
        if (pid <= 0 || (kill((pid_t)pid, 0) != 0 && errno == ESRCH)) {
            snprintf(path, sizeof path, "%s/%s", parent, e->d_name);
            fs_rmtree(path, NULL);
        }
    }
    closedir(d);
}

#define FORCE_HINT "--force only replaces a pack or an empty directory"

/* 1 when name is a file a pack directory consists of. */
static int pack_file_name(const char *name)
{
    size_t n = strlen(name);
    return strcmp(name, MANIFEST_NAME) == 0 || strcmp(name, DICT_FILE) == 0 ||
           (n > 6 && strcmp(name + n - 6, ".shard") == 0);
}

/* 0 when out/MANIFEST is a regular file whose first line is a pack's magic
 * line ("streamtrain-pack N", any version). */
static int check_manifest_magic(const char *out, st_error *err)
{
    static const char magic[] = "streamtrain-pack ";
    char path[PATH_MAX], line[64] = "";
    snprintf(path, sizeof path, "%s/%s", out, MANIFEST_NAME);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return st_seterr(err, ST_EIO, "%s: cannot read: %s", path,
                         strerror(errno));
    if (fgets(line, sizeof line, f) == NULL) line[0] = '\0';
    fclose(f);
    size_t mlen = sizeof magic - 1, i = mlen;
    int ok = strncmp(line, magic, mlen) == 0 && line[i] >= '0' && line[i] <= '9';
    while (ok && line[i] >= '0' && line[i] <= '9') i++;
    if (!ok || line[i] != '\n')
        return st_seterr(err, ST_EEXIST, "%s: holds a MANIFEST that is not a "
                         "pack manifest (its first line is not \"streamtrain-"
                         "pack N\"); " FORCE_HINT, out);
    return 0;
}

/* Under --force, out may be replaced only when it is empty or a pack: a
 * MANIFEST with the pack magic plus nothing but pack files. */
static int check_replaceable(const char *out, st_error *err)
{
    DIR *d = opendir(out);
    if (d == NULL)
        return st_seterr(err, ST_EIO, "%s: cannot list: %s", out,
                         strerror(errno));
    int has_manifest = 0, nfiles = 0, rc = 0;
    struct dirent *e;
    char path[PATH_MAX];
    struct stat st;
    while (rc == 0 && (e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        nfiles++;
        snprintf(path, sizeof path, "%s/%s", out, e->d_name);
        if (!pack_file_name(e->d_name) || lstat(path, &st) != 0 ||
            !S_ISREG(st.st_mode))
            rc = st_seterr(err, ST_EEXIST, "%s: holds %s, which is not part "
                           "of a pack; " FORCE_HINT, out, e->d_name);
        else if (strcmp(e->d_name, MANIFEST_NAME) == 0)
            has_manifest = 1;
    }
    closedir(d);
    if (rc != 0 || nfiles == 0) return rc;
    if (!has_manifest)
        return st_seterr(err, ST_EEXIST, "%s: has no %s, so it is not a pack; "
                         FORCE_HINT, out, MANIFEST_NAME);
    return check_manifest_magic(out, err);
}

static int check_out(const char *out, int force, st_error *err)
{
    struct stat st;
    if (lstat(out, &st) != 0) return 0;
    if (S_ISLNK(st.st_mode))
        return st_seterr(err, ST_EEXIST, "%s: OUT is a symbolic link; give "
                         "the directory it points to", out);
    if (!force)
        return st_seterr(err, ST_EEXIST, "%s: already exists (use --force "
                         "to replace it)", out);
    if (!S_ISDIR(st.st_mode))
        return st_seterr(err, ST_EEXIST, "%s: exists and is not a directory; "
                         "refusing to replace it", out);
    return check_replaceable(out, err);
}

static int copy_classes(pack_writer *w, const pack_writer_config *cfg,
                        st_error *err)
{
    w->m.classes = calloc(cfg->nclasses ? cfg->nclasses : 1, sizeof(char *));
    if (w->m.classes == NULL) return st_seterr(err, ST_ENOMEM, "out of memory");
    for (uint32_t i = 0; i < cfg->nclasses; i++) {
        if (!manifest_valid_class_name(cfg->classes[i]))
            return st_seterr(err, ST_EINVAL, "class %u: name is not valid "
                             "UTF-8 or holds control characters", i);
        if ((w->m.classes[i] = strdup(cfg->classes[i])) == NULL)
            return st_seterr(err, ST_ENOMEM, "out of memory");
        w->m.nclasses = i + 1;
    }
    return 0;
}

static int write_dict(pack_writer *w, const pack_writer_config *cfg,
                      st_error *err)
{
    if (cfg->dict == NULL || cfg->dict_len == 0) return 0;
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", w->tmp, DICT_FILE);
    ST_TRY(fs_write_atomic(path, cfg->dict, cfg->dict_len, err));
    snprintf(w->m.dict_file, sizeof w->m.dict_file, "%s", DICT_FILE);
    w->m.dict_bytes = cfg->dict_len;
    w->m.dict_id = codec_dict_id(cfg->dict, cfg->dict_len);
    w->m.dict_xxh3 = XXH3_64bits(cfg->dict, cfg->dict_len);
    return 0;
}

static int config_ok(const pack_writer_config *cfg, st_error *err)
{
    int v1 = cfg->format_version == 1;
    if (cfg->format_version != 0 && cfg->format_version != 1)
        return st_seterr(err, ST_EINVAL, "pack writer: format version %d "
                         "(writes 1 or 2)", cfg->format_version);
    if (v1 && (cfg->variable || cfg->codec > CODEC_PNG))
        return st_seterr(err, ST_EINVAL, "pack writer: format version 1 "
                         "holds neither variable shapes nor jpeg");
    if (cfg->codec == CODEC_JPEG && cfg->channels != 1 && cfg->channels != 3)
        return st_seterr(err, ST_EINVAL, "pack writer: the jpeg codec holds "
                         "1 or 3 channels, not %u", cfg->channels);
    if (cfg->codec > CODEC_JPEG || cfg->height == 0 || cfg->width == 0 ||
        cfg->height > 65535 || cfg->width > 65535 || cfg->channels == 0 ||
        cfg->channels > 4 || cfg->nclasses > MANIFEST_MAX_CLASSES ||
        cfg->level < 0 || cfg->level > 22)
        return st_seterr(err, ST_EINVAL, "pack writer: invalid codec, shape, "
                         "class count or level");
    if (cfg->dict_len && cfg->codec != CODEC_ZSTD)
        return st_seterr(err, ST_EINVAL, "pack writer: a dictionary needs the "
                         "zstd codec");
    return 0;
}

int pack_writer_open(const char *out_dir, const pack_writer_config *cfg,
                     pack_writer **out, st_error *err)
{
    *out = NULL;
    ST_TRY(config_ok(cfg, err));
    pack_writer *w = calloc(1, sizeof *w);
    if (w == NULL) return st_seterr(err, ST_ENOMEM, "out of memory");
    char parent[PATH_MAX], name[NAME_MAX + 1];
    size_t olen = strlen(out_dir);
    if (olen == 0 || olen > PATH_MAX - NAME_MAX - 64) {
        free(w);
        return st_seterr(err, ST_EINVAL, "%s: output path is empty or too "
                         "long", out_dir);
    }
    while (olen > 1 && out_dir[olen - 1] == '/') olen--;
    snprintf(w->out, sizeof w->out, "%.*s", (int)olen, out_dir);
    fs_parent_dir(w->out, parent, sizeof parent);
    base_name(w->out, name, sizeof name);
    w->force = cfg->force;
    w->shard_bytes = cfg->shard_bytes ? cfg->shard_bytes : (64u << 20);
    w->m.version = cfg->format_version == 1 ? 1 : MANIFEST_VERSION;
    w->m.codec = cfg->codec;
    w->m.level = cfg->level;
    w->m.height = w->m.max_h = cfg->height;
    w->m.width = w->m.max_w = cfg->width;
    w->m.channels = cfg->channels;
    w->m.variable = cfg->variable != 0;
    w->hdr = (shard_header){.version = w->m.version, .codec = cfg->codec,
                            .height = cfg->height,
                            .width = cfg->width, .channels = cfg->channels,
                            .dtype = DTYPE_U8, .label_type = LABEL_I32};
    int rc = check_out(w->out, w->force, err);
    if (rc == 0) rc = copy_classes(w, cfg, err);
    if (rc == 0) {
        sweep_stale(parent, name);
        snprintf(w->tmp, sizeof w->tmp, "%s/.%s.tmp-%ld-XXXXXX", parent, name,
                 (long)getpid());
        if (mkdtemp(w->tmp) == NULL) {
            rc = st_seterr(err, errno == ENOSPC ? ST_ENOSPC : ST_EIO,
                           "%s: cannot create a temporary directory in %s: %s",
                           w->out, parent, strerror(errno));
            w->tmp[0] = '\0';
        }
    }
    if (rc == 0) rc = write_dict(w, cfg, err);
    w->hdr.dict_id = w->m.dict_id;
    if (rc != 0) {
        pack_writer_abort(w);
        return rc;
    }
    *out = w;
    return 0;
}

int pack_writer_begin_split(pack_writer *w, const char *name, st_error *err)
{
    if (w->cur != NULL || w->m.nsplits == MANIFEST_MAX_SPLITS ||
        !manifest_valid_split_name(name))
        return st_seterr(err, ST_EINVAL, "pack writer: cannot begin split "
                         "'%s'", name);
    for (uint32_t i = 0; i < w->m.nsplits; i++)
        if (strcmp(w->m.splits[i].name, name) == 0)
            return st_seterr(err, ST_EINVAL, "pack writer: split '%s' written "
                             "twice", name);
    w->cur = &w->m.splits[w->m.nsplits++];
    snprintf(w->cur->name, sizeof w->cur->name, "%s", name);
    return 0;
}

static int finish_shard(pack_writer *w, st_error *err)
{
    if (w->sw == NULL) return 0;
    manifest_split *s = w->cur;
    manifest_shard *ms = &s->shards[s->nshards - 1];
    int rc = shard_writer_finish(w->sw, &ms->bytes, &ms->file_xxh3,
                                 &ms->index_xxh3, err);
    w->sw = NULL;
    return rc;
}

static int start_shard(pack_writer *w, st_error *err)
{
    manifest_split *s = w->cur;
    manifest_shard *n = realloc(s->shards, (s->nshards + 1) * sizeof *n);
    if (n == NULL) return st_seterr(err, ST_ENOMEM, "out of memory");
    s->shards = n;
    manifest_shard *ms = &s->shards[s->nshards++];
    memset(ms, 0, sizeof *ms);
    snprintf(ms->file, sizeof ms->file, "%s-%05u.shard", s->name,
             s->nshards - 1);
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", w->tmp, ms->file);
    return shard_writer_open(path, &w->hdr, &w->sw, err);
}

int pack_writer_add(pack_writer *w, const void *enc, size_t len,
                    int32_t label, uint32_t height, uint32_t width,
                    st_error *err)
{
    if (w->cur == NULL)
        return st_seterr(err, ST_EINVAL, "pack writer: add outside a split");
    if (!w->m.variable && (height != w->m.height || width != w->m.width))
        return st_seterr(err, ST_EINVAL, "pack writer: split %s, sample %llu "
                         "is %ux%u (H x W) in a pack of fixed shape %ux%u",
                         w->cur->name, (unsigned long long)w->cur->samples,
                         height, width, w->m.height, w->m.width);
    if (height == 0 || width == 0 || height > w->m.max_h ||
        width > w->m.max_w)
        return st_seterr(err, ST_EINVAL, "pack writer: split %s, sample %llu "
                         "is %ux%u (H x W), outside 1x1..%ux%u", w->cur->name,
                         (unsigned long long)w->cur->samples, height, width,
                         w->m.max_h, w->m.max_w);
    if (w->sw != NULL && shard_writer_bytes(w->sw) + len > w->shard_bytes)
        ST_TRY(finish_shard(w, err));
    if (w->sw == NULL) ST_TRY(start_shard(w, err));
    ST_TRY(shard_writer_add(w->sw, enc, len, label, height, width, err));
    w->cur->shards[w->cur->nshards - 1].records++;
    w->cur->samples++;
    w->record_bytes += len;
    if (len > w->max_record) w->max_record = (uint32_t)len;
    return 0;
}

int pack_writer_set_stats(pack_writer *w, const char *split,
                          const double *mean, const double *std,
                          st_error *err)
{
    if (!manifest_valid_split_name(split))
        return st_seterr(err, ST_EINVAL, "pack writer: bad split name for "
                         "channel statistics");
    for (uint32_t c = 0; c < w->m.channels; c++)
        if (!(mean[c] >= 0.0 && mean[c] <= 255.0 && std[c] >= 0.0 &&
              std[c] <= 255.0))
            return st_seterr(err, ST_EINVAL, "pack writer: channel %u "
                             "statistics %g, %g are not in 0..255", c,
                             mean[c], std[c]);
    snprintf(w->m.stats_split, sizeof w->m.stats_split, "%s", split);
    memcpy(w->m.mean, mean, w->m.channels * sizeof *mean);
    memcpy(w->m.std, std, w->m.channels * sizeof *std);
    w->m.has_stats = 1;
    return 0;
}

int pack_writer_end_split(pack_writer *w, st_error *err)
{
    if (w->cur == NULL)
        return st_seterr(err, ST_EINVAL, "pack writer: no split to end");
    ST_TRY(finish_shard(w, err));
    if (w->cur->samples == 0)
        return st_seterr(err, ST_EINVAL, "pack writer: split '%s' is empty",
                         w->cur->name);
    w->cur = NULL;
    return 0;
}

uint64_t pack_writer_record_bytes(const pack_writer *w)
{
    return w->record_bytes;
}

const char *pack_writer_tmpdir(const pack_writer *w)
{
    return w && w->tmp[0] ? w->tmp : NULL;
}

/* Moves tmp into place, replacing an existing output under --force. */
static int publish(pack_writer *w, st_error *err)
{
    char parent[PATH_MAX], old[PATH_MAX + 32];
    fs_parent_dir(w->out, parent, sizeof parent);
    struct stat st;
    int replacing = lstat(w->out, &st) == 0;
    if (replacing) {
        if (!w->force) return check_out(w->out, 0, err);
        ST_TRY(check_out(w->out, 1, err));
        snprintf(old, sizeof old, "%s.old-%ld", w->tmp, (long)getpid());
        if (rename(w->out, old) != 0)
            return st_seterr(err, ST_EIO, "%s: cannot move the old pack "
                             "aside: %s", w->out, strerror(errno));
    }
    if (rename(w->tmp, w->out) != 0) {
        int rc = st_seterr(err, ST_EIO, "%s: rename from %s failed: %s",
                           w->out, w->tmp, strerror(errno));
        if (replacing) rename(old, w->out);
        return rc;
    }
    w->tmp[0] = '\0';
    int rc = fs_fsync_dir(parent, err);
    if (replacing) fs_rmtree(old, NULL);
    return rc;
}

int pack_writer_commit(pack_writer *w, st_error *err)
{
    char *text = NULL;
    size_t len = 0;
    char path[PATH_MAX];
    int rc = 0;
    if (w->cur != NULL) rc = pack_writer_end_split(w, err);
    if (rc == 0 && w->m.nsplits == 0)
        rc = st_seterr(err, ST_EINVAL, "%s: nothing to write", w->out);
    w->m.max_record = w->max_record;
    if (rc == 0) rc = manifest_format(&w->m, &text, &len, err);
    if (rc == 0) {
        snprintf(path, sizeof path, "%s/%s", w->tmp, MANIFEST_NAME);
        rc = fs_write_atomic(path, text, len, err); /* fsyncs tmp too */
    }
    free(text);
    if (rc == 0 && chmod(w->tmp, 0755) != 0)
        rc = st_seterr(err, ST_EIO, "%s: chmod failed: %s", w->tmp,
                       strerror(errno));
    if (rc == 0) rc = publish(w, err);
    pack_writer_abort(w);
    return rc;
}

void pack_writer_abort(pack_writer *w)
{
    if (w == NULL) return;
    shard_writer_abort(w->sw);
    if (w->tmp[0]) fs_rmtree(w->tmp, NULL);
    for (uint32_t i = 0; i < w->m.nclasses; i++) free(w->m.classes[i]);
    free(w->m.classes);
    for (uint32_t s = 0; s < MANIFEST_MAX_SPLITS; s++) free(w->m.splits[s].shards);
    free(w);
}
