"""faceproc/runstate.py called directly (survivors of the mutation run, docs/mutation.md): a re-cut's rows and
marker, its interruption finished by the next listing, what remove_shard and committed_shards touch, the
message of an output that cannot be written."""

import errno
import logging
import os
import time

import pyarrow as pa
import pytest

import faceproc.runstate as R
from faceproc.discover import FileEntry, Shard, shard_id
from faceproc.pipeline import ShardResult
from faceproc.schema import FACES, IMAGES
from faceproc.storage import Store, read_table

from tests.unit.test_compaction import commit


def non_utf8_shard(store, seconds=0.5, directory="/a"):
    """A committed shard of two photos, one with a name that is not UTF-8 (its row keeps the raw bytes)."""
    from faceproc.schema import path_fields

    paths = [os.fsdecode(b"/a/caf\xe9.jpg"), "/a/b.jpg"]
    images = [{**path_fields(p), "status": "ok", "n_faces": 1} for p in paths]
    faces = [{**path_fields(p), "face_index": 0} for p in paths]
    res = ShardResult(pa.Table.from_pylist(faces, schema=FACES), pa.Table.from_pylist(images, schema=IMAGES),
                      {"ok": 2}, seconds)
    return R.commit_shard(store, Shard(shard_id(paths), directory, [FileEntry(p) for p in paths]), res), paths


def test_recut_drops_a_non_utf8_name_and_keeps_the_rest_with_their_records(tmp_path):
    store = Store(tmp_path / "out")
    old, paths = non_utf8_shard(store)
    new = R.recut_shard(store, old, {paths[0]})
    assert read_table(store, "images").column("image_path").to_pylist() == ["/a/b.jpg"]
    assert read_table(store, "faces").column("image_path").to_pylist() == ["/a/b.jpg"]
    assert (new["paths"], new["replaces"], new["dir"], new["seconds"]) == (["/a/b.jpg"], [old["shard"]], "/a", 0.5)
    assert new["sizes"] == {n: store.size(f"{n}/{new['shard']}.parquet") for n in ("faces", "images")}
    assert set(R.committed_shards(store)) == {new["shard"]}
    # the same fields as the marker of a shard a run wrote, and what they say
    assert set(new) == (set(old) - {"stages"}) | {"replaces"}  # a run's per-stage seconds: not a re-cut's and new["digest"] == new["shard"] and new["pid"] == os.getpid()
    assert old["finished"] <= new["finished"] <= time.time()


def test_remove_shard_removes_its_marker_tables_and_intent(tmp_path):
    store = Store(tmp_path / "out")
    keep, _ = non_utf8_shard(store)
    m = commit(store, ["/b/x.jpg"])
    store.write_text(R.shard_intent(m["shard"]), "{}")  # left by a commit stopped after its marker
    store.write_text(R.shard_intent(keep["shard"]), "{}")
    R.remove_shard(store, m["shard"])
    assert store.list("_shards") == [f"{keep['shard']}.json", f"{keep['shard']}.open"]
    assert store.list("faces") == store.list("images") == [f"{keep['shard']}.parquet"]


def test_recut_of_a_marker_without_dir_or_seconds(tmp_path):
    store = Store(tmp_path / "out")
    old, paths = non_utf8_shard(store, directory="")
    del old["seconds"]
    new = R.recut_shard(store, old, {paths[1]})
    assert (new["dir"], new["seconds"]) == ("", 0)


def test_a_recut_stopped_before_the_old_shard_is_removed_is_finished_by_the_next_listing(tmp_path, monkeypatch):
    store = Store(tmp_path / "out")
    old, paths = non_utf8_shard(store)
    real = R.remove_shard

    def killed(*a):
        raise RuntimeError("killed")

    monkeypatch.setattr(R, "remove_shard", killed)
    with pytest.raises(RuntimeError, match="killed"):
        R.recut_shard(store, old, {paths[0]})
    monkeypatch.setattr(R, "remove_shard", real)
    assert len(store.list("_shards", ".json")) == 2  # the new shard committed, the old one still there
    done = R.committed_shards(store)
    assert len(done) == 1 and old["shard"] not in done
    assert read_table(store, "images").column("image_path").to_pylist() == ["/a/b.jpg"]


def test_committed_shards_reads_markers_only(tmp_path, caplog):
    """A file a browser leaves among the markers (macOS's ._ files) hides no shard after it, and a shard that
    never committed (its intent and rows, left for _remove_uncommitted) is no broken shard to remove."""
    store = Store(tmp_path / "out")
    m = commit(store, ["/a/x.jpg"])
    (tmp_path / "out" / "_shards" / f"._{m['shard']}.json").write_bytes(b"\0\5\26\7")
    orphan = "00112233aabbccdd"
    store.write_text(R.shard_intent(orphan), "{}")
    store.write_table(f"faces/{orphan}.parquet", FACES.empty_table())
    with caplog.at_level(logging.WARNING, logger="faceproc"):
        assert list(R.committed_shards(store)) == [m["shard"]]
    assert store.exists(f"faces/{orphan}.parquet") and store.exists(R.shard_intent(orphan)) and not caplog.messages


def test_an_output_that_cannot_be_written_is_named_with_the_reason(tmp_path, monkeypatch):
    store = Store(tmp_path / "out")
    for err, reason in ((OSError(errno.EACCES, "Permission denied"), "Permission denied"),
                        (OSError("read-only bucket"), "read-only bucket")):
        def refuse(err=err):
            raise err

        monkeypatch.setattr(store, "check_writable", refuse)
        with pytest.raises(R.OutputNotWritable) as e:
            R.check_output(store)
        assert str(e.value) == f"output folder {store} is not writable: {reason}"


def test_a_commit_that_fails_while_staging_leaves_nothing_of_its_shard(tmp_path, monkeypatch):
    """A full disk while the second table is staged: the staged first table, the intent and every table of
    the shard go; nothing of it is left for a reader or for the next start to sort out."""
    store = Store(tmp_path / "out")
    real, calls = store.write_table, []

    def full_on_the_second(rel, table):
        calls.append(rel)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(rel, table)

    monkeypatch.setattr(store, "write_table", full_on_the_second)
    with pytest.raises(OSError):
        commit(store, ["/a/x.jpg", "/a/y.jpg"])
    assert calls[0].startswith("_staging/")
    assert [p.name for p in (tmp_path / "out").rglob("*") if p.is_file()] == []


def test_a_commit_that_fails_after_its_marker_keeps_the_committed_shard(tmp_path, monkeypatch):
    """The marker is written and the intent's removal fails: the shard is committed, its rows stay."""
    store = Store(tmp_path / "out")
    real = store.delete

    def fails_once_on_the_intent(rel):
        if rel.endswith(".open") and not getattr(fails_once_on_the_intent, "done", False):
            fails_once_on_the_intent.done = True
            raise OSError(errno.EIO, "I/O error")
        real(rel)

    monkeypatch.setattr(store, "delete", fails_once_on_the_intent)
    with pytest.raises(OSError):
        commit(store, ["/a/x.jpg"])
    sid = shard_id(["/a/x.jpg"])
    assert list(R.committed_shards(store)) == [sid]
    assert read_table(store, "images").column("image_path").to_pylist() == ["/a/x.jpg"]
