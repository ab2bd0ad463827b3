"""streamtrain.pack — a pack's description (open_pack) and packing a
source dataset into a pack (pack), with the same code as packdata.

defines: PackInfo, open_pack, pack, verify
"""
import contextlib
import ctypes
import os
from dataclasses import dataclass, field

from . import _lib
from .errors import ClosedError, Error, InvalidArgumentError, raise_for

L = _lib.lib


@dataclass
class PackInfo:
    """What a pack's MANIFEST says (open_pack checks every shard too)."""
    path: str
    version: int                 # pack format version (1 or 2)
    codec: str                   # "raw", "zstd", "png", "jpeg"
    shape: tuple                 # (H, W, C); variable packs: the largest
    variable: bool               # samples of different sizes
    classes: list                # class names, index = label
    splits: dict                 # split name -> sample count
    shards: dict                 # split name -> shard count
    mean: tuple = None           # per channel, 0..255, of stats_split
    std: tuple = None
    stats_split: str = None
    dict_bytes: int = 0          # zstd dictionary size, 0: none
    max_record: int = 0          # largest encoded record in bytes

    @property
    def counts(self):
        """Samples per split (= splits)."""
        return dict(self.splits)

    @property
    def num_classes(self):
        return len(self.classes)


def _path(p):
    return os.fsencode(os.fspath(p))


@contextlib.contextmanager
def _opened(path):
    """(handle, st_error) of the pack at path, closed on the way out."""
    err = _lib.st_error()
    h = ctypes.c_void_p()
    rc = L.pack_open(_path(path), ctypes.byref(h), ctypes.byref(err))
    if rc != 0:
        raise_for(rc, err)
    try:
        yield h, err
    finally:
        L.pack_close(h)


def open_pack(path):
    """Opens and checks the pack directory path (manifest, dictionary,
    every shard's header and index) and describes it.
    @raise NotFoundError, PackFormatError, CorruptRecordError, ..."""
    with _opened(path) as (h, _):
        m = L.pack_manifest(h).contents
        splits, shards = {}, {}
        for i in range(m.nsplits):
            s = m.splits[i]
            splits[s.name.decode()] = int(s.samples)
            shards[s.name.decode()] = int(s.nshards)
        c = m.channels
        return PackInfo(
            path=os.fspath(path), version=m.version,
            codec=L.manifest_codec_name(m.codec).decode(),
            shape=(m.height, m.width, c), variable=bool(m.variable),
            classes=[m.classes[i].decode() for i in range(m.nclasses)],
            splits=splits, shards=shards,
            mean=tuple(m.mean[:c]) if m.has_stats else None,
            std=tuple(m.std[:c]) if m.has_stats else None,
            stats_split=m.stats_split.decode() if m.has_stats else None,
            dict_bytes=int(m.dict_bytes), max_record=int(m.max_record))


def verify(path):
    """Checks every file's checksum and decodes every record.
    @return {"files", "records", "bytes"} checked.
    @raise CorruptRecordError naming split, shard and record, ..."""
    with _opened(path) as (h, err):
        vs = (_lib.u64 * 3)()  # pack_verify_stats: files, records, bytes
        rc = L.pack_verify(h, vs, ctypes.byref(err))
        if rc != 0:
            raise_for(rc, err)
        return {"files": vs[0], "records": vs[1], "bytes": vs[2]}


_FORMATS = {"auto": 0, "idx": 1, "folder": 2, "cifar10": 3}


def pack(src, out, codec=None, level=None, quality=None, threads=None,
         shard_bytes=0, dict_bytes=None, huffman_literals=False, force=False,
         format="auto", channels=0, resize=None, max_side=0,
         max_pixels=89478485, exif_rotate=True, progress=None):
    """Packs the source dataset src (an IDX / CIFAR-10 directory or an
    image folder, as packdata reads it) into the pack directory out, with
    packdata's code (datasets/packer.h) and defaults.

    codec: "zstd" | "png" | "jpeg" | "raw" | None (jpeg for JPEG sources,
    else zstd); level: zstd level; quality: jpeg quality; resize: (W, H)
    or None; progress: None or a function progress(split, done, total,
    seconds) called in this thread after each chunk of samples written;
    returning False (or raising) cancels at the next chunk: ClosedError (or
    the callback's exception) is raised and nothing is left at out. After
    the last chunk it is too late: the pack is complete (and a raising
    callback's exception is still raised).
    @return a dict of the packer's stats (samples, disk_bytes, ...).
    @raise ExistsError (out exists, force=False), NotFoundError, ..."""
    cfg = _lib.packer_config()
    L.packer_config_default(ctypes.byref(cfg))
    if codec is not None:
        c = L.manifest_codec_parse(codec.encode())
        if c < 0:
            raise InvalidArgumentError(f"codec '{codec}': expected zstd, png, jpeg or raw")
        cfg.codec = c
    if level is not None:
        cfg.level = level
    if quality is not None:
        cfg.quality = quality
    if threads is not None:
        cfg.threads = threads
    if dict_bytes is not None:
        cfg.dict_bytes = dict_bytes
    if format not in _FORMATS:
        raise InvalidArgumentError(f"format '{format}': expected one of {', '.join(_FORMATS)}")
    cfg.shard_bytes, cfg.huffman_literals, cfg.force = shard_bytes, int(huffman_literals), int(force)
    cfg.source.format, cfg.source.channels = _FORMATS[format], channels
    if resize is not None:
        cfg.source.resize_w, cfg.source.resize_h = resize
    cfg.source.max_side, cfg.source.max_pixels = max_side, max_pixels
    cfg.source.no_exif_rotate = int(not exif_rotate)
    cancel = ctypes.c_int(0)
    cfg.cancel = ctypes.pointer(cancel)
    raised = []

    def on_progress(_ctx, p):  # in this thread, the GIL taken back by ctypes
        if raised:
            return
        q = p.contents
        try:
            if progress(q.split.decode() if q.split else "", q.done, q.total,
                        q.seconds) is False:
                cancel.value = 1
        except BaseException as e:  # noqa: B902 - re-raised after packer_run
            raised.append(e)
            cancel.value = 1

    cb = _lib.PROGRESS_FN(on_progress) if progress is not None else _lib.PROGRESS_FN()
    cfg.progress = cb
    st = _lib.packer_stats()
    err = _lib.st_error()
    rc = L.packer_run(_path(src), _path(out), ctypes.byref(cfg), ctypes.byref(st),
                      ctypes.byref(err))
    if raised:
        raise raised[0]
    if rc != 0:
        if rc == -11 and cancel.value:
            raise ClosedError(f"{os.fspath(out)}: packing cancelled by the progress callback", rc)
        raise_for(rc, err)
    return {"samples": st.samples, "raw_bytes": st.raw_bytes,
            "record_bytes": st.record_bytes, "disk_bytes": st.disk_bytes,
            "dict_bytes": st.dict_bytes, "shards": st.shards,
            "codec": L.manifest_codec_name(st.codec).decode(),
            "passthrough": st.passthrough, "seconds": st.seconds,
            "max_shape": (st.max_h, st.max_w)}


__all__ = ["PackInfo", "open_pack", "pack", "verify", "Error"]
