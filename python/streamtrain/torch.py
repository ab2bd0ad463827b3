"""streamtrain.torch — the loader for PyTorch: a drop-in for a DataLoader
that yields (x, y) with x a uint8 (B, H, W, C) tensor sharing the ring
slot's memory (torch.from_numpy) and y the labels.

defines: Loader, pinned_allocator

With CUDA (torch.cuda.is_available()), the ring is allocated pinned
(cudaHostAlloc through the CUDA runtime loaded by ctypes, else torch's own
pinned allocator) through the loader's allocator hook, so that
x.to("cuda", non_blocking=True) is a true asynchronous copy. A slot then
goes back to the producers only once that copy is done: when the next
batch is asked for, an event is recorded on the current CUDA stream (the
copies the loop enqueued there come before it) and the slot is released
when the event has completed; device="cuda" makes the loader do the copy
itself and yield CUDA tensors. Without CUDA it behaves as the NumPy loader
(the slot is released when the next batch is asked for).
"""
import ctypes
import ctypes.util
import glob
import os
import weakref

import torch

from . import _lib
from .loader import Loader as _NumpyLoader, _Closing

__all__ = ["Loader", "pinned_allocator"]


def _cudart():
    """The CUDA runtime: the one torch has loaded already (in
    /proc/self/maps), else torch's bundled copy, else the system's."""
    names = []
    try:
        with open("/proc/self/maps") as f:
            names += sorted({ln.split()[-1] for ln in f if "libcudart" in ln})
    except OSError:
        pass
    tdir = os.path.dirname(torch.__file__)
    names += sorted(glob.glob(os.path.join(tdir, "lib", "libcudart*.so*")))
    names += sorted(glob.glob(os.path.join(os.path.dirname(tdir), "nvidia", "cuda_runtime",
                                           "lib", "libcudart.so*")))
    found = ctypes.util.find_library("cudart")
    if found:
        names.append(found)
    names += sorted(glob.glob("/usr/local/cuda/lib64/libcudart.so*"))
    for n in names:
        try:
            return ctypes.CDLL(n)
        except OSError:
            continue
    return None


class _Pinned:
    """A ring_allocator whose memory is page-locked: cudaHostAlloc from the
    CUDA runtime when one can be loaded and the call succeeds, else
    torch's pinned allocator (torch.empty(pin_memory=True), kept alive
    here until the free). Called by the C loader at open and close only,
    on the calling thread (ctypes takes the GIL back for the callback)."""

    def __init__(self):
        self.rt = _cudart()
        self.kind = "cudaHostAlloc" if self.rt is not None else "torch pin_memory"
        self.keep = {}   # address -> tensor (torch's pinned allocator)
        self.owner = {}  # address -> "cuda" (cudaHostAlloc)
        if self.rt is not None:
            self.rt.cudaHostAlloc.restype = ctypes.c_int
            self.rt.cudaHostAlloc.argtypes = [ctypes.POINTER(ctypes.c_void_p),
                                              ctypes.c_size_t, ctypes.c_uint]
            self.rt.cudaFreeHost.restype = ctypes.c_int
            self.rt.cudaFreeHost.argtypes = [ctypes.c_void_p]
        self.c = _lib.ring_allocator(_lib.ALLOC_FN(self._alloc), _lib.FREE_FN(self._free),
                                     None)

    def _alloc(self, nbytes, _ctx):
        try:
            if self.rt is not None:
                p = ctypes.c_void_p()
                # cudaHostAllocPortable (1): pinned for every context
                if self.rt.cudaHostAlloc(ctypes.byref(p), nbytes, 1) == 0 and p.value:
                    self.owner[p.value] = "cuda"
                    return p.value
            t = torch.empty(nbytes, dtype=torch.uint8, pin_memory=True)
            self.keep[t.data_ptr()] = t
            self.kind = "torch pin_memory"
            return t.data_ptr()
        except Exception:   # the C side reports the failure (ST_ENOMEM)
            return None

    def _free(self, p, _nbytes, _ctx):
        if p is None:
            return
        if self.owner.pop(p, None) == "cuda":
            self.rt.cudaFreeHost(p)
        else:
            self.keep.pop(p, None)


def pinned_allocator():
    """A new pinned ring allocator (needs CUDA), for Loader(allocator=)."""
    return _Pinned()


_open = weakref.WeakSet()


def _close_all():  # before torch and ctypes go away at exit
    for ld in list(_open):
        ld.close()


import atexit  # noqa: E402
atexit.register(_close_all)


class Loader(_Closing):
    """streamtrain.Loader's arguments, plus: device (None: CPU tensors;
    "cuda": the loader copies each batch there, non_blocking, and yields
    CUDA tensors), pin (None: when CUDA is available), label_dtype (the
    labels' dtype: torch.int64 by default, as losses want them; torch.int32
    is the zero-copy view). Iterating yields (x, y); the last batch object
    is .batch."""

    def __init__(self, path, *args, device=None, pin=None, label_dtype=torch.int64,
                 slots=None, **kw):
        self.cuda = torch.cuda.is_available()
        self.pin = self.cuda if pin is None else bool(pin)
        self.device = torch.device(device) if device is not None else None
        self._alloc = _Pinned() if self.pin else None
        if slots is None:
            slots = 6 if self.pin else 4
        self.slots = slots
        self._np = _NumpyLoader(path, *args, slots=slots,
                                allocator=self._alloc.c if self._alloc else None, **kw)
        self.label_dtype = label_dtype
        self._pending = []     # (event, batch): copies in flight
        self._last = None
        self.batch = None
        _open.add(self)

    def _retire(self, keep):
        """Releases the slots whose copies are done; waits for the oldest
        while more than keep are pending."""
        still = []
        for ev, b in self._pending:
            if ev.query():
                b.release()
            else:
                still.append((ev, b))
        while len(still) > keep:
            ev, b = still.pop(0)
            ev.synchronize()
            b.release()
        self._pending = still

    def _hand_back_last(self):
        b, self._last = self._last, None
        if b is None or b.released or b.owned:
            return
        if self.pin and self.cuda:
            ev = torch.cuda.Event()
            ev.record(torch.cuda.current_stream())
            self._pending.append((ev, b))
        else:
            b.release()

    def __iter__(self):
        return self._epoch()

    def _epoch(self):
        npl = self._np
        while True:
            self._hand_back_last()
            if self._pending:
                self._retire(max(0, self.slots - 2))
            npl._held = None  # this loader decides when a slot goes back
            b = npl.next_batch()
            if b is None:
                return
            npl._held = None
            self._last = self.batch = b
            x = torch.from_numpy(b.pixels)
            y = torch.from_numpy(b.labels)
            if self.label_dtype is not None and self.label_dtype != torch.int32:
                y = y.to(self.label_dtype)
            if self.device is not None:
                x = x.to(self.device, non_blocking=self.pin)
                y = y.to(self.device, non_blocking=self.pin)
            yield x, y

    def close(self):
        if self._pending:
            for ev, _ in self._pending:
                ev.synchronize()
            self._pending = []
        self._last = None
        self._np.close()

    def __len__(self):
        return len(self._np)

    def state_dict(self):
        return self._np.state_dict()

    def stats(self):
        return self._np.stats()

    @property
    def pinned_with(self):
        """How the ring was pinned ("cudaHostAlloc", "torch pin_memory"),
        or None (plain memory)."""
        return self._alloc.kind if self._alloc else None

    @property
    def shape(self):
        return self._np.shape
