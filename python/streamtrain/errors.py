"""streamtrain.errors — the exceptions: one class per kind of st_errcode,
each carrying the C library's one-line message (which names the split,
shard and record involved) and the code.

defines: Error, IOFailedError, OutOfMemoryError, PackFormatError,
         CorruptRecordError, InvalidArgumentError, NotFoundError,
         ExistsError, ClosedError, DeviceError, LoaderTimeoutError,
         InternalError, ReleasedBatchError, CODES, raise_for
"""
from . import _lib

ST_EEND = -13


class Error(Exception):
    """Base of every streamtrain error. .code: the st_errcode (negative;
    0 for errors raised by the Python layer), .message: the one line."""

    def __init__(self, message, code=0):
        super().__init__(message)
        self.message, self.code = message, code


class IOFailedError(Error):            # ST_EIO, ST_ENOSPC
    pass


class OutOfMemoryError(Error, MemoryError):  # ST_ENOMEM (incl. host_mem_cap)
    pass


class PackFormatError(Error):          # ST_EFORMAT, ST_EVERSION: a bad pack
    pass


class CorruptRecordError(PackFormatError):  # ST_ECHECKSUM, ST_EDECODE
    pass


class InvalidArgumentError(Error, ValueError):  # ST_EINVAL
    pass


class NotFoundError(Error, LookupError):  # ST_ENOTFOUND: file, split, class
    pass


class ExistsError(Error):              # ST_EEXIST: output already there
    pass


class ClosedError(Error):              # ST_ECLOSED: the loader was closed
    pass


class DeviceError(Error):              # ST_EDEVICE
    pass


class LoaderTimeoutError(Error, TimeoutError):  # ST_ETIMEDOUT: may retry
    pass


class InternalError(Error):            # ST_EINTERNAL
    pass


class ReleasedBatchError(Error):
    """A batch's arrays were asked for after batch.release() or after the
    iteration moved on: its ring slot belongs to the producers again."""


CODES = {-1: IOFailedError, -2: OutOfMemoryError, -3: PackFormatError,
         -4: PackFormatError, -5: CorruptRecordError, -6: CorruptRecordError,
         -7: InvalidArgumentError, -8: NotFoundError, -9: ExistsError,
         -10: IOFailedError, -11: ClosedError, -12: DeviceError,
         -14: InternalError, -15: LoaderTimeoutError}


def raise_for(rc, err):
    """Raises the exception for a negative return rc with err's message."""
    msg = err.msg.decode("utf-8", "replace")
    if not msg:
        msg = _lib.lib.st_strerror(rc).decode()
    raise CODES.get(rc, Error)(msg, rc)
