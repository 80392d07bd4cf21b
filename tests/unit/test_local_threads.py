"""The in-process engine runs its shards on one thread per worker (executors/local.py): the threads really
work at once, their rows equal one thread's, a stop or a full disk ends every thread, and a run that
compacts leaves no staging folder behind."""

import threading

import pandas as pd
import pytest

from faceproc.engine import annotate
from tests.helpers import FakeModels, FakePredictor, cfg_for_tests, make_tree


def rows(out):
    faces = pd.read_parquet(out / "faces").drop(columns=["run_id"])
    images = pd.read_parquet(out / "images").drop(columns=["run_id", "elapsed_ms", "shard"])
    faces, images = (t.astype({c: str for c in t.columns if t[c].dtype == "category"}) for t in (faces, images))
    return (faces.sort_values(["image_path", "face_index"]).reset_index(drop=True),
            images.sort_values("image_path").reset_index(drop=True))


class Meeting(FakePredictor):
    """Each worker's first model call on real crops (not the warm-up's zeros) waits for the other's: with one
    thread at a time it times out."""

    barrier = threading.Barrier(2, timeout=20)
    threads: set = set()

    def __init__(self, spec=None):
        super().__init__(spec)
        self.met = False

    def predict(self, crops):
        Meeting.threads.add(threading.current_thread().name)
        if not self.met and crops.any():
            self.met = True
            Meeting.barrier.wait()
        return super().predict(crops)


def test_two_workers_run_at_once_and_write_the_rows_of_one(tmp_path):
    make_tree(tmp_path / "in", 24)
    one = annotate([str(tmp_path / "in")], tmp_path / "one", cfg_for_tests(workers=1), engine="local",
                   models=FakeModels())
    assert not one["failed_shards"]
    two = annotate([str(tmp_path / "in")], tmp_path / "two", cfg_for_tests(workers=2), engine="local",
                   models=FakeModels(Meeting))
    assert not two["failed_shards"], two["failed_shards"]  # a broken barrier would fail a shard
    assert len(Meeting.threads) == 2
    for a, b in zip(rows(tmp_path / "one"), rows(tmp_path / "two")):
        pd.testing.assert_frame_equal(a, b)


class WarmUps(FakePredictor):
    """Times the warm-up calls (zeros): the first lasts a while; the others wait for each other, so they must be
    allowed to overlap."""

    lock = threading.Lock()
    spans: list = []  # (first?, start, end)
    meet = threading.Barrier(2, timeout=10)

    def predict(self, crops):
        import time

        if not crops.any():
            with WarmUps.lock:
                first = not WarmUps.spans and not getattr(WarmUps, "started", False)
                WarmUps.started = True
            t0 = time.monotonic()
            if first:
                time.sleep(0.3)
            else:
                WarmUps.meet.wait()
            with WarmUps.lock:
                WarmUps.spans.append((first, t0, time.monotonic()))
        return super().predict(crops)


def test_the_first_warm_up_goes_alone_and_the_others_together(tmp_path):
    """The runtimes' first calls deadlock when two threads make them at once (OpenVINO's binding: executors/
    local.py), so one worker warms up alone first; after it the others warm up at once, not one by one (a
    machine with many cores would otherwise wait for them in turn)."""
    WarmUps.spans.clear()
    WarmUps.started = False
    WarmUps.meet.reset()
    make_tree(tmp_path / "in", 24)
    rep = annotate([str(tmp_path / "in")], tmp_path / "out", cfg_for_tests(workers=3, shard_size=2), engine="local",
                   models=FakeModels(WarmUps))
    assert not rep["failed_shards"]
    firsts = [s for s in WarmUps.spans if s[0]]
    others = [s for s in WarmUps.spans if not s[0]]
    assert len(firsts) == 1 and len(others) == 2
    assert all(start >= firsts[0][2] for _, start, _ in others)  # none began before the first had finished


def test_a_failing_shard_is_reported_and_the_others_commit(tmp_path):
    import numpy as np
    from PIL import Image

    make_tree(tmp_path / "in", 12)
    img = np.full((80, 100, 3), 220, np.uint8)  # a photo whose face breaks the model, whichever thread has it
    img[0, 0] = 255
    Image.fromarray(img).save(tmp_path / "in" / "d1" / "poison.png")

    class OneBad(FakePredictor):
        def predict(self, crops):
            if len(crops) and (crops.reshape(len(crops), -1).mean(1) > 180).any():
                raise RuntimeError("model broke")
            return super().predict(crops)

    out = tmp_path / "out"
    rep = annotate([str(tmp_path / "in")], out, cfg_for_tests(workers=2, shard_size=2, compact_below=0),
                   engine="local", models=FakeModels(OneBad))
    # a failing model call costs its photo a `failed` row, not the shard; so every shard commits
    images = pd.read_parquet(out / "images")
    assert len(images) == 14 and images.image_path.is_unique
    assert images.loc[images.status == "failed", "image_path"].str.endswith("poison.png").tolist() == [True]
    assert (images.status == "ok").sum() == 6
    assert not rep["failed_shards"]


def test_a_compacting_run_leaves_no_staging_folder(tmp_path):
    import json

    make_tree(tmp_path / "in", 60)
    out = tmp_path / "out"
    annotate([str(tmp_path / "in")], out, cfg_for_tests(workers=2, compact_below=64), engine="local",
             models=FakeModels())
    assert json.loads((out / "manifest.json").read_text())["history"][-1]["shards_run"] >= 8
    assert len(list((out / "_shards").glob("*.json"))) == 1  # the small shards were merged
    assert not (out / "_staging").exists()


def test_a_full_disk_on_one_thread_stops_every_thread(tmp_path, monkeypatch):
    import errno

    import faceproc.runstate as R
    from faceproc.engine import DiskFull

    make_tree(tmp_path / "in", 24)
    real = R._commit
    calls = [0]

    def full(store, shard_id, marker):
        calls[0] += 1
        if calls[0] == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(store, shard_id, marker)

    monkeypatch.setattr(R, "_commit", full)
    out = tmp_path / "out"
    with pytest.raises(DiskFull):
        annotate([str(tmp_path / "in")], out, cfg_for_tests(workers=2, shard_size=1), engine="local",
                 models=FakeModels())
    assert calls[0] < 25  # the threads stopped taking shards
    assert not [t for t in threading.enumerate() if t.name.startswith("faceproc-worker")]


def test_a_model_that_cannot_load_stops_the_run_with_its_error(tmp_path):
    class Unloadable(FakePredictor):
        def __init__(self, spec=None):
            raise OSError("weights unreadable")

    make_tree(tmp_path / "in", 12)
    with pytest.raises(OSError, match="weights unreadable"):
        annotate([str(tmp_path / "in")], tmp_path / "out", cfg_for_tests(workers=2), engine="local",
                 models=FakeModels(Unloadable))
    assert not list((tmp_path / "out" / "_shards").glob("*.json"))
    assert not [t for t in threading.enumerate() if t.name.startswith("faceproc-worker")]


def test_worker_threads_only_where_the_model_runs_on_openvino(monkeypatch):
    """The real factory's choice: the shipped model's OpenVINO copy -> threads; Keras (asked for, or a model
    without a copy, or a GPU in view) -> one worker."""
    from faceproc.agegender.spec import ModelSpec
    from faceproc.config import Config
    from faceproc.plan import ModelFactory

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    cfg = Config()
    assert ModelFactory().threads_pay(ModelSpec.resolve(cfg.model))
    cfg.model.runtime = "keras"
    assert not ModelFactory().threads_pay(ModelSpec.resolve(cfg.model))
    assert not ModelFactory().threads_pay(ModelSpec.resolve(cfg_for_tests().model))  # random init: Keras
    cfg.model.runtime = "auto"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    assert not ModelFactory().threads_pay(ModelSpec.resolve(cfg.model))


def _child(script: str, inputs, out):
    """`script` run in a child process with the input and output folders as its arguments: a stop signal or a
    thread left behind must not touch the test runner."""
    import os
    import subprocess
    import sys

    from tests.conftest import REPO

    return subprocess.run([sys.executable, "-c", script, str(inputs), str(out)], cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=120)


STUCK_RUN = r"""
import os, signal, sys, time
import faceproc.executors.local as L
from tests.helpers import FakeDetector, FakeModels, cfg_for_tests
from faceproc.engine import Interrupted, annotate

L.STOP_WAIT = 2.0


class Stuck(FakeDetector):
    def detect(self, rgb, scale=1.0):
        if rgb.shape[1] == 101:  # the one long file: the stop comes while a worker is inside it for minutes
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(600)
        return super().detect(rgb, scale)


class Models(FakeModels):
    def detector(self, spec):
        return Stuck()


t0 = time.monotonic()
try:
    annotate([sys.argv[1]], sys.argv[2], cfg_for_tests(workers=2, shard_size=1), engine="local", models=Models())
except Interrupted as e:
    print("INTERRUPTED after", round(time.monotonic() - t0), "s")
    sys.exit(130)
"""


def test_a_stop_does_not_wait_for_a_worker_inside_one_long_file(tmp_path):
    """Ctrl-C or SIGTERM while a worker hashes or decodes one huge file: the run stops after STOP_WAIT, keeps
    what was committed, and a rerun finishes (in a child process: the stuck thread dies with it)."""
    import json

    import numpy as np
    from PIL import Image

    make_tree(tmp_path / "in", 6)
    img = np.full((80, 101, 3), 100, np.uint8)
    img[0, 0] = 255
    Image.fromarray(img).save(tmp_path / "in" / "d0" / "long.png")
    out = tmp_path / "out"
    r = _child(STUCK_RUN, tmp_path / "in", out)
    assert r.returncode == 130, r.stdout + r.stderr[-3000:]
    assert "left behind, its shard is not committed" in (out / "faceproc.log").read_text()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["state"] == "interrupted"
    annotate([str(tmp_path / "in")], out, cfg_for_tests(workers=2, shard_size=1), engine="local", models=FakeModels())
    images = pd.read_parquet(out / "images")
    assert len(images) == 8 and images["image_path"].is_unique


SLOW_COMMIT_RUN = r"""
import os, signal, sys, time
import faceproc.executors.local as L
import faceproc.runstate as R
from tests.helpers import FakeModels, cfg_for_tests
from faceproc.engine import Interrupted, annotate

L.STOP_WAIT = 1.0
slow = []


def slow_commit(store, shard_id):  # between the shard's rows moved in and its marker
    if not slow:
        slow.append(shard_id)
        print("SLOW", shard_id, flush=True)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(3 * L.STOP_WAIT)  # a commit to a slow store outlasts STOP_WAIT


R._tables_in_place = slow_commit
try:
    annotate([sys.argv[1]], sys.argv[2], cfg_for_tests(workers=2, shard_size=1), engine="local", models=FakeModels())
except Interrupted:
    sys.exit(130)
"""


def test_a_stop_waits_for_a_commit_under_way_however_long(tmp_path):
    """A stop that falls while a worker commits a shard: the run waits for that commit to end (past
    STOP_WAIT), so the shard is kept whole, and the manifest and the files agree."""
    import json

    make_tree(tmp_path / "in", 6)
    out = tmp_path / "out"
    r = _child(SLOW_COMMIT_RUN, tmp_path / "in", out)
    assert r.returncode == 130, r.stdout + r.stderr[-3000:]
    slow = r.stdout.split("SLOW ")[1].split()[0]
    markers = {p.stem for p in (out / "_shards").glob("*.json")}
    assert slow in markers and (out / "images" / f"{slow}.parquet").exists()
    assert {p.stem for p in (out / "images").glob("*.parquet")} == markers
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["state"] == "interrupted" and manifest["shards"][slow]["state"] == "done"


LATE_WORKER_RUN = r"""
import json, os, signal, sys, time
import faceproc.executors.local as L
from tests.helpers import FakeModels, FakePredictor, cfg_for_tests
from faceproc.engine import Interrupted, annotate

L.STOP_WAIT = 1.0


class Late(FakePredictor):
    first = [True]

    def predict(self, crops):
        if crops.any() and Late.first and Late.first.pop():  # the model call after the shard's files were read
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(3 * L.STOP_WAIT)  # the stopping run gives up on this worker meanwhile
        return super().predict(crops)


try:
    annotate([sys.argv[1]], sys.argv[2], cfg_for_tests(workers=1, shard_size=100), engine="local",
             models=FakeModels(Late))
except Interrupted:
    time.sleep(4 * L.STOP_WAIT)  # the process lives on (faceproc as a library): the late worker wakes up
    sys.exit(130)
"""


def test_a_worker_left_behind_never_commits_after_the_stop(tmp_path):
    import json

    make_tree(tmp_path / "in", 6)
    out = tmp_path / "out"
    r = _child(LATE_WORKER_RUN, tmp_path / "in", out)
    assert r.returncode == 130, r.stdout + r.stderr[-3000:]
    assert not list((out / "_shards").glob("*.json")) and not list((out / "images").glob("*.parquet"))
    assert json.loads((out / "manifest.json").read_text())["state"] == "interrupted"
