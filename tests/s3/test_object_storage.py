"""Object storage against a real S3 API on 127.0.0.1 (moto's server, started by the `s3_server` fixture):
S3 output, S3 input, mixed, a run killed mid-way then rerun (rows exactly once), the lock, the report."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from faceproc.engine import OutputLocked, annotate
from faceproc.storage import Store, filesystem
from tests.conftest import REPO
from tests.helpers import cfg_for_tests, make_tree


def s3_client():
    import boto3

    return boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])


def upload_tree(local, prefix):
    c = s3_client()
    for p in sorted(local.rglob("*")):
        if p.is_file():
            c.upload_file(str(p), "faceproc", f"{prefix}/{p.relative_to(local).as_posix()}")
    return f"s3://faceproc/{prefix}"


def read_s3(uri, table):
    """What the README tells users: pandas with faceproc's filesystem (endpoint from AWS_ENDPOINT_URL)."""
    fs, path = filesystem(uri)
    return pd.read_parquet(f"{path}/{table}", filesystem=fs)


def rows(df, prefix):
    d = df.drop(columns=[c for c in ("run_id", "elapsed_ms") if c in df])
    for c in d.columns:  # categories follow first appearance, which differs with the shard plan
        if isinstance(d[c].dtype, pd.CategoricalDtype):
            d[c] = d[c].astype(str)
    d["image_path"] = d["image_path"].str.replace(prefix, "", regex=False)
    key = ["image_path", "face_index"] if "face_index" in d else ["image_path"]
    return d.sort_values(key).reset_index(drop=True)


@pytest.fixture
def tree(tmp_path):
    make_tree(tmp_path / "in", n=9)
    return tmp_path / "in"


def test_local_input_s3_output_equals_local_output(s3_server, tree, tmp_path, fakes):
    cfg = cfg_for_tests(shard_size=3, previews=2)
    annotate([str(tree)], tmp_path / "ref", cfg, engine="local", models=fakes)
    out = "s3://faceproc/runs/local-in"
    rep = annotate([str(tree)], out, cfg, engine="local", models=fakes)
    assert rep["files"] == 10
    for t in ("faces", "images"):
        pd.testing.assert_frame_equal(rows(read_s3(out, t), ""), rows(pd.read_parquet(tmp_path / "ref" / t), ""))
    keys = {o["Key"] for o in s3_client().list_objects_v2(Bucket="faceproc", Prefix="runs/local-in/")["Contents"]}
    for k in ("manifest.json", "report.html", "report.json", "faceproc.log"):
        assert f"runs/local-in/{k}" in keys
    assert sum(k.startswith("runs/local-in/previews/") for k in keys) == 2
    assert not [k for k in keys if "_staging" in k or k.endswith(".faceproc.lock")]  # nothing left behind
    html = Store(out).read_text("report.html")
    assert "gallery" in html.lower() and "previews/" in html
    # a rerun finds every shard committed and does nothing
    before = FakePredictor_calls()
    rep2 = annotate([str(tree)], out, cfg, engine="local", models=fakes)
    assert rep2["faces"] == rep["faces"] and FakePredictor_calls() == before


def FakePredictor_calls():
    from tests.helpers import FakePredictor

    return sum(FakePredictor.calls)


def test_s3_input_to_s3_and_local_outputs(s3_server, tree, tmp_path, fakes):
    src = upload_tree(tree, "archive/a1")
    cfg = cfg_for_tests(shard_size=4)
    annotate([src], "s3://faceproc/runs/s3-in", cfg, engine="local", models=fakes)
    annotate([src], tmp_path / "local-out", cfg, engine="local", models=fakes)
    annotate([str(tree)], tmp_path / "ref", cfg, engine="local", models=fakes)
    ref = rows(pd.read_parquet(tmp_path / "ref" / "images"), str(tree))
    s3_rows = rows(read_s3("s3://faceproc/runs/s3-in", "images"), src)
    local_rows = rows(pd.read_parquet(tmp_path / "local-out" / "images"), src)
    # the input differs; an object's LastModified is not the local file's mtime; an object has no inode
    where = ["shard", "input_root", "mtime_ns", "file_mtime", "inode"]
    for got in (s3_rows, local_rows):
        pd.testing.assert_frame_equal(got.drop(columns=where), ref.drop(columns=where))
        assert (got["input_root"] == src).all() and (ref["input_root"] == str(tree)).all()
    assert (s3_rows["image_path"].str.len() > 0).all()
    assert set(read_s3("s3://faceproc/runs/s3-in", "images")["image_path"].str[:5]) == {"s3://"}
    # the broken file is a row with its status, read from S3 like the rest
    assert dict(zip(s3_rows["image_path"], s3_rows["status"]))["/d0/broken.jpg"] == "not_an_image"


def test_two_runs_into_one_s3_output_refused(s3_server, tree, fakes):
    out = "s3://faceproc/runs/locked"
    store = Store(out)
    assert store.create_exclusive(".faceproc.lock", json.dumps({"host": "elsewhere", "pid": 1, "started": 0}))
    assert not store.create_exclusive(".faceproc.lock", "{}")  # the conditional PUT is what makes it exclusive
    with pytest.raises(OutputLocked, match="another faceproc run"):
        annotate([str(tree)], out, cfg_for_tests(), engine="local", models=fakes)
    store.delete(".faceproc.lock")
    annotate([str(tree)], out, cfg_for_tests(), engine="local", models=fakes)


KILLED_RUN = r"""
import sys
from tests.helpers import FakeModels, cfg_for_tests
from faceproc.engine import annotate
annotate([sys.argv[1]], sys.argv[2], cfg_for_tests(shard_size=2), engine="local", models=FakeModels())
"""


def test_killed_run_then_rerun_rows_exactly_once(s3_server, tmp_path, fakes):
    make_tree(tmp_path / "in", n=16)
    out = "s3://faceproc/runs/killed"
    env = {**os.environ, "FACEPROC_FAKE_DELAY": "0.4", "PYTHONPATH": str(REPO)}
    p = subprocess.Popen([sys.executable, "-c", KILLED_RUN, str(tmp_path / "in"), out], env=env, cwd=REPO,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    store = Store(out)
    deadline = time.time() + 120
    while len(store.list("_shards", ".json")) < 2:
        assert p.poll() is None, p.stderr.read().decode()[-2000:]
        assert time.time() < deadline
        time.sleep(0.1)
    p.send_signal(signal.SIGKILL)
    p.wait()
    committed = store.list("_shards", ".json")
    assert 2 <= len(committed) < 9  # 17 files in shards of 2: killed part-way
    # what a reader sees after the kill: only rows of committed shards
    shard_ids = {n[: -len(".json")] for n in committed}
    assert set(read_s3(out, "images")["shard"]) <= shard_ids
    annotate([str(tmp_path / "in")], out, cfg_for_tests(shard_size=2), engine="local", models=fakes)  # the rerun
    images = read_s3(out, "images")
    assert len(images) == 17 and images["image_path"].is_unique
    faces = read_s3(out, "faces")
    assert len(faces) == int(images["n_faces"].fillna(0).sum()) and not faces.duplicated(["image_path", "face_index"]).any()
    assert np.allclose(faces["age"], 33.0)
    assert not store.list("_staging") and not store.exists(".faceproc.lock")


def test_missing_bucket_and_missing_input_prefix_are_clear_errors(s3_server, tree, fakes):
    from faceproc.engine import OutputNotWritable

    with pytest.raises(OutputNotWritable, match="s3://no-such-bucket/out is not writable"):
        annotate([str(tree)], "s3://no-such-bucket/out", cfg_for_tests(), engine="local", models=fakes)
    with pytest.raises(FileNotFoundError, match="s3://faceproc/nothing-here does not exist"):
        annotate(["s3://faceproc/nothing-here"], "s3://faceproc/runs/x", cfg_for_tests(), engine="local", models=fakes)
    assert not Store("s3://faceproc/runs/x").exists("manifest.json")  # nothing written for a refused run
