"""The shard commit protocol under crashes (issue 21): rows moved in first, marker last, and rows without a
marker removed at the next start. The crash point is faceproc.runstate._tables_in_place, between the two."""

import json
import os
import subprocess
import sys

import pandas as pd
import pytest

import faceproc.runstate as R
from faceproc.engine import annotate
from faceproc.ownership import remove_uncommitted
from faceproc.storage import Store

from tests.conftest import REPO
from tests.helpers import cfg_for_tests, fail_first_commit, make_tree

# A child process that dies (SIGKILL, no cleanup of any kind) at the crash point of its second commit.
KILLED_IN_COMMIT = r"""
import os, signal, sys
from tests.helpers import cfg_for_tests, install_fakes
install_fakes()
import faceproc.runstate as R
from faceproc.engine import annotate

n = [0]
def crash(store, shard_id):
    n[0] += 1
    if n[0] == 2:
        print("KILLED_AT", shard_id, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)

R._tables_in_place = crash
annotate([sys.argv[1]], sys.argv[2], cfg_for_tests(shard_size=int(sys.argv[3])), engine="local")
"""


def killed_in_commit(src, out, shard_size: int) -> str:
    """Run annotate in a child killed inside its second commit; the id of the shard it was committing."""
    r = subprocess.run([sys.executable, "-c", KILLED_IN_COMMIT, str(src), str(out), str(shard_size)], cwd=REPO,
                       env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=300)
    assert r.returncode == -9, r.stdout + r.stderr[-3000:]
    return r.stdout.split("KILLED_AT", 1)[1].split()[0]


def exactly_once(images: pd.DataFrame, faces: pd.DataFrame, n_files: int) -> None:
    assert len(images) == n_files and images["image_path"].is_unique, images["image_path"].value_counts().head()
    assert len(faces) == int(images["n_faces"].fillna(0).sum())
    assert not faces.duplicated(["image_path", "face_index"]).any()


def test_marker_is_written_only_after_both_tables_are_in_place(tmp_path, fakes, monkeypatch):
    """The order of the store operations of every commit: both tables moved into faces/ and images/, then
    the marker; at the crash point the rows are visible and the marker is not yet there."""
    make_tree(tmp_path / "in")
    ops = []
    for name in ("move", "write_text", "write_table", "delete"):
        real = getattr(Store, name)

        def spy(self, *a, _real=real, _name=name):
            ops.append((_name, a[-1] if _name == "move" else a[0]))
            return _real(self, *a)

        monkeypatch.setattr(Store, name, spy)
    seen = []

    def check(store, shard_id):
        seen.append((store.exists(f"faces/{shard_id}.parquet"), store.exists(f"images/{shard_id}.parquet"),
                     store.exists(R.shard_marker(shard_id))))

    monkeypatch.setattr(R, "_tables_in_place", check)
    annotate([str(tmp_path / "in")], tmp_path / "out", cfg_for_tests(shard_size=3), engine="local")
    # markers, not the intents (_shards/<id>.open) written before a shard's files
    markers = [i for i, (op, p) in enumerate(ops) if op == "write_text" and p.startswith("_shards/") and p.endswith(".json")]
    assert len(markers) >= 3 and seen == [(True, True, False)] * len(markers)
    for i in markers:
        sid = ops[i][1][len("_shards/"): -len(".json")]
        moved = [j for j, (op, p) in enumerate(ops) if op == "move" and p in (f"faces/{sid}.parquet",
                                                                                  f"images/{sid}.parquet")]
        assert len(moved) == 2 and max(moved) < i, (sid, ops)


def test_killed_between_rows_and_marker_then_rerun_with_another_shard_size(tmp_path, fakes):
    """The audit's case: killed inside a commit, rerun with another --shard-size. The dead shard's rows
    (no marker) must go at start, or its photos get a second row from the new shard that covers them."""
    make_tree(tmp_path / "in", n=12)  # 13 files
    out = tmp_path / "out"
    dead = killed_in_commit(tmp_path / "in", out, shard_size=2)
    # the state the kill left: the dead shard's rows in place, no marker for them
    assert (out / "faces" / f"{dead}.parquet").exists() and (out / "images" / f"{dead}.parquet").exists()
    assert not (out / "_shards" / f"{dead}.json").exists()
    annotate([str(tmp_path / "in")], out, cfg_for_tests(shard_size=5), engine="local")
    exactly_once(pd.read_parquet(out / "images"), pd.read_parquet(out / "faces"), 13)
    assert not (out / "faces" / f"{dead}.parquet").exists()


def test_a_raise_between_rows_and_marker_fails_only_that_shard(tmp_path, fakes, monkeypatch):
    """An exception at the crash point: that shard's rows are taken back at once (nothing uncommitted is
    visible), the other shards commit, the run reports it failed, and a rerun finishes it."""
    make_tree(tmp_path / "in")
    out = tmp_path / "out"
    victims = fail_first_commit(monkeypatch, RuntimeError("crash inside the commit"))
    rep = annotate([str(tmp_path / "in")], out, cfg_for_tests(shard_size=2), engine="local")
    assert [f["shard"] for f in rep["failed_shards"]] == victims
    assert "crash inside the commit" in rep["failed_shards"][0]["error"]
    for name in ("faces", "images"):
        assert not (out / name / f"{victims[0]}.parquet").exists()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["state"] == "incomplete" and manifest["shards"][victims[0]]["state"] == "failed"
    assert len(pd.read_parquet(out / "images")) == 8 - manifest["shards"][victims[0]]["files"]
    monkeypatch.setattr(R, "_tables_in_place", lambda store, shard_id: None)
    rep = annotate([str(tmp_path / "in")], out, cfg_for_tests(shard_size=2), engine="local")
    assert not rep["failed_shards"]
    exactly_once(pd.read_parquet(out / "images"), pd.read_parquet(out / "faces"), 8)


@pytest.mark.parametrize("table", ["faces", "images"])
def test_truncated_table_of_a_committed_shard_is_redone(tmp_path, fakes, table):
    """Either table cut short after its commit: the shard is not intact (its marker goes with its rows) and
    a rerun does its photos again."""
    make_tree(tmp_path / "in")
    out = tmp_path / "out"
    annotate([str(tmp_path / "in")], out, cfg_for_tests(shard_size=100, workers=1), engine="local")  # one shard
    [victim] = sorted((out / table).glob("*.parquet"))
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) - 7])
    assert R.committed_shards(Store(out)) == {}
    assert not (out / "_shards" / f"{victim.stem}.json").exists() and not victim.exists()
    annotate([str(tmp_path / "in")], out, cfg_for_tests(shard_size=100, workers=1), engine="local")
    exactly_once(pd.read_parquet(out / "images"), pd.read_parquet(out / "faces"), 8)


def test_committed_shard_with_a_missing_table_or_a_broken_marker_is_redone(tmp_path, fakes):
    make_tree(tmp_path / "in")
    out = tmp_path / "out"
    annotate([str(tmp_path / "in")], out, cfg_for_tests(shard_size=3), engine="local")
    markers = sorted((out / "_shards").glob("*.json"))
    assert len(markers) >= 3
    (out / "images" / f"{markers[0].stem}.parquet").unlink()
    markers[1].write_text("{")
    markers[2].write_text(json.dumps({"shard": markers[2].stem}))  # no file list
    done = R.committed_shards(Store(out))
    assert not {m.stem for m in markers[:3]} & set(done)
    for m in markers[:3]:
        assert not m.exists() and not (out / "faces" / f"{m.stem}.parquet").exists()
    annotate([str(tmp_path / "in")], out, cfg_for_tests(shard_size=3), engine="local")
    exactly_once(pd.read_parquet(out / "images"), pd.read_parquet(out / "faces"), 8)


def test_uncommitted_rows_staging_and_temp_files_are_removed_at_start(tmp_path, fakes):
    """What a killed run leaves (rows without a marker, staged tables, temp files) goes; committed rows stay."""
    make_tree(tmp_path / "in")
    out = tmp_path / "out"
    annotate([str(tmp_path / "in")], out, cfg_for_tests(shard_size=3), engine="local")
    keep = sorted(p.name for p in (out / "images").glob("*.parquet"))
    # named as faceproc names its files (it removes no other name: faceproc/ownership.py)
    orphan = "00112233aabbccdd"
    leftovers = [out / "faces" / f"{orphan}.parquet", out / "images" / f"{orphan}.parquet",
                 out / "_staging" / f"{orphan}.faces.parquet", out / "_shards" / f"{orphan}.open",
                 out / "faces" / f".{orphan}.parquet.0123abcd.tmp", out / "images" / f".{orphan}.parquet.4567cdef.tmp",
                 out / "_shards" / f".{orphan}.json.89abcdef.tmp",
                 out / ".manifest.json.0a1b2c3d.tmp",
                 out / ".write-test-a1b2c3", out / "faces" / ".write-test-d4e5f6"]  # a run killed in its write probe
    mine = [out / ".write-test-notes", out / "faces" / "notes.tmp"]  # a user's names: never touched
    for p in leftovers + mine:
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(b"PAR1")
    remove_uncommitted(Store(out))
    assert not [p for p in leftovers if p.exists()] and not (out / "_staging").exists()
    assert all(p.exists() for p in mine)
    assert sorted(p.name for p in (out / "images").glob("*.parquet")) == keep
    assert len(list((out / "_shards").glob("*.json"))) == len(keep)
