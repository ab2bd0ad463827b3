/* tests/pil_fixture.h — PIL as a reference for the resampling tests
 * (tests/test_resample.c, tests/test_transform.c).
 *
 * defines: pil_python, pil_apply, pil_cleanup, pil_smooth_image
 *
 * pil_python finds a python3 that imports PIL (ST_PYTHON alone when set;
 * else python3 on PATH, then /usr/bin/python3, where Debian's python3-pil
 * lives) or says why not. pil_apply writes an (h, w, c) image (c = 1: mode L, c = 3: RGB)
 * as raw bytes to a temporary directory, runs a small script embedded here
 * that applies a chain of PIL operations to it:
 *   "resize OW OH bilinear|area X0 Y0 X1 Y1"  Image.resize(size, f, box)
 *   "crop L T R B"                            Image.crop(box)
 * and reads the result back. Single-threaded test helper; not library code.
 */
#ifndef ST_PIL_FIXTURE_H
#define ST_PIL_FIXTURE_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char pil_script[] =
    "import sys\n"
    "from PIL import Image\n"
    "R = getattr(Image, 'Resampling', Image)\n"
    "a = sys.argv[1:]\n"
    "src, dst, w, h, mode = a[0], a[1], int(a[2]), int(a[3]), a[4]\n"
    "im = Image.frombytes(mode, (w, h), open(src, 'rb').read())\n"
    "ops = a[5:]\n"
    "i = 0\n"
    "while i < len(ops):\n"
    "    if ops[i] == 'resize':\n"
    "        ow, oh = int(ops[i+1]), int(ops[i+2])\n"
    "        f = R.BILINEAR if ops[i+3] == 'bilinear' else R.BOX\n"
    "        box = tuple(float(v) for v in ops[i+4:i+8])\n"
    "        im = im.resize((ow, oh), f, box=box)\n"
    "        i += 8\n"
    "    elif ops[i] == 'crop':\n"
    "        im = im.crop(tuple(int(v) for v in ops[i+1:i+5]))\n"
    "        i += 5\n"
    "    else:\n"
    "        sys.exit('pil_fixture: unknown op ' + ops[i])\n"
    "sys.stdout.write('%d %d\\n' % im.size)\n"
    "open(dst, 'wb').write(im.tobytes())\n";

static char pil_dir[64];

/* The python command that imports PIL, or NULL with the reason in why. */
static const char *pil_python(char *why, size_t len)
{
    static char cmd[256];
    static int state; /* 0 unknown, 1 found, -1 none */
    if (state == 1) return cmd;
    if (state == -1) {
        snprintf(why, len, "no python3 with PIL (python3-pil) found");
        return NULL;
    }
    /* ST_PYTHON, when set, is the only candidate (ST_PYTHON=false tests
     * the skip) */
    const char *env = getenv("ST_PYTHON");
    const char *cands[3] = {env, env ? NULL : "python3",
                            env ? NULL : "/usr/bin/python3"};
    for (int i = 0; i < 3; i++) {
        if (cands[i] == NULL || cands[i][0] == '\0') continue;
        char test[400];
        snprintf(test, sizeof test,
                 "%s -c 'import PIL.Image' >/dev/null 2>&1", cands[i]);
        if (system(test) == 0) {
            snprintf(cmd, sizeof cmd, "%s", cands[i]);
            snprintf(pil_dir, sizeof pil_dir, "/tmp/st-pil-XXXXXX");
            if (mkdtemp(pil_dir) == NULL) break;
            char path[128];
            snprintf(path, sizeof path, "%s/pil_ref.py", pil_dir);
            FILE *f = fopen(path, "w");
            if (f == NULL) break;
            fputs(pil_script, f);
            fclose(f);
            state = 1;
            return cmd;
        }
    }
    state = -1;
    snprintf(why, len, "no python3 with PIL (python3-pil) found");
    return NULL;
}

/* Removes the temporary directory (call at the end of the test run). */
static void pil_cleanup(void)
{
    if (pil_dir[0] == '\0') return;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", pil_dir);
    if (system(cmd) != 0) fprintf(stderr, "pil_fixture: %s failed\n", cmd);
    pil_dir[0] = '\0';
}

/* Applies ops (see the header) to img (h, w, c) and returns the result
 * (malloc'd, *ow x *oh x c), or NULL on failure (printed). */
static uint8_t *pil_apply(const uint8_t *img, uint32_t w, uint32_t h, int c,
                          const char *ops, uint32_t *ow, uint32_t *oh)
{
    char why[128];
    const char *py = pil_python(why, sizeof why);
    if (py == NULL) return NULL;
    char in[128], out[128], cmd[1024];
    snprintf(in, sizeof in, "%s/in.raw", pil_dir);
    snprintf(out, sizeof out, "%s/out.raw", pil_dir);
    FILE *f = fopen(in, "wb");
    if (f == NULL) return NULL;
    size_t n = (size_t)w * h * (size_t)c;
    if (fwrite(img, 1, n, f) != n) { fclose(f); return NULL; }
    fclose(f);
    snprintf(cmd, sizeof cmd, "%s %s/pil_ref.py %s %s %u %u %s %s", py,
             pil_dir, in, out, w, h, c == 1 ? "L" : "RGB", ops);
    FILE *p = popen(cmd, "r");
    if (p == NULL) return NULL;
    unsigned rw = 0, rh = 0;
    int got = fscanf(p, "%u %u", &rw, &rh);
    if (pclose(p) != 0 || got != 2) {
        fprintf(stderr, "pil_fixture: '%s' failed\n", cmd);
        return NULL;
    }
    size_t m = (size_t)rw * rh * (size_t)c;
    uint8_t *res = malloc(m ? m : 1);
    f = fopen(out, "rb");
    if (res == NULL || f == NULL || fread(res, 1, m, f) != m) {
        if (f) fclose(f);
        free(res);
        return NULL;
    }
    fclose(f);
    *ow = rw;
    *oh = rh;
    return res;
}

/* A natural-ish test image (h, w, c): a gradient, a few sinusoids of
 * different frequencies per channel, and a little noise. */
static void pil_smooth_image(uint8_t *img, uint32_t w, uint32_t h, int c,
                             uint32_t seed)
{
    uint32_t s = seed * 2654435761u + 1;
    for (uint32_t y = 0; y < h; y++)
        for (uint32_t x = 0; x < w; x++)
            for (int ch = 0; ch < c; ch++) {
                s = s * 1664525u + 1013904223u;
                double noise = ((double)(s >> 8) / 16777216.0 - 0.5) * 12.0;
                double v = 60.0 + 80.0 * x / (double)w + 40.0 * y / (double)h +
                           35.0 * sin(x * (0.031 + 0.013 * ch) + y * 0.017) +
                           25.0 * cos(y * (0.09 - 0.02 * ch) - x * 0.05) +
                           noise;
                img[((size_t)y * w + x) * c + ch] =
                    (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
            }
}

#endif
