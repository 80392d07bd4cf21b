"""A stop that falls between a shard's marker and the manifest's record of it: the shard is committed (its
marker and rows are on disk, and a rerun keeps them), so the manifest must say so too, not `pending`."""

import json

import pytest

import faceproc.record as record
from faceproc.engine import annotate
from faceproc.runstate import Interrupted
from tests.helpers import FakeModels, cfg_for_tests, make_tree


def test_a_stop_between_marker_and_manifest_still_records_the_shard_as_done(tmp_path, monkeypatch):
    make_tree(tmp_path / "in", n=11)
    real = record.RunRecord.shard_done
    calls = []

    def stop_on_the_second(self, summary):
        calls.append(summary["shard"])
        if len(calls) == 2:  # its marker is written: the executor calls on_done after the commit
            raise KeyboardInterrupt
        return real(self, summary)

    monkeypatch.setattr(record.RunRecord, "shard_done", stop_on_the_second)
    out = tmp_path / "out"
    with pytest.raises(Interrupted, match="2 of"):
        annotate([str(tmp_path / "in")], out, cfg_for_tests(shard_size=3, workers=1), engine="local",
                 models=FakeModels())
    manifest = json.loads((out / "manifest.json").read_text())
    markers = {p.stem for p in (out / "_shards").glob("*.json") if not p.name.startswith(".")}
    assert manifest["state"] == "interrupted" and len(markers) == 2 and markers == set(calls)
    assert {s for s, v in manifest["shards"].items() if v["state"] == "done"} == markers
    assert all(manifest["shards"][s]["faces"] is not None for s in markers)


def test_a_run_that_an_error_ends_is_recorded_failed_with_its_reason_not_running(tmp_path, monkeypatch):
    """A model that cannot load on the workers (or any error that ends the run after it started) leaves the
    manifest `failed` with the error's line and the shards committed before it `done`; the next run, with the
    fault gone, finishes and says `complete`."""
    make_tree(tmp_path / "in", n=11)

    class Unloadable(FakeModels):
        def predictor(self, spec):
            raise OSError("weights unreadable")

    out = tmp_path / "out"
    with pytest.raises(OSError, match="weights unreadable"):
        annotate([str(tmp_path / "in")], out, cfg_for_tests(shard_size=3, workers=1), engine="local",
                 models=Unloadable())
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["state"] == "failed" and manifest["error"] == "OSError: weights unreadable"
    assert manifest["finished"] >= manifest["started"]
    assert {v["state"] for v in manifest["shards"].values()} == {"pending"}
    rep = annotate([str(tmp_path / "in")], out, cfg_for_tests(shard_size=3, workers=1), engine="local",
                   models=FakeModels())
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["state"] == "complete" and "error" not in manifest and not rep["failed_shards"]


def test_a_failure_while_recording_the_failure_does_not_hide_the_first_error(tmp_path, monkeypatch):
    make_tree(tmp_path / "in", n=5)

    class Unloadable(FakeModels):
        def predictor(self, spec):
            raise OSError("weights unreadable")

    def broken(self, committed, error=None):
        raise OSError("the store went away")

    monkeypatch.setattr(record.RunRecord, "interrupted", broken)
    with pytest.raises(OSError, match="weights unreadable"):
        annotate([str(tmp_path / "in")], tmp_path / "out", cfg_for_tests(workers=1), engine="local",
                 models=Unloadable())


def _run(tmp_path, out, models=None, **run):
    return annotate([str(tmp_path / "in")], out, cfg_for_tests(**run), engine="local", models=models or FakeModels())


def _markers(out):
    return {p.stem for p in (out / "_shards").glob("*.json") if not p.name.startswith(".")}


def test_a_stop_inside_the_final_compaction_leaves_every_row_once_and_the_manifest_interrupted(tmp_path,
                                                                                               monkeypatch):
    """The stop falls after the merged shard committed and one of the shards it replaces was removed: the
    others are removed at the stop too (no photo's rows twice for a reader of faces/ and images/), and the
    manifest lists exactly the committed shards, `interrupted`."""
    import pandas as pd

    import faceproc.runstate as R

    make_tree(tmp_path / "in", n=60)
    real, removed = R.remove_shard, []

    def stop_after_the_first_removal(store, shard_id):
        real(store, shard_id)
        if not removed:
            removed.append(shard_id)
            raise KeyboardInterrupt

    monkeypatch.setattr(R, "remove_shard", stop_after_the_first_removal)
    out = tmp_path / "out"
    with pytest.raises(Interrupted):
        _run(tmp_path, out, workers=2, compact_below=64)
    assert removed  # the stop did fall inside the compaction
    images = pd.read_parquet(out / "images")
    assert len(images) == 61 and images["image_path"].is_unique
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["state"] == "interrupted"
    assert {s for s, v in manifest["shards"].items() if v["state"] == "done"} == _markers(out)
    _run(tmp_path, out, workers=2, compact_below=64)
    assert json.loads((out / "manifest.json").read_text())["state"] == "complete"
    assert pd.read_parquet(out / "images")["image_path"].is_unique


def test_a_stop_while_the_previews_are_drawn_is_recorded_interrupted(tmp_path, monkeypatch):
    import faceproc.preview as P

    make_tree(tmp_path / "in", n=5)

    def stop(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(P, "write_previews", stop)
    out = tmp_path / "out"
    with pytest.raises(Interrupted, match="again to write the report"):  # every shard is done
        _run(tmp_path, out, workers=1, previews=2)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["state"] == "interrupted" and not (out / "report.html").exists()
    assert {v["state"] for v in manifest["shards"].values()} == {"done"}


def test_an_error_while_the_report_is_written_is_recorded_failed_not_complete(tmp_path, monkeypatch):
    import faceproc.report as rp

    make_tree(tmp_path / "in", n=5)

    def broken(*a, **k):
        raise OSError("the report's disk went away")

    monkeypatch.setattr(rp, "build_report", broken)
    out = tmp_path / "out"
    with pytest.raises(OSError, match="went away"):
        _run(tmp_path, out, workers=1)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["state"] == "failed" and manifest["error"] == "OSError: the report's disk went away"
    monkeypatch.undo()
    _run(tmp_path, out, workers=1)
    assert json.loads((out / "manifest.json").read_text())["state"] == "complete" and (out / "report.html").exists()


def test_recording_a_failure_never_removes_committed_shards_when_the_store_is_failing(tmp_path, monkeypatch):
    """The error came from a store that now answers every stat with an error (EIO, a stale NFS handle): the
    shards the run committed must not be taken for broken and removed while the failure is recorded."""
    import faceproc.report as rp
    from faceproc.storage import Store

    make_tree(tmp_path / "in", n=5)

    def store_fails(*a, **k):
        monkeypatch.setattr(Store, "size", lambda self, rel: None)  # every file now looks missing
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(rp, "build_report", store_fails)
    out = tmp_path / "out"
    with pytest.raises(OSError, match="Input/output error"):
        _run(tmp_path, out, workers=1, shard_size=2)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["state"] == "failed" and len(_markers(out)) == 3
    assert {s for s, v in manifest["shards"].items() if v["state"] == "done"} == _markers(out)
