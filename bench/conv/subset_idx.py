#!/usr/bin/python3
"""bench/conv/subset_idx.py — the first N samples of an IDX dataset.

  subset_idx.py IDX_DIR OUT_DIR --train N --test M

Writes OUT_DIR/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz holding the
first N training and the first M test samples of IDX_DIR (the same four
files, .gz or plain), so that `--quick` runs of the conv section train
streamtrain (a pack made from OUT_DIR by packdata) and PyTorch
(torch_peer.py conv OUT_DIR) on the same subset. OUT_DIR/.stamp, written
last, holds the sizes: a second call with the same sizes returns at once.
"""
import argparse
import gzip
import os
import sys

FILES = (("train", "images-idx3"), ("train", "labels-idx1"),
         ("t10k", "images-idx3"), ("t10k", "labels-idx1"))


def read(path):
    if not os.path.exists(path) and os.path.exists(path + ".gz"):
        path += ".gz"
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        return f.read()


def head(data, n, what):
    """The IDX bytes of the first n records of data."""
    if len(data) < 4 or data[0] or data[1] or data[2] != 8:
        sys.exit("subset_idx: %s: not a uint8 IDX file" % what)
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    if n > dims[0]:
        sys.exit("subset_idx: %s has %d records, %d asked" % (what, dims[0], n))
    rec = 1
    for d in dims[1:]:
        rec *= d
    off = 4 + 4 * ndim
    out = bytearray(data[:off])
    out[4:8] = n.to_bytes(4, "big")
    return bytes(out) + data[off:off + n * rec]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("idx_dir")
    p.add_argument("out_dir")
    p.add_argument("--train", type=int, required=True)
    p.add_argument("--test", type=int, required=True)
    a = p.parse_args()
    stamp = "train %d test %d from %s\n" % (a.train, a.test,
                                            os.path.abspath(a.idx_dir))
    sp = os.path.join(a.out_dir, ".stamp")
    if os.path.exists(sp) and open(sp).read() == stamp:
        return 0
    os.makedirs(a.out_dir, exist_ok=True)
    if os.path.exists(sp):
        os.remove(sp)
    for split, kind in FILES:
        name = "%s-%s-ubyte" % (split, kind)
        n = a.train if split == "train" else a.test
        data = head(read(os.path.join(a.idx_dir, name)), n, name)
        tmp = os.path.join(a.out_dir, name + ".gz.tmp")
        with gzip.open(tmp, "wb", compresslevel=1) as f:
            f.write(data)
        os.replace(tmp, os.path.join(a.out_dir, name + ".gz"))
    with open(sp, "w") as f:
        f.write(stamp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
