"""st.pack: packdata's code from Python, with a progress callback."""
import os
import struct

import numpy as np
import pytest

import streamtrain as st


def idx_source(d, n=500, h=9, w=7):
    os.makedirs(d)
    rng = np.random.default_rng(3)
    img = (rng.integers(0, 40, (n, h, w)) + np.arange(w) * 20).astype(np.uint8)
    lab = (np.arange(n) % 10).astype(np.uint8)
    for split, k in (("train", n), ("t10k", 100)):  # two splits: two chunks
        with open(os.path.join(d, f"{split}-images-idx3-ubyte"), "wb") as f:
            f.write(struct.pack(">IIII", 0x803, k, h, w) + img[:k].tobytes())
        with open(os.path.join(d, f"{split}-labels-idx1-ubyte"), "wb") as f:
            f.write(struct.pack(">II", 0x801, k) + lab[:k].tobytes())
    return img, lab


def test_pack_then_load(tmp_path):
    img, lab = idx_source(tmp_path / "src")
    calls = []
    stats = st.pack(tmp_path / "src", tmp_path / "out", codec="zstd", threads=2,
                    shard_bytes=4096,
                    progress=lambda split, done, total, secs: calls.append((split, done, total)))
    assert stats["samples"] == 600 and stats["codec"] == "zstd" and stats["shards"] > 1
    assert calls[0] == ("train", 500, 600) and calls[-1] == ("test", 600, 600)
    info = st.open_pack(tmp_path / "out")
    assert info.splits == {"train": 500, "test": 100} and info.shape == (9, 7, 1)
    assert st.verify(tmp_path / "out")["records"] == 600
    with st.Loader(tmp_path / "out", batch_size=500, shuffle="none") as ld:
        b = next(iter(ld))
        assert np.array_equal(b.pixels[..., 0], img) and np.array_equal(b.labels, lab)


def test_pack_cancel_and_exists(tmp_path):
    idx_source(tmp_path / "src")
    with pytest.raises(st.ClosedError, match="cancelled"):
        st.pack(tmp_path / "src", tmp_path / "out", progress=lambda *a: False)
    assert not os.path.exists(tmp_path / "out")

    def boom(*a):
        raise KeyError("from the callback")
    with pytest.raises(KeyError, match="from the callback"):
        st.pack(tmp_path / "src", tmp_path / "out", progress=boom)
    assert not os.path.exists(tmp_path / "out")
    st.pack(tmp_path / "src", tmp_path / "out", codec="png")
    assert st.open_pack(tmp_path / "out").codec == "png"
    with pytest.raises(st.ExistsError, match="out"):
        st.pack(tmp_path / "src", tmp_path / "out")
    st.pack(tmp_path / "src", tmp_path / "out", force=True, codec="raw")
    assert st.open_pack(tmp_path / "out").codec == "raw"


def test_pack_bad_input(tmp_path):
    with pytest.raises(st.NotFoundError, match="missing"):
        st.pack(tmp_path / "missing", tmp_path / "out")
    with pytest.raises(st.InvalidArgumentError, match="codec 'gif'"):
        st.pack(tmp_path, tmp_path / "out", codec="gif")
