"""A real local Ray cluster on loopback: `jobs/annotate.py` submitted as a Ray job, killed and resumed.

The cluster is started by a fixture (`ray start --head` on 127.0.0.1) and stopped at the end whatever
happens. The model is the deterministic untrained one (--random-init): these tests are about
orchestration, exact resume and fault tolerance, not accuracy.
"""

import json
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

# The token-authentication tests need no models: they run without ../shared; the rest are marked one by one.


RAY = str(Path(sys.executable).with_name("ray")) if Path(sys.executable).with_name("ray").exists() else "ray"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


TOKEN_VARS = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A loopback cluster with token authentication on, as the README tells cluster users to run it.

    The token is fresh per test module and travels in RAY_AUTH_TOKEN (cluster, this client and the jobs
    it submits), so nothing here depends on, or writes, ~/.ray/auth_token.
    """
    import secrets

    port, dash = free_port(), free_port()
    saved = {k: os.environ.get(k) for k in TOKEN_VARS}
    os.environ.pop("RAY_AUTH_TOKEN_PATH", None)
    os.environ.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(16))
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
        client.test_gcs_address = f"127.0.0.1:{port}"
        client.test_dashboard = address
        yield client
    finally:
        subprocess.run([RAY, "stop", "--force"], env=env, capture_output=True, timeout=120)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


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
        runtime_env={"working_dir": str(REPO), "excludes": ["runs", ".git", "*.keras", "*.openvino.*", "benchmarks/results"],
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


@requires_shared
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


@requires_shared
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


@requires_shared
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


NO_TOKEN_CLIENT = r"""
import sys, ray
try:
    ray.init(address=sys.argv[1])
    print("RESULT", ray.get(ray.remote(lambda: "ran").remote()))
except Exception as e:
    print("REFUSED", type(e).__name__)
"""


def _client(address, env, tmp_path):
    """A separate client process: its own HOME, so no token file is found unless env names one."""
    home = tmp_path / "client-home"
    home.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in TOKEN_VARS} | {"HOME": str(home)} | env
    r = subprocess.run([sys.executable, "-c", NO_TOKEN_CLIENT, address], env=env, capture_output=True,
                       text=True, timeout=120)
    return r.stdout


def test_client_without_token_cannot_submit(cluster, tmp_path):
    import urllib.error
    import urllib.request

    req = urllib.request.Request(f"{cluster.test_dashboard}/api/jobs/", data=b'{"entrypoint": "echo pwned"}',
                                 headers={"Content-Type": "application/json"}, method="POST")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=30)
    assert e.value.code == 401
    # The usual answer to Ray's token message, RAY_AUTH_MODE=disabled, must not get a client in.
    assert "REFUSED" in _client(cluster.test_gcs_address, {"RAY_AUTH_MODE": "disabled"}, tmp_path)
    # ... and the same client with the token does (so the refusal above is about the token).
    ok = _client(cluster.test_gcs_address, {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": os.environ["RAY_AUTH_TOKEN"]},
                 tmp_path)
    assert "RESULT ran" in ok


EMBEDDED = r"""
import os, sys, ray
from faceproc.config import Config
from faceproc.cluster import init_ray
init_ray(Config())
print("MODE", os.environ.get("RAY_AUTH_MODE"), flush=True)
print("GCS", ray.get_runtime_context().gcs_address, flush=True)
sys.stdin.read()  # hold the cluster until the test closes stdin
"""


def test_embedded_cluster_keeps_token_authentication(tmp_path):
    """`faceproc annotate`'s own cluster listens on every interface: a client without the token is refused."""
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in TOKEN_VARS + ("RAY_ADDRESS",)}
    env.update(HOME=str(home), RAY_USAGE_STATS_ENABLED="0", PYTHONPATH=str(REPO))
    p = subprocess.Popen([sys.executable, "-c", EMBEDDED], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        lines = {}
        while len(lines) < 2:
            line = p.stdout.readline()
            assert line, p.stderr.read()[-3000:]
            key, _, value = line.strip().partition(" ")
            if key in ("MODE", "GCS"):
                lines[key] = value
        assert lines["MODE"] == "token"
        token_file = home / ".ray" / "auth_token"
        assert token_file.exists()
        assert "REFUSED" in _client(lines["GCS"], {"RAY_AUTH_MODE": "disabled"}, tmp_path)
        assert "RESULT ran" in _client(lines["GCS"], {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token_file)}, tmp_path)
    finally:
        p.stdin.close()
        p.wait(timeout=120)
    # ... and quietly: Ray's message, whose usual answer is to turn authentication off, is not shown.
    assert "Set RAY_AUTH_MODE=disabled" not in p.stderr.read()


EMBEDDED_RUN = r"""
import os, sys, ray
from faceproc.config import Config
from faceproc.engine import annotate
cfg = Config()
cfg.model.random_init = True
rep = annotate([sys.argv[1]], sys.argv[2], cfg, engine="ray", progress=False)
print("FILES", rep["files"], flush=True)
print("AFTER", ray.is_initialized(), os.environ.get("RAY_AUTH_MODE"), flush=True)
"""


@requires_shared
def test_embedded_cluster_is_gone_when_annotate_returns(archive, tmp_path):
    """The run's own cluster is shut down while the report is built (not at interpreter exit): when
    annotate returns, Ray is down, its processes are gone, and RAY_AUTH_MODE is as the caller had it."""
    env = {k: v for k, v in os.environ.items() if k not in TOKEN_VARS + ("RAY_ADDRESS",)}
    env.update(HOME=str(tmp_path / "home"), RAY_USAGE_STATS_ENABLED="0", PYTHONPATH=str(REPO))
    before = {p.pid for p in psutil.process_iter() if "raylet" in p.name()}
    r = subprocess.run([sys.executable, "-c", EMBEDDED_RUN, str(archive), str(tmp_path / "out")], env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in r.stdout.splitlines() if line.startswith(("FILES", "AFTER")))
    assert int(lines["FILES"]) > 0 and lines["AFTER"] == "False None"
    time.sleep(1)
    assert {p.pid for p in psutil.process_iter() if "raylet" in p.name()} <= before


@pytest.fixture
def token_env():
    """Token authentication on, with a fresh token, for clusters started by a test (and restored after)."""
    import secrets

    saved = {k: os.environ.get(k) for k in TOKEN_VARS}
    os.environ.pop("RAY_AUTH_TOKEN_PATH", None)
    os.environ.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(16))
    _refresh_ray_auth()
    yield
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    _refresh_ray_auth()


def _refresh_ray_auth():
    """Ray caches the auth mode and token per process (as its own _enable_token_auth refreshes them)."""
    from ray._raylet import AuthenticationTokenLoader, Config as RayConfig

    RayConfig.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()


def _job(address, archive, out, workers=2):
    """jobs/annotate.py as a driver process attached to `address` (what `ray job submit` runs)."""
    env = {**os.environ, "RAY_ADDRESS": address, "PYTHONPATH": str(REPO), "RAY_USAGE_STATS_ENABLED": "0"}
    return subprocess.Popen([sys.executable, "jobs/annotate.py", "--input", str(archive), "--output", str(out),
                             "--random-init", "--shard-size", "3", "--workers", str(workers)],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(p, timeout=600):
    out, _ = p.communicate(timeout=timeout)
    assert p.returncode == 0, out[-4000:]
    return out


@requires_shared
def test_two_nodes_share_the_shards_and_losing_one_mid_run_loses_no_row(token_env, archive, reference, tmp_path):
    """A head and a worker node (two raylets on this machine, ray.cluster_utils): shards run on both (the
    manifest records each shard's node); the worker node removed mid-run, the job still finishes with every
    row exactly once (its actor's shards go to the head's actor)."""
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        worker = c.add_node(num_cpus=1)
        c.wait_for_nodes()
        out1 = tmp_path / "both"
        _finish(_job(c.address, archive, out1))
        nodes = {s.get("node") for s in json.loads((out1 / "manifest.json").read_text())["shards"].values()}
        assert nodes == {c.head_node.node_id, worker.node_id}
        same(rows(out1)[1].drop(columns=["shard"]), rows(reference[0])[1].drop(columns=["shard"]))

        out2 = tmp_path / "lost"
        p = _job(c.address, archive, out2)
        _wait_for_shards(out2, 3)
        c.remove_node(worker, allow_graceful=False)  # the node's raylet and its worker processes die
        log = _finish(p)
        assert "died" in log
        ref_faces, ref_images = rows(reference[0])
        faces, images = rows(out2)
        same(images.drop(columns=["shard"]), ref_images.drop(columns=["shard"]))
        same(faces, ref_faces)
        manifest = json.loads((out2 / "manifest.json").read_text())
        assert manifest["state"] == "complete"
        assert {s.get("node") for s in manifest["shards"].values()} >= {c.head_node.node_id}
    finally:
        c.shutdown()


@requires_shared
def test_gpu_share_requested_and_cpu_fallback_said_once(token_env, archive, tmp_path):
    """A node that declares a GPU this machine does not have (`ray start --num-gpus 1` does the same): the
    workers request their share of it, and, with no CUDA, run on the CPU after one clear line each."""
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "num_gpus": 1, "include_dashboard": False})
    try:
        out = tmp_path / "gpu"
        log = _finish(_job(c.address, archive, out))
        assert "2 workers (cluster: 2 CPU, 1 GPU)" in log and ": 2 x (1 CPU, 0.5 GPU)" in log
        fallback = [line for line in log.splitlines() if "onnxruntime has no CUDA provider" in line]
        assert len(fallback) == 2, log[-3000:]  # one line per worker, not one per shard or per image
        images = pd.read_parquet(out / "images")
        assert len(images) == len([p for p in archive.rglob("*") if p.is_file()])
    finally:
        c.shutdown()
