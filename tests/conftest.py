"""Shared fixtures. Tests find the offline models and data in ../shared (next to the repo) unless the
FACEPROC_* environment variables already point elsewhere."""

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FACEPROC_SHARED", REPO.parent / "shared"))
INSIGHTFACE_ROOT = SHARED / "models" / "insightface"
BACKBONE = SHARED / "models" / "mobilenet_v2" / "mobilenet_v2_1.0_imagenet_no_top.weights.h5"
UTKFACE = SHARED / "data" / "utkface"

os.environ.setdefault("FACEPROC_INSIGHTFACE_ROOT", str(INSIGHTFACE_ROOT))
os.environ.setdefault("FACEPROC_BACKBONE_WEIGHTS", str(BACKBONE))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "integration" in item.nodeid.split(os.sep) or "/integration/" in item.nodeid:
            item.add_marker(pytest.mark.integration)
        if "/ray/" in item.nodeid:
            item.add_marker(pytest.mark.ray)


def shared_available() -> bool:
    return (INSIGHTFACE_ROOT / "models" / "buffalo_m" / "det_2.5g.onnx").exists() and UTKFACE.is_dir()


if os.environ.get("FACEPROC_REQUIRE_SHARED") == "1" and not shared_available():
    raise RuntimeError(f"FACEPROC_REQUIRE_SHARED=1 but the offline models/data are not under {SHARED}")

requires_shared = pytest.mark.skipif(not shared_available(), reason=f"the offline models/data are not under {SHARED}")


def skip_unless_shared(reason: str):
    """Skip for a missing offline file, or fail when FACEPROC_REQUIRE_SHARED=1 says everything must run."""
    if os.environ.get("FACEPROC_REQUIRE_SHARED") == "1":
        pytest.fail(f"FACEPROC_REQUIRE_SHARED=1 but {reason}")
    pytest.skip(reason)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """Skips are loud: every reason is printed with its count, without -rs (a bare "s" says nothing)."""
    from collections import Counter

    reasons = Counter()
    for rep in terminalreporter.stats.get("skipped", []):
        lr = rep.longrepr
        reasons[lr[2].removeprefix("Skipped: ") if isinstance(lr, tuple) and len(lr) == 3 else str(lr)] += 1
    if reasons:
        terminalreporter.section(f"{sum(reasons.values())} tests SKIPPED, and why", sep="!", yellow=True, bold=True)
        for reason, n in reasons.most_common():
            terminalreporter.write_line(f"{n:4d} skipped: {reason}", yellow=True)


@pytest.fixture(scope="session")
def utk_files():
    if not UTKFACE.is_dir():
        skip_unless_shared(f"UTKFace is not under {UTKFACE}")
    return sorted(str(p) for p in UTKFACE.glob("*.jpg"))


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def fakes(monkeypatch):
    """The stand-in detector and age/gender model (tests.helpers): pass it on as annotate(..., models=fakes);
    runs started without `models` (the CLI, in this process or a child) get them through the factory's
    environment variable."""
    from tests.helpers import install_fakes

    return install_fakes(monkeypatch.setenv)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_server():
    """A real S3 API on 127.0.0.1 (moto's server mode) for the session, with a bucket `faceproc`; the AWS
    variables point every client (pyarrow, boto3, child processes) at it. Skipped, loudly, only when the
    server cannot start."""
    import warnings

    try:
        from moto.server import ThreadedMotoServer
    except ImportError as e:
        warnings.warn(f"S3 TESTS SKIPPED: moto[server] is not installed ({e})")
        pytest.skip("moto[server] not installed: the S3 tests cannot run")
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    try:
        server.start()
    except Exception as e:  # noqa: BLE001
        warnings.warn(f"S3 TESTS SKIPPED: the moto S3 server did not start: {e}")
        pytest.skip(f"moto S3 server did not start: {e}")
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        import urllib.request

        import boto3

        # moto keeps its buckets in this process's memory: a second session in the same process (mutmut runs
        # many) would find the last one's objects. Every session starts empty.
        urllib.request.urlopen(urllib.request.Request(f"{env['AWS_ENDPOINT_URL']}/moto-api/reset", method="POST"))
        boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"]).create_bucket(Bucket="faceproc")
        yield env
    finally:
        server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
