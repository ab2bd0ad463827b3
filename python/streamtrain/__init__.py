"""streamtrain — the streaming loader of sharded image packs, for NumPy
and (streamtrain.torch) PyTorch, over libstreamtrain.so through ctypes.

    import streamtrain as st
    info = st.open_pack("data/fashion-mnist")
    with st.Loader("data/fashion-mnist", batch_size=256, threads=2) as loader:
        for x, y in loader:          # uint8 (B, H, W, C), int32 (B,): views
            ...

defines: Loader, Batch, open_pack, pack, verify, PackInfo, the Error
         classes (streamtrain.errors), library_path, __version__
"""
from . import _lib
from .errors import (ClosedError, CorruptRecordError, DeviceError, Error,
                     ExistsError, InternalError, InvalidArgumentError,
                     IOFailedError, LoaderTimeoutError, NotFoundError,
                     OutOfMemoryError, PackFormatError, ReleasedBatchError)
from .loader import Batch, Loader
from .pack import PackInfo, open_pack, pack, verify

__version__ = "1.0.0"
library_path = _lib.lib._path

__all__ = ["Loader", "Batch", "open_pack", "pack", "verify", "PackInfo",
           "Error", "ClosedError", "CorruptRecordError", "DeviceError",
           "ExistsError", "InternalError", "InvalidArgumentError",
           "IOFailedError", "LoaderTimeoutError", "NotFoundError",
           "OutOfMemoryError", "PackFormatError", "ReleasedBatchError",
           "library_path", "__version__"]
