/* tests/fixtures.h — fixtures made at test time, shared by the test files:
 * temporary directories, small IDX datasets and packs built from them.
 * Header-only (static functions) so that each test binary stays one file.
 */
#ifndef ST_TEST_FIXTURES_H
#define ST_TEST_FIXTURES_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "datasets/fsutil.h"
#include "datasets/packer.h"

/* Creates a fresh directory under $TMPDIR (or /tmp); returns a malloc'd
 * path, or NULL. */
static inline char *fx_tmpdir(const char *tag)
{
    const char *base = getenv("TMPDIR");
    char *p = malloc(4096);
    if (p == NULL) return NULL;
    snprintf(p, 4096, "%s/st-%s-XXXXXX", base && *base ? base : "/tmp", tag);
    if (mkdtemp(p) == NULL) {
        free(p);
        return NULL;
    }
    return p;
}

static inline void fx_rmtree(char *dir)
{
    if (dir) fs_rmtree(dir, NULL);
    free(dir);
}

static inline void fx_put_be32(FILE *f, uint32_t v)
{
    uint8_t b[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8),
                    (uint8_t)v};
    fwrite(b, 1, 4, f);
}

/* Pixel value of sample i at byte j: varied but compressible. */
static inline uint8_t fx_pixel(uint64_t i, uint64_t j)
{
    return (uint8_t)(((i * 7 + (j / 28) * 3 + (j % 28)) % 97) * (i % 3 + 1));
}

static inline int32_t fx_label(uint64_t i, int nclasses)
{
    return (int32_t)((i * 2654435761u >> 7) % (uint64_t)nclasses);
}

/* Writes plain IDX files PREFIX-images-idx3-ubyte and
 * PREFIX-labels-idx1-ubyte of n h x w samples into dir. */
static inline int fx_write_idx(const char *dir, const char *prefix, uint32_t n,
                               uint32_t h, uint32_t w, int nclasses)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s-images-idx3-ubyte", dir, prefix);
    FILE *f = fopen(path, "wb");
    if (f == NULL) return -1;
    fx_put_be32(f, 0x803);
    fx_put_be32(f, n);
    fx_put_be32(f, h);
    fx_put_be32(f, w);
    for (uint64_t i = 0; i < n; i++)
        for (uint64_t j = 0; j < (uint64_t)h * w; j++) fputc(fx_pixel(i, j), f);
    if (fclose(f) != 0) return -1;
    snprintf(path, sizeof path, "%s/%s-labels-idx1-ubyte", dir, prefix);
    f = fopen(path, "wb");
    if (f == NULL) return -1;
    fx_put_be32(f, 0x801);
    fx_put_be32(f, n);
    for (uint64_t i = 0; i < n; i++) fputc(fx_label(i, nclasses), f);
    return fclose(f);
}

/* Makes DIR/src with an IDX train split of n_train and test split of n_test
 * samples (h x w), and packs it into DIR/OUTNAME with codec and threads.
 * @return 0 or a negative st_errcode (err filled). */
static inline int fx_make_pack(const char *dir, const char *outname,
                               uint32_t n_train, uint32_t n_test, uint32_t h,
                               uint32_t w, int codec, int threads,
                               uint64_t shard_bytes, st_error *err)
{
    char src[4096], out[4096];
    snprintf(src, sizeof src, "%s/src", dir);
    snprintf(out, sizeof out, "%s/%s", dir, outname);
    mkdir(src, 0755);
    char probe[4200];
    snprintf(probe, sizeof probe, "%s/train-images-idx3-ubyte", src);
    if (access(probe, F_OK) != 0) {
        if (fx_write_idx(src, "train", n_train, h, w, 10) != 0 ||
            (n_test && fx_write_idx(src, "t10k", n_test, h, w, 10) != 0))
            return st_seterr(err, ST_EIO, "fixture: cannot write IDX files");
    }
    packer_config cfg;
    packer_config_default(&cfg);
    cfg.codec = codec;
    cfg.threads = threads;
    cfg.level = 3;
    if (shard_bytes) cfg.shard_bytes = shard_bytes;
    packer_stats st;
    return packer_run(src, out, &cfg, &st, err);
}

#endif
