#!/usr/bin/python3
"""bench/photos/make_corpus.py — an ImageNet-like folder of JPEGs cut from real photographs.

  make_corpus.py OUT_DIR [--count N] [--seed S] [--procs P] [--src DIR]

Source: the JPEG photographs of Debian's plasma-workspace-wallpapers
(/usr/share/wallpapers/NAME/contents/images/WxH.jpg; the largest of each
wallpaper: 18 photographs, up to 5120x2880). Writes

  OUT_DIR/train/<NAME>/NNNNN.jpg   (one class per photograph, image i to
                                    photograph i mod 18)
  OUT_DIR/.stats                   one line: images, bytes, min/median/max
                                    of the sides and the pixel count
  OUT_DIR/.stamp                   the parameters, last (the cache's mark)

Each image: shorter side uniform in [256, 512], aspect ratio (w/h)
log-uniform in [2/3, 3/2] (landscape and portrait, as in ImageNet), a box of
that aspect cut at a random scale (log-uniform between the output size and
the largest box the photograph holds) and a random position, resized with
Lanczos, saved by PIL at quality 90, 4:2:0 (subsampling=2). Every image's
draws come from its own random.Random seeded by (seed, index): the corpus
is the same whatever the number of processes, and the first N images of
a larger corpus are the smaller corpus of N. Prints the time it took and
the .stats line (also when the corpus was already there).
"""
import argparse
import math
import multiprocessing
import os
import random
import re
import shutil
import sys
import time

from PIL import Image

SRC = "/usr/share/wallpapers"
SHORT = (256, 512)
ASPECT = (2 / 3, 3 / 2)
QUALITY = 90
VERSION = 1  # bump when the cutting changes: the stamp then no longer matches


def photographs(src):
    """[(name, path)] of the largest JPEG of each wallpaper, sorted by name."""
    out = []
    for name in sorted(os.listdir(src)):
        d = os.path.join(src, name, "contents", "images")
        if not os.path.isdir(d):
            continue
        best = None
        for f in os.listdir(d):
            m = re.match(r"^(\d+)x(\d+)\.jpe?g$", f, re.I)
            if m:
                px = int(m.group(1)) * int(m.group(2))
                if best is None or px > best[0]:
                    best = (px, os.path.join(d, f))
        if best:
            out.append((name, best[1]))
    return out


def cut(photo, rng):
    """One image cut from photo (a PIL RGB image) with the draws of rng."""
    pw, ph = photo.size
    short = rng.randint(*SHORT)
    aspect = math.exp(rng.uniform(math.log(ASPECT[0]), math.log(ASPECT[1])))
    w, h = (round(short * aspect), short) if aspect >= 1 else (short, round(short / aspect))
    kmax = min(pw / w, ph / h)  # the largest box of this aspect in the photo
    k = math.exp(rng.uniform(0, math.log(kmax))) if kmax > 1 else kmax
    bw, bh = w * k, h * k
    x0, y0 = rng.uniform(0, pw - bw), rng.uniform(0, ph - bh)
    return photo.resize((w, h), Image.LANCZOS, box=(x0, y0, x0 + bw, y0 + bh),
                        reducing_gap=3.0)


def work(job):
    """Cuts every image of one class: job = (out, name, path, indices, seed)."""
    out, name, path, indices, seed = job
    photo = Image.open(path).convert("RGB")
    d = os.path.join(out, "train", name)
    os.makedirs(d, exist_ok=True)
    sizes = []
    for i in indices:
        rng = random.Random(seed * 1000003 + i)
        im = cut(photo, rng)
        path = os.path.join(d, "%05d.jpg" % i)
        im.save(path, quality=QUALITY, subsampling=2)
        sizes.append((im.size[0], im.size[1], os.path.getsize(path)))
    return sizes


def stats_line(sizes):
    """'images=N bytes=B w=min/median/max h=... pixels=...' of [(w, h, bytes)]."""
    def mmm(xs):
        xs = sorted(xs)
        return "%d/%d/%d" % (xs[0], xs[(len(xs) - 1) // 2], xs[-1])
    return "images=%d bytes=%d w=%s h=%s pixels=%s" % (
        len(sizes), sum(b for _, _, b in sizes), mmm([w for w, _, _ in sizes]),
        mmm([h for _, h, _ in sizes]), mmm([w * h for w, h, _ in sizes]))


def stamp_of(args, photos):
    return "make_corpus v%d count=%d seed=%d short=%d-%d aspect=%.4f-%.4f q=%d src=%s" % (
        VERSION, args.count, args.seed, SHORT[0], SHORT[1], ASPECT[0], ASPECT[1],
        QUALITY, ",".join("%s:%d" % (os.path.basename(os.path.dirname(os.path.dirname(
            os.path.dirname(p)))), os.path.getsize(p)) for _, p in photos))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out")
    ap.add_argument("--count", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--src", default=SRC)
    args = ap.parse_args()
    photos = photographs(args.src)
    if not photos:
        sys.exit("make_corpus: no JPEG wallpapers under %s "
                 "(apt-get install plasma-workspace-wallpapers)" % args.src)
    stamp = stamp_of(args, photos)
    sp = os.path.join(args.out, ".stamp")
    st = os.path.join(args.out, ".stats")
    if os.path.exists(sp) and open(sp).read().strip() == stamp and os.path.exists(st):
        print("make_corpus: %s is up to date (%d images)" % (args.out, args.count))
        print("corpus %s" % open(st).read().strip())
        return
    shutil.rmtree(args.out, ignore_errors=True)
    os.makedirs(args.out)
    n = len(photos)
    jobs = [(args.out, name, path, range(c, args.count, n), args.seed)
            for c, (name, path) in enumerate(photos)]
    t0 = time.time()
    with multiprocessing.Pool(args.procs) as pool:
        sizes = [x for part in pool.imap_unordered(work, jobs) for x in part]
    secs = time.time() - t0
    with open(st, "w") as f:
        f.write(stats_line(sizes) + "\n")
    with open(sp, "w") as f:
        f.write(stamp + "\n")
    print("make_corpus: %d images in %d classes from %s in %.1f s (%d processes): %s" % (
        len(sizes), n, args.src, secs, args.procs, args.out))
    print("corpus made_secs=%.1f procs=%d" % (secs, args.procs))
    print("corpus %s" % stats_line(sizes))


if __name__ == "__main__":
    main()
