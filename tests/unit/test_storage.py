"""storage.py: atomic local writes (one helper for Parquet, text and Store.write_bytes), the shard reader."""

import errno

import pyarrow as pa
import pytest

from faceproc.schema import IMAGES
from faceproc.storage import Store, file_sha256, read_table, write_atomic, write_file_atomic, write_text_atomic


def test_a_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path):
    target = tmp_path / "sub" / "a.txt"
    write_text_atomic("old", target)

    def full_disk(tmp):
        tmp.write_bytes(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError):
        write_file_atomic(target, full_disk)
    assert target.read_text() == "old" and [p.name for p in target.parent.iterdir()] == ["a.txt"]


def test_store_writes_go_through_the_same_atomic_helper(tmp_path, monkeypatch):
    import faceproc.storage as storage

    seen = []
    real = storage.write_file_atomic
    monkeypatch.setattr(storage, "write_file_atomic", lambda path, write: seen.append(str(path)) or real(path, write))
    store = Store(tmp_path / "out")
    store.write_text("manifest.json", "{}")
    store.write_table("images/s.parquet", IMAGES.empty_table())
    assert seen == [str(tmp_path / "out" / "manifest.json"), str(tmp_path / "out" / "images" / "s.parquet")]
    assert store.read_text("manifest.json") == "{}"


def test_read_table_joins_shards_and_skips_hidden_temp_files(tmp_path):
    store = Store(tmp_path / "out")
    assert read_table(store, "images").num_rows == 0 and read_table(store, "images").schema == IMAGES
    row = {"image_path": "a.jpg", "status": "ok"}
    for name in ("s1", "s2"):
        write_atomic(pa.Table.from_pylist([{**row, "shard": name}], schema=IMAGES), tmp_path / "out" / "images" / f"{name}.parquet")
    (tmp_path / "out" / "images" / ".s3.parquet.1234.tmp").write_bytes(b"half")
    (tmp_path / "out" / "images" / ".s4.parquet").write_bytes(b"half")
    t = read_table(tmp_path / "out", "images")
    assert sorted(t.column("shard").to_pylist()) == ["s1", "s2"]
    assert store.read_table("images/s1.parquet", IMAGES).num_rows == 1


def test_file_sha256(tmp_path):
    (tmp_path / "f").write_bytes(b"abc")
    assert file_sha256(tmp_path / "f") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
