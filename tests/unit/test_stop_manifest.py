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
