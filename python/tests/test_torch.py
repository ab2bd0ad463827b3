"""streamtrain.torch: tensors sharing the ring slot's memory; the pinned
ring and event-gated release when CUDA is there."""
import ctypes

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch (python3-torch) not installed")
import streamtrain as st  # noqa: E402
import streamtrain.torch as stt  # noqa: E402


def test_tensors_share_the_slot(small_pack):
    with stt.Loader(small_pack, batch_size=64, seed=3, pin=False) as ld:
        assert len(ld) == 16 and ld.pinned_with is None
        n, ids = 0, []
        for x, y in ld:
            b = ld.batch
            assert x.data_ptr() == b.pixels.ctypes.data  # no copy
            assert x.dtype == torch.uint8 and x.shape[1:] == (8, 8, 3)
            assert y.dtype == torch.int64 and torch.equal(y, torch.from_numpy(b.labels).long())
            ids.append(b.ids.copy())
            n += len(y)
        assert n == 1000 and np.array_equal(np.sort(np.concatenate(ids)), np.arange(1000))


def test_same_stream_as_numpy(small_pack):
    with st.Loader(small_pack, batch_size=100, seed=9) as a, \
            stt.Loader(small_pack, batch_size=100, seed=9, label_dtype=torch.int32) as b:
        for na, (x, y) in zip(a, b):
            assert np.array_equal(na.pixels, x.numpy()) and np.array_equal(na.labels, y.numpy())


def test_without_cuda_behaves_as_numpy(small_pack):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available: the pinned path runs instead")
    with stt.Loader(small_pack, batch_size=100) as ld:
        assert not ld.pin and ld.pinned_with is None
        it = iter(ld)
        next(it)
        first = ld.batch
        next(it)
        assert first.released  # released when the next batch was asked for


def test_cuda_pinned_ring(small_pack):
    if not torch.cuda.is_available():
        print("skipped: no CUDA device visible to torch (torch.cuda.is_available() is False)")
        pytest.skip("no CUDA device visible to torch: the pinned path needs one")
    with st.Loader(small_pack, batch_size=100, seed=4) as ref:
        want = [b.pixels.copy() for b in ref]
    with stt.Loader(small_pack, batch_size=100, seed=4, label_dtype=torch.int32) as ld:
        assert ld.pin and ld.pinned_with in ("cudaHostAlloc", "torch pin_memory")
        got = []
        for x, y in ld:
            assert torch.from_numpy(ld.batch.pixels).is_pinned()
            g = x.to("cuda", non_blocking=True)
            got.append(g)
        torch.cuda.synchronize()
        for g, w in zip(got, want):
            assert np.array_equal(g.cpu().numpy(), w)
    with stt.Loader(small_pack, batch_size=100, seed=4, device="cuda") as ld:
        for (x, y), w in zip(ld, want):
            assert x.is_cuda and np.array_equal(x.cpu().numpy(), w)


def test_allocator_hook_from_python(small_pack):
    """The hook the pinned path uses, with plain memory: the ring comes
    from it (the batches lie inside) and goes back to it at close."""
    calls, keep = [], {}

    def alloc(nbytes, _ctx):
        buf = ctypes.create_string_buffer(nbytes + 64)
        addr = (ctypes.addressof(buf) + 63) & ~63
        keep[addr] = buf
        calls.append(("alloc", addr, nbytes))
        return addr

    def free(p, nbytes, _ctx):
        calls.append(("free", p, nbytes))
        keep.pop(p)

    hook = stt._lib.ring_allocator(stt._lib.ALLOC_FN(alloc), stt._lib.FREE_FN(free), None)
    ld = st.Loader(small_pack, batch_size=50, allocator=hook)
    (kind, base, size), = calls
    for b in ld:
        assert base <= b.data_ptr < base + size
    ld.close()
    assert calls[-1] == ("free", base, size) and not keep


class FakeEvent:
    """Stands in for torch.cuda.Event: complete only when told (or when
    synchronized)."""
    made = []

    def __init__(self):
        self.done, self.synced = False, False
        FakeEvent.made.append(self)

    def record(self, stream):
        self.stream = stream

    def query(self):
        return self.done

    def synchronize(self):
        self.done = self.synced = True


def test_slot_released_only_after_the_copy_event(small_pack, monkeypatch):
    """The pinned path's gating, on the CPU with a fake CUDA event: a
    batch's slot stays held until the event recorded after its copy has
    completed; with too many pending, the oldest is waited for."""
    FakeEvent.made = []
    monkeypatch.setattr(torch.cuda, "Event", FakeEvent)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda: "stream")
    ld = stt.Loader(small_pack, batch_size=50, pin=False, slots=4)
    ld.pin = ld.cuda = True  # take the CUDA path's release logic
    it = iter(ld)
    next(it)
    b0 = ld.batch
    next(it)
    b1 = ld.batch
    assert not b0.released and len(FakeEvent.made) == 1  # copy of b0 in flight
    FakeEvent.made[0].done = True
    next(it)
    assert b0.released and not b1.released  # b0's event done: back to the producers
    for _ in range(4):
        next(it)
    # never more than slots - 2 pending: the oldest were synchronized
    assert len(ld._pending) <= 2 and any(e.synced for e in FakeEvent.made)
    assert b1.released
    ld.close()
