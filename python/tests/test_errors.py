"""Bad packs and bad arguments raise the right streamtrain.Error subclass
with the C library's one-line message."""
import os

import pytest

import streamtrain as st


def flip_byte(path, offset):
    with open(path, "r+b") as f:
        f.seek(offset)
        c = f.read(1)
        f.seek(offset)
        f.write(bytes([c[0] ^ 0x5A]))


def test_missing_pack(tmp_path):
    with pytest.raises(st.NotFoundError, match="nope") as e:
        st.open_pack(tmp_path / "nope")
    assert e.value.code == -8 and "\n" not in e.value.message
    with pytest.raises(st.NotFoundError):
        st.Loader(tmp_path / "nope")


def test_garbage_manifest(fresh_pack):
    with open(os.path.join(fresh_pack, "MANIFEST"), "w") as f:
        f.write("not a manifest\n")
    with pytest.raises(st.PackFormatError, match="MANIFEST"):
        st.open_pack(fresh_pack)
    with pytest.raises(st.PackFormatError, match="MANIFEST"):
        st.Loader(fresh_pack)


def test_manifest_checksum(fresh_pack):
    m = os.path.join(fresh_pack, "MANIFEST")
    text = open(m).read().replace("level 9", "level 8")
    open(m, "w").write(text)
    with pytest.raises(st.PackFormatError, match="MANIFEST"):
        st.open_pack(fresh_pack)


def test_missing_shard(fresh_pack):
    os.remove(os.path.join(fresh_pack, "train-00001.shard"))
    with pytest.raises(st.NotFoundError, match="train-00001.shard"):
        st.Loader(fresh_pack)


def test_corrupt_record_names_split_shard_record(fresh_pack):
    flip_byte(os.path.join(fresh_pack, "train-00000.shard"), 64 + 3)  # record 0
    ld = st.Loader(fresh_pack, batch_size=50, shuffle="none", threads=1)
    with pytest.raises(st.CorruptRecordError) as e:
        for _ in ld:
            pass
    msg = e.value.message
    assert "train" in msg and "train-00000.shard" in msg and "record 0" in msg, msg
    assert isinstance(e.value, st.PackFormatError) and e.value.code in (-5, -6)
    with pytest.raises(st.CorruptRecordError):  # the loader stays failed
        ld.next_batch()
    ld.close()
    with st.Loader(fresh_pack, batch_size=50, shuffle="none", on_corrupt="skip") as ld:
        ids = [i for b in ld for i in b.ids.tolist()]
        # the next valid sample of the order takes the corrupt one's place
        assert len(ids) == 300 and 0 not in ids and ld.stats()["skipped"] >= 1


@pytest.mark.parametrize("kw, exc, words", [
    ({"split": "valid"}, st.NotFoundError, "valid"),
    ({"batch_size": 0}, st.InvalidArgumentError, "batch"),
    ({"threads": 0}, st.InvalidArgumentError, "thread"),
    ({"rank": 3, "world": 2}, st.InvalidArgumentError, "rank"),
    ({"slots": 0}, st.InvalidArgumentError, "slot"),
    ({"shuffle": "random"}, st.InvalidArgumentError, "shuffle 'random'"),
    ({"io": "dma"}, st.InvalidArgumentError, "io 'dma'"),
    ({"batch_size": -1}, st.InvalidArgumentError, "batch_size -1"),
    ({"transform": "random-resized-crop 0"}, st.InvalidArgumentError,
     "random-resized-crop 0"),
    ({"host_mem_cap": 4096}, st.OutOfMemoryError, "4096"),
])
def test_bad_arguments(small_pack, kw, exc, words):
    with pytest.raises(exc) as e:
        st.Loader(small_pack, **kw)
    assert words in e.value.message, e.value.message
    assert isinstance(e.value, st.Error)


def test_state_garbage(small_pack):
    with pytest.raises(st.InvalidArgumentError, match="state"):
        st.Loader(small_pack, state={"epoch": 1})
