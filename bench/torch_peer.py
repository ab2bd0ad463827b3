#!/usr/bin/python3
"""bench/torch_peer.py — the PyTorch peer of `make bench`.

Run with Debian's /usr/bin/python3 (python3-torch 1.13, CPU build).

  torch_peer.py pngdir IDX_DIR OUT
      writes the Fashion-MNIST train split as a PNG folder, OUT/<label>/
      <index>.png (grayscale 28x28, PIL), once: OUT/.complete marks a
      finished folder and a second call returns at once.
  torch_peer.py loader --pngdir DIR --workers 0,1,2 [--epochs 2] [--limit N]
  torch_peer.py loader --tensor IDX_DIR [--workers 0] [--epochs 2]
      a DataLoader (batch 256, shuffle, uint8 (B, 28, 28) + int64 labels)
      over the PNG folder (one PIL decode per sample) or over an in-memory
      TensorDataset; persistent workers, so the last epoch is the warm one.
      Prints one line per worker count and epoch:
        torch_loader source=pngdir workers=2 epoch=2 samples=60000
                     secs=2.41 samples_per_s=24896
  torch_peer.py train-gpu IDX_DIR [--device cuda] [--workers 0] [--epochs 3]
      the same recipe on a GPU (tests/gpu/bench.sh), fed by a DataLoader
      over in-memory uint8 tensors with pin_memory=True and non_blocking
      copies, normalized on the device; per epoch also the device memory:
        torch_gpu_epoch workers=0 epoch=1 secs=.. samples_per_s=..
                        step_ms=.. loss=.. test_acc=.. mem_used=.. ...
  torch_peer.py train IDX_DIR --seed S [--epochs 5] [--threads 1]
                     [--schedule constant|cosine]
      the reference recipe (MLP 784-512-256-10, SGD momentum 0.9, lr 0.05,
      batch 128, inputs scaled to [0, 1]) from in-memory tensors, with a
      constant lr or streamtrain's per-step cosine decay to 0; eval on
      t10k after each epoch, outside the epoch's time (as streamtrain).
      Prints per epoch and a last line like streamtrain's:
        torch_epoch epoch=1 secs=2.10 samples_per_s=28571 loss=0.52
                    acc=0.81 test_loss=0.44 test_acc=0.84
        torch_final epochs=5 test_acc=0.8650 secs_per_epoch=2.05
  torch_peer.py conv IDX_DIR [--spec SPEC] [--layout nchw|channels_last]
                     [--seed S] [--epochs 5] [--threads 2] [--batch 128]
                     [--lr 0.05] [--momentum 0.9] [--nesterov]
                     [--weight-decay 5e-4] [--label-smoothing 0.1]
                     [--schedule cosine|constant]
      a conv net in PyTorch, the same recipe as streamtrain's conv models:
      SGD, weight decay on conv/dense weights only (not biases, not BN),
      per-step cosine decay to 0, label smoothing, inputs normalized with
      the train split's mean/std. SPEC is streamtrain's spec grammar in its
      canonical form (the model line of a streamtrain run prints it; conv,
      bn, relu, gelu, maxpool, gap, gmp, dense, res(...), resp(...)); the
      default is the issue's reference net conv(1->32)-BN-ReLU-pool,
      conv(32->64)-BN-ReLU-pool, conv(64->128)-BN-ReLU, global average
      pool, linear; streamtrain's default cnn is
      "conv32k3s1p1,bn,relu,maxpool2s2p0,conv32k3s1p1,bn,relu,maxpool2s2p0,
      conv64k3s1p1,bn,relu,dense128,relu,dense10" with --batch 64. Batch 128
      by default (the issue's reference measurement). Output as for train,
      with torch_final also naming the layout:
        torch_final epochs=5 test_acc=0.9012 secs_per_epoch=55.1
                    layout=channels_last
"""
import argparse
import gzip
import math
import os
import sys
import time

import numpy as np
import torch
from PIL import Image


def read_idx(path):
    """An IDX file (.gz or plain) as a numpy array of its shape."""
    if not os.path.exists(path) and os.path.exists(path + ".gz"):
        path += ".gz"
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load_split(idx_dir, prefix):
    x = read_idx(os.path.join(idx_dir, prefix + "-images-idx3-ubyte"))
    y = read_idx(os.path.join(idx_dir, prefix + "-labels-idx1-ubyte"))
    return x, y


# ---- pngdir -------------------------------------------------------------

def cmd_pngdir(a):
    done = os.path.join(a.out, ".complete")
    if os.path.exists(done):
        return 0
    x, y = load_split(a.idx_dir, "train")
    for c in range(10):
        os.makedirs(os.path.join(a.out, str(c)), exist_ok=True)
    t0 = time.time()
    for i in range(len(x)):
        Image.fromarray(x[i], mode="L").save(
            os.path.join(a.out, str(int(y[i])), "%05d.png" % i))
    with open(done, "w") as f:
        f.write("%d\n" % len(x))
    print("torch_peer: wrote %d PNGs to %s in %.1f s" % (len(x), a.out,
                                                         time.time() - t0))
    return 0


# ---- loader -------------------------------------------------------------

class PngFolder(torch.utils.data.Dataset):
    """OUT/<label>/<name>.png, decoded with PIL on every access."""

    def __init__(self, root, limit):
        self.items = []
        for c in sorted(os.listdir(root), key=lambda s: (len(s), s)):
            d = os.path.join(root, c)
            if os.path.isdir(d):
                self.items += [(os.path.join(d, n), int(c))
                               for n in sorted(os.listdir(d))]
        self.items.sort(key=lambda it: os.path.basename(it[0]))
        if limit:
            self.items = self.items[:limit]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        path, label = self.items[i]
        with Image.open(path) as im:
            return torch.from_numpy(np.array(im)), label


def time_loader(ds, workers, epochs, source):
    dl = torch.utils.data.DataLoader(
        ds, batch_size=256, shuffle=True, num_workers=workers,
        persistent_workers=workers > 0)
    for e in range(1, epochs + 1):
        t0 = time.perf_counter()
        n, check = 0, 0
        for xb, yb in dl:
            n += xb.shape[0]
            check += int(yb[0])        # touch the batch, as loadbench does
        secs = time.perf_counter() - t0
        print("torch_loader source=%s workers=%d epoch=%d samples=%d secs=%.3f "
              "samples_per_s=%.0f" % (source, workers, e, n, secs, n / secs),
              flush=True)
    del dl


def cmd_loader(a):
    torch.set_num_threads(1)
    if a.pngdir:
        ds, source = PngFolder(a.pngdir, a.limit), "pngdir"
        if len(ds) == 0:
            sys.exit("torch_peer: %s: no PNGs" % a.pngdir)
    else:
        x, y = load_split(a.tensor, "train")
        if a.limit:
            x, y = x[:a.limit], y[:a.limit]
        ds = torch.utils.data.TensorDataset(torch.from_numpy(x.copy()),
                                            torch.from_numpy(y.astype(np.int64)))
        source = "tensor"
    for w in [int(s) for s in a.workers.split(",")]:
        time_loader(ds, w, a.epochs, source)
    return 0


# ---- train --------------------------------------------------------------

def cmd_train(a):
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    x, y = load_split(a.idx_dir, "train")
    tx, ty = load_split(a.idx_dir, "t10k")
    x = torch.from_numpy(x.reshape(len(x), -1).astype(np.float32) / 255)
    y = torch.from_numpy(y.astype(np.int64))
    tx = torch.from_numpy(tx.reshape(len(tx), -1).astype(np.float32) / 255)
    ty = torch.from_numpy(ty.astype(np.int64))
    model = torch.nn.Sequential(
        torch.nn.Linear(784, 512), torch.nn.ReLU(),
        torch.nn.Linear(512, 256), torch.nn.ReLU(),
        torch.nn.Linear(256, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    lossf = torch.nn.CrossEntropyLoss()
    B, n = 128, len(x)
    total = a.epochs * ((n + B - 1) // B)
    # the lr of step k (0-based), as train/optim.c's sched_lr computes it
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, (lambda k: 0.5 * (1 + math.cos(math.pi * min(k, total) / total)))
        if a.schedule == "cosine" else (lambda k: 1.0))
    secs_all = []
    for e in range(1, a.epochs + 1):
        model.train()
        t0 = time.perf_counter()
        perm = torch.randperm(n)
        loss_sum, correct = 0.0, 0
        for i in range(0, n, B):
            idx = perm[i:i + B]
            xb, yb = x[idx], y[idx]
            out = model(xb)
            loss = lossf(out, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += loss.item() * len(idx)
            correct += int((out.argmax(1) == yb).sum())
        secs = time.perf_counter() - t0
        secs_all.append(secs)
        model.eval()
        with torch.no_grad():
            out = model(tx)
            test_loss = float(lossf(out, ty))
            test_acc = float((out.argmax(1) == ty).float().mean())
        print("torch_epoch epoch=%d secs=%.3f samples_per_s=%.0f loss=%.4f "
              "acc=%.4f test_loss=%.4f test_acc=%.4f" %
              (e, secs, n / secs, loss_sum / n, correct / n, test_loss,
               test_acc), flush=True)
    print("torch_final epochs=%d test_acc=%.4f secs_per_epoch=%.3f" %
          (a.epochs, test_acc, sorted(secs_all)[len(secs_all) // 2]))
    return 0


# ---- conv ---------------------------------------------------------------

REFERENCE_SPEC = ("conv32k3s1p1,bn,relu,maxpool2s2p0,conv64k3s1p1,bn,relu,"
                  "maxpool2s2p0,conv128k3s1p1,bn,relu,gap,dense10")


def conv_item(text):
    """'conv32k3s1p1' -> (32, k, s, p) with streamtrain's defaults."""
    import re
    m = re.fullmatch(r"conv(\d+)((?:[ksp]\d+)*)", text)
    if not m:
        sys.exit("torch_peer: bad conv item '%s'" % text)
    tags = dict((t[0], int(t[1:])) for t in re.findall(r"[ksp]\d+", m.group(2)))
    k = tags.get("k", 3)
    return int(m.group(1)), k, tags.get("s", 1), tags.get("p", (k - 1) // 2)


class Residual(torch.nn.Module):
    """x + body(x), or proj(x) + body(x) (1x1 conv + BN), as train/layer.h."""

    def __init__(self, body, proj):
        super().__init__()
        self.body, self.proj = body, proj

    def forward(self, x):
        return (self.proj(x) if self.proj is not None else x) + self.body(x)


def split_items(spec):
    """Top-level items; a block 'res(a,b)' stays one item."""
    items, depth, cur = [], 0, ""
    for ch in spec:
        if ch == "," and depth == 0:
            items.append(cur)
            cur = ""
            continue
        depth += ch == "("
        depth -= ch == ")"
        cur += ch
    return items + [cur] if cur else items


def build_layers(items, c, h, w, classes):
    """nn layers for the items on a (c, h, w) input; returns them and the
    output shape."""
    import re
    layers, flat = [], False
    for i, it in enumerate(items):
        nxt = items[i + 1] if i + 1 < len(items) else ""
        if it.startswith("res(") or it.startswith("resp("):
            inner = split_items(it[it.index("(") + 1:-1])
            body, (oc, oh, ow) = build_layers(inner, c, h, w, classes)
            proj = None
            if it.startswith("resp("):
                s = conv_item(inner[0])[2]
                proj = torch.nn.Sequential(
                    torch.nn.Conv2d(c, oc, 1, s, 0, bias=False),
                    torch.nn.BatchNorm2d(oc))
            layers.append(Residual(torch.nn.Sequential(*body), proj))
            c, h, w = oc, oh, ow
        elif it.startswith("conv"):
            oc, k, s, p = conv_item(it)
            layers.append(torch.nn.Conv2d(c, oc, k, s, p, bias=nxt != "bn"))
            c, h, w = oc, (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
        elif it == "bn":
            layers.append(torch.nn.BatchNorm1d(c) if flat
                          else torch.nn.BatchNorm2d(c))
        elif it == "relu":
            layers.append(torch.nn.ReLU())
        elif it == "gelu":
            layers.append(torch.nn.GELU())
        elif it.startswith("maxpool"):
            m = re.fullmatch(r"maxpool(\d+)(?:s(\d+))?(?:p(\d+))?", it)
            k = int(m.group(1))
            s = int(m.group(2) or k)
            p = int(m.group(3) or 0)
            layers.append(torch.nn.MaxPool2d(k, s, p))
            h, w = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
        elif it in ("gap", "gmp"):
            layers.append(torch.nn.AdaptiveAvgPool2d(1) if it == "gap"
                          else torch.nn.AdaptiveMaxPool2d(1))
            h = w = 1
        elif it.startswith("dense"):
            n = int(it[5:]) if len(it) > 5 else classes
            if not flat:
                # streamtrain flattens NHWC: the order differs from NCHW's
                # flatten, which only permutes the weight rows
                layers.append(torch.nn.Flatten())
            layers.append(torch.nn.Linear(c * h * w, n))
            c, h, w, flat = n, 1, 1, True
        else:
            sys.exit("torch_peer: unknown item '%s'" % it)
    return layers, (c, h, w)


def param_groups(model, wd):
    """Weight decay on conv and linear weights only."""
    decay, rest = [], []
    for mod in model.modules():
        for name, p in mod.named_parameters(recurse=False):
            is_w = name == "weight" and isinstance(
                mod, (torch.nn.Conv2d, torch.nn.Linear))
            (decay if is_w else rest).append(p)
    return [{"params": decay, "weight_decay": wd},
            {"params": rest, "weight_decay": 0.0}]


def cmd_conv(a):
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    x, y = load_split(a.idx_dir, "train")
    tx, ty = load_split(a.idx_dir, "t10k")
    mean, std = float(x.mean()) / 255, float(x.std()) / 255

    def prep(v):
        t = torch.from_numpy(v.astype(np.float32) / 255)
        return ((t - mean) / std).unsqueeze(1)       # (N, 1, 28, 28)
    x, tx = prep(x), prep(tx)
    y = torch.from_numpy(y.astype(np.int64))
    ty = torch.from_numpy(ty.astype(np.int64))
    layers, _ = build_layers(split_items(a.spec), 1, x.shape[2], x.shape[3], 10)
    model = torch.nn.Sequential(*layers)
    fmt = (torch.channels_last if a.layout == "channels_last"
           else torch.contiguous_format)
    model = model.to(memory_format=fmt)
    opt = torch.optim.SGD(param_groups(model, a.weight_decay), lr=a.lr,
                          momentum=a.momentum, nesterov=a.nesterov)
    lossf = torch.nn.CrossEntropyLoss(label_smoothing=a.label_smoothing)
    evalf = torch.nn.CrossEntropyLoss()
    B, n = a.batch, len(x)
    total = a.epochs * ((n + B - 1) // B)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, (lambda k: 0.5 * (1 + math.cos(math.pi * min(k, total) / total)))
        if a.schedule == "cosine" else (lambda k: 1.0))
    secs_all = []
    for e in range(1, a.epochs + 1):
        model.train()
        t0 = time.perf_counter()
        perm = torch.randperm(n)
        loss_sum, correct = 0.0, 0
        for i in range(0, n, B):
            idx = perm[i:i + B]
            xb = x[idx].contiguous(memory_format=fmt)
            yb = y[idx]
            out = model(xb)
            loss = lossf(out, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += loss.item() * len(idx)
            correct += int((out.argmax(1) == yb).sum())
        secs = time.perf_counter() - t0
        secs_all.append(secs)
        model.eval()
        with torch.no_grad():
            outs = [model(tx[i:i + 500].contiguous(memory_format=fmt))
                    for i in range(0, len(tx), 500)]
            out = torch.cat(outs)
            test_loss = float(evalf(out, ty))
            test_acc = float((out.argmax(1) == ty).float().mean())
        print("torch_epoch epoch=%d secs=%.3f samples_per_s=%.0f loss=%.4f "
              "acc=%.4f test_loss=%.4f test_acc=%.4f" %
              (e, secs, n / secs, loss_sum / n, correct / n, test_loss,
               test_acc), flush=True)
    print("torch_final epochs=%d test_acc=%.4f secs_per_epoch=%.3f layout=%s" %
          (a.epochs, test_acc, sorted(secs_all)[len(secs_all) // 2], a.layout))
    return 0


# ---- train-gpu (tests/gpu/bench.sh) ----------------------------------------

def cmd_train_gpu(a):
    """The recipe on a GPU, fed by a DataLoader over uint8 tensors with
    pin_memory=True and non_blocking copies; normalized on the device."""
    dev = torch.device(a.device)
    cuda = dev.type == "cuda"
    torch.manual_seed(a.seed)
    x, y = load_split(a.idx_dir, "train")
    tx, ty = load_split(a.idx_dir, "t10k")
    ds = torch.utils.data.TensorDataset(torch.from_numpy(x.copy()),
                                        torch.from_numpy(y.astype(np.int64)))
    tx = torch.from_numpy(tx.reshape(len(tx), -1).astype(np.float32) / 255).to(dev)
    ty = torch.from_numpy(ty.astype(np.int64)).to(dev)
    model = torch.nn.Sequential(
        torch.nn.Linear(784, 512), torch.nn.ReLU(),
        torch.nn.Linear(512, 256), torch.nn.ReLU(),
        torch.nn.Linear(256, 10)).to(dev)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    lossf = torch.nn.CrossEntropyLoss()
    dl = torch.utils.data.DataLoader(
        ds, batch_size=128, shuffle=True, num_workers=a.workers,
        pin_memory=cuda, persistent_workers=a.workers > 0)
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    for e in range(1, a.epochs + 1):
        model.train()
        sync()
        t0 = time.perf_counter()
        steps, loss_sum = 0, torch.zeros((), device=dev)
        for xb, yb in dl:
            xb = xb.to(dev, non_blocking=True).view(xb.shape[0], -1).float().div_(255)
            yb = yb.to(dev, non_blocking=True)
            loss = lossf(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.detach() * yb.shape[0]
            steps += 1
        sync()
        secs = time.perf_counter() - t0
        model.eval()
        with torch.no_grad():
            out = model(tx)
            test_acc = float((out.argmax(1) == ty).float().mean())
        mem = ""
        if cuda:
            free, total = torch.cuda.mem_get_info()
            mem = " mem_used=%d mem_alloc=%d mem_peak_alloc=%d mem_reserved=%d" % (
                total - free, torch.cuda.memory_allocated(),
                torch.cuda.max_memory_allocated(), torch.cuda.memory_reserved())
        print("torch_gpu_epoch workers=%d epoch=%d secs=%.3f samples_per_s=%.0f "
              "step_ms=%.4f loss=%.4f test_acc=%.4f%s" % (
                  a.workers, e, secs, len(ds) / secs, 1e3 * secs / steps,
                  float(loss_sum) / len(ds), test_acc, mem), flush=True)
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("pngdir")
    s.add_argument("idx_dir")
    s.add_argument("out")
    s = sub.add_parser("loader")
    g = s.add_mutually_exclusive_group(required=True)
    g.add_argument("--pngdir")
    g.add_argument("--tensor", metavar="IDX_DIR")
    s.add_argument("--workers", default="0")
    s.add_argument("--epochs", type=int, default=2)
    s.add_argument("--limit", type=int, default=0)
    s = sub.add_parser("train")
    s.add_argument("idx_dir")
    s.add_argument("--seed", type=int, default=1)
    s.add_argument("--epochs", type=int, default=5)
    s.add_argument("--threads", type=int, default=1)
    s.add_argument("--schedule", choices=["constant", "cosine"],
                   default="constant")
    s = sub.add_parser("conv")
    s.add_argument("idx_dir")
    s.add_argument("--spec", default=REFERENCE_SPEC)
    s.add_argument("--layout", choices=["nchw", "channels_last"],
                   default="nchw")
    s.add_argument("--seed", type=int, default=1)
    s.add_argument("--epochs", type=int, default=5)
    s.add_argument("--threads", type=int, default=2)
    s.add_argument("--batch", type=int, default=128)
    s.add_argument("--lr", type=float, default=0.05)
    s.add_argument("--momentum", type=float, default=0.9)
    s.add_argument("--nesterov", action="store_true")
    s.add_argument("--weight-decay", type=float, default=5e-4)
    s.add_argument("--label-smoothing", type=float, default=0.1)
    s.add_argument("--schedule", choices=["constant", "cosine"],
                   default="cosine")
    s = sub.add_parser("train-gpu")
    s.add_argument("idx_dir")
    s.add_argument("--device", default="cuda")
    s.add_argument("--workers", type=int, default=0)
    s.add_argument("--seed", type=int, default=1)
    s.add_argument("--epochs", type=int, default=3)
    a = p.parse_args()
    return {"pngdir": cmd_pngdir, "loader": cmd_loader, "train": cmd_train,
            "conv": cmd_conv, "train-gpu": cmd_train_gpu}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
