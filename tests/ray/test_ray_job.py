"""A real local Ray cluster on loopback: `jobs/annotate.py` submitted as a Ray job, killed and resumed.

The cluster is started by a fixture (`ray start --head` on 127.0.0.1) and stopped at the end whatever
happens. The model is the deterministic untrained one (--random-init): these tests are about
orchestration, exact resume and fault tolerance, not accuracy.
"""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest
from PIL import Image

from faceproc.synth import mosaic
from tests.conftest import REPO, requires_shared

pytestmark = requires_shared


RAY = str(Path(sys.executable).with_name("ray")) if Path(sys.executable).with_name("ray").exists() else "ray"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    port, dash = free_port(), free_port()
    # A loopback-only test cluster: token authentication off, explicitly, for the cluster and this
    # client alike (otherwise Ray turns it on whenever an earlier local run left ~/.ray/auth_token).
    saved_mode = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "disabled"
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    subprocess.run([RAY, "stop", "--force"], env=env, capture_output=True)
    start = subprocess.run(
        [RAY, "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port), "--dashboard-host",
         "127.0.0.1", "--dashboard-port", str(dash), "--num-cpus", "2", "--include-dashboard", "true",
         "--disable-usage-stats"], env=env, capture_output=True, text=True, timeout=180)
    assert start.returncode == 0, start.stdout + start.stderr
    try:
        from ray.job_submission import JobSubmissionClient

        address = f"http://127.0.0.1:{dash}"
        deadline = time.time() + 60
        while True:
            try:
                client = JobSubmissionClient(address)
                break
            except Exception:
                if time.time() > deadline:
                    raise
                time.sleep(1)
        yield client
    finally:
        subprocess.run([RAY, "stop", "--force"], env=env, capture_output=True, timeout=120)
        if saved_mode is None:
            os.environ.pop("RAY_AUTH_MODE", None)
        else:
            os.environ["RAY_AUTH_MODE"] = saved_mode


@pytest.fixture(scope="module")
def archive(tmp_path_factory, utk_files):
    """~40 images in nested folders: mosaics with 0-4 faces, plus two bad files."""
    root = tmp_path_factory.mktemp("archive")
    rng = np.random.default_rng(3)
    n = 0
    for d in ["2019/jan", "2019/feb/party", "2020", "2020/trip/day1", "2020/trip/day2"]:
        (root / d).mkdir(parents=True, exist_ok=True)
        for i in range(8 if n < 32 else 6):
            k = int(rng.integers(0, 5))
            picks = [utk_files[j] for j in rng.choice(len(utk_files), k, replace=False)]
            img, _ = mosaic(picks, (640, 480), 150, rng)
            Image.fromarray(img).save(root / d / f"img{i:02d}.jpg", quality=90)
            n += 1
    (root / "2020" / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    (root / "2019" / "jan" / "empty.png").write_bytes(b"")
    return root


def submit(client, archive, out, extra=()):
    entry = (f"{sys.executable} jobs/annotate.py --input {archive} --output {out} --random-init "
             f"--shard-size 3 --workers 2 " + " ".join(extra))
    return client.submit_job(
        entrypoint=entry,
        runtime_env={"working_dir": str(REPO), "excludes": ["runs", ".git", "*.keras", "benchmarks/results"],
                     "env_vars": {k: v for k, v in os.environ.items() if k.startswith("FACEPROC_")}},
    )


def wait(client, job_id, timeout=600):
    from ray.job_submission import JobStatus

    deadline = time.time() + timeout
    while time.time() < deadline:
        st = client.get_job_status(job_id)
        if st in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED):
            return st
        time.sleep(1)
    raise TimeoutError(client.get_job_logs(job_id)[-3000:])


def rows(out):
    faces = pd.read_parquet(Path(out) / "faces").drop(columns=["run_id"])
    images = pd.read_parquet(Path(out) / "images").drop(columns=["run_id", "elapsed_ms"])
    return (faces.sort_values(["image_path", "face_index"]).reset_index(drop=True),
            images.sort_values("image_path").reset_index(drop=True))


def same(a, b):
    assert list(a.columns) == list(b.columns) and len(a) == len(b)
    for c in a.columns:
        if a[c].dtype.kind == "f":
            np.testing.assert_allclose(a[c], b[c], rtol=1e-3, atol=1e-2)
        elif c == "landmarks":
            np.testing.assert_allclose(np.stack(a[c]), np.stack(b[c]), atol=1e-2)
        else:
            assert a[c].tolist() == b[c].tolist(), c


@pytest.fixture(scope="module")
def reference(cluster, archive, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "out"
    job = submit(cluster, archive, out)
    status = wait(cluster, job)
    assert str(status) in ("SUCCEEDED", "JobStatus.SUCCEEDED"), cluster.get_job_logs(job)[-4000:]
    return out, cluster.get_job_logs(job)


def test_job_submission_writes_every_row(reference, archive):
    out, logs = reference
    faces, images = rows(out)
    files = sorted(str(p) for p in archive.rglob("*") if p.is_file())
    assert images["image_path"].tolist() == files
    assert images.set_index("image_path").loc[str(archive / "2020" / "broken.jpg"), "status"] == "not_an_image"
    assert not faces.duplicated(["image_path", "face_index"]).any() and len(faces) > 20
    assert "shards" in logs and "files/s" in logs  # driver logs progress and throughput
    assert (out / "report.html").exists() and (out / "manifest.json").exists()


def _find(pred):
    for p in psutil.process_iter(["pid", "cmdline", "name"]):
        try:
            if pred(" ".join(p.info["cmdline"] or []), p.info["name"] or ""):
                return p
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return None


def _find_all(pred):
    found = []
    for p in psutil.process_iter(["pid", "cmdline", "name"]):
        try:
            if pred(" ".join(p.info["cmdline"] or []), p.info["name"] or ""):
                found.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def _wait_for_shards(out, n, timeout=300):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if len(list((Path(out) / "_shards").glob("*.json"))) >= n if (Path(out) / "_shards").exists() else False:
            return
        time.sleep(0.2)
    raise TimeoutError("no shard finished")


def test_driver_sigkill_then_rerun_equals_uninterrupted_run(cluster, archive, reference, tmp_path):
    out = tmp_path / "out"
    job = submit(cluster, archive, out)
    _wait_for_shards(out, 3)
    # The entrypoint runs under a shell: kill the Python driver itself (it holds the output's lock), and the shell.
    drivers = _find_all(lambda cmd, name: "jobs/annotate.py" in cmd and str(out) in cmd and "ray job" not in cmd)
    assert any("python" in " ".join(p.cmdline()) for p in drivers)
    for p in drivers:
        p.send_signal(signal.SIGKILL)
    wait(cluster, job)
    n_done = len(list((out / "_shards").glob("*.json")))
    job2 = submit(cluster, archive, out)
    assert str(wait(cluster, job2)).endswith("SUCCEEDED"), cluster.get_job_logs(job2)[-4000:]
    assert "already done" in cluster.get_job_logs(job2) and n_done >= 3
    ref_faces, ref_images = rows(reference[0])
    faces, images = rows(out)
    same(images.drop(columns=["shard"]), ref_images.drop(columns=["shard"]))
    same(faces, ref_faces)


def test_worker_killed_mid_run_still_completes(cluster, archive, reference, tmp_path):
    out = tmp_path / "out"
    job = submit(cluster, archive, out)
    _wait_for_shards(out, 2)
    worker = _find(lambda cmd, name: "ShardWorker" in cmd or "ShardWorker" in name)
    assert worker is not None, "no ShardWorker process found"
    worker.send_signal(signal.SIGKILL)
    assert str(wait(cluster, job)).endswith("SUCCEEDED"), cluster.get_job_logs(job)[-4000:]
    ref_faces, ref_images = rows(reference[0])
    faces, images = rows(out)
    same(images, ref_images)
    same(faces, ref_faces)
