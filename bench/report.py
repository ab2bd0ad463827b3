#!/usr/bin/python3
"""bench/report.py — turns bench/run.sh's raw logs into the report.

  report.py RAW_DIR OUT_DIR STEM

Reads RAW_DIR (loader.log, torch_loader.log, st-N.jsonl, st-N.log,
pt-N.log, scaling.log, photos.log, photos-peers.log, photos-prep.log,
conv-time.log, conv-gemm.log, conv-acc.log (bench/conv/conv_report.py),
packs.log, machine.txt, times.txt), writes OUT_DIR/STEM.md, the plot data
RAW_DIR/*.dat and, with gnuplot (bench/*.gp, bench/photos/photos.gp),
OUT_DIR/STEM-loader.png, STEM-trainer.png, STEM-scaling.png and
STEM-photos.png; prints the summary table last. A section whose logs are
absent is left out.

Figures are the median of the repetitions with [min, max]. A ratio is the
median of the per-repetition ratios (both sides measured in the same
repetition of the same invocation) with [min, max].
"""
import collections
import json
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "photos"))
sys.path.insert(0, os.path.join(HERE, "conv"))
import photos_report as photos  # noqa: E402  (bench/photos/photos_report.py)
import conv_report as conv  # noqa: E402  (bench/conv/conv_report.py)


# ---- small helpers ---------------------------------------------------------

def med(xs):
    """(median, min, max) of a non-empty list; the lower median if even."""
    s = sorted(xs)
    return s[(len(s) - 1) // 2], s[0], s[-1]


def fmt(v, nd=0):
    return "%s" % ("{:,.%df}" % nd).format(v)


def rng(xs, nd=0, unit=""):
    """'median [min, max]' of xs."""
    m, lo, hi = med(xs)
    return "%s%s [%s, %s]" % (fmt(m, nd), unit, fmt(lo, nd), fmt(hi, nd))


def kv(s):
    """'a=1 b=x' -> {'a': '1', 'b': 'x'} (numbers stay strings)."""
    return dict(t.split("=", 1) for t in s.split() if "=" in t)


def tagged(path):
    """Lines 'tags<TAB>text' -> [(tags dict, text)]."""
    out = []
    if not os.path.exists(path):
        return out
    with open(path) as f:
        for line in f:
            tags, _, text = line.rstrip("\n").partition("\t")
            out.append((kv(tags), text))
    return out


def paired(a, b):
    """Per-repetition ratios a[r] / b[r] over the repetitions both have."""
    return [a[r] / b[r] for r in sorted(a) if r in b and b[r] > 0]


# ---- parsing ---------------------------------------------------------------

def parse_loadbench(raw):
    """{(codec, threads, epoch): {rep: row}}, {codec: {rep: baseline sps}}.
    The table is read by its header's column names, so a column loadbench
    adds (per-stage figures) leaves the parsing alone."""
    rows, base = collections.defaultdict(dict), collections.defaultdict(dict)
    head = {}
    for tags, text in tagged(os.path.join(raw, "loader.log")):
        rep, codec = int(tags["rep"]), tags["codec"]
        f = text.split()
        if f and f[0] == "threads" and "epoch" in f:
            head[(rep, codec)] = f
            continue
        h = head.get((rep, codec))
        if h and len(f) == len(h) and f[0].isdigit():
            c = dict(zip(h, f))
            num = lambda k: float(c.get(k, "nan"))
            rows[(codec, int(c["threads"]), int(c["epoch"]))][rep] = dict(
                io=c.get("io", "?"), sps=num("samples/s"), mbs=num("MB/s"),
                read=num("read%"), decode=num("decode%"),
                blocked=num("blocked%"), wait=num("wait%"))
            continue
        m = re.match(r"baseline: .*: (\d+) samples/s", text)
        if m:
            base[codec][rep] = float(m.group(1))
    return rows, base


def parse_torch_loader(raw):
    """{(source, workers, epoch): {rep: samples/s}}, {source: samples}."""
    out, n = collections.defaultdict(dict), {}
    for tags, text in tagged(os.path.join(raw, "torch_loader.log")):
        if not text.startswith("torch_loader "):
            continue
        d = kv(text)
        out[(d["source"], int(d["workers"]), int(d["epoch"]))][int(tags["rep"])] = \
            float(d["samples_per_s"])
        n[d["source"]] = int(d["samples"])
    return out, n


def parse_trainer(raw):
    """st, pt: {rep: [per-epoch dict]} (epoch secs, samples/s, loss, acc,
    test_acc, wait)."""
    st, pt = {}, {}
    for name in sorted(os.listdir(raw)):
        m = re.match(r"st-(\d+)\.jsonl$", name)
        if m:
            rows = []
            with open(os.path.join(raw, name)) as f:
                for line in f:
                    o = json.loads(line)
                    if o.get("kind") == "epoch":
                        rows.append(dict(
                            secs=60000 / o["samples_per_s"], sps=o["samples_per_s"],
                            loss=o["loss"], test_acc=o["test_acc"],
                            wait=o["loader_wait_pct"], rss=o["host_rss"]))
            st[int(m.group(1))] = rows
        m = re.match(r"pt-(\d+)\.log$", name)
        if m:
            rows = []
            with open(os.path.join(raw, name)) as f:
                for line in f:
                    if line.startswith("torch_epoch "):
                        d = kv(line)
                        rows.append(dict(secs=float(d["secs"]),
                                         sps=float(d["samples_per_s"]),
                                         loss=float(d["loss"]),
                                         test_acc=float(d["test_acc"])))
            pt[int(m.group(1))] = rows
    return st, pt


def parse_scaling(raw):
    """{(size, run, threads, epoch): {rep: us/sample/thread, sps}},
    {(size, threads): {rep: (peak_rss, index)}}."""
    runs, mem = collections.defaultdict(dict), collections.defaultdict(dict)
    last = {}
    for tags, text in tagged(os.path.join(raw, "scaling.log")):
        rep, size, run = int(tags["rep"]), tags["size"], tags["run"]
        d = kv(text)
        if text.startswith("stream epoch="):
            th = int(d["threads"])
            runs[(size, run, th, int(d["epoch"]))][rep] = dict(
                us=float(d["us_per_sample_thread"]), sps=float(d["samples_per_s"]),
                read=float(d["read_pct"]), decode=float(d["decode_pct"]))
            last[(rep, size, run)] = th
        elif text.startswith("stream memory") and run == "warm":
            th = last[(rep, size, run)]
            mem[(size, th)][rep] = dict(
                rss=int(d["peak_rss"]), ring=int(d["ring"]), scratch=int(d["scratch"]),
                loader_index=int(d["index"]),
                index=int(d.get("index_resident", d["index"])),
                anon=int(d.get("rss_anon", -1)), file=int(d.get("rss_file", -1)))
    return runs, mem


def parse_packs(raw):
    """{pack name: (train samples, on-disk text, ratio)} and {pack name:
    codec line} from packinfo."""
    out, codec = {}, {}
    for tags, text in tagged(os.path.join(raw, "packs.log")):
        m = re.match(r"train\s+(\d+)\s+\d+\s+([\d.]+ \w+)\s+([\d.]+ \w+)\s+([\d.]+)", text)
        if m:
            out[tags["pack"]] = (int(m.group(1)), m.group(3), m.group(4))
        m = re.match(r"codec\s+(.*?)(?: \(id \d+\))?$", text)
        if m:
            codec[tags["pack"]] = m.group(1)
    return out, codec


def read_kv_file(path):
    out = {}
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                k, _, v = line.rstrip("\n").partition(" ")
                out.setdefault(k, v)
    return out


def size_gib(s):
    mult = {"M": 1 / 1024, "G": 1.0}
    return float(s[:-1]) * mult[s[-1]]


def size_label(s):
    g = size_gib(s)
    return "%g GiB" % g if g >= 1 or g in (0.25, 0.5) else "%g MiB" % (g * 1024)


# ---- the report ------------------------------------------------------------

class Report:
    def __init__(self, raw, out, stem):
        self.raw, self.out, self.stem = raw, out, stem
        self.md = []
        self.summary = []  # rows of the summary table
        self.machine = read_kv_file(os.path.join(raw, "machine.txt"))
        self.times = {}
        for line in open(os.path.join(raw, "times.txt")):
            p = line.split()
            if p[0] == "section":
                self.times[p[1]] = int(p[2])
            else:
                self.times[p[0]] = p[1]

    def w(self, *lines):
        self.md.extend(lines)

    def verdict(self, ok):
        return "**met**" if ok else "**missed**"

    # -- 1. loader --
    def loader(self):
        rows, base = parse_loadbench(self.raw)
        tl, tn = parse_torch_loader(self.raw)
        if not rows and not tl:
            return
        codec = parse_packs(self.raw)[1].get("fm-zstd", "?")
        self.w("## 1. The loader: Fashion-MNIST, 60,000 28×28 training images",
               "",
               "`loadbench --data data/bench/fm-CODEC --threads 1,2 --batch 256 --epochs 2 "
               "--shuffle global` (packs made by `packdata` with its defaults but "
               "`--codec`; zstd: " + re.sub(r"^zstd ", "", codec) + "; `--io auto`: mapped, "
               "page cache warm after loadbench's own one-thread baseline epoch); "
               "the consumer checksums every byte. read/decode/blocked % are of the "
               "producers' time, wait % of the consumer's.",
               "",
               "| codec | threads | samples/s, epoch 1 | samples/s, epoch 2 | MB/s (2) "
               "| read % | decode % | blocked % | wait % | baseline samples/s |",
               "|---|---|---|---|---|---|---|---|---|---|")
        dat = []
        for codec in ("zstd", "png", "raw"):
            pts = []
            for th in (1, 2):
                e1, e2 = rows.get((codec, th, 0), {}), rows.get((codec, th, 1), {})
                if not e2:
                    continue
                m = lambda k: med([r[k] for r in e2.values()])[0]
                self.w("| %s | %d | %s | %s | %s | %.1f | %.1f | %.1f | %.1f | %s |" % (
                    codec, th, rng([r["sps"] for r in e1.values()]),
                    rng([r["sps"] for r in e2.values()]), fmt(m("mbs"), 1),
                    m("read"), m("decode"), m("blocked"), m("wait"),
                    fmt(med(list(base[codec].values()))[0])))
                pts.append((th,) + med([r["sps"] for r in e2.values()]))
            dat.append(("streamtrain %s" % codec, pts))
        self.w("", "PyTorch %s `DataLoader(batch_size=256, shuffle=True, "
               "num_workers=W, persistent_workers=W>0)` yielding uint8 (256, 28, 28) "
               "and int64 labels, the loop touching each batch: over the same "
               "training images as a folder of PNG files (one PIL decode per "
               "sample%s) and over an in-memory `TensorDataset`." % (
                   self.machine.get("torch", ""),
                   "; the first %s files in this quick run" % fmt(tn.get("pngdir", 0))
                   if tn.get("pngdir", 60000) < 60000 else ""),
               "",
               "| source | workers | samples/s, epoch 1 | samples/s, epoch 2 |",
               "|---|---|---|---|")
        for source, label in (("pngdir", "PNG folder"), ("tensor", "TensorDataset")):
            pts = []
            for wk in (0, 1, 2):
                e1, e2 = tl.get((source, wk, 1), {}), tl.get((source, wk, 2), {})
                if not e2:
                    continue
                self.w("| %s | %d | %s | %s |" % (label, wk, rng(list(e1.values())),
                                                  rng(list(e2.values()))))
                pts.append((wk,) + med(list(e2.values())))
            dat.append(("PyTorch %s" % label, pts))
        self.w("", "![loader](%s-loader.png)" % self.stem, "")
        self.write_dat("loader.dat", dat)
        self.plot("loader")

        # summary: zstd 2 threads against the PyTorch loaders, per repetition
        ours = {r: v["sps"] for r, v in rows.get(("zstd", 2, 1), {}).items()}
        png2 = tl.get(("pngdir", 2, 2), {})
        best_w = min((w for w in (0, 1, 2) if ("tensor", w, 2) in tl),
                     key=lambda w: -med(list(tl[("tensor", w, 2)].values()))[0],
                     default=0)
        tens = tl.get(("tensor", best_w, 2), {})
        self.add_summary("Loader samples/s: zstd, 2 threads vs PNG-folder DataLoader, "
                         "2 workers", ours, png2, 50, ">=", "≥ 50×")
        self.add_summary("Loader samples/s: zstd, 2 threads vs TensorDataset DataLoader "
                         "(in memory, %d workers: its fastest)" % best_w, ours, tens,
                         3.5, ">=", "≥ 3.5×")
        oursp = {r: v["sps"] for r, v in rows.get(("png", 2, 1), {}).items()}
        self.add_summary("Loader samples/s: png, 2 threads vs PNG-folder DataLoader, "
                         "2 workers (same codec)", oursp, png2, None, None, "")

    def add_summary(self, what, a, b, target, op, tlabel, nd=0, unit=""):
        ratios = paired(a, b)
        if not ratios:
            self.summary.append("| %s | — | — | — | %s | no data |" % (what, tlabel))
            return
        rm = med(ratios)[0]
        ok = None if target is None else (rm >= target if op == ">=" else rm <= target)
        self.summary.append("| %s | %s | %s | %s× [%s, %s] | %s | %s |" % (
            what, rng(list(a.values()), nd, unit), rng(list(b.values()), nd, unit),
            "%.2f" % rm, "%.2f" % min(ratios), "%.2f" % max(ratios), tlabel or "—",
            "" if ok is None else self.verdict(ok)))

    # -- 2. trainer --
    def trainer(self):
        st, pt = parse_trainer(self.raw)
        if not st or not pt:
            return
        mean = lambda rows, k: sum(r[k] for r in rows) / len(rows)
        st_secs = {r: mean(v, "secs") for r, v in st.items()}
        pt_secs = {r: mean(v, "secs") for r, v in pt.items()}
        st_acc = {r: v[-1]["test_acc"] for r, v in st.items()}
        pt_acc = {r: v[-1]["test_acc"] for r, v in pt.items()}
        st_sps = {r: 60000 / s for r, s in st_secs.items()}
        pt_sps = {r: 60000 / s for r, s in pt_secs.items()}
        st_wait = {r: mean(v, "wait") for r, v in st.items()}
        seeds = sorted(st)
        self.w("## 2. The trainer: MLP 784-512-256-10, SGD momentum 0.9, lr 0.05 "
               "with per-step cosine decay to 0, batch 128, 5 epochs", "",
               "streamtrain: `streamtrain --data data/bench/fm-zstd --seed S` (CPU backend, "
               "its defaults: OpenBLAS on every core, one loader thread, streaming "
               "from the zstd pack). PyTorch: the same model and recipe (the same "
               "cosine decay, `torch_peer.py train --schedule cosine`) from "
               "in-memory float tensors scaled to [0, 1], `torch.set_num_threads(1)` "
               "(its fastest setting here; OpenBLAS still uses 2 threads), default "
               "`nn.Linear` initialization. Seeds %s, one run each, the two run "
               "back to back. s/epoch is the training pass (5-epoch mean; the "
               "evaluation after each epoch is outside it, on both sides)." %
               ", ".join(map(str, seeds)), "",
               "| | streamtrain | PyTorch | ratio |", "|---|---|---|---|",
               "| s/epoch | %s | %s | %s |" % (
                   rng(list(st_secs.values()), 2), rng(list(pt_secs.values()), 2),
                   "%.2f×" % med(paired(st_secs, pt_secs))[0]),
               "| samples/s | %s | %s | %s |" % (
                   rng(list(st_sps.values())), rng(list(pt_sps.values())),
                   "%.2f×" % med(paired(st_sps, pt_sps))[0]),
               "| loader wait %% (5-epoch mean) | %s | — | |" % rng(list(st_wait.values()), 1),
               "| test accuracy after 5 epochs | %s | %s | %+.2f points |" % (
                   rng(list(st_acc.values()), 4), rng(list(pt_acc.values()), 4),
                   100 * (med(list(st_acc.values()))[0] - med(list(pt_acc.values()))[0])),
               "| … by seed | %s | %s | |" % (
                   ", ".join("%.4f" % st_acc[s] for s in seeds),
                   ", ".join("%.4f" % pt_acc[s] for s in sorted(pt_acc))),
               "", "Per epoch (median over seeds): training loss, test accuracy, "
               "seconds.", "",
               "| epoch | streamtrain loss | PyTorch loss | streamtrain test acc | "
               "PyTorch test acc | streamtrain s | PyTorch s |",
               "|---|---|---|---|---|---|---|")
        dat = []
        for e in range(min(len(v) for v in list(st.values()) + list(pt.values()))):
            col = lambda side, k: [v[e][k] for v in side.values()]
            sl, pl = med(col(st, "loss"))[0], med(col(pt, "loss"))[0]
            sa, pa = med(col(st, "test_acc")), med(col(pt, "test_acc"))
            ss, ps = med(col(st, "secs"))[0], med(col(pt, "secs"))[0]
            self.w("| %d | %.4f | %.4f | %.4f | %.4f | %.2f | %.2f |" % (
                e + 1, sl, pl, sa[0], pa[0], ss, ps))
            dat.append((e + 1, sl, pl) + sa + pa)
        self.w("", "![trainer](%s-trainer.png)" % self.stem, "")
        with open(os.path.join(self.raw, "trainer.dat"), "w") as f:
            f.write("# epoch st_loss pt_loss st_acc min max pt_acc min max\n")
            for row in dat:
                f.write(" ".join("%g" % x for x in row) + "\n")
        self.plot("trainer")
        self.add_summary("Trainer s/epoch (reference recipe, CPU)", st_secs, pt_secs,
                         0.7, "<=", "≤ 0.7×", 2, " s")
        # Seeds do not pair across frameworks and accuracy does not drift
        # with the machine: compare the medians.
        sa, pa = med(list(st_acc.values()))[0], med(list(pt_acc.values()))[0]
        self.summary.append("| Test accuracy after 5 epochs (seeds %s) | %s | %s | "
                            "%+.2f points | equal or better | %s |" % (
                                ",".join(map(str, seeds)), rng(list(st_acc.values()), 4),
                                rng(list(pt_acc.values()), 4), 100 * (sa - pa),
                                self.verdict(sa >= pa)))

    # -- 3. scaling --
    def scaling(self):
        runs, mem = parse_scaling(self.raw)
        packs, codecs = parse_packs(self.raw)
        sizes = sorted({k[0] for k in runs}, key=size_gib)
        if not sizes:
            return
        cold = self.times.get("drop_caches") == "1"
        has_ra0 = any(k[1] == "cold_ra0" for k in runs)
        has_anon = any(v["anon"] >= 0 for m in mem.values() for v in m.values())
        self.w("## 3. Scaling with the size of the data: synthetic 64×64×3 packs", "",
               "`build/synthpack --size SIZE` (gradients, shapes and noise; packdata's "
               "encoding defaults: " + codecs.get("synth-" + sizes[0], "?") + "), "
               "streamed by `bench/stream.c` (the loader "
               "alone, global shuffle, batch 256, `--io pread`, which `--io auto` "
               "picks above 256 MiB: same code path at every size) over one epoch. "
               "µs/sample is thread-time per sample (threads / samples/s). Peak RSS "
               "is the whole process's (`ru_maxrss`); the index is the pack's "
               "per-record table as `pack_open` holds it in memory (records × "
               "`sizeof(shard_entry)`, 24 bytes), the one part that grows with the "
               "pack. %s" % (
                   "Cold: after `echo 3 > /proc/sys/vm/drop_caches`, 2 threads, "
                   "with the loader's `readahead` 4 batches ahead (its default)%s." % (
                       " and with read-ahead off" if has_ra0 else "")
                   if cold else "This machine does not let us drop the page cache: "
                   "warm runs only."), "",
               "| pack (decoded) | samples | on disk | warm, 1 thread: samples/s | "
               "µs/sample | warm, 2 threads: samples/s | µs/sample·thread | %s"
               "peak RSS, 1 thread | peak RSS, 2 threads | of which index |%s" % (
                   ("cold, read-ahead 4: samples/s | " if cold else "") +
                   ("cold, no read-ahead: samples/s | " if has_ra0 else ""),
                   " RssAnon, 2 threads | RssFile, 2 threads |" if has_anon else ""),
               "|---|---|---|---|---|---|---|%s---|---|---|%s" % (
                   ("---|" if cold else "") + ("---|" if has_ra0 else ""),
                   "---|---|" if has_anon else ""))
        get = lambda size, run, th, ep, k: [v[k] for v in runs.get((size, run, th, ep), {}).values()]
        mib = lambda b: b / 1048576
        dat = []
        for s in sizes:
            n, disk, ratio = packs.get("synth-" + s, (0, "?", "?"))
            rss = {th: [mib(v["rss"]) for v in mem.get((s, th), {}).values()] for th in (1, 2)}
            idx = [mib(v["index"]) for v in mem.get((s, 2), {}).values()] or [0]
            cells = [size_label(s), fmt(n), "%s (ratio %s)" % (disk, ratio),
                     rng(get(s, "warm", 1, 0, "sps")), rng(get(s, "warm", 1, 0, "us"), 1),
                     rng(get(s, "warm", 2, 0, "sps")), rng(get(s, "warm", 2, 0, "us"), 1)]
            if cold:
                cells.append(rng(get(s, "cold_ra4", 2, 0, "sps")))
            if has_ra0:
                cells.append(rng(get(s, "cold_ra0", 2, 0, "sps")))
            cells += [rng(rss[1], 1, " MiB"), rng(rss[2], 1, " MiB"),
                      "%.2f MiB" % med(idx)[0]]
            if has_anon:
                for k in ("anon", "file"):
                    v = [mib(x[k]) for x in mem.get((s, 2), {}).values() if x[k] >= 0]
                    cells.append(rng(v, 1, " MiB") if v else "—")
            self.w("| " + " | ".join(cells) + " |")
            row = [size_gib(s)]
            for run, th in (("warm", 1), ("warm", 2), ("cold_ra4", 2), ("cold_ra0", 2)):
                v = get(s, run, th, 0, "us")
                row += list(med(v)) if v else [float("nan")] * 3
            row += [med(rss[1])[0], med(rss[2])[0], med(idx)[0]]
            dat.append(row + [size_label(s).replace(" ", "")])
        m = mem.get((sizes[0], 2), {})
        if m:
            v = next(iter(m.values()))
            self.w("", "Loader memory by its own account (`loader_memory_of`, 2 "
                   "threads): ring %.1f MiB, scratch %.2f MiB, index %.2f MiB for %s: "
                   "it counts the index at 12 bytes a record (the on-disk entry), half "
                   "of what is resident." % (mib(v["ring"]), mib(v["scratch"]),
                                              mib(v["loader_index"]), size_label(sizes[0])))
        if has_anon:
            self.w("", "RssAnon and RssFile: `/proc/self/status` at the end of each "
                   "epoch with the loader open, the largest seen (warm runs). "
                   "Anonymous memory is what the process owns; file pages (the "
                   "mapped shards, and the index where it is mapped) are page cache "
                   "the kernel can drop.")
        self.w("", "![scaling](%s-scaling.png)" % self.stem, "")
        with open(os.path.join(self.raw, "scaling.dat"), "w") as f:
            f.write("# gib us1 min max us2 min max cold_ra4 min max cold_ra0 min max "
                    "rss1 rss2 index (MiB) label\n")
            for row in dat:
                f.write(" ".join("%g" % x for x in row[:-1]) + " " + row[-1] + "\n")
        self.plot("scaling")

        small, big = sizes[0], sizes[-1]
        span = "%s vs %s" % (size_label(big), size_label(small))
        for th in (1, 2):
            a = {r: v["us"] for r, v in runs.get((big, "warm", th, 0), {}).items()}
            b = {r: v["us"] for r, v in runs.get((small, "warm", th, 0), {}).items()}
            self.add_scaling("Cost per sample (µs·thread), warm, %d thread%s: %s" %
                             (th, "s" if th > 1 else "", span), b, a, 1.15, "%.1f µs")
        if cold:
            a = {r: v["us"] for r, v in runs.get((big, "cold_ra4", 2, 0), {}).items()}
            b = {r: v["us"] for r, v in runs.get((small, "cold_ra4", 2, 0), {}).items()}
            self.add_scaling("Cost per sample, cold cache, read-ahead 4, 2 threads: %s" %
                             span, b, a, None, "%.1f µs")
        for th in (1, 2):
            a = {r: v["rss"] / 1048576 for r, v in mem.get((big, th), {}).items()}
            b = {r: v["rss"] / 1048576 for r, v in mem.get((small, th), {}).items()}
            self.add_scaling("Peak RSS, %d thread%s: %s" % (th, "s" if th > 1 else "", span),
                             b, a, 1.15, "%.1f MiB")
            ai = {r: (v["rss"] - v["index"]) / 1048576 for r, v in mem.get((big, th), {}).items()}
            bi = {r: (v["rss"] - v["index"]) / 1048576 for r, v in mem.get((small, th), {}).items()}
            self.add_scaling("Peak RSS less the index (24 B/record), %d thread%s: %s" %
                             (th, "s" if th > 1 else "", span), bi, ai, 1.15, "%.1f MiB")

        a = {r: v["anon"] / 1048576 for r, v in mem.get((big, 2), {}).items() if v["anon"] >= 0}
        b = {r: v["anon"] / 1048576 for r, v in mem.get((small, 2), {}).items() if v["anon"] >= 0}
        self.add_scaling("RssAnon, 2 threads: %s" % span, b, a, 1.10, "%.1f MiB")

    def add_scaling(self, what, small, big, target, f):
        ratios = paired(big, small)
        if not ratios:
            return
        rm = med(ratios)[0]
        self.summary.append("| %s | %s → %s | — | %.2f× [%.2f, %.2f] | %s | %s |" % (
            what, f % med(list(small.values()))[0], f % med(list(big.values()))[0],
            rm, min(ratios), max(ratios),
            "≤ %.2f×" % target if target else "—",
            self.verdict(rm <= target) if target else ""))

    # -- output --
    def write_dat(self, name, series):
        with open(os.path.join(self.raw, name), "w") as f:
            for label, pts in series:
                f.write("# %s\n" % label)
                for p in pts:
                    f.write(" ".join("%g" % x for x in p) + "\n")
                f.write("\n\n")

    def plot(self, name, gp=None):
        out = os.path.join(self.out, "%s-%s.png" % (self.stem, name))
        title = "%s, %s" % (self.machine.get("cpu", ""), self.machine.get("date", "")[:10])
        cmd = ["gnuplot", "-e", "dat='%s'; out='%s'; machine='%s'" % (
            os.path.join(self.raw, name + ".dat"), out, title.replace("'", "")),
            gp or os.path.join(HERE, name + ".gp")]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            sys.stderr.write("report: gnuplot %s failed: %s\n" % (name, r.stderr.strip()))

    def write(self):
        mc = self.machine
        t = self.times
        head = ["# `%s` — %s" % (mc.get("command", "make bench"), mc.get("date", "")), "",
                "- Machine: %s, %s; %s; %s; PyTorch %s (CPU)." % (
                    mc.get("cpu"), mc.get("mem"), mc.get("os"), mc.get("cc"),
                    mc.get("torch")),
                "- Commit %s. Took %s s (%s)." % (
                    mc.get("git"), t.get("total"), ", ".join(
                        "%s %s s" % (k, t[k]) for k in
                        ("inputs", "loader", "trainer", "photos", "conv", "conv_acc",
                         "scaling") if k in t)),
                "- Each figure: median of 3 repetitions [min, max]. Each ratio: the "
                "median of the 3 per-repetition ratios [min, max], the two sides "
                "measured back to back in the same repetition of this run.", "",
                "## Summary", ""] + self.summary_table() + [""]
        with open(os.path.join(self.out, self.stem + ".md"), "w") as f:
            f.write("\n".join(head + self.md) + "\n")

    def summary_table(self):
        return ["| measure | streamtrain | PyTorch | ratio | target | result |",
                "|---|---|---|---|---|---|"] + self.summary


def main():
    if len(sys.argv) != 4:
        sys.exit("usage: report.py RAW_DIR OUT_DIR STEM")
    raw, out, stem = sys.argv[1:]
    r = Report(raw, out, stem)
    r.loader()
    r.trainer()
    r.scaling()
    photos.section(r, sys.modules[__name__])
    conv.section(r, sys.modules[__name__])
    r.write()
    mc = r.machine
    print()
    print("bench: %s; %s; took %s s" % (mc.get("cpu"), mc.get("command"), r.times.get("total")))
    print("bench: report %s, plots %s-{loader,trainer,scaling,photos}.png" % (
        os.path.join(out, stem + ".md"), os.path.join(out, stem)))
    print()
    print("\n".join(r.summary_table()))


if __name__ == "__main__":
    main()
