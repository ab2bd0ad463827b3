#!/usr/bin/python3
"""bench/photos/peers.py — the peers of `make bench`'s photos section.

Runs with Debian's /usr/bin/python3 (python3-torch, python3-torchvision)
or with bench/venv/bin/python (torch, torchvision and ffcv from PyPI,
bench/photos/requirements.txt). Every peer yields uint8 batches of 256,
no normalization, and the loop touches every batch (a label), as
loadbench's consumer does (it hashes them).

  peers.py torchvision ROOT [--transform T] [--workers 2] [--epochs 2]
      torchvision.datasets.ImageFolder(ROOT) in a DataLoader(batch_size=256,
      shuffle=True, num_workers=W, persistent_workers=True), PIL decode:
        rrc224flip  RandomResizedCrop(224), RandomHorizontalFlip(), PILToTensor()
        rrc160      RandomResizedCrop(160), PILToTensor()
        cc224       Resize(256), CenterCrop(224), PILToTensor()
  peers.py ffcv-write ROOT BETON
      writes ImageFolder(ROOT) with FFCV's DatasetWriter: RGBImageField
      (max_resolution=512, jpeg_quality=90, write_mode='jpg'), IntField;
      2 workers. Writes BETON.tmp, then renames it.
  peers.py ffcv BETON [--transform T] [--workers 2] [--epochs 4]
      ffcv.loader.Loader(batch_size=256, num_workers=W, order=RANDOM,
      os_cache=True): RandomResizedCropRGBImageDecoder((S, S)) [+
      RandomHorizontalFlip()] or CenterCropRGBImageDecoder((224, 224),
      224/256), then ToTensor(); (B, S, S, 3) uint8. Epoch 1 compiles
      with Numba: quote epochs 2 and later.
  peers.py dali ROOT [--transform T] [--workers 2] [--epochs 2]
      NVIDIA DALI's CPU pipeline (the optional peer; no GPU: device_id=None):
      fn.readers.file (shuffled), fn.decoders.image_random_crop (area 0.08-1,
      ratio 3/4-4/3, 10 attempts; cc224: fn.decoders.image, resize_shorter
      256, crop 224), fn.resize to S x S, fn.flip with a coin flip; batch
      256, num_threads=W. An epoch is ceil(N / 256) batches: the last one
      takes its tail from the next epoch, and images= says how many came.

Prints one line per epoch:
  photo_peer system=torchvision version=2.5.1/0.20.1 transform=rrc224flip
             workers=2 epoch=2 images=2000 secs=3.900 images_per_s=513
"""
import argparse
import os
import sys
import time

TRANSFORMS = ("rrc224flip", "rrc160", "cc224")


def line(system, version, a, epoch, n, secs):
    print("photo_peer system=%s version=%s transform=%s workers=%d epoch=%d images=%d "
          "secs=%.3f images_per_s=%.0f" % (system, version, a.transform, a.workers,
                                           epoch, n, secs, n / secs), flush=True)


def timed_epochs(it_factory, system, version, a):
    for e in range(1, a.epochs + 1):
        t0 = time.perf_counter()
        n, check = 0, 0
        for xb, yb in it_factory():
            n += xb.shape[0]
            check += int(yb[0])
        line(system, version, a, e, n, time.perf_counter() - t0)


# ---- torchvision ----------------------------------------------------------

def cmd_torchvision(a):
    import torch
    import torchvision
    import torchvision.transforms as T
    torch.set_num_threads(1)
    tf = {"rrc224flip": [T.RandomResizedCrop(224), T.RandomHorizontalFlip()],
          "rrc160": [T.RandomResizedCrop(160)],
          "cc224": [T.Resize(256), T.CenterCrop(224)]}[a.transform]
    ds = torchvision.datasets.ImageFolder(a.root, transform=T.Compose(tf + [T.PILToTensor()]))
    dl = torch.utils.data.DataLoader(ds, batch_size=256, shuffle=True,
                                     num_workers=a.workers,
                                     persistent_workers=a.workers > 0)
    timed_epochs(lambda: dl, "torchvision", "%s/%s" % (
        torch.__version__.split("+")[0], torchvision.__version__.split("+")[0]), a)


# ---- FFCV -----------------------------------------------------------------

def cmd_ffcv_write(a):
    import torchvision
    from ffcv.fields import IntField, RGBImageField
    from ffcv.writer import DatasetWriter
    ds = torchvision.datasets.ImageFolder(a.root)
    tmp = a.beton + ".tmp"
    t0 = time.time()
    w = DatasetWriter(tmp, {"image": RGBImageField(max_resolution=512, jpeg_quality=90,
                                                   write_mode="jpg"),
                            "label": IntField()}, num_workers=2)
    w.from_indexed_dataset(ds)
    os.replace(tmp, a.beton)
    print("peers: ffcv wrote %d images to %s (%.1f MB) in %.1f s" % (
        len(ds), a.beton, os.path.getsize(a.beton) / 1e6, time.time() - t0), flush=True)


def cmd_ffcv(a):
    from importlib.metadata import version
    from ffcv.fields.basics import IntDecoder
    from ffcv.fields.rgb_image import (CenterCropRGBImageDecoder,
                                       RandomResizedCropRGBImageDecoder)
    from ffcv.loader import Loader, OrderOption
    from ffcv.transforms import RandomHorizontalFlip, ToTensor
    image = {"rrc224flip": [RandomResizedCropRGBImageDecoder((224, 224)),
                            RandomHorizontalFlip()],
             "rrc160": [RandomResizedCropRGBImageDecoder((160, 160))],
             "cc224": [CenterCropRGBImageDecoder((224, 224), 224 / 256)]}[a.transform]
    loader = Loader(a.beton, batch_size=256, num_workers=a.workers,
                    order=OrderOption.RANDOM, os_cache=True, drop_last=False,
                    pipelines={"image": image + [ToTensor()],
                               "label": [IntDecoder(), ToTensor()]})
    timed_epochs(lambda: loader, "ffcv", version("ffcv"), a)


# ---- DALI (optional) ------------------------------------------------------

def cmd_dali(a):
    import nvidia.dali as dali
    import nvidia.dali.fn as fn
    import nvidia.dali.types as types

    n = sum(len(fs) for _, _, fs in os.walk(a.root) if fs)

    @dali.pipeline_def(batch_size=256, num_threads=a.workers, device_id=None,
                       prefetch_queue_depth=2)
    def pipe():
        jpegs, labels = fn.readers.file(file_root=a.root, random_shuffle=True,
                                        name="reader")
        if a.transform == "cc224":
            images = fn.decoders.image(jpegs, device="cpu", output_type=types.RGB)
            images = fn.resize(images, resize_shorter=256)
            images = fn.crop(images, crop=(224, 224))
        else:
            s = 224 if a.transform == "rrc224flip" else 160
            images = fn.decoders.image_random_crop(
                jpegs, device="cpu", output_type=types.RGB,
                random_area=[0.08, 1.0], random_aspect_ratio=[3 / 4, 4 / 3],
                num_attempts=10)
            images = fn.resize(images, resize_x=s, resize_y=s)
            if a.transform == "rrc224flip":
                images = fn.flip(images, horizontal=fn.random.coin_flip())
        return images, labels

    p = pipe()
    p.build()
    steps = (n + 255) // 256
    for e in range(1, a.epochs + 1):
        t0 = time.perf_counter()
        got, check = 0, 0
        for _ in range(steps):
            images, labels = p.run()
            got += len(images)
            check += int(labels.at(0)[0])
        line("dali", dali.__version__, a, e, got, time.perf_counter() - t0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name, src in (("torchvision", "root"), ("ffcv", "beton"), ("dali", "root")):
        p = sub.add_parser(name)
        p.add_argument(src)
        p.add_argument("--transform", choices=TRANSFORMS, default="rrc224flip")
        p.add_argument("--workers", type=int, default=2)
        p.add_argument("--epochs", type=int, default=4 if name == "ffcv" else 2)
    p = sub.add_parser("ffcv-write")
    p.add_argument("root")
    p.add_argument("beton")
    a = ap.parse_args()
    {"torchvision": cmd_torchvision, "ffcv": cmd_ffcv, "ffcv-write": cmd_ffcv_write,
     "dali": cmd_dali}[a.cmd](a)
    return 0


if __name__ == "__main__":
    sys.exit(main())
