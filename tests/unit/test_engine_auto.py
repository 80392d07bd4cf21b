"""`--engine auto` (issue 23.4): small runs in this process, the rest on Ray; and the summary's time is the
wall time from the start of the run to its report."""

import json
import time

import pytest
from click.testing import CliRunner

import faceproc.engine
import faceproc.executors.choice as choice
from faceproc.engine import annotate
from faceproc.executors.choice import auto_local_files, choose_engine
from tests.helpers import FakeModels, cfg_for_tests, make_tree, quality_off_config


@pytest.mark.parametrize("engine, n, cpus, cluster, chosen", [
    ("auto", 5, 16, False, "local"),  # a few photos: no Ray start-up
    ("auto", 62, 16, False, "local"),  # 1000 // 16
    ("auto", 63, 16, False, "ray"),
    ("auto", 48, 64, False, "local"),  # the floor on many CPUs
    ("auto", 49, 64, False, "ray"),
    ("auto", 500, 2, False, "local"),  # 2 CPUs: Ray overtakes after ~500 files (measured)
    ("auto", 501, 2, False, "ray"),
    ("auto", 100_000, 1, False, "local"),  # one CPU: one actor would only add start-up
    ("auto", 5, 16, True, "ray"),  # a cluster named: the user asked for it
    ("auto", 0, 2, False, "local"),  # a resumed run with nothing left
    ("ray", 5, 16, False, "ray"),  # asked for: as asked
    ("local", 100_000, 16, True, "local"),
])
def test_choice_rule(engine, n, cpus, cluster, chosen):
    assert choose_engine(engine, n, cpus, cluster)[0] == chosen


def test_the_in_process_limit_falls_with_the_cpus_to_its_floor():
    limits = [auto_local_files(c) for c in (1, 2, 4, 8, 16, 32, 64)]
    assert limits == [1000, 500, 250, 125, 62, 48, 48]


def test_unknown_engine_is_refused_before_anything_is_written(tmp_path):
    make_tree(tmp_path / "in", n=3)
    with pytest.raises(ValueError, match="engine must be one of auto, ray, local"):
        annotate([str(tmp_path / "in")], tmp_path / "out", cfg_for_tests(), engine="spark", models=FakeModels())
    assert not (tmp_path / "out").exists()


@pytest.fixture
def ray_stub(monkeypatch):
    """The Ray executor replaced by one that records its call and runs the shards here (no cluster)."""
    from faceproc.executors.local import run_local

    calls = []

    def run_ray(cfg, shards, out, run_id, on_done, plan):
        calls.append(len(shards))
        return run_local(plan.for_workers(1), shards, out, run_id, on_done)

    monkeypatch.setattr(faceproc.engine, "_run_ray", run_ray)
    monkeypatch.setattr(faceproc.engine, "_ray_workers", lambda cfg: 2)
    monkeypatch.setattr(choice, "local_cpus", lambda: 8)
    monkeypatch.setattr(faceproc.engine, "local_cpus", lambda: 8)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    return calls


def test_auto_runs_small_work_here_and_the_rest_on_ray(tmp_path, ray_stub, monkeypatch):
    make_tree(tmp_path / "in", n=7)  # 8 files
    annotate([str(tmp_path / "in")], tmp_path / "small", cfg_for_tests(), models=FakeModels())  # the default
    manifest = json.loads((tmp_path / "small" / "manifest.json").read_text())
    assert manifest["engine"] == "local" and manifest["history"][-1]["engine"] == "local" and ray_stub == []

    monkeypatch.setattr(choice, "AUTO_LOCAL_FILES", 5)  # the same 8 files are now "much"
    monkeypatch.setattr(choice, "AUTO_LOCAL_CPU_FILES", 5)
    annotate([str(tmp_path / "in")], tmp_path / "big", cfg_for_tests(), models=FakeModels())
    assert json.loads((tmp_path / "big" / "manifest.json").read_text())["engine"] == "ray" and ray_stub

    monkeypatch.setattr(choice, "AUTO_LOCAL_FILES", 48)
    monkeypatch.setattr(choice, "AUTO_LOCAL_CPU_FILES", 1000)
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")  # named (the stub never connects)
    annotate([str(tmp_path / "in")], tmp_path / "named", cfg_for_tests(), models=FakeModels())
    assert json.loads((tmp_path / "named" / "manifest.json").read_text())["engine"] == "ray"


def test_cli_default_is_auto(tmp_path, fakes, ray_stub):
    from faceproc.cli import main

    make_tree(tmp_path / "in", n=5)
    r = CliRunner().invoke(main, ["annotate", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--random-init",
                                  "--config", quality_off_config(tmp_path)])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["engine"] == "local"
    assert ray_stub == []


class SlowToResolve(FakeModels):
    """Model resolution that takes a second, as finding and checking real model files does."""

    def resolve(self, cfg):
        time.sleep(1.0)
        return super().resolve(cfg)


def test_summary_time_is_the_wall_time_from_start_to_report(tmp_path, monkeypatch):
    import faceproc.report

    real = faceproc.report.build_report
    report_s = []

    def timed_report(*a, **kw):
        t = time.time()
        try:
            return real(*a, **kw)
        finally:
            report_s.append(time.time() - t)

    monkeypatch.setattr(faceproc.report, "build_report", timed_report)
    import faceproc.preview

    real_previews = faceproc.preview.write_previews

    def slow_previews(*a, **kw):  # drawing previews is part of the run: it must count
        time.sleep(0.6)
        return real_previews(*a, **kw)

    monkeypatch.setattr(faceproc.preview, "write_previews", slow_previews)
    make_tree(tmp_path / "in", n=6)
    cfg = cfg_for_tests(previews=2)
    t = time.time()
    rep = annotate([str(tmp_path / "in")], tmp_path / "out", cfg, engine="local", models=SlowToResolve())
    wall = time.time() - t
    seconds = rep["throughput"]["last_run_seconds"]
    assert seconds >= 1.6  # the model resolution at the start counts, and so do the previews
    assert wall - report_s[0] - 0.3 <= seconds <= wall  # everything but the report itself (and ~0 s around it)
    assert rep["throughput"]["files_per_s"] == pytest.approx(rep["throughput"]["last_run_files"] / seconds)
