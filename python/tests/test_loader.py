"""streamtrain.Loader: the stream (every sample once, the same bytes as the
C loader, exact resume), the batches' lifetime, the GIL and memory."""
import ctypes
import re
import subprocess
import threading

import numpy as np
import pytest

import streamtrain as st
from conftest import tool

_xx = ctypes.CDLL("libxxhash.so.0")
_xx.XXH3_64bits_withSeed.restype = ctypes.c_uint64
_xx.XXH3_64bits_withSeed.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint64]


def chain(h, arr):
    """loadbench's stream checksum step: XXH3 of arr's bytes seeded by h."""
    a = np.ascontiguousarray(arr)
    return _xx.XXH3_64bits_withSeed(a.ctypes.data, a.nbytes, h)


def test_open_pack_info(small_pack):
    info = st.open_pack(small_pack)
    assert info.splits == {"train": 1000, "test": 100}
    assert info.shape == (8, 8, 3) and info.codec == "zstd" and not info.variable
    assert info.num_classes == 10 and info.shards["train"] == 6
    assert info.counts["test"] == 100


@pytest.mark.parametrize("threads", [1, 3])
def test_epoch_delivers_every_sample_once(small_pack, threads):
    with st.Loader(small_pack, batch_size=64, threads=threads, seed=7) as ld:
        assert len(ld) == 16  # ceil(1000 / 64)
        orders = []
        for _ in range(2):
            ids = np.concatenate([b.ids.copy() for b in ld])
            assert ids.size == 1000
            assert np.array_equal(np.sort(ids), np.arange(1000))
            orders.append(ids)
        assert not np.array_equal(orders[0], orders[1])  # a new order per epoch


@pytest.mark.parametrize("transform", [None, "pad-crop 2 flip"])
def test_python_and_c_agree(small_pack, transform):
    """The chained XXH3 of every batch's pixels and labels equals the
    checksum column loadbench (the C loader) prints for each epoch."""
    tf = ["--transform", transform] if transform else []
    out = subprocess.run([tool("loadbench"), "--data", small_pack, "--threads", "2",
                          "--batch", "64", "--epochs", "2", "--seed", "5", *tf],
                         check=True, capture_output=True, text=True).stdout
    rows = re.findall(r"^\s*2\s+(\d+)\s+\w+\s.*\s([0-9a-f]{16})$", out, re.M)
    c = {int(e): int(h, 16) for e, h in rows}
    assert sorted(c) == [0, 1], out
    py = {}
    with st.Loader(small_pack, batch_size=64, threads=2, seed=5, transform=transform) as ld:
        for e in range(2):
            h = 0
            for b in ld:
                h = chain(chain(h, b.pixels), b.labels)
            py[e] = h
    assert py == c


def stream(ld, nbatches):
    """(epoch, index, pixel checksum, ids) of the next nbatches batches."""
    out = []
    while len(out) < nbatches:
        b = ld.next_batch()
        if b is None:
            continue
        out.append((b.epoch, b.index, chain(0, b.pixels), tuple(b.ids)))
    return out


def test_state_dict_resume_equals_uninterrupted(small_pack):
    kw = dict(batch_size=48, threads=2, seed=11, transform="pad-crop 2 flip")
    with st.Loader(small_pack, **kw) as ld:
        whole = stream(ld, 60)        # 21 batches an epoch: into epoch 2
    with st.Loader(small_pack, **kw) as ld:
        first = stream(ld, 30)
        state = ld.state_dict()
    assert state["epoch"] == 1 and state["batch"] == 9
    with st.Loader(small_pack, state=state, **kw) as ld:
        rest = stream(ld, 30)
    assert first + rest == whole


def test_state_of_another_stream_is_refused(small_pack):
    with st.Loader(small_pack, batch_size=48) as ld:
        state = ld.state_dict()
    with pytest.raises(st.InvalidArgumentError, match="batch_size=48"):
        st.Loader(small_pack, batch_size=64, state=state)


def test_released_batch_raises(small_pack):
    with st.Loader(small_pack, batch_size=100, shuffle="none") as ld:
        it = iter(ld)
        b = next(it)
        assert b.pixels.shape == (100, 8, 8, 3) and b.labels.dtype == np.int32
        b.release()
        b.release()  # idempotent
        for attr in ("pixels", "labels", "ids"):
            with pytest.raises(st.ReleasedBatchError, match="batch 0 of epoch 0"):
                getattr(b, attr)
        b1 = next(it)
        b2 = next(it)  # moving on releases the batch before
        assert b1.released and not b2.released
        with pytest.raises(st.ReleasedBatchError):
            b1.labels
        x, y = b2
        assert x.shape[0] == y.shape[0] == 100


def test_copy_arrays_survive(small_pack):
    with st.Loader(small_pack, batch_size=100, shuffle="none", slots=2) as view_ld:
        want = [(b.pixels.copy(), b.labels.copy()) for b in view_ld]
    with st.Loader(small_pack, batch_size=100, shuffle="none", slots=2, copy=True) as ld:
        kept = list(ld)  # every slot reused several times over
        for _ in ld:     # and once more
            pass
    assert len(kept) == len(want) == 10
    for b, (px, lb) in zip(kept, want):
        assert b.owned and np.array_equal(b.pixels, px) and np.array_equal(b.labels, lb)


def test_views_share_the_slot(small_pack):
    with st.Loader(small_pack, batch_size=10, slots=2) as ld:
        addrs = {b.data_ptr for b, _ in zip(ld, range(10))}
        assert len(addrs) <= 2  # the pixels live in the ring's 2 slots


def test_len_drop_last_rank_world(small_pack):
    with st.Loader(small_pack, batch_size=64, drop_last=True) as ld:
        assert len(ld) == 15 and sum(b.n for b in ld) == 960
    seen = []
    for r in range(3):
        with st.Loader(small_pack, batch_size=51, rank=r, world=3, seed=2) as ld:
            seen.append(np.concatenate([b.ids.copy() for b in ld]))
    allids = np.concatenate(seen)
    # batch_size is the global batch: each rank takes 17 of every 51, and
    # the last 31 split as evenly as possible (11, 10, 10; loader/order.h)
    assert [s.size for s in seen] == [19 * 17 + 11, 19 * 17 + 10, 19 * 17 + 10]
    assert allids.size == 1000 and np.array_equal(np.unique(allids), np.arange(1000))
    with pytest.raises(st.InvalidArgumentError, match="does not split over 3 ranks"):
        st.Loader(small_pack, batch_size=50, rank=0, world=3)


def test_transform_and_split(small_pack):
    with st.Loader(small_pack, split="test", batch_size=32, transform="resize 4x6 flip") as ld:
        assert ld.shape == (6, 4, 3)
        bs = list(b.pixels.shape for b in ld)
        assert bs[0] == (32, 6, 4, 3) and bs[-1] == (4, 6, 4, 3)


def test_stats(small_pack):
    with st.Loader(small_pack, batch_size=100, io="pread") as ld:
        for _ in ld:
            pass
        s = ld.stats()
    assert s["samples"] == 1000 and s["batches"] == 10 and s["io"] == "pread"
    assert s["bytes"] == 1000 * 192 and s["batches_per_epoch"] == 10


def test_closed_loader(small_pack):
    ld = st.Loader(small_pack, batch_size=100)
    b = next(iter(ld))
    ld.close()
    ld.close()
    assert ld.closed and b.released
    with pytest.raises(st.ClosedError):
        iter(ld)
    with pytest.raises(st.ClosedError):
        ld.state_dict()


_AFTER_CLOSE = r"""
import gc, sys
import numpy as np
sys.path.insert(0, sys.argv[2])
import streamtrain as st
ld = st.Loader(sys.argv[1], batch_size=256, shuffle="none", threads=1)
b = next(iter(ld))
px, want = b.pixels, b.pixels.copy()
ld.close()
del b, ld
gc.collect()
# the ring's 4 slots of 256 x 64x64x3 (12 MiB) would be unmapped by now
assert np.array_equal(px, want), "the array changed after close"
print("sum", int(px.sum()))
del px
gc.collect()
print("freed")
"""


def test_arrays_outlive_close(tmp_path):
    """An array taken from a batch stays valid after loader.close() and the
    loader's garbage collection: the ring is freed with the last array
    (before, it was unmapped under it, and reading it crashed). Run in a
    child process, so that a crash fails this test rather than the run."""
    from conftest import ROOT, synthpack
    import os
    import sys
    pack = synthpack(tmp_path / "big", 600, shape="64x64x3", shard="1M")
    r = subprocess.run([sys.executable, "-c", _AFTER_CLOSE, pack,
                        os.path.join(ROOT, "python")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"child exited {r.returncode}: {r.stderr[-2000:]}"
    assert "sum " in r.stdout and "freed" in r.stdout


def test_gil_released_while_waiting(small_pack):
    """A Python thread counts while the consumer waits for a slow producer
    (0.3 s a batch): the wait in loader_next_batch holds no GIL."""
    stop = threading.Event()
    count = [0]

    def spin():
        while not stop.is_set():
            count[0] += 1

    with st.Loader(small_pack, batch_size=100, threads=1, slots=1,
                   producer_delay_us=300000) as ld:
        it = iter(ld)
        next(it)
        t = threading.Thread(target=spin)
        t.start()
        try:
            before = count[0]
            next(it)               # waits ~0.3 s for the producer
            during = count[0] - before
        finally:
            stop.set()
            t.join()
        waited = ld.stats()["wait_s"]
    assert waited > 0.1, f"the consumer did not wait ({waited} s): no slow producer"
    assert during > 10000, f"the other thread counted only {during} times during the wait"


def rss_kib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def test_rss_flat_over_20_epochs(small_pack):
    with st.Loader(small_pack, batch_size=32, threads=2) as ld:
        rss = []
        for e in range(20):
            n = 0
            for b in ld:
                n += int(b.pixels.sum() >= 0) * b.n
            assert n == 1000
            rss.append(rss_kib())
    growth = rss[-1] - rss[2]
    assert growth < 1024, f"RSS grew {growth} KiB from epoch 2 to 19: {rss}"
