/* tests/install/consumer.c — a program outside the tree, built against the
 * installed library with only `pkg-config --cflags --libs streamtrain`
 * (tests/cli/install.sh): opens a pack through <streamtrain/pack.h>,
 * streams one epoch of its train split through <streamtrain/loader.h>
 * with a transform parsed by <streamtrain/transform.h>, and checks that
 * every sample came exactly once.
 *
 * defines: main
 *
 *   consumer PACK_DIR EXPECTED_SAMPLES
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <streamtrain.h>          /* the umbrella ... */
#include <streamtrain/loader.h>   /* ... and one header on its own */

static int fail(const char *what, const st_error *err)
{
    fprintf(stderr, "consumer: %s: %s (%s)\n", what, err->msg,
            st_strerror(err->code));
    return 1;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: consumer PACK_DIR EXPECTED_SAMPLES\n");
        return 2;
    }
    unsigned long long want = strtoull(argv[2], NULL, 10);
    st_error err = {0};
    pack *p = NULL;
    if (pack_open(argv[1], &p, &err) != 0) return fail("pack_open", &err);
    int split = pack_split_find(p, "train");
    unsigned long long n = split < 0 ? 0 : pack_split_samples(p, split);
    const manifest *m = pack_manifest(p);
    printf("pack: %ux%ux%u %s, train %llu samples\n", m->height, m->width,
           m->channels, manifest_codec_name(m->codec), n);
    pack_close(p);
    if (n != want) {
        fprintf(stderr, "consumer: %llu train samples, want %llu\n", n, want);
        return 1;
    }

    transform_spec t;
    if (transform_parse("none flip", &t, &err) != 0)
        return fail("transform_parse", &err);
    loader_config cfg;
    loader_config_default(&cfg);
    cfg.batch_size = 7;
    cfg.threads = 2;
    cfg.seed = 3;
    cfg.transform = &t;
    loader *l = NULL;
    if (loader_open(argv[1], &cfg, &l, &err) != 0)
        return fail("loader_open", &err);
    unsigned char *seen = calloc(n, 1);
    unsigned long long got = 0;
    int rc, status = 0;
    loader_batch b;
    while (seen && (rc = loader_next_batch(l, &b, &err)) == 0) {
        for (uint32_t i = 0; i < b.n; i++) {
            if (b.ids[i] >= n || seen[b.ids[i]]++) status = 1;
        }
        got += b.n;
        if (loader_release(l, &b, &err) != 0) break;
    }
    loader_close(l);
    free(seen);
    if (err.code != 0 && err.code != ST_EEND) return fail("loader", &err);
    if (status || got != n) {
        fprintf(stderr, "consumer: epoch delivered %llu samples (%s), want "
                "%llu each once\n", got, status ? "duplicates" : "no duplicates", n);
        return 1;
    }
    printf("epoch: %llu samples, each once\n", got);
    return 0;
}
