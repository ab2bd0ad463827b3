"""bench/photos/photos_report.py — the photos section of bench/report.py.

  section(report, helpers)

report is bench/report.py's Report (its raw dir, Markdown, summary and
plot); helpers is report.py's module (med, rng, fmt, kv, tagged, paired).
Reads RAW/photos.log (loadbench, tagged rep, pack, transform),
RAW/photos-peers.log (peers.py, tagged rep, peer), RAW/photos-prep.log
(the corpus and FFCV's file) and RAW/photos-venv-freeze.txt; writes the
tables, RAW/photos.dat and OUT/STEM-photos.png (bench/photos/photos.gp),
and adds the targets to the summary.

Per repetition, a peer's figure is its warm epochs together (images over
seconds, epochs 2 and later: torchvision's epoch 1 starts its workers,
FFCV's compiles with Numba); streamtrain's is loadbench's last epoch (the
first follows loadbench's own one-thread baseline epoch, so both are warm).
images/s per core is images/s over the threads or workers given the
loader (2 here, on a 2-core machine; the peers' main process, which only
receives batches, is not counted).
"""
import collections
import os

HERE = os.path.dirname(os.path.abspath(__file__))

TRANSFORMS = (("rrc224flip", "random-resized-crop 224 + flip"),
              ("rrc160", "random-resized-crop 160"),
              ("cc224", "center-crop 224"))
PEERS = (("torchvision-debian", "torchvision (Debian)"),
         ("torchvision-pypi", "torchvision (PyPI)"),
         ("ffcv", "FFCV"),
         ("dali", "DALI (CPU)"))
TARGETS = {"torchvision-debian": 3, "torchvision-pypi": 3, "ffcv": 2}  # DALI: none


def table_rows(lines):
    """loadbench's per-epoch table: [dict column -> text], from its header
    (the line starting 'threads') and the lines of as many fields."""
    head, rows = None, []
    for text in lines:
        f = text.split()
        if f and f[0] == "threads" and "epoch" in f:
            head = f
        elif head and len(f) == len(head) and f[0].isdigit():
            rows.append(dict(zip(head, f)))
    return rows


def parse_st(raw, h):
    """{(pack, transform, threads): {rep: figures}} from photos.log."""
    groups = collections.defaultdict(list)
    for tags, text in h.tagged(os.path.join(raw, "photos.log")):
        groups[(int(tags["rep"]), tags["pack"], tags["transform"])].append(text)
    out = collections.defaultdict(dict)
    for (rep, pack, tf), lines in groups.items():
        rows = table_rows(lines)
        for text in lines:
            if not text.startswith("loadbench threads="):
                continue
            d = h.kv(text)
            th = int(d["threads"])
            mine = [r for r in rows if r.get("threads") == str(th)]
            last = max(mine, key=lambda r: int(r["epoch"])) if mine else {}
            num = lambda k: float(d[k]) if k in d else None
            out[(pack, tf, th)][rep] = dict(
                sps=float(d["samples_per_s"]), wait=num("wait_pct"),
                skipped=num("rows_skipped_pct"), anon=num("rss_anon_kib"),
                file=num("rss_file_kib"),
                stages={k: v for k, v in last.items()
                        if k.endswith("%") and k not in ("wait%",)})
    return out


def parse_peers(raw, h):
    """{(peer, transform, workers): {rep: warm images/s}}, same keys ->
    {rep: epoch-1 images/s}, {peer: version}."""
    ep = collections.defaultdict(lambda: collections.defaultdict(list))
    ver = {}
    for tags, text in h.tagged(os.path.join(raw, "photos-peers.log")):
        if not text.startswith("photo_peer "):
            continue
        d = h.kv(text)
        key = (tags["peer"], d["transform"], int(d["workers"]))
        ep[key][int(tags["rep"])].append(
            (int(d["epoch"]), int(d["images"]), float(d["secs"])))
        ver[tags["peer"]] = d["version"]
    warm, first = collections.defaultdict(dict), collections.defaultdict(dict)
    for key, reps in ep.items():
        for rep, es in reps.items():
            w = [e for e in es if e[0] >= 2]
            if w:
                warm[key][rep] = sum(e[1] for e in w) / sum(e[2] for e in w)
            for e in es:
                if e[0] == 1:
                    first[key][rep] = e[1] / e[2]
    return warm, first, ver


def prep_info(raw, h):
    """{corpus tag: {made_secs, images, bytes, w, h, pixels}}, ffcv line."""
    corp, ffcv = collections.defaultdict(dict), ""
    for tags, text in h.tagged(os.path.join(raw, "photos-prep.log")):
        if text.startswith("corpus "):
            corp[tags.get("corpus", "?")].update(h.kv(text))
        elif text.startswith("peers: ffcv wrote"):
            ffcv = text[len("peers: "):]
    return corp, ffcv


def section(r, h):
    st = parse_st(r.raw, h)
    warm, first, ver = parse_peers(r.raw, h)
    if not st and not warm:
        return
    n, small = r.times.get("photos_n", "?"), r.times.get("photos_small", "?")
    st_built = r.times.get("photos_streamtrain", "1") == "1"
    jp, zs, jps = ("photos-jpeg512-n%s" % n, "photos-zstd256-n%s" % n,
                   "photos-jpeg512-n%s" % small)
    corp, ffcv = prep_info(r.raw, h)
    c = corp.get("n%s" % n, {})
    made = ("made in %s s with %s processes in this run" % (c["made_secs"], c["procs"])
            if "made_secs" in c else "cached from an earlier run")
    r.w("## 4. Photos: %s JPEGs of every size, crop + resize + flip into uint8 batches"
        % h.fmt(int(n)) if n.isdigit() else "## 4. Photos", "",
        "The corpus (`bench/photos/make_corpus.py`, %s): cut from the 18 JPEG "
        "photographs of Debian's plasma-workspace-wallpapers (the largest size of "
        "each, up to 5120×2880), one class per photograph, shorter side uniform in "
        "256–512, aspect log-uniform in [2/3, 3/2], a random scale and position, "
        "saved by PIL at quality 90, 4:2:0. %s images, %.1f MB; width %s, height %s "
        "(min/median/max)." % (
            made, h.fmt(int(c.get("images", 0))), int(c.get("bytes", 0)) / 1e6,
            c.get("w", "?"), c.get("h", "?")), "",
        "Every system yields uint8 batches of 256, no normalization, shuffled, and "
        "the loop touches each batch (streamtrain's loadbench hashes every byte). "
        "streamtrain: `loadbench --data PACK --image-size S --train-transform T "
        "--threads 1,2 --batch 256 --epochs 2`, its last epoch; packs made by "
        "`packdata` with `--max-side 512 --codec jpeg --quality 90` (FFCV's ImageNet "
        "configuration) and `--max-side 256 --codec zstd` (its fast one). "
        "torchvision: `ImageFolder` + the transform + `PILToTensor()` in a "
        "`DataLoader(batch_size=256, shuffle=True, num_workers=2, "
        "persistent_workers=True)`, epoch 2. FFCV: its own file of the same images "
        "(`DatasetWriter`, `RGBImageField(max_resolution=512, jpeg_quality=90, "
        "write_mode='jpg')`%s), `Loader(batch_size=256, num_workers=2, "
        "order=RANDOM, os_cache=True)` with `RandomResizedCropRGBImageDecoder` + "
        "`RandomHorizontalFlip()` + `ToTensor()`, epochs 2–4 (epoch 1 compiles "
        "with Numba). Per core: images/s over the loader's threads or workers." % (
            "; " + ffcv if ffcv else ""), "")
    if not st_built:
        r.w("**streamtrain's side was not built yet** (`packdata --help` had no "
            "`--max-side`): only the peers ran.", "")

    per = lambda x, k: [v / k for v in x]
    pk = lambda p: {jp: "512 px JPEG", zs: "256 px zstd", jps: "512 px JPEG, %s images"
                    % small}.get(p, p)
    if st:
        r.w("| pack | transform | threads | images/s | per core | "
            + "".join("× %s | " % label for _, label in PEERS)
            + "stages, % of producer time | JPEG rows skipped % | RssAnon | RssFile |",
            "|" + "---|" * (9 + len(PEERS)))
        for p in (jp, zs, jps):
            for tf, tl in TRANSFORMS:
                for th in (1, 2):
                    got = st.get((p, tf, th))
                    if not got:
                        continue
                    sps = {k: v["sps"] for k, v in got.items()}
                    cells = [pk(p), tl, str(th), h.rng(list(sps.values())),
                             h.rng(per(sps.values(), th))]
                    for peer, _ in PEERS:
                        ratios = h.paired(sps, warm.get((peer, tf, 2), {})) if th == 2 else []
                        cells.append("%.2f× [%.2f, %.2f]" % (h.med(ratios)[0], min(ratios),
                                                            max(ratios)) if ratios else "—")
                    # the stages of the repetition with the median images/s
                    stg = sorted(got.values(), key=lambda v: v["sps"])[(len(got) - 1) // 2]["stages"]
                    cells.append(", ".join("%s %s" % (k.rstrip("%"), v) for k, v in stg.items())
                                 or "—")
                    sk = [v["skipped"] for v in got.values() if v["skipped"] is not None]
                    cells.append(h.rng(sk, 1) if sk else "—")
                    for k in ("anon", "file"):
                        m = [v[k] / 1024 for v in got.values() if v[k] is not None]
                        cells.append(h.rng(m, 1, " MiB") if m else "—")
                    r.w("| " + " | ".join(cells) + " |")
        r.w("")
    r.w("| peer | version | transform | workers | images/s, warm epochs | per core | "
        "images/s, epoch 1 |", "|---|---|---|---|---|---|---|")
    for peer, label in PEERS:
        for tf, tl in TRANSFORMS:
            got = warm.get((peer, tf, 2))
            if got:
                r.w("| %s | %s | %s | 2 | %s | %s | %s |" % (
                    label, ver.get(peer, "?"), tl, h.rng(list(got.values())),
                    h.rng(per(got.values(), 2)),
                    h.rng(list(first.get((peer, tf, 2), {}).values()) or [0])))
    r.w("", "![photos](%s-photos.png)" % r.stem, "")

    # the plot: images/s per core, random-resized-crop 224 + flip
    bars = []
    for p, th in ((jp, 1), (jp, 2), (zs, 1), (zs, 2)):
        got = st.get((p, "rrc224flip", th))
        if got:
            bars.append(("streamtrain %s, %d thread%s" % (
                "JPEG 512" if p == jp else "zstd 256", th, "s" if th > 1 else ""),
                h.med([v["sps"] / th for v in got.values()])))
    for peer, label in PEERS:
        got = warm.get((peer, "rrc224flip", 2))
        if got:
            bars.append(("%s, 2 workers" % label, h.med([v / 2 for v in got.values()])))
    with open(os.path.join(r.raw, "photos.dat"), "w") as f:
        f.write("# index, label, images/s per core: median min max "
                "(random-resized-crop 224 + flip), colour (1 streamtrain, 2 "
                "torchvision, 3 FFCV, 4 DALI)\n")
        for i, (label, m) in enumerate(bars):
            color = (1 if label.startswith("streamtrain") else 3 if "FFCV" in label
                     else 4 if "DALI" in label else 2)
            f.write('%d "%s" %g %g %g %d\n' % ((i, label) + m + (color,)))
    if bars:
        r.plot("photos", os.path.join(HERE, "photos.gp"))

    # the targets
    ours = {k: v["sps"] for k, v in st.get((jp, "rrc224flip", 2), {}).items()}
    for peer, label in PEERS:
        theirs = warm.get((peer, "rrc224flip", 2), {})
        t = TARGETS.get(peer)
        if t is None and not theirs:
            continue  # an optional peer that did not run
        what = ("Photos images/s, random-resized-crop 224 + flip: 512 px JPEG pack, "
                "2 threads vs %s %s%s, 2 workers%s" % (
                    label, ver.get(peer, "?"),
                    " DataLoader" if peer.startswith("torchvision") else "",
                    " (epochs 2–4)" if peer == "ffcv" else ""))
        tl = "≥ %d×" % t if t else ""
        if not ours:
            r.summary.append("| %s | — | %s | — | %s | %s |" % (
                what, h.rng(list(theirs.values())) if theirs else "—", tl or "—",
                "streamtrain not built yet" if not st_built else "no data"))
        elif not theirs:
            r.summary.append("| %s | %s | — | — | %s | the peer did not run |" % (
                what, h.rng(list(ours.values())), tl or "—"))
        else:
            r.add_summary(what, ours, theirs, t, ">=", tl)
    big = {k: v["anon"] / 1024 for k, v in st.get((jp, "rrc224flip", 2), {}).items()
           if v["anon"] is not None}
    sm = {k: v["anon"] / 1024 for k, v in st.get((jps, "rrc224flip", 2), {}).items()
          if v["anon"] is not None}
    if big and sm:
        r.add_scaling("Photos RssAnon, 2 threads: %s vs %s images (512 px JPEG)" % (
            n, small), sm, big, 1.10, "%.1f MiB")
