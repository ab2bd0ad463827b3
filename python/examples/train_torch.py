#!/usr/bin/python3
"""python/examples/train_torch.py — the reference MLP (784-512-256-10, as
`streamtrain --model mlp`: SGD momentum 0.9, lr 0.05 with a per-step cosine
decay to 0, batch 128, inputs scaled to [0, 1]) trained in PyTorch on
Fashion-MNIST, fed by streamtrain.torch as a drop-in for a DataLoader.

  PYTHONPATH=python python/examples/train_torch.py [--data data/fashion-mnist]
      [--feed streamtrain|tensor|pngdir] [--pngdir DIR] [--epochs 5]
      [--seed 1] [--loader-threads 2] [--torch-threads 1] [--device cpu|cuda]

--feed tensor trains the same loop fed by a torch DataLoader over an
in-memory TensorDataset (the pack read once), --feed pngdir by a DataLoader
over a folder of PNGs (DIR/<label>/<name>.png, 2 workers): the side-by-side
of the README and of bench/python. Prints one line per epoch and a last
line: final feed=... epochs=... test_acc=... secs_per_epoch=...
"""
import argparse
import math
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import streamtrain as st  # noqa: E402
import streamtrain.torch as stt  # noqa: E402


def mlp():
    return torch.nn.Sequential(
        torch.nn.Linear(784, 512), torch.nn.ReLU(),
        torch.nn.Linear(512, 256), torch.nn.ReLU(),
        torch.nn.Linear(256, 10))


def whole_split(data, split):
    """Every sample of a split in file order, as owned uint8 / int64 tensors."""
    with st.Loader(data, split=split, batch_size=4096, shuffle="none", copy=True) as ld:
        bs = list(ld)
    x = torch.from_numpy(np.concatenate([b.pixels for b in bs]))
    y = torch.from_numpy(np.concatenate([b.labels for b in bs]).astype(np.int64))
    return x, y


class PngFolder(torch.utils.data.Dataset):
    """DIR/<label>/<name>.png, one PIL decode per access."""

    def __init__(self, root):
        from PIL import Image  # only this feed needs PIL
        self.Image = Image
        self.items = [(os.path.join(root, c, n), int(c))
                      for c in sorted(os.listdir(root)) if c.isdigit()
                      for n in sorted(os.listdir(os.path.join(root, c)))]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        path, label = self.items[i]
        with self.Image.open(path) as im:
            return torch.from_numpy(np.array(im)), label


def make_feed(a, batch=128):
    """The training batches: anything iterable once per epoch that yields
    (x uint8 (B, 28, 28[, 1]), y int64 (B,)) and has a len()."""
    if a.feed == "streamtrain":
        return stt.Loader(a.data, batch_size=batch, shuffle="global", seed=a.seed,
                          threads=a.loader_threads)
    if a.feed == "tensor":
        x, y = whole_split(a.data, "train")
        ds = torch.utils.data.TensorDataset(x, y)
        return torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=True,
                                           num_workers=a.workers,
                                           pin_memory=a.device == "cuda")
    ds = PngFolder(a.pngdir)
    return torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=True,
                                       num_workers=a.workers or 2,
                                       persistent_workers=True,
                                       pin_memory=a.device == "cuda")


def train(feed, a, log=print):
    """The training loop, the same whatever feeds it. @return (test accuracy,
    [seconds per epoch])."""
    dev = torch.device(a.device)
    torch.manual_seed(a.seed)
    model = mlp().to(dev)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    lossf = torch.nn.CrossEntropyLoss()
    total = a.epochs * len(feed)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda k: 0.5 * (1 + math.cos(math.pi * min(k, total) / total)))
    tx, ty = whole_split(a.data, "test")
    tx = tx.reshape(len(tx), -1).to(dev).float().div_(255)
    ty = ty.to(dev)
    secs, acc = [], 0.0
    for e in range(1, a.epochs + 1):
        model.train()
        t0 = time.perf_counter()
        n, loss_sum = 0, 0.0
        for x, y in feed:                       # drop-in: the same loop for both
            x = x.to(dev, non_blocking=True).reshape(x.shape[0], -1).float().div_(255)
            y = y.to(dev, non_blocking=True)
            out = model(x)
            loss = lossf(out, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += float(loss) * len(y)
            n += len(y)
        secs.append(time.perf_counter() - t0)
        model.eval()
        with torch.no_grad():
            acc = float((model(tx).argmax(1) == ty).float().mean())
        log(f"epoch feed={a.feed} epoch={e} secs={secs[-1]:.3f} samples={n} "
            f"samples_per_s={n / secs[-1]:.0f} loss={loss_sum / n:.4f} test_acc={acc:.4f}")
    return acc, secs


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default="data/fashion-mnist")
    p.add_argument("--feed", choices=["streamtrain", "tensor", "pngdir"], default="streamtrain")
    p.add_argument("--pngdir", default="data/bench/fm-pngdir")
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers (pngdir: 2)")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--loader-threads", type=int, default=2)
    p.add_argument("--torch-threads", type=int, default=1)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    return p.parse_args(argv)


def main(argv=None):
    a = parse(argv)
    torch.set_num_threads(a.torch_threads)
    feed = make_feed(a)
    acc, secs = train(feed, a)
    if hasattr(feed, "close"):
        feed.close()
    print(f"final feed={a.feed} epochs={a.epochs} test_acc={acc:.4f} "
          f"secs_per_epoch={sum(secs) / len(secs):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
