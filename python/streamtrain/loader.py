"""streamtrain.loader — the streaming loader from Python: batches whose
NumPy arrays are views into the loader's ring slots.

defines: Loader, Batch

Lifetime: a batch's arrays are views into its ring slot. The slot goes
back to the producers when the iteration moves on to the next batch, or
at batch.release(), or at loader.close(); from then on batch.pixels,
.labels and .ids raise ReleasedBatchError (arrays taken out before stay
NumPy arrays over memory the producers overwrite: keep the batch, or use
copy=True, which gives owned arrays and frees the slot at once). The ring
itself is never freed under a live array: every view holds the ring's
owner, and loader_close runs at close() only when no view is left, else
when the last one goes (until then the producers wait for free slots).

Threads: one thread iterates; every C call (loader_next_batch waiting for
the producers included) releases the GIL.
"""
import atexit
import ctypes
import os
import weakref

import numpy as np

from . import _lib
from .errors import (ST_EEND, ClosedError, InvalidArgumentError,
                     ReleasedBatchError, raise_for)

L = _lib.lib

_SHUFFLE = {"none": 0, "global": 1, "window": 2}
_IO = {"auto": 0, "pread": 1, "mmap": 2}
_IO_NAMES = {v: k for k, v in _IO.items()}
_CORRUPT = {"fail": 0, "skip": 1}
_STATE_KEYS = ("split", "batch_size", "shuffle", "window_shards", "drop_last",
               "rank", "world", "transform")


def _pick(table, what, value):
    if value not in table:
        raise InvalidArgumentError(f"{what} '{value}': expected one of {', '.join(table)}")
    return table[value]


class _Ring:
    """Owns the C loader (and what its config points to, the allocator
    included): loader_close runs when the Loader and every NumPy view of a
    ring slot have let go of it."""

    __slots__ = ("h", "keep", "__weakref__")

    def __init__(self, h, keep):
        self.h, self.keep = h, keep
        _rings.add(self)

    def close(self):
        h, self.h = self.h, None
        if h is not None:
            L.loader_close(h)

    __del__ = close


_rings = weakref.WeakSet()


def _close_rings():
    """At exit, while ctypes and the allocators' callbacks still work: the
    rings that arrays still held (nothing can read them after this)."""
    for r in list(_rings):
        r.close()


atexit.register(_close_rings)


class Batch:
    """One batch: pixels (n, H, W, C) uint8, labels (n,) int32, ids (n,)
    uint64 (each sample's index within the split), and n, epoch, index.
    Unpacks as `x, y = batch`."""

    __slots__ = ("_loader", "_c", "_pixels", "_labels", "_ids", "_released",
                 "n", "epoch", "index", "owned", "__weakref__")

    def __init__(self, loader, c, pixels, labels, ids, owned):
        self._loader, self._c, self.owned = loader, c, owned
        self._pixels, self._labels, self._ids = pixels, labels, ids
        self._released = False
        self.n, self.epoch, self.index = c.n, c.epoch, c.index

    def _drop(self):
        """Released: the arrays are no longer reachable through the batch,
        so it lets go of them (and of the ring, unless they were kept)."""
        self._released = True
        if not self.owned:
            self._pixels = self._labels = self._ids = None

    def _check(self):
        if self._released:
            raise ReleasedBatchError(
                f"batch {self.index} of epoch {self.epoch} was released: its ring "
                "slot is being refilled (keep the batch until done, or use copy=True)")

    @property
    def pixels(self):
        self._check()
        return self._pixels

    @property
    def labels(self):
        self._check()
        return self._labels

    @property
    def ids(self):
        self._check()
        return self._ids

    @property
    def released(self):
        return self._released

    @property
    def data_ptr(self):
        """Address of the pixels (inside the ring slot unless owned)."""
        self._check()
        return self._pixels.ctypes.data

    def release(self):
        """Gives the slot back to the producers now (idempotent). Owned
        (copy=True) batches keep their arrays."""
        if not self._released and not self.owned:
            self._loader._release(self)

    def __iter__(self):
        return iter((self.pixels, self.labels))

    def __len__(self):
        return self.n

    def __repr__(self):
        st = "released" if self._released else ("owned" if self.owned else "view")
        return f"<streamtrain.Batch epoch {self.epoch} index {self.index} n {self.n} {st}>"


class _Closing:
    """with-statement and garbage-collection closing, for classes with a
    close() that may be called more than once."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


class Loader(_Closing):
    """Streams batches of a pack split; see the module docstring and
    loader/loader.h. `for batch in loader:` runs to the end of the current
    epoch (each new iter() is the next epoch; one broken off early goes on
    where it stopped). Arguments as loader_config: shuffle "global" |
    "window" | "none"; transform a text form of loader/transform.h, e.g.
    "random-resized-crop 224 flip"; state a dict from state_dict().
    batch_size is the global batch: with world w ranks (a multiple of w),
    rank r's batches hold its r-th slice of batch_size / w samples of each
    global batch, so the stream is the same at any world size."""

    def __init__(self, path, split="train", batch_size=256, shuffle="global",
                 seed=1, threads=2, drop_last=False, rank=0, world=1,
                 transform=None, copy=False, state=None, slots=4,
                 window_shards=4, epochs=None, on_corrupt="fail", io="auto",
                 timeout_ms=0, host_mem_cap=0, producer_delay_us=0,
                 allocator=None):
        self._h = None
        self._held = None
        self._ring = None
        self._views = {}   # pixels address -> (B, H, W, C) view of the slot
        self.path, self.copy = os.fspath(path), bool(copy)
        for name, v in (("batch_size", batch_size), ("threads", threads),
                        ("slots", slots), ("rank", rank), ("world", world),
                        ("seed", seed), ("window_shards", window_shards)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise InvalidArgumentError(f"{name} {v!r}: expected an integer >= 0")
        cfg = _lib.loader_config()
        L.loader_config_default(ctypes.byref(cfg))
        self._split = split.encode() if isinstance(split, str) else split
        cfg.split = self._split
        cfg.batch_size, cfg.threads, cfg.slots = batch_size, threads, slots
        cfg.shuffle = _pick(_SHUFFLE, "shuffle", shuffle)
        cfg.window_shards, cfg.seed = window_shards, seed
        cfg.drop_last, cfg.rank, cfg.world = int(bool(drop_last)), rank, world
        cfg.epochs = 0 if epochs is None else epochs
        cfg.on_corrupt = _pick(_CORRUPT, "on_corrupt", on_corrupt)
        cfg.io = _pick(_IO, "io", io)
        cfg.timeout_ms, cfg.host_mem_cap = timeout_ms, host_mem_cap
        cfg.producer_delay_us = producer_delay_us
        err = _lib.st_error()
        self._transform = None
        if transform is not None:
            if not isinstance(transform, str):
                raise InvalidArgumentError(
                    f"transform {transform!r}: expected a text form such as "
                    "'random-resized-crop 224 flip' (loader/transform.h)")
            self._transform = _lib.transform_spec()
            rc = L.transform_parse(transform.encode(), ctypes.byref(self._transform),
                                   ctypes.byref(err))
            if rc != 0:
                raise_for(rc, err)
            cfg.transform = ctypes.pointer(self._transform)
        self._alloc = allocator  # a _lib.ring_allocator kept alive with us
        if allocator is not None:
            cfg.alloc = ctypes.pointer(allocator)
        self._key = {"split": split, "batch_size": batch_size, "shuffle": shuffle,
                     "window_shards": window_shards if shuffle == "window" else None,
                     "drop_last": bool(drop_last), "rank": rank, "world": world,
                     "transform": transform}
        if state is not None:
            self._resume(cfg, state)
        self._cfg = cfg
        h = ctypes.c_void_p()
        rc = L.loader_open(os.fsencode(self.path), ctypes.byref(cfg), ctypes.byref(h),
                           ctypes.byref(err))
        if rc != 0:
            raise_for(rc, err)
        self._h = h
        self._ring = _Ring(h, (cfg, self._transform, allocator, self._split))
        self._err = err
        self._err_ref = ctypes.byref(err)
        hh, ww, cc = _lib.u32(), _lib.u32(), _lib.u32()
        L.loader_sample_shape(h, ctypes.byref(hh), ctypes.byref(ww), ctypes.byref(cc))
        self.shape = (hh.value, ww.value, cc.value)   # of one sample
        self.batch_size, self.world = batch_size, max(1, world)

    def _resume(self, cfg, state):
        try:
            st = _lib.loader_state(seed=state["seed"], epoch=state["epoch"],
                                   batch=state["batch"])
        except (KeyError, TypeError) as e:
            raise InvalidArgumentError(f"state: not a Loader.state_dict() ({e!r} missing)") from None
        for k in _STATE_KEYS:
            if k in state and state[k] != self._key[k]:
                raise InvalidArgumentError(
                    f"state: saved with {k}={state[k]!r}, this loader has {k}={self._key[k]!r}: "
                    "the stream would differ")
        L.loader_config_resume(ctypes.byref(cfg), ctypes.byref(st))

    # ---- the stream ---------------------------------------------------
    def _live(self):
        if self._h is None:
            raise ClosedError(f"{self.path}: the loader is closed", -11)
        return self._h

    def _view(self, addr, n, shape, ctype, dtype):
        key = (addr, dtype)
        v = self._views.get(key)
        if v is None:
            cap = self.batch_size // self.world  # a slot's samples (order.h)
            count = cap * int(np.prod(shape))
            buf = (ctype * count).from_address(addr)
            buf._ring = self._ring  # the view (its .base) keeps the ring
            v = np.frombuffer(buf, dtype=dtype).reshape((cap,) + shape)
            self._views[key] = v
        return v[:n]

    def next_batch(self):
        """The next batch of the stream, or None at the end of an epoch
        (once; the call after starts the next epoch). Releases the batch
        held before. @raise CorruptRecordError, ClosedError, ..."""
        h = self._live()
        if self._held is not None:
            self._release(self._held)
        c = _lib.loader_batch()
        rc = L.loader_next_batch(h, ctypes.byref(c), self._err_ref)
        if rc == ST_EEND:
            return None
        if rc != 0:
            raise_for(rc, self._err)
        shape = (c.height, c.width, c.channels)
        n = c.n
        px = self._view(c.pixels, n, shape, _lib.u8, np.uint8)
        lb = self._view(c.labels, n, (), _lib.i32, np.int32)
        ids = self._view(c.ids, n, (), _lib.u64, np.uint64)
        if self.copy:
            b = Batch(self, c, px.copy(), lb.copy(), ids.copy(), True)
            rc = L.loader_release(h, ctypes.byref(c), self._err_ref)
            if rc != 0:
                raise_for(rc, self._err)
            return b
        b = Batch(self, c, px, lb, ids, False)
        self._held = b
        return b

    def __iter__(self):
        self._live()
        return self._epoch()

    def _epoch(self):
        while True:
            b = self.next_batch()
            if b is None:
                return
            yield b

    def _release(self, b):
        b._drop()
        if self._held is b:
            self._held = None
        if self._h is None:
            return
        rc = L.loader_release(self._h, ctypes.byref(b._c), self._err_ref)
        if rc != 0:
            raise_for(rc, self._err)

    def _release_held(self):
        if self._held is not None:
            self._release(self._held)

    # ---- state, stats, close -----------------------------------------------
    def state_dict(self):
        """The position after the last delivered batch, with the settings
        the stream depends on: Loader(..., state=d) continues it exactly."""
        s = L.loader_get_state(self._live())
        d = {"seed": s.seed, "epoch": s.epoch, "batch": s.batch}
        d.update(self._key)
        return d

    def stats(self):
        """The loader's per-stage counters (loader_stats) as a dict."""
        st = _lib.loader_stats()
        L.loader_get_stats(self._live(), ctypes.byref(st))
        d = {k: getattr(st, k) for k, _ in _lib.loader_stats._fields_}
        d["io"] = _IO_NAMES.get(st.io, st.io)
        return d

    def __len__(self):
        st = _lib.loader_stats()
        L.loader_get_stats(self._live(), ctypes.byref(st))
        return int(st.batches_per_epoch)

    def close(self):
        """Closes the loader (idempotent): a held batch is released, and the
        producers are stopped and the ring freed now, or, while arrays
        taken from it are alive, when the last of them goes."""
        if self._held is not None:
            self._held._drop()
            self._held = None
        self._h = None
        self._views.clear()
        self._ring = None  # loader_close here unless a view holds it

    @property
    def closed(self):
        return self._h is None
