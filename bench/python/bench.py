#!/usr/bin/python3
"""bench/python/bench.py — the "python" section of `make bench`
(bench/run.sh): streamtrain's Python iterator against the C loader and
PyTorch DataLoaders, and the same PyTorch training loop fed by each.

  bench.py iter --data PACK [--threads 2] [--batch 256] [--epochs 2] [--seed 0]
      samples/s through streamtrain.Loader (NumPy views) and through
      streamtrain.torch.Loader, with a consumer that touches every byte the
      way loadbench does (the chained XXH3 of each batch's pixels and
      labels, through libxxhash: the same work per byte as the C side);
      one line per epoch:
        py_iter api=numpy threads=2 batch=256 epoch=1 samples=60000
                secs=0.08 samples_per_s=740000 checksum=...
  bench.py train --feed streamtrain|tensor|pngdir [--pngdir DIR] [--epochs 2]
      python/examples/train_torch.py's loop (the reference MLP) fed by the
      feed; prints its epoch lines and final line.
  bench.py summary LOG...
      the table of the section from the logs (loadbench, torch_peer.py
      loader, the lines above), with the issue's targets.
"""
import argparse
import ctypes
import os
import re
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "python"))
sys.path.insert(0, os.path.join(ROOT, "python", "examples"))


def cmd_iter(a):
    import numpy as np
    import streamtrain as st
    xx = ctypes.CDLL("libxxhash.so.0")
    h3 = xx.XXH3_64bits_withSeed
    h3.restype, h3.argtypes = ctypes.c_uint64, [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint64]
    apis = ["numpy"]
    try:
        import streamtrain.torch as stt
        apis.append("torch")
    except ImportError:
        stt = None
    for api in apis:
        if api == "numpy":
            ld = st.Loader(a.data, batch_size=a.batch, threads=a.threads, seed=a.seed)
        else:
            import torch
            ld = stt.Loader(a.data, batch_size=a.batch, threads=a.threads, seed=a.seed,
                            label_dtype=torch.int32)
        with ld:
            for e in range(a.epochs):
                t0 = time.perf_counter()
                n, h = 0, 0
                for x, y in ld:
                    if api == "torch":
                        px, lb, k = x.data_ptr(), y.data_ptr(), x.shape[0]
                        nb = x.numel()
                    else:
                        px, lb, k = x.ctypes.data, y.ctypes.data, x.shape[0]
                        nb = x.nbytes
                    h = h3(px, nb, h)
                    h = h3(lb, k * 4, h)
                    n += k
                secs = time.perf_counter() - t0
                print(f"py_iter api={api} threads={a.threads} batch={a.batch} epoch={e} "
                      f"samples={n} secs={secs:.4f} samples_per_s={n / secs:.0f} "
                      f"checksum={h:016x}", flush=True)
    del np
    return 0


def cmd_train(a):
    import torch
    import train_torch as tt
    ta = tt.parse(["--data", a.data, "--feed", a.feed, "--pngdir", a.pngdir,
                   "--epochs", str(a.epochs), "--seed", str(a.seed),
                   "--loader-threads", str(a.threads), "--torch-threads", "1",
                   "--workers", str(2 if a.feed == "pngdir" else 0), "--device", "cpu"])
    torch.set_num_threads(1)
    feed = tt.make_feed(ta)
    acc, secs = tt.train(feed, ta, log=lambda s: print("py_train " + s, flush=True))
    if hasattr(feed, "close"):
        feed.close()
    print(f"py_train final feed={a.feed} epochs={a.epochs} test_acc={acc:.4f} "
          f"secs_per_epoch={sum(secs) / len(secs):.3f} "
          f"last_epoch_secs={secs[-1]:.3f}", flush=True)
    return 0


def kv(line):
    return dict(re.findall(r"(\w+)=(\S+)", line))


def _median(v):
    v = sorted(v)
    n = len(v)
    return v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2


def _rate(v):
    """median [min, max] of rates"""
    return f"{_median(v):.0f} [{min(v):.0f}, {max(v):.0f}]"


def cmd_summary(a):
    """Median (with the range) of each line kind over the repetitions; the
    Python iterator's first epoch of each run (warm-up) is left out."""
    c_rate, py, torch_dl, train = [], {}, {}, {}
    for path in a.logs:
        for line in open(path):
            if "loadbench threads=2 " in line:
                c_rate.append(float(kv(line)["samples_per_s"]))
            elif "py_iter " in line:
                d = kv(line)
                if d.get("epoch") != "0":
                    py.setdefault(d["api"], []).append(float(d["samples_per_s"]))
            elif "torch_loader " in line:
                d = kv(line)
                key = f"{d['source']} workers={d['workers']}"
                torch_dl.setdefault(key, []).append(float(d["samples_per_s"]))
            elif "py_train final" in line:
                d = kv(line)
                train.setdefault(d["feed"], []).append(
                    (float(d["last_epoch_secs"]), float(d["test_acc"])))
    out = ["| measurement | samples/s, median [min, max] | median vs loadbench (C) |",
           "|---|---|---|"]
    c = _median(c_rate) if c_rate else 0
    if c:
        out.append(f"| loadbench (C), 2 threads, batch 256 | {_rate(c_rate)} | 1.00 |")
    for api, v in py.items():
        out.append(f"| streamtrain Python iterator ({api}) | {_rate(v)} | "
                   + (f"{_median(v) / c:.2f} |" if c else "- |"))
    for k, v in torch_dl.items():
        out.append(f"| PyTorch DataLoader, {k} | {_rate(v)} | "
                   + (f"{_median(v) / c:.3f} |" if c else "- |"))
    out += ["", "| training loop fed by | last epoch s, median [min, max] | test acc (median) |",
            "|---|---|---|"]
    for k, v in train.items():
        secs = [x for x, _ in v]
        out.append(f"| {k} | {_median(secs):.2f} [{min(secs):.2f}, {max(secs):.2f}] | "
                   f"{_median([y for _, y in v]):.4f} |")
    tgt = []
    if c and "numpy" in py:
        tgt.append(f"Python iterator / C: {_median(py['numpy']) / c:.2f} (target >= 0.90)")
    png = [_median(v) for k, v in torch_dl.items() if k.startswith("pngdir workers=2")]
    if png and "numpy" in py:
        tgt.append(f"Python iterator / PNG-folder DataLoader (2 workers): "
                   f"{_median(py['numpy']) / png[0]:.1f}x (target >= 20x)")
    if "streamtrain" in train and "tensor" in train:
        s = _median([x for x, _ in train["streamtrain"]])
        t = _median([x for x, _ in train["tensor"]])
        tgt.append(f"training epoch, streamtrain / TensorDataset: {s / t:.2f} "
                   "(target <= 1.00)")
    print("\n".join(out + [""] + tgt))
    return 0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("iter")
    s.add_argument("--data", required=True)
    s.add_argument("--threads", type=int, default=2)
    s.add_argument("--batch", type=int, default=256)
    s.add_argument("--epochs", type=int, default=2)
    s.add_argument("--seed", type=int, default=0)
    s = sub.add_parser("train")
    s.add_argument("--data", required=True)
    s.add_argument("--feed", choices=["streamtrain", "tensor", "pngdir"], required=True)
    s.add_argument("--pngdir", default="data/bench/fm-pngdir")
    s.add_argument("--epochs", type=int, default=2)
    s.add_argument("--seed", type=int, default=1)
    s.add_argument("--threads", type=int, default=2)
    s = sub.add_parser("summary")
    s.add_argument("logs", nargs="+")
    a = p.parse_args(argv)
    return {"iter": cmd_iter, "train": cmd_train, "summary": cmd_summary}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
