/* tests/loader_fixture.h — packs for the loader tests, written at test
 * time: sample i's pixels carry its id, so a test can tell which sample it
 * got. Header-only (static functions), like tests/fixtures.h. */
#ifndef ST_TEST_LOADER_FIXTURE_H
#define ST_TEST_LOADER_FIXTURE_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "datasets/codec.h"
#include "datasets/pack.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define UNDER_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define UNDER_SANITIZER 1
#endif
#endif
#ifndef UNDER_SANITIZER
#define UNDER_SANITIZER 0
#endif

#define NCLASSES 10
#define NONE UINT64_MAX

/* Sample id's pixels: the id in the first 4 bytes, then a pattern. */
static void sample_pixels(uint64_t id, uint8_t *px, size_t n)
{
    for (size_t j = 0; j < n; j++)
        px[j] = j < 4 ? (uint8_t)(id >> (8 * j))
                      : (uint8_t)((id * 31 + j * 7) % 251);
}

static int32_t sample_label(uint64_t id) { return (int32_t)(id % NCLASSES); }

typedef struct spec {
    uint32_t codec, h, w, c;
    uint32_t n_train, n_test;
    uint64_t shard_bytes;
    uint64_t garbage;    /* this train sample's record is junk (decode fails
                            while its checksum holds); NONE for none */
} spec;

static int write_split(pack_writer *w, codec_enc *enc, const spec *sp,
                       const char *name, uint32_t n, uint8_t *px,
                       st_error *err)
{
    size_t bytes = (size_t)sp->h * sp->w * sp->c;
    ST_TRY(pack_writer_begin_split(w, name, err));
    for (uint64_t i = 0; i < n; i++) {
        sample_pixels(i, px, bytes);
        const uint8_t *rec;
        size_t len;
        ST_TRY(codec_encode(enc, px, sp->h, sp->w, &rec, &len, err));
        if (i == sp->garbage) {
            memset(px, 0xA5, 16);
            rec = px;
            len = 16;
        }
        ST_TRY(pack_writer_add(w, rec, len, sample_label(i), sp->h, sp->w, err));
    }
    return pack_writer_end_split(w, err);
}

static int write_pack(const char *out, const spec *sp, st_error *err)
{
    static const char *const names[NCLASSES] = {"0", "1", "2", "3", "4",
                                                "5", "6", "7", "8", "9"};
    pack_writer_config wc = {
        .codec = sp->codec, .level = 3, .height = sp->h, .width = sp->w,
        .channels = sp->c, .shard_bytes = sp->shard_bytes,
        .nclasses = NCLASSES, .classes = names, .force = 1,
    };
    codec_shape shape = {sp->codec, sp->h, sp->w, sp->c};
    codec_enc *enc = NULL;
    pack_writer *w = NULL;
    uint8_t *px = malloc((size_t)sp->h * sp->w * sp->c);
    int rc = px ? codec_enc_create(&shape, 3, NULL, &enc, err) : ST_ENOMEM;
    if (rc == 0) rc = pack_writer_open(out, &wc, &w, err);
    if (rc == 0) rc = write_split(w, enc, sp, "train", sp->n_train, px, err);
    if (rc == 0 && sp->n_test)
        rc = write_split(w, enc, sp, "test", sp->n_test, px, err);
    if (rc == 0) {
        rc = pack_writer_commit(w, err);
        w = NULL;
    }
    pack_writer_abort(w);
    codec_enc_destroy(enc);
    free(px);
    return rc;
}

#endif
