/* tests/fuzz/fuzz_manifest.c — libFuzzer target for the MANIFEST parser
 * (versions 1 and 2: variable shapes, max-record, channel-stats, jpeg).
 * Round trip: whatever parses must format back to text that parses to the
 * same manifest, byte for byte; and the parsed fields keep the grammar's
 * promises. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "datasets/manifest.h"
#include "datasets/shard.h"

/* The checksum line guards the parser: inputs that start with '#' get a
 * valid one appended (after the '#') so that the fuzzer explores the
 * grammar behind it; others are parsed as they are. */
/* What manifest_parse promises about an accepted manifest. */
static void check_fields(const manifest *m)
{
    if (m->version != 1 && m->version != 2) abort();
    if (m->max_h != m->height || m->max_w != m->width) abort();
    if (m->version == 1 && (m->variable || m->has_stats || m->max_record ||
                            m->codec > CODEC_PNG))
        abort();
    if (m->version == 2 && (m->max_record == 0 || m->max_record > (1u << 30)))
        abort();
    if (m->codec == CODEC_JPEG && m->channels != 1 && m->channels != 3) abort();
    for (uint32_t c = 0; m->has_stats && c < m->channels; c++)
        if (!(m->mean[c] >= 0 && m->mean[c] <= 255 && m->std[c] >= 0 &&
              m->std[c] <= 255))
            abort();
}

static char *with_checksum(const uint8_t *data, size_t size, size_t *len)
{
    char *t = malloc(size + 32);
    if (t == NULL) return NULL;
    memcpy(t, data, size);
    int n = snprintf(t + size, 32, "checksum %016llx\n",
                     (unsigned long long)XXH3_64bits(data, size));
    *len = size + (size_t)n;
    return t;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    st_error err = {0};
    manifest *m = NULL;
    size_t len = size;
    char *text = NULL;
    if (size > 0 && data[0] == '#') {
        text = with_checksum(data + 1, size - 1, &len);
        if (text == NULL) return 0;
    }
    const char *in = text ? text : (const char *)data;
    if (manifest_parse(in, len, "fuzz", &m, &err) == 0) {
        check_fields(m);
        char *out = NULL;
        size_t olen = 0;
        if (manifest_format(m, &out, &olen, &err) != 0) abort();
        manifest *m2 = NULL;
        if (manifest_parse(out, olen, "fuzz2", &m2, &err) != 0) abort();
        char *out2 = NULL;
        size_t olen2 = 0;
        if (manifest_format(m2, &out2, &olen2, &err) != 0) abort();
        if (olen != olen2 || memcmp(out, out2, olen) != 0) abort();
        free(out);
        free(out2);
        manifest_free(m2);
        manifest_free(m);
    }
    free(text);
    return 0;
}
