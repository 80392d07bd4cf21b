"""The commit protocol and the lock on an S3 output (issue 21), against the moto server: a process killed
between a shard's rows and its marker, an exception there, a lock of another host."""

import json
import os
import subprocess
import sys

import pytest

import faceproc.runstate as R
from faceproc.engine import OutputLocked, annotate
from faceproc.storage import Store
from tests.conftest import REPO
from tests.helpers import cfg_for_tests, fail_first_commit, make_tree
from tests.s3.test_object_storage import read_s3
from tests.unit.test_commit_crash import KILLED_IN_COMMIT, exactly_once


def test_killed_inside_a_commit_on_s3_then_rerun_with_another_shard_size(s3_server, tmp_path, fakes):
    make_tree(tmp_path / "in", n=12)
    out = "s3://faceproc/runs/killed-in-commit"
    r = subprocess.run([sys.executable, "-c", KILLED_IN_COMMIT, str(tmp_path / "in"), out, "2"], cwd=REPO,
                       env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=300)
    assert r.returncode == -9, r.stdout + r.stderr[-3000:]
    dead = r.stdout.split("KILLED_AT", 1)[1].split()[0]
    store = Store(out)
    assert store.exists(f"images/{dead}.parquet") and not store.exists(R.shard_marker(dead))
    annotate([str(tmp_path / "in")], out, cfg_for_tests(shard_size=5), engine="local")
    exactly_once(read_s3(out, "images"), read_s3(out, "faces"), 13)
    assert not store.exists(f"images/{dead}.parquet") and not store.list("_staging")


def test_a_raise_inside_a_commit_on_s3_leaves_no_row_of_that_shard(s3_server, tmp_path, fakes, monkeypatch):
    make_tree(tmp_path / "in")
    out = "s3://faceproc/runs/raise-in-commit"
    victims = fail_first_commit(monkeypatch, RuntimeError("crash inside the commit"))
    rep = annotate([str(tmp_path / "in")], out, cfg_for_tests(shard_size=3), engine="local")
    assert [f["shard"] for f in rep["failed_shards"]] == victims
    store = Store(out)
    assert not store.exists(f"faces/{victims[0]}.parquet") and not store.exists(f"images/{victims[0]}.parquet")
    monkeypatch.setattr(R, "_tables_in_place", lambda store, shard_id: None)
    annotate([str(tmp_path / "in")], out, cfg_for_tests(shard_size=3), engine="local")
    exactly_once(read_s3(out, "images"), read_s3(out, "faces"), 8)


def test_s3_lock_of_another_host_with_a_dead_pid_is_not_taken_over(s3_server, tmp_path, fakes):
    make_tree(tmp_path / "in")
    out = "s3://faceproc/runs/foreign-lock"
    store = Store(out)
    theirs = json.dumps({"host": "another-host.example", "pid": 2**22 + 12345, "started": 0})
    assert store.create_exclusive(R.LOCK, theirs)
    with pytest.raises(OutputLocked, match="another-host.example"):
        annotate([str(tmp_path / "in")], out, cfg_for_tests(), engine="local")
    assert store.read_text(R.LOCK) == theirs and not store.exists("manifest.json")
