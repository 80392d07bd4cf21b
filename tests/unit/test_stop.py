"""Stop means stop (issue 19, item 8), in-process engine: Ctrl-C or SIGTERM ends `faceproc annotate` within
seconds with exit 130, finished shards committed and intact, the shard in flight dropped, and the same
command again finishes the rest with the rows of an uninterrupted run.

Through the real command line in a child process, with the stand-in detector and a slow stand-in model
(tests.helpers, FACEPROC_FAKE_DELAY seconds per model call). SIGINT is sent to a child that started with
SIGINT ignored, as a shell starts `faceproc annotate ... &`: before the fix that run ignored it and
finished `complete` with exit 0.
"""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import REPO
from tests.helpers import make_tree

FAKE_CLI = r"""
import sys
from tests.helpers import install_fakes
install_fakes()
from faceproc.cli import main
main(sys.argv[1:], prog_name="faceproc")
"""


def cli(args, delay=0.0, ignore_sigint=False, **kw):
    env = {**os.environ, "PYTHONPATH": str(REPO), "FACEPROC_FAKE_DELAY": str(delay)}
    pre = (lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if ignore_sigint else None
    return subprocess.Popen([sys.executable, "-c", FAKE_CLI, *map(str, args)], cwd=REPO, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=pre, **kw)


def rows(out):
    faces = pd.read_parquet(Path(out) / "faces").drop(columns=["run_id"])
    images = pd.read_parquet(Path(out) / "images").drop(columns=["run_id", "elapsed_ms", "shard"])
    return (faces.sort_values(["image_path", "face_index"]).reset_index(drop=True),
            images.sort_values("image_path").reset_index(drop=True))


def committed(out) -> dict[str, dict]:
    """shard id -> {table: sha256} of every committed shard."""
    found = {}
    for marker in sorted((Path(out) / "_shards").glob("*.json")):
        found[marker.stem] = {t: hashlib.sha256((Path(out) / t / f"{marker.stem}.parquet").read_bytes()).hexdigest()
                              for t in ("faces", "images")}
    return found


def wait_for_markers(proc, out, n, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if len(list((Path(out) / "_shards").glob("*.json"))) >= n:
            return
        if proc.poll() is not None:
            pytest.fail(f"the run ended (exit {proc.returncode}) before {n} shards were committed: "
                        f"{proc.stderr.read()[-2000:]}")
        time.sleep(0.05)
    proc.kill()
    pytest.fail(f"no {n} committed shards within {timeout} s")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("stop")
    make_tree(root / "in", 40)  # 41 files in 3 folders
    ref = root / "ref"
    p = cli(["annotate", root / "in", "-o", ref, "--engine", "local", "--random-init"])
    _, err = p.communicate(timeout=300)
    assert p.returncode == 0, err[-3000:]
    return root / "in", ref


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_local_engine_stops_within_seconds_and_a_rerun_finishes(folder, tmp_path, sig):
    inp, ref = folder
    out = tmp_path / "out"
    p = cli(["annotate", inp, "-o", out, "--engine", "local", "--random-init"], delay=0.5,
            ignore_sigint=sig == signal.SIGINT)
    wait_for_markers(p, out, 2)
    t = time.time()
    p.send_signal(sig)
    _, err = p.communicate(timeout=60)
    took = time.time() - t
    assert p.returncode == 130, err[-3000:]
    assert took < 5, f"stopping took {took:.1f} s"
    assert "run the same command again" in err and "Traceback" not in err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["state"] == "interrupted"
    # the plan had shards to spare: progress is kept in several shards, not one for the whole folder
    assert len(manifest["shards"]) >= 4
    kept = committed(out)
    assert 2 <= len(kept) < len(manifest["shards"])
    assert {s for s, v in manifest["shards"].items() if v["state"] == "done"} == set(kept)
    for table in ("faces", "images"):  # nothing of the shard in flight is visible
        assert {f.stem for f in (out / table).glob("*.parquet")} <= set(kept)
    assert not (out / "_staging").exists() and not (out / ".faceproc.lock").exists()
    assert not list(out.rglob("*.tmp"))
    n_kept = sum(len(json.loads((out / "_shards" / f"{s}.json").read_text())["paths"]) for s in kept)

    p = cli(["annotate", inp, "-o", out, "--engine", "local", "--random-init"])
    _, err = p.communicate(timeout=300)
    assert p.returncode == 0, err[-3000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["state"] == "complete"
    assert manifest["history"][-1]["files_run"] == 41 - n_kept  # only the rest was done
    after = committed(out)
    assert all(after[s] == h for s, h in kept.items())  # the committed shards were kept as they were
    ref_faces, ref_images = rows(ref)
    faces, images = rows(out)
    pd.testing.assert_frame_equal(images, ref_images)
    pd.testing.assert_frame_equal(faces, ref_faces)


STOP_BEFORE_WORK = r"""
import os, signal, sys
import tests.helpers as H
from tests.helpers import cfg_for_tests, install_fakes
install_fakes()
from faceproc.engine import Interrupted, annotate

real = H.FakeModels.resolve
def slow_resolve(self, cfg):  # a signal while the models are being resolved (RunPlan.resolve), before any shard
    os.kill(os.getpid(), signal.SIGTERM)
    return real(self, cfg)
H.FakeModels.resolve = slow_resolve
before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
try:
    annotate([sys.argv[1]], sys.argv[2], cfg_for_tests(), engine="local")
except Interrupted as e:
    print("INTERRUPTED", e)
    print("RESTORED", (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before)
    sys.exit(130)
"""


def test_a_stop_before_the_shards_begin_is_a_clean_stop_too(tmp_path):
    """Before the fix only the shard loop listened for SIGTERM: a stop during start-up (models, Ray) was a
    traceback, or nothing at all. Now it is the same one line and exit 130, and the handlers are put back."""
    make_tree(tmp_path / "in")
    r = subprocess.run([sys.executable, "-c", STOP_BEFORE_WORK, str(tmp_path / "in"), str(tmp_path / "out")],
                       cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 130, r.stdout + r.stderr[-3000:]
    assert "INTERRUPTED stopped" in r.stdout and "RESTORED True" in r.stdout
    assert not (tmp_path / "out" / ".faceproc.lock").exists()


SECOND_SIGNAL = r"""
import os, signal, time
from faceproc.signals import Stop, stop_on_signals
with stop_on_signals():
    try:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(10)
    except Stop:
        print("CLEANING UP", flush=True)
        os.kill(os.getpid(), signal.SIGTERM)  # impatient: a second signal during the clean-up
        time.sleep(10)
print("NOT REACHED")
"""


def test_a_second_signal_during_the_clean_up_ends_the_process_at_once():
    t = time.time()
    r = subprocess.run([sys.executable, "-c", SECOND_SIGNAL], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 130 and "CLEANING UP" in r.stdout and "NOT REACHED" not in r.stdout, r.stderr
    assert "second signal" in r.stderr and time.time() - t < 8
