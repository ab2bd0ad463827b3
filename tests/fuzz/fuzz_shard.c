/* tests/fuzz/fuzz_shard.c — libFuzzer target for the shard reader: the
 * input becomes a shard file (in a memfd) that shard_open must accept or
 * refuse cleanly (versions 1 and 2: header, mapped index, every entry's
 * offset, length, height and width); every entry of an accepted shard is
 * then checked against the header and its record read. Inputs that start
 * with 'W' are instead fed as records to the shard writer (the next byte
 * picks version 1 or 2 and the shard's largest size), and the written
 * shard must open and read back identically (round trip). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "datasets/shard.h"

static void read_back(const char *path)
{
    shard *s = NULL;
    st_error err = {0};
    if (shard_open(path, &s, &err) != 0) return;
    const shard_header *h = shard_header_of(s);
    uint8_t buf[4096];
    uint64_t end = SHARD_HEADER_BYTES;
    for (uint64_t i = 0; i < shard_count(s); i++) {
        const shard_entry *e = shard_entry_at(s, i);
        /* what shard_open promises about every entry */
        if (e->offset != end || e->length == 0 || e->height == 0 ||
            e->width == 0 || e->height > h->height || e->width > h->width ||
            e->offset + e->length > h->index_offset ||
            e->length > shard_max_length(s))
            abort();
        end = e->offset + e->length;
        if (i < 1000) shard_read_record(s, i, buf, sizeof buf, &err);
    }
    if (h->version >= 2 && h->index_offset % 8 != 0) abort();
    shard_close(s);
}

static void roundtrip(const uint8_t *data, size_t size)
{
    char path[] = "/tmp/fuzz-shard-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) return;
    close(fd);
    unlink(path);
    if (size < 1) return;
    /* [mode byte: bit 0 version 1, bits 1..7 the largest side][records] */
    uint32_t version = data[0] & 1 ? 1 : 2, side = (uint32_t)(data[0] >> 1) + 1;
    data++, size--;
    shard_header h = {.version = version, .codec = CODEC_RAW, .height = side,
                      .width = side, .channels = 1, .dtype = DTYPE_U8,
                      .label_type = LABEL_I32};
    shard_writer *w = NULL;
    st_error err = {0};
    if (shard_writer_open(path, &h, &w, &err) != 0) abort();
    /* records: [len byte][size byte: h, w in 1..side][bytes...] */
    size_t n = 0, off = 0;
    while (off + 2 <= size) {
        size_t len = data[off] % 64 + 1;
        if (off + 2 + len > size) break;
        uint32_t rh = version == 1 ? side : (data[off + 1] & 15) % side + 1;
        uint32_t rw = version == 1 ? side : (data[off + 1] >> 4) % side + 1;
        if (shard_writer_add(w, data + off + 2, len, (int32_t)n, rh, rw, &err))
            abort();
        off += 2 + len;
        n++;
    }
    uint64_t bytes, fx, ix;
    if (shard_writer_finish(w, &bytes, &fx, &ix, &err) != 0) abort();
    shard *s = NULL;
    if (shard_open(path, &s, &err) != 0) abort();
    if (shard_count(s) != n) abort();
    if (shard_header_of(s)->version != version) abort();
    uint8_t buf[64];
    off = 0;
    for (uint64_t i = 0; i < n; i++) {
        size_t len = data[off] % 64 + 1;
        uint32_t rh = version == 1 ? side : (data[off + 1] & 15) % side + 1;
        uint32_t rw = version == 1 ? side : (data[off + 1] >> 4) % side + 1;
        const shard_entry *e = shard_entry_at(s, i);
        if (shard_read_record(s, i, buf, sizeof buf, &err) != 0) abort();
        if (memcmp(buf, data + off + 2, len) != 0) abort();
        if (e->label != (int32_t)i || e->height != rh || e->width != rw)
            abort();
        off += 2 + len;
    }
    shard_close(s);
    unlink(path);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 0 && data[0] == 'W') {
        roundtrip(data + 1, size - 1);
        return 0;
    }
    int fd = memfd_create("shard", 0);
    if (fd < 0) return 0;
    if (write(fd, data, size) == (ssize_t)size) {
        char path[64];
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
        read_back(path);
    }
    close(fd);
    return 0;
}
