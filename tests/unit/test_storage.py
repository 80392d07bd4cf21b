"""storage.py: atomic local writes (one helper for Parquet, text and Store.write_bytes), the shard reader, the
names, paths, encodings and folders the rest relies on (survivors of the mutation run, docs/mutation.md)."""

import errno
import os

import pyarrow as pa
import pyarrow.parquet as pq
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


def test_temp_and_probe_names_are_ones_the_cleanup_knows(tmp_path, monkeypatch):
    """A run killed mid-write leaves its temp file or its write probe: the next start removes only names it
    knows as its own (faceproc/ownership.py), so the writers must use exactly those."""
    from faceproc.ownership import is_temp

    seen = []
    write_file_atomic(tmp_path / "a.json", lambda tmp: seen.append(tmp.name) or tmp.write_text("{}"))
    store = Store(tmp_path / "out")
    real = store.write_text
    monkeypatch.setattr(store, "write_text", lambda rel, text: seen.append(rel) or real(rel, text))
    store.check_writable()
    assert len(seen) == 2 and all(is_temp(n) for n in seen), seen
    assert [p.name for p in tmp_path.iterdir()] == ["a.json", "out"] and not list((tmp_path / "out").iterdir())


def test_parquet_is_written_with_zstd(tmp_path):
    write_atomic(pa.Table.from_pylist([{"image_path": "a.jpg", "status": "ok"}], schema=IMAGES), tmp_path / "a.parquet")
    assert pq.ParquetFile(tmp_path / "a.parquet").metadata.row_group(0).column(0).compression == "ZSTD"


def test_text_is_utf8_whatever_the_locale(tmp_path):
    """The manifest and markers hold non-ASCII paths: written and read as UTF-8 also under LANG=C."""
    import subprocess
    import sys
    from pathlib import Path

    import faceproc

    code = ("import sys; from faceproc.storage import Store, write_text_atomic; p = sys.argv[1];"
            "write_text_atomic('caf\\u00e9', p + '/a.txt'); open(p + '/b.txt', 'wb').write('\\u00e9t\\u00e9'.encode());"
            "print(Store(p).read_text('b.txt') == '\\u00e9t\\u00e9')")
    env = {**os.environ, "LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0",
           "PYTHONIOENCODING": "utf-8", "PYTHONPATH": str(Path(faceproc.__file__).parents[1])}
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path)], env=env, capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == "True", r.stderr[-500:]
    assert (tmp_path / "a.txt").read_bytes() == "café".encode()


def test_join_paths_and_uris():
    from faceproc.storage import join

    assert join("/out", "faces", "a.parquet") == "/out/faces/a.parquet"
    assert join("s3://b/out/", "/faces/", "", "a.parquet") == "s3://b/out/faces/a.parquet"
    assert join("s3://b/X/", "X.jpg") == "s3://b/X/X.jpg"  # only slashes are trimmed


def test_local_store_paths_folders_and_exclusive_create(tmp_path):
    store = Store(tmp_path / "a" / "b" / "out")  # its parents do not exist yet
    assert store.where() == str(tmp_path / "a" / "b" / "out") == os.fspath(store)
    assert store.where("faces/x.parquet") == str(tmp_path / "a" / "b" / "out" / "faces" / "x.parquet")
    assert store.create_exclusive(".faceproc.lock", "me")
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "a" / "b" / "out" / ".faceproc.lock").stat().st_mode & 0o777 == 0o666 & ~umask
    other = Store(tmp_path / "c" / "d")
    other.check_writable()  # creates the folder with its parents
    assert (tmp_path / "c" / "d").is_dir()
    store.write_text("_staging/x/y.txt", "y")
    store.delete_tree("_staging")
    store.delete_tree("never-there")
    assert not (tmp_path / "a" / "b" / "out" / "_staging").exists()


def test_sizes_of_folders_and_missing_files_and_s3_tables_in_zstd(tmp_path, s3_server):
    import boto3

    from faceproc.storage import file_size

    (tmp_path / "f").write_bytes(b"abc")
    assert (file_size(str(tmp_path / "f")), file_size(str(tmp_path)), file_size(str(tmp_path / "no"))) == (3, None, None)
    boto3.client("s3", endpoint_url=s3_server["AWS_ENDPOINT_URL"]).put_object(Bucket="faceproc", Key="size/d/f", Body=b"abcd")
    assert [file_size(f"s3://faceproc/size/{k}") for k in ("d/f", "d", "no")] == [4, None, None]
    with pytest.raises(TypeError, match="s3://faceproc/size is not a local folder"):
        os.fspath(Store("s3://faceproc/size"))
    store = Store("s3://faceproc/size")
    store.write_table("images/a.parquet", pa.Table.from_pylist([{"image_path": "a.jpg", "status": "ok"}], schema=IMAGES))
    (tmp_path / "a.parquet").write_bytes(store.fs.open_input_stream("faceproc/size/images/a.parquet").read())
    assert pq.ParquetFile(tmp_path / "a.parquet").metadata.row_group(0).column(0).compression == "ZSTD"
    assert str(Store("s3://faceproc/X/")) == "s3://faceproc/X"
    slash = Store("s3://faceproc/size/")  # the same output as without the slash
    assert str(slash) == "s3://faceproc/size" and slash.where("b.txt") == "s3://faceproc/size/b.txt"
    slash.write_text("b.txt", "b")
    assert store.read_text("b.txt") == "b" and store.exists("b.txt") and not store.exists("images")
    assert store.list("") == ["b.txt"] and store.list("images", ".parquet") == ["a.parquet"]  # files only
