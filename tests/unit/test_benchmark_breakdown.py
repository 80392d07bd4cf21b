"""The benchmark's time breakdown (benchmarks/breakdown.py, issue 22.5) on a small in-process run with slow
stand-in models: the phases add up to the wall time, each stage's seconds land where they were spent, and
the wrapped library functions are themselves again afterwards. The memory check's verdict (memory.py)."""

import sys
import time

import pytest

from faceproc.engine import annotate
from tests.conftest import REPO
from tests.helpers import cfg_for_tests, make_tree
from tests.unit.test_stage_times import DETECT_S, SlowModels

sys.path.insert(0, str(REPO / "benchmarks"))
import breakdown  # noqa: E402
import memory  # noqa: E402


def test_phases_add_up_and_stages_land_where_the_time_went(tmp_path, monkeypatch):
    import faceproc.engine as engine
    import faceproc.executors as executors
    import faceproc.report as report

    def later(fn, seconds):
        def slow(*a, **k):
            time.sleep(seconds)
            return fn(*a, **k)
        return slow

    # Known gaps: before each shard (idle worker time, after the first one) and after the last commit (report: other)
    monkeypatch.setattr(executors, "process_shard", later(executors.process_shard, 0.2))
    monkeypatch.setattr(engine, "compact_when_due", later(engine.compact_when_due, 0.3))
    before = (engine.discover, engine._run_local, report.build_report, engine.RunPlan.resolve)
    make_tree(tmp_path / "in", n=8)
    with breakdown.Breakdown() as b:
        time.sleep(0.2)  # start-up before the run's first file
        annotate([str(tmp_path / "in")], tmp_path / "out", cfg_for_tests(workers=1, shard_size=3), engine="local",
                 progress=False, models=SlowModels())
    r = b.result()
    assert (engine.discover, engine._run_local, report.build_report, engine.RunPlan.resolve) == before
    assert r["shards"] == 3 and r["workers"] == 1
    assert r["startup_s"] + r["work_s"] + r["report_s"] == pytest.approx(r["wall_s"], abs=0.05)
    assert sum(r["startup"].values()) == pytest.approx(r["startup_s"], abs=0.05)
    assert r["startup"]["other"] >= 0.2 - 0.05  # the sleep: after the call began, before discovery
    assert [len(b.spans[k]) for k in ("discovery", "resume", "models", "report", "executor")] == [1] * 5
    assert r["report"]["report"] > 0
    assert sum(r["report"].values()) == pytest.approx(r["report_s"], abs=0.05)
    per = r["work_per_worker"]
    assert 8 * DETECT_S <= per["detect"] < 8 * DETECT_S + 0.5  # 8 decodable images, 3 shards
    assert per["detect"] > per["decode"] and per["detect"] > per["agegender"]
    assert sum(per.values()) == pytest.approx(r["work_s"], abs=0.05)  # one worker: stages + idle = work
    assert 0.4 <= per["idle"] < 0.6  # waits before the 2nd and 3rd shards (the 1st one's is start-up)
    assert 0.3 <= r["report"]["other"] < 0.5
    text = breakdown.describe(r, "t")
    assert len(text.splitlines()) == 4 and "detection" in text and "age/gender" in text


def test_memory_verdict():
    small = {"memory": {"driver_mb": 300.0, "worker_max_mb": 600.0, "all_processes_mb": 2000.0}}
    flat = {"memory": {"driver_mb": 330.0, "worker_max_mb": 610.0, "all_processes_mb": 2100.0}}
    grows = {"memory": {"driver_mb": 400.0, "worker_max_mb": 610.0, "all_processes_mb": 2100.0}}
    assert memory.growth(small, flat)["flat"] is True and memory.growth(small, flat)["driver_mb"] == 0.1
    assert memory.growth(small, grows)["flat"] is False
    assert "NOT flat" in memory.describe_growth(1000, 5000, memory.growth(small, grows))
