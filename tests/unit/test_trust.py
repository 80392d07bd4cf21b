"""Hostile but ordinary situations (issue 10): no row lost, clear refusals, repairable outputs."""

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from faceproc.config import Config, ConfigError
from faceproc.engine import LOCK, OutputLocked, RunConfigMismatch, annotate
from faceproc.schema import source_path

from tests.helpers import cfg_for_tests, make_tree


def _img(path, face=True):
    img = np.full((80, 100, 3), 100, np.uint8)
    if face:
        img[0, 0] = 255
    Image.fromarray(img).save(path, format="PNG")


def test_non_utf8_file_name_gets_its_row_and_round_trips(tmp_path, fakes):  # noqa: F811
    d = tmp_path / "in"
    d.mkdir()
    _img(d / "a.png")
    raw = os.path.join(os.fsencode(d), b"caf\xe9.png")
    _img(raw)
    annotate([str(d)], tmp_path / "out", cfg_for_tests(), engine="local", models=fakes)
    images = pd.read_parquet(tmp_path / "out" / "images")
    assert len(images) == 2 and set(images.status) == {"ok"}
    odd = images[images.image_path.str.contains("caf")].iloc[0]
    assert odd.image_path.endswith("caf\\xe9.png") and odd.image_path_bytes == raw
    with open(source_path(odd.image_path, odd.image_path_bytes), "rb") as fh:  # a reader opens the file from the row
        assert fh.read(4) == b"\x89PNG"
    faces = pd.read_parquet(tmp_path / "out" / "faces")
    assert len(faces) == 2 and faces.image_path_bytes.notna().sum() == 1


def test_smaller_limit_never_drops_finished_rows(tmp_path, fakes):  # noqa: F811
    make_tree(tmp_path / "in")
    annotate([str(tmp_path / "in")], tmp_path / "out", cfg_for_tests(shard_size=2), engine="local", models=fakes)
    before = pd.read_parquet(tmp_path / "out" / "images")
    with pytest.raises(RunConfigMismatch, match="do not cover"):
        annotate([str(tmp_path / "in")], tmp_path / "out", cfg_for_tests(shard_size=2), engine="local", models=fakes, limit=1)
    assert len(pd.read_parquet(tmp_path / "out" / "images")) == len(before) == 8
    # the same with a folder left out of the inputs (--force, about settings, prunes nothing); --prune is the
    # way to drop them on purpose
    for force in (False, True):
        with pytest.raises(RunConfigMismatch):
            annotate([str(tmp_path / "in" / "d1")], tmp_path / "out", cfg_for_tests(shard_size=2), engine="local",
                     models=fakes, force=force)
    annotate([str(tmp_path / "in" / "d1")], tmp_path / "out", cfg_for_tests(shard_size=2), engine="local",
             models=fakes, prune=True)
    assert len(pd.read_parquet(tmp_path / "out" / "images")) == 2


def test_config_is_validated_whole_before_any_work(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("detector: {scrfd: {sizes: 640}, threshold: 2}\nmodel: {batch_size: -1}\ndecode: {max_pixels: -1}\nrun: {shards: 3}\n")
    with pytest.raises(ConfigError) as e:
        Config.load(bad)
    msg = str(e.value)
    for needle in ("detector.scrfd.sizes", "valid list", "detector.threshold", "model.batch_size", "decode.max_pixels",
                   "unknown key run.shards"):
        assert needle in msg
    broken = tmp_path / "broken.yaml"
    broken.write_text("detector: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        Config.load(broken)
    assert Config.load(None, {"model.batch_size": "32"}).model.batch_size == 32  # CLI strings are coerced
    with pytest.raises(ConfigError, match="model.batch_size"):
        Config.load(None, {"model.batch_size": -4})  # 0 is auto


def test_config_error_is_one_clear_cli_message(tmp_path):
    from click.testing import CliRunner

    from faceproc.cli import main

    bad = tmp_path / "bad.yaml"
    bad.write_text("detector: {scrfd: {sizes: 640}}\n")
    (tmp_path / "in").mkdir()
    r = CliRunner().invoke(main, ["annotate", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--config", str(bad)])
    assert r.exit_code == 1 and "detector.scrfd.sizes" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "out").exists()  # nothing written before the config is known to be good


def test_second_run_into_the_same_output_is_refused(tmp_path, fakes):  # noqa: F811
    make_tree(tmp_path / "in")
    out = tmp_path / "out"
    out.mkdir()
    # pid 1 is alive everywhere; a dead pid shows the lock is kept because the host is another one
    (out / LOCK).write_text(json.dumps({"host": "elsewhere", "pid": 2**22 + 12345, "started": 0}))
    with pytest.raises(OutputLocked, match="another faceproc run"):
        annotate([str(tmp_path / "in")], out, cfg_for_tests(), engine="local", models=fakes)
    # a lock left by a dead process of this machine is taken over
    import socket

    (out / LOCK).write_text(json.dumps({"host": socket.gethostname(), "pid": 2**22 + 12345, "started": 0}))
    annotate([str(tmp_path / "in")], out, cfg_for_tests(), engine="local", models=fakes)
    assert not (out / LOCK).exists() and len(pd.read_parquet(out / "images")) == 8


def test_truncated_shard_file_is_redone(tmp_path, fakes):  # noqa: F811
    make_tree(tmp_path / "in")
    out = tmp_path / "out"
    annotate([str(tmp_path / "in")], out, cfg_for_tests(shard_size=100), engine="local", models=fakes)
    victim = sorted((out / "faces").glob("*.parquet"))[0]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2])
    annotate([str(tmp_path / "in")], out, cfg_for_tests(shard_size=100), engine="local", models=fakes)
    assert len(pd.read_parquet(out / "faces")) == 4 and len(pd.read_parquet(out / "images")) == 8


def test_unreadable_manifest_is_named_with_the_way_out(tmp_path, fakes):  # noqa: F811
    make_tree(tmp_path / "in")
    out = tmp_path / "out"
    annotate([str(tmp_path / "in")], out, cfg_for_tests(), engine="local", models=fakes)
    (out / "manifest.json").write_text("{\n")
    with pytest.raises(RunConfigMismatch, match="manifest.json is unreadable.*--force"):
        annotate([str(tmp_path / "in")], out, cfg_for_tests(), engine="local", models=fakes)
    annotate([str(tmp_path / "in")], out, cfg_for_tests(), engine="local", models=fakes, force=True)
    assert len(pd.read_parquet(out / "images")) == 8


def test_exit_codes_keep_usage_errors_apart_from_rerun(tmp_path):
    from click.testing import CliRunner

    from faceproc.cli import EXIT_USAGE, main

    r = CliRunner().invoke(main, ["annotate"])
    assert r.exit_code == EXIT_USAGE and "Missing option '-o'" in r.output
    r = CliRunner().invoke(main, ["annotate", str(tmp_path), "-o", str(tmp_path / "o"), "--engine", "nope"])
    assert r.exit_code == EXIT_USAGE
    assert CliRunner().invoke(main, ["--help"]).exit_code == 0
    (tmp_path / "not-an-output").mkdir()
    r = CliRunner().invoke(main, ["report", str(tmp_path / "not-an-output")])
    assert r.exit_code == 1 and "not a faceproc output folder" in r.output
    assert not (tmp_path / "not-an-output" / "report.html").exists()


def test_missing_or_bad_models_fail_before_any_output(tmp_path, monkeypatch):
    from faceproc.detectors.files import DetectorUnavailable

    (tmp_path / "in").mkdir()
    _img(tmp_path / "in" / "a.png")
    cfg = Config()
    cfg.detector.scrfd.model_file = str(tmp_path / "nope.onnx")
    with pytest.raises(DetectorUnavailable, match="FACEPROC_DETECTOR_FILE"):
        annotate([str(tmp_path / "in")], tmp_path / "out1", cfg, engine="local")
    # no pack under the root and no network: one clear error, nothing half-downloaded left behind
    import insightface.utils.storage as storage

    def offline(*a, **k):
        raise OSError("network unreachable")

    monkeypatch.setattr(storage, "download", offline)
    monkeypatch.delenv("FACEPROC_DETECTOR_FILE", raising=False)
    cfg = Config()
    cfg.detector.scrfd.root = str(tmp_path / "empty-root")
    with pytest.raises(DetectorUnavailable, match="could not be downloaded.*FACEPROC_INSIGHTFACE_ROOT"):
        annotate([str(tmp_path / "in")], tmp_path / "out2", cfg, engine="local")
    assert not (tmp_path / "empty-root" / "models" / "buffalo_m").exists()
    for bad, why in ((tmp_path / "in", "is a folder"), (tmp_path / "junk.keras", "not a Keras 3")):
        if bad.suffix:
            bad.write_bytes(os.urandom(2000))
        cfg = Config()
        cfg.model.variant = str(bad)
        with pytest.raises((ValueError, FileNotFoundError), match=why):
            annotate([str(tmp_path / "in")], tmp_path / "out3", cfg, engine="local")
    assert not any((tmp_path / n).exists() for n in ("out1", "out2", "out3"))


def test_detector_checksum_refuses_corrupt_download_and_corrupt_file(tmp_path, monkeypatch):
    from faceproc.config import DetectorConfig, ScrfdConfig
    from faceproc.detectors.files import DetectorUnavailable, ensure_detector_file
    import insightface.utils.storage as storage

    downloads = []

    def corrupt_download(sub, name, root):  # a truncated or tampered zip that still unpacks
        downloads.append(name)
        folder = Path(root) / sub / name
        folder.mkdir(parents=True)
        (folder / "det_2.5g.onnx").write_bytes(b"not the model")

    monkeypatch.setattr(storage, "download", corrupt_download)
    monkeypatch.delenv("FACEPROC_DETECTOR_FILE", raising=False)
    monkeypatch.delenv("FACEPROC_INSIGHTFACE_ROOT", raising=False)
    cfg = DetectorConfig(scrfd=ScrfdConfig(root=str(tmp_path / "root")))
    with pytest.raises(DetectorUnavailable, match="sha256.*expected 041f73f4"):
        ensure_detector_file(cfg)
    assert downloads == ["buffalo_m"]
    assert not (tmp_path / "root" / "models" / "buffalo_m").exists()  # nothing bad kept for the next run
    # a corrupt file already in place: named, with the way out
    bad = tmp_path / "root2" / "models" / "buffalo_m"
    bad.mkdir(parents=True)
    (bad / "det_2.5g.onnx").write_bytes(b"\0" * 100)
    with pytest.raises(DetectorUnavailable, match=f"remove {bad}"):
        ensure_detector_file(DetectorConfig(scrfd=ScrfdConfig(root=str(tmp_path / "root2"))))


def test_unreachable_cluster_fails_fast(tmp_path, fakes):  # noqa: F811
    import socket
    import time

    from faceproc.engine import ClusterUnreachable

    make_tree(tmp_path / "in")
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nobody listens there
    cfg = cfg_for_tests(ray_address=f"127.0.0.1:{port}")
    t = time.time()
    with pytest.raises(ClusterUnreachable, match="does not answer"):
        annotate([str(tmp_path / "in")], tmp_path / "out", cfg, engine="ray", models=fakes)
    assert time.time() - t < 30


def test_disk_full_keeps_finished_shards_and_shows_nothing_half_written(tmp_path, fakes, monkeypatch):  # noqa: F811
    import errno

    import pyarrow.parquet as pq

    from faceproc.engine import DiskFull

    make_tree(tmp_path / "in")
    out = tmp_path / "out"
    real = pq.write_table
    calls = [0]

    def filling_up(table, where, **kw):
        calls[0] += 1
        if calls[0] > 3:  # the first shard's two tables fit, then the disk is full
            open(where, "wb").write(b"PAR1")  # a partial file, as a full disk leaves it
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(table, where, **kw)

    monkeypatch.setattr(pq, "write_table", filling_up)
    with pytest.raises(DiskFull, match="full.*run the same command again"):
        annotate([str(tmp_path / "in")], out, cfg_for_tests(shard_size=2), engine="local", models=fakes)
    committed = {p.stem for p in (out / "_shards").glob("*.json")}
    for name in ("faces", "images"):
        assert {p.stem for p in (out / name).glob("*.parquet")} <= committed  # nothing uncommitted visible
    assert not list(out.rglob("*.tmp")) and not (out / "_staging").exists()
    monkeypatch.setattr(pq, "write_table", real)
    annotate([str(tmp_path / "in")], out, cfg_for_tests(shard_size=2), engine="local", models=fakes)
    images = pd.read_parquet(out / "images")
    assert len(images) == 8 and images.image_path.is_unique


SIGTERMED_RUN = r"""
import os, signal, sys, json, threading
from tests.helpers import FakeModels, FakePredictor, cfg_for_tests
from faceproc.engine import Interrupted, annotate


class Killed(FakePredictor):
    n = 0
    lock = threading.Lock()  # two worker threads call the model: one count, one signal

    def predict(self, crops):
        with Killed.lock:
            Killed.n += bool(crops.any())  # the workers' warm-up calls (zeros) do not count
            third = Killed.n == 3 and crops.any()
        if third:  # one photo a shard, two workers: the third call's worker has committed a shard
            os.kill(os.getpid(), signal.SIGTERM)  # as a scheduler would, in the middle of a shard
        return super().predict(crops)


before = signal.getsignal(signal.SIGTERM)
try:
    annotate([sys.argv[1]], sys.argv[2], cfg_for_tests(shard_size=1), engine="local", models=FakeModels(Killed))
except Interrupted as e:
    print("INTERRUPTED", e, "HANDLER_RESTORED", signal.getsignal(signal.SIGTERM) == before)
    sys.exit(130)
"""


def test_sigterm_stops_cleanly_and_a_rerun_finishes(tmp_path, fakes):  # noqa: F811
    """In a child process (a SIGTERM that went astray must not take the test runner with it)."""
    import subprocess
    import sys

    from tests.conftest import REPO

    make_tree(tmp_path / "in")
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-c", SIGTERMED_RUN, str(tmp_path / "in"), str(out)], cwd=REPO,
                       env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=300)
    assert r.returncode == 130, r.stdout + r.stderr[-3000:]
    assert "run the same command again" in r.stdout and "HANDLER_RESTORED True" in r.stdout
    assert json.loads((out / "manifest.json").read_text())["state"] == "interrupted"
    assert not (out / LOCK).exists() and not (out / "_staging").exists()
    committed = {p.stem for p in (out / "_shards").glob("*.json")}
    assert 0 < len(committed) < 8 and {p.stem for p in (out / "images").glob("*.parquet")} == committed
    annotate([str(tmp_path / "in")], out, cfg_for_tests(shard_size=1), engine="local", models=fakes)
    assert len(pd.read_parquet(out / "images")) == 8


def test_every_run_leaves_its_log_in_the_output(tmp_path, fakes):  # noqa: F811
    make_tree(tmp_path / "in")
    annotate([str(tmp_path / "in")], tmp_path / "out", cfg_for_tests(), engine="local", models=fakes)
    text = (tmp_path / "out" / "faceproc.log").read_text()
    assert "to do in" in text and "shard" in text


def test_lock_of_a_killed_driver_is_taken_over(tmp_path, fakes):  # noqa: F811
    """A SIGKILLed driver can linger as a zombie (its parent has not reaped it) or its pid be reused: the
    lock records the process start time, so neither blocks the rerun."""
    import socket
    import subprocess
    import sys

    make_tree(tmp_path / "in")
    out = tmp_path / "out"
    out.mkdir()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    import psutil

    started = psutil.Process(child.pid).create_time()
    child.kill()  # not waited for: a zombie
    (out / LOCK).write_text(json.dumps({"host": socket.gethostname(), "pid": child.pid, "process_start": started}))
    annotate([str(tmp_path / "in")], out, cfg_for_tests(), engine="local", models=fakes)
    child.wait()
    # a live process with another start time (a reused pid) does not hold the lock either
    (out / LOCK).write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "process_start": 1.0}))
    annotate([str(tmp_path / "in")], out, cfg_for_tests(), engine="local", models=fakes)
    assert len(pd.read_parquet(out / "images")) == 8


def test_backend_start_up_chatter_stays_off_the_terminal():
    """TensorFlow's C++ lines (absl, cuInit, oneDNN) ignore TF_CPP_MIN_LOG_LEVEL; the predictor's import
    captures them, in the driver and in every Ray worker alike."""
    import subprocess
    import sys

    code = "from faceproc.agegender.backend import import_backend_quietly; k = import_backend_quietly(); print(k.__name__)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.strip() == "keras", r.stderr
    assert "absl" not in r.stderr and "cuda" not in r.stderr.lower() and "oneDNN" not in r.stderr, r.stderr
