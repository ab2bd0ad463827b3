"""streamtrain._lib — the ctypes binding of libstreamtrain.so: finding and
loading the library, the C structs it exchanges (mirrored field by field
from the headers; tests/test_abi.py checks every offset against the C
compiler's), and the prototypes of the functions used.

defines: lib, find_library, st_error, loader_config, loader_batch,
         loader_stats, loader_state, transform_spec, ring_allocator,
         manifest, source_options, packer_config, packer_stats,
         packer_progress, ALLOC_FN, FREE_FN, PROGRESS_FN, STRUCTS

The GIL: every function here is called through a ctypes.CDLL, which
releases the GIL for the duration of each foreign call, so a call that
blocks (loader_next_batch waiting for the producers, loader_open, packer_run)
lets other Python threads run. Long operations are kept as single calls.
"""
import ctypes
import ctypes.util
import os

_HERE = os.path.dirname(os.path.abspath(__file__))


def find_library():
    """The path of libstreamtrain.so: $STREAMTRAIN_LIB, else the copy
    installed inside the package, else the source tree's build/ (a
    development checkout, see `make python`), else the system's."""
    env = os.environ.get("STREAMTRAIN_LIB")
    if env:
        return env
    cands = [os.path.join(_HERE, "libstreamtrain.so"),
             os.path.join(_HERE, "..", "..", "build", "libstreamtrain.so")]
    for c in cands:
        if os.path.exists(c):
            return os.path.abspath(c)
    sysname = ctypes.util.find_library("streamtrain")
    if sysname:
        return sysname
    raise OSError("libstreamtrain.so not found: looked for $STREAMTRAIN_LIB, "
                  + ", ".join(os.path.abspath(c) for c in cands)
                  + " and the system's library path (build it with "
                  "`make build/libstreamtrain.so`, or `pip install ./python`)")


c_size_t = ctypes.c_size_t
u8, u32, u64, i32 = ctypes.c_uint8, ctypes.c_uint32, ctypes.c_uint64, ctypes.c_int32
c_int, c_double, c_char_p, c_void_p = ctypes.c_int, ctypes.c_double, ctypes.c_char_p, ctypes.c_void_p


class st_error(ctypes.Structure):
    _fields_ = [("code", c_int), ("msg", ctypes.c_char * 512)]


ALLOC_FN = ctypes.CFUNCTYPE(c_void_p, c_size_t, c_void_p)
FREE_FN = ctypes.CFUNCTYPE(None, c_void_p, c_size_t, c_void_p)


class ring_allocator(ctypes.Structure):
    _fields_ = [("alloc", ALLOC_FN), ("free", FREE_FN), ("ctx", c_void_p)]


class transform_spec(ctypes.Structure):
    _fields_ = [("kind", c_int), ("out_w", u32), ("out_h", u32),
                ("scale_min", c_double), ("scale_max", c_double),
                ("ratio_min", c_double), ("ratio_max", c_double),
                ("attempts", c_int), ("crop_frac", c_double), ("pad", u32),
                ("flip", c_int), ("interp", c_int), ("erase", c_double)]


class loader_state(ctypes.Structure):
    _fields_ = [("seed", u64), ("epoch", u64), ("batch", u64)]


class loader_config(ctypes.Structure):
    _fields_ = [("split", c_char_p), ("batch_size", u32), ("threads", u32),
                ("slots", u32), ("shuffle", c_int), ("window_shards", u32),
                ("seed", u64), ("drop_last", c_int), ("rank", u32),
                ("world", u32), ("start_epoch", u64), ("start_batch", u64),
                ("epochs", u64), ("host_mem_cap", c_size_t),
                ("on_corrupt", c_int), ("io", c_int), ("readahead", u32),
                ("timeout_ms", u32), ("alloc", ctypes.POINTER(ring_allocator)),
                ("producer_delay_us", u32),
                ("transform", ctypes.POINTER(transform_spec))]


class loader_batch(ctypes.Structure):
    # the pointers as plain addresses: the views are made from them
    _fields_ = [("pixels", c_void_p), ("labels", c_void_p), ("ids", c_void_p), ("n", u32), ("epoch", u64),
                ("index", u64), ("slot", u32), ("height", u32), ("width", u32),
                ("channels", u32)]


class loader_stats(ctypes.Structure):
    _fields_ = [("batches", u64), ("samples", u64), ("bytes", u64),
                ("skipped", u64), ("batches_per_epoch", u64),
                ("read_s", c_double), ("decode_s", c_double),
                ("resize_s", c_double), ("jpeg_rows", u64),
                ("jpeg_rows_skipped", u64), ("blocked_s", c_double),
                ("wait_s", c_double), ("elapsed_s", c_double),
                ("samples_per_s", c_double), ("mb_per_s", c_double),
                ("io", c_int)]


class manifest_shard(ctypes.Structure):
    _fields_ = [("file", ctypes.c_char * 256), ("records", u64), ("bytes", u64),
                ("file_xxh3", u64), ("index_xxh3", u64)]


class manifest_split(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char * 64), ("samples", u64), ("nshards", u32),
                ("shards", ctypes.POINTER(manifest_shard))]


class manifest(ctypes.Structure):
    _fields_ = [("version", u32), ("codec", u32), ("level", c_int),
                ("height", u32), ("width", u32), ("channels", u32),
                ("variable", c_int), ("max_h", u32), ("max_w", u32),
                ("max_record", u64), ("has_stats", c_int),
                ("stats_split", ctypes.c_char * 64), ("mean", c_double * 4),
                ("std", c_double * 4), ("dict_file", ctypes.c_char * 256),
                ("dict_bytes", u64), ("dict_id", u32), ("dict_xxh3", u64),
                ("nclasses", u32), ("classes", ctypes.POINTER(c_char_p)),
                ("nsplits", u32), ("splits", manifest_split * 16)]


class source_options(ctypes.Structure):
    _fields_ = [("format", c_int), ("channels", c_int), ("resize_w", u32),
                ("resize_h", u32), ("max_side", u32), ("max_pixels", u64),
                ("no_exif_rotate", c_int)]


class source_split(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char * 64), ("count", u64)]


class source_info(ctypes.Structure):
    _fields_ = [("format", c_int), ("height", u32), ("width", u32),
                ("channels", u32), ("nclasses", u32),
                ("classes", ctypes.POINTER(c_char_p)), ("nsplits", u32),
                ("splits", source_split * 8), ("png_native", c_int),
                ("jpeg_native", c_int), ("variable", c_int),
                ("max_sample_bytes", u64)]


class packer_progress(ctypes.Structure):
    _fields_ = [("split", c_char_p), ("done", u64), ("total", u64),
                ("seconds", c_double)]


PROGRESS_FN = ctypes.CFUNCTYPE(None, c_void_p, ctypes.POINTER(packer_progress))


class packer_config(ctypes.Structure):
    _fields_ = [("source", source_options), ("codec", c_int), ("level", c_int),
                ("quality", c_int), ("shard_bytes", u64), ("dict_bytes", c_size_t),
                ("threads", c_int), ("huffman_literals", c_int), ("force", c_int),
                ("progress", PROGRESS_FN), ("progress_ctx", c_void_p),
                ("cancel", ctypes.POINTER(c_int))]


class packer_stats(ctypes.Structure):
    _fields_ = [("samples", u64), ("raw_bytes", u64), ("record_bytes", u64),
                ("disk_bytes", u64), ("dict_bytes", c_size_t),
                ("dict_seconds", c_double), ("seconds", c_double),
                ("shards", u32), ("codec", u32), ("passthrough", u64),
                ("max_h", u32), ("max_w", u32), ("has_stats", c_int),
                ("stats_split", ctypes.c_char * 64), ("mean", c_double * 4),
                ("std", c_double * 4), ("info", source_info)]


# (C name, ctypes class, C header): what tests/test_abi.py checks
STRUCTS = [("st_error", st_error, "datasets/error.h"),
           ("ring_allocator", ring_allocator, "loader/ring.h"),
           ("transform_spec", transform_spec, "loader/transform.h"),
           ("loader_state", loader_state, "loader/loader.h"),
           ("loader_config", loader_config, "loader/loader.h"),
           ("loader_batch", loader_batch, "loader/loader.h"),
           ("loader_stats", loader_stats, "loader/loader.h"),
           ("manifest_shard", manifest_shard, "datasets/manifest.h"),
           ("manifest_split", manifest_split, "datasets/manifest.h"),
           ("manifest", manifest, "datasets/manifest.h"),
           ("source_options", source_options, "datasets/source.h"),
           ("source_info", source_info, "datasets/source.h"),
           ("packer_progress", packer_progress, "datasets/packer.h"),
           ("packer_config", packer_config, "datasets/packer.h"),
           ("packer_stats", packer_stats, "datasets/packer.h")]

PERR = ctypes.POINTER(st_error)


def _load():
    path = find_library()
    L = ctypes.CDLL(path)
    L._path = path

    def proto(name, res, *args):
        f = getattr(L, name)
        f.restype, f.argtypes = res, list(args)

    proto("st_strerror", c_char_p, c_int)
    proto("pack_open", c_int, c_char_p, ctypes.POINTER(c_void_p), PERR)
    proto("pack_close", None, c_void_p)
    proto("pack_manifest", ctypes.POINTER(manifest), c_void_p)
    proto("pack_split_find", c_int, c_void_p, c_char_p)
    proto("pack_split_samples", u64, c_void_p, c_int)
    proto("pack_split_nshards", u32, c_void_p, c_int)
    proto("pack_is_variable", c_int, c_void_p)
    proto("pack_verify", c_int, c_void_p, c_void_p, PERR)
    proto("manifest_codec_name", c_char_p, u32)
    proto("manifest_codec_parse", c_int, c_char_p)
    proto("transform_parse", c_int, c_char_p, ctypes.POINTER(transform_spec), PERR)
    proto("transform_format", None, ctypes.POINTER(transform_spec), c_char_p, c_size_t)
    proto("loader_config_default", None, ctypes.POINTER(loader_config))
    proto("loader_config_resume", None, ctypes.POINTER(loader_config),
          ctypes.POINTER(loader_state))
    proto("loader_open", c_int, c_char_p, ctypes.POINTER(loader_config),
          ctypes.POINTER(c_void_p), PERR)
    proto("loader_sample_shape", None, c_void_p, ctypes.POINTER(u32),
          ctypes.POINTER(u32), ctypes.POINTER(u32))
    proto("loader_next_batch", c_int, c_void_p, ctypes.POINTER(loader_batch), PERR)
    proto("loader_release", c_int, c_void_p, ctypes.POINTER(loader_batch), PERR)
    proto("loader_get_state", loader_state, c_void_p)
    proto("loader_get_stats", None, c_void_p, ctypes.POINTER(loader_stats))
    proto("loader_close", None, c_void_p)
    proto("packer_config_default", None, ctypes.POINTER(packer_config))
    proto("packer_run", c_int, c_char_p, c_char_p, ctypes.POINTER(packer_config),
          ctypes.POINTER(packer_stats), PERR)
    return L


lib = _load()
