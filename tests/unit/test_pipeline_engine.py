"""Pipeline and engine with stand-in models (fast); the real models run in tests/integration."""

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from faceproc.engine import RunConfigMismatch, OutputNotWritable, annotate


from tests.helpers import FakePredictor, cfg_for_tests, make_tree  # noqa: E402


def test_rows_statuses_and_batching_across_images(tmp_path, fakes):
    make_tree(tmp_path / "in")
    rep = annotate([str(tmp_path / "in")], tmp_path / "out", cfg_for_tests(shard_size=100), engine="local", models=fakes)
    images = pd.read_parquet(tmp_path / "out" / "images")
    faces = pd.read_parquet(tmp_path / "out" / "faces")
    assert len(images) == 8 and images["image_path"].is_unique
    assert images.set_index(images["image_path"].str.rsplit("/", n=1).str[-1])["status"].to_dict() == {
        "0.png": "ok", "1.png": "no_faces", "2.png": "ok", "3.png": "no_faces", "4.png": "ok", "5.png": "no_faces",
        "6.png": "ok", "broken.jpg": "not_an_image"}
    assert len(faces) == 4 and set(faces["gender"]) == {"female"} and (faces["age"] == 33).all()
    assert faces[["x1", "y1", "x2", "y2"]].iloc[0].tolist() == [25.0, 20.0, 75.0, 60.0]
    assert faces["landmarks"].iloc[0].shape == (10,)
    # Crops of all images of a shard go to the model together, not one face at a time.
    assert max(FakePredictor.calls) >= 2
    assert rep["files"] == 8 and rep["faces"] == 4 and rep["failed_files"] == 1
    page = (tmp_path / "out" / "report.html").read_text()
    assert page.count("<svg ") == 3 and page.count("<rect ") >= 3  # the plots, drawn


def test_resume_skips_done_shards_and_redoes_changed_ones(tmp_path, fakes):
    make_tree(tmp_path / "in")
    out = tmp_path / "out"
    annotate([str(tmp_path / "in")], out, cfg_for_tests(shard_size=2), engine="local", models=fakes)
    first = pd.read_parquet(out / "images").sort_values("image_path").reset_index(drop=True)
    n_calls = len(FakePredictor.calls)
    annotate([str(tmp_path / "in")], out, cfg_for_tests(shard_size=2), engine="local", models=fakes)
    assert len(FakePredictor.calls) == n_calls  # nothing redone
    # Simulate a crash after one shard's rows were written but before its marker.
    marker = sorted((out / "_shards").glob("*.json"))[0]
    marker.unlink()
    # And a new file in one folder: that folder's last shard changes and is redone.
    Image.fromarray(np.full((80, 100, 3), 255, np.uint8)).save(tmp_path / "in" / "d1" / "new.png")
    annotate([str(tmp_path / "in")], out, cfg_for_tests(shard_size=2), engine="local", models=fakes)
    again = pd.read_parquet(out / "images")
    assert again["image_path"].is_unique and len(again) == len(first) + 1
    faces = pd.read_parquet(out / "faces")
    assert not faces.duplicated(["image_path", "face_index"]).any()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["state"] == "complete" and len(manifest["history"]) == 3


def test_other_settings_into_same_output_are_refused(tmp_path, fakes):
    make_tree(tmp_path / "in", 2)
    annotate([str(tmp_path / "in")], tmp_path / "out", cfg_for_tests(), engine="local", models=fakes)
    cfg = cfg_for_tests()
    cfg.detector.threshold = 0.7
    with pytest.raises(RunConfigMismatch, match="detector.threshold"):
        annotate([str(tmp_path / "in")], tmp_path / "out", cfg, engine="local", models=fakes)
    annotate([str(tmp_path / "in")], tmp_path / "out", cfg, engine="local", models=fakes, force=True)
    # Batch size and worker counts do not change rows: allowed.
    cfg.model.batch_size = 3
    before = pd.read_parquet(tmp_path / "out" / "images")
    calls = len(FakePredictor.calls)
    rep = annotate([str(tmp_path / "in")], tmp_path / "out", cfg, engine="local", models=fakes)
    assert len(FakePredictor.calls) == calls and rep["files"] == 3  # accepted, and nothing done again
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "out" / "images"), before)


def test_errors_before_any_work(tmp_path, fakes):
    with pytest.raises(FileNotFoundError):
        annotate([str(tmp_path / "missing")], tmp_path / "out", cfg_for_tests(), engine="local", models=fakes)
    make_tree(tmp_path / "in", 1)
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputNotWritable):
        annotate([str(tmp_path / "in")], tmp_path / "file" / "out", cfg_for_tests(), engine="local", models=fakes)


def test_make_sample_without_utkface(tmp_path):
    from click.testing import CliRunner

    from faceproc.cli import main

    res = CliRunner().invoke(main, ["make-sample", str(tmp_path / "s")])
    assert res.exit_code == 0, res.output
    names = sorted(p.name for p in (tmp_path / "s").rglob("*") if p.is_file())
    assert "t1.jpg" in names and "truncated.jpg" in names and "empty.jpg" in names


def test_shard_plan_uses_every_worker_and_reruns_do_only_new_work(tmp_path, fakes, monkeypatch):
    """Issue 12: one flat folder spreads over the workers; another worker count redoes nothing; new photos
    cost about themselves (the Ray executor is stood in for by the in-process one, the plan is the engine's)."""
    import faceproc.engine as E

    planned = []

    def fake_ray(cfg, shards, out, run_id, on_done, plan):
        planned.append([len(s.files) for s in shards])
        return E._run_local(plan.for_workers(1), shards, out, run_id, on_done)

    monkeypatch.setattr(E, "_run_ray", fake_ray)
    folder = tmp_path / "in" / "camera-dump"
    folder.mkdir(parents=True)
    for i in range(60):
        Image.fromarray(np.full((40, 50, 3), 255 if i % 3 else 90, np.uint8)).save(folder / f"{i:03d}.png")
    out = tmp_path / "out"
    monkeypatch.setattr(E, "_ray_workers", lambda cfg: 3)
    annotate([str(tmp_path / "in")], out, cfg_for_tests(), engine="ray", models=fakes)
    sizes = planned[-1]  # 60 files of one folder: every worker busy, shards shrinking towards the end
    assert sum(sizes) == 60 and len(sizes) >= 3 and sizes == sorted(sizes, reverse=True) and sizes[-1] <= 5
    monkeypatch.setattr(E, "_ray_workers", lambda cfg: 5)
    annotate([str(tmp_path / "in")], out, cfg_for_tests(), engine="ray", models=fakes)
    assert len(planned) == 1  # another worker count: nothing to do
    for name in ("000a.png", "015a.png", "999.png"):  # new photos anywhere in the sorted order
        Image.fromarray(np.full((40, 50, 3), 255, np.uint8)).save(folder / name)
    annotate([str(tmp_path / "in")], out, cfg_for_tests(), engine="ray", models=fakes)
    assert sum(planned[-1]) == 3
    history = json.loads((out / "manifest.json").read_text())["history"]
    assert [h["files_run"] for h in history] == [60, 0, 3]
    images = pd.read_parquet(out / "images")
    assert len(images) == 63 and images.image_path.is_unique
    # bounded: the first run's small shards were merged at its end; one small shard for the newcomers
    assert len(list((out / "images").glob("*.parquet"))) == 1 + 1


def test_nightly_runs_are_compacted_and_an_interrupted_compaction_is_finished(tmp_path, fakes, monkeypatch):
    """A growing archive run every night: each night's few photos make a small shard; once 8 small shards
    exist they are merged, so files stay bounded; rows stay exactly once, also when the merge is cut short."""
    import faceproc.runstate as R

    folder = tmp_path / "in"
    folder.mkdir()

    def add(names):
        for name in names:
            Image.fromarray(np.full((40, 50, 3), 255, np.uint8)).save(folder / f"{name}.png")

    out = tmp_path / "out"
    add(f"base{i:02d}" for i in range(40))
    annotate([str(folder)], out, cfg_for_tests(workers=1), engine="local", models=fakes)
    counts = []
    for night in range(9):
        add([f"n{night}a", f"n{night}b"])
        annotate([str(folder)], out, cfg_for_tests(workers=1), engine="local", models=fakes)
        counts.append(len(list((out / "images").glob("*.parquet"))))
        shards = json.loads((out / "manifest.json").read_text())["shards"]  # the manifest follows a merge too
        assert set(shards) == {p.stem for p in (out / "images").glob("*.parquet")}
    assert counts[:6] == [2, 3, 4, 5, 6, 7] and counts[6] == 1  # the 8th small shard triggers the merge
    assert max(counts) <= 8 and counts[-1] == 3
    images = pd.read_parquet(out / "images")
    assert len(images) == 58 and images["image_path"].is_unique
    manifest = json.loads((out / "manifest.json").read_text())
    assert sum(s["files"] for s in manifest["shards"].values()) == 58
    # cut short: the merged shard committed, the old ones not yet removed (both visible)
    done = R.committed_shards(R.Store(out))
    add(["late"])
    annotate([str(folder)], out, cfg_for_tests(workers=1), engine="local", models=fakes)
    done = R.committed_shards(R.Store(out))
    monkeypatch.setattr(R, "remove_shard", lambda store, sid: None)
    merged = R.compact_shards(R.Store(out), done, small=64, target=256)
    assert len(list((out / "images").glob("*.parquet"))) == len(done) + 1  # old and merged side by side
    monkeypatch.undo()
    annotate([str(folder)], out, cfg_for_tests(workers=1), engine="local", models=fakes)  # the next run finishes the merge
    images = pd.read_parquet(out / "images")
    assert len(images) == 59 and images["image_path"].is_unique
    assert len(list((out / "images").glob("*.parquet"))) == len(merged)
