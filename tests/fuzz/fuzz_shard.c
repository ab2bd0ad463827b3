/* tests/fuzz/fuzz_shard.c — libFuzzer target for the shard reader: the
 * input becomes a shard file (in a memfd) that shard_open must accept or
 * refuse cleanly; every record of an accepted shard is then read. Inputs
 * that start with 'W' are instead fed as records to the shard writer, and
 * the written shard must open and read back identically (round trip). */
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
    uint8_t buf[4096];
    for (uint64_t i = 0; i < shard_count(s) && i < 1000; i++)
        shard_read_record(s, i, buf, sizeof buf, &err);
    shard_close(s);
}

static void roundtrip(const uint8_t *data, size_t size)
{
    char path[] = "/tmp/fuzz-shard-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) return;
    close(fd);
    unlink(path);
    shard_header h = {.codec = CODEC_RAW, .height = 1, .width = 1,
                      .channels = 1, .dtype = DTYPE_U8, .label_type = LABEL_I32};
    shard_writer *w = NULL;
    st_error err = {0};
    if (shard_writer_open(path, &h, &w, &err) != 0) abort();
    /* records: [len byte][bytes...] */
    size_t n = 0, off = 0;
    while (off < size) {
        size_t len = data[off] % 64 + 1;
        if (off + 1 + len > size) break;
        if (shard_writer_add(w, data + off + 1, len, (int32_t)n, 1, 1, &err)) abort();
        off += 1 + len;
        n++;
    }
    uint64_t bytes, fx, ix;
    if (shard_writer_finish(w, &bytes, &fx, &ix, &err) != 0) abort();
    shard *s = NULL;
    if (shard_open(path, &s, &err) != 0) abort();
    if (shard_count(s) != n) abort();
    uint8_t buf[64];
    off = 0;
    for (uint64_t i = 0; i < n; i++) {
        size_t len = data[off] % 64 + 1;
        if (shard_read_record(s, i, buf, sizeof buf, &err) != 0) abort();
        if (memcmp(buf, data + off + 1, len) != 0) abort();
        if (shard_entry_at(s, i)->label != (int32_t)i) abort();
        off += 1 + len;
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
