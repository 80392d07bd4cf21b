"""What faceproc does on the network (issue 19 item 5, issue 25 item 3).

A cluster address that is not a Ray cluster is one line and exit 1 within 15 s (before: a port that answers
something else hung past 120 s, because Ray rewrites 127.0.0.1 to the node's IP and retries; a host that
does not answer printed ~85 lines of retries). Offline mode refuses the one model download with one line.
Through the real command line in a child process; the detector and model are the stand-ins of
tests.helpers, which the address check comes before anyway.
"""

import os
import socket
import subprocess
import sys
import threading
import time

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

# A stale RAY_ADDRESS of the test environment must not decide which cluster a test talks to.
CLEAN = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS",)}


def run_cli(args, env=None, fakes=True, timeout=120):
    code = ["-c", FAKE_CLI] if fakes else ["-m", "faceproc.cli"]
    t = time.time()
    r = subprocess.run([sys.executable, *code, *map(str, args)], cwd=REPO, capture_output=True, text=True,
                       env={**CLEAN, "PYTHONPATH": str(REPO), **(env or {})}, timeout=timeout)
    return r, time.time() - t


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


class _Server:
    """A TCP server on every interface (Ray connects to the node's IP, not to 127.0.0.1) that answers
    `reply` to every connection (garbage), or accepts and says nothing (silent), or never accepts with a
    full queue, so that connecting hangs as to a host that drops packets (black hole)."""

    def __init__(self, mode: str):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("", 0))
        self.port = self.sock.getsockname()[1]
        self.held = []
        if mode == "blackhole":
            self.sock.listen(0)
            for _ in range(3):  # fill the accept queue: later SYNs are dropped
                c = socket.socket()
                c.settimeout(0.5)
                try:
                    c.connect(("127.0.0.1", self.port))
                except OSError:
                    pass
                self.held.append(c)
            return
        self.sock.listen(64)
        threading.Thread(target=self._serve, args=(mode,), daemon=True).start()

    def _serve(self, mode):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            if mode == "garbage":
                try:
                    c.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nnot a Ray cluster\n")
                finally:
                    c.close()
            else:
                self.held.append(c)

    def close(self):
        for c in self.held:
            c.close()
        self.sock.close()


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.mark.parametrize("mode", ["garbage", "silent", "blackhole", "closed"])
def test_a_cluster_address_that_is_not_ray_is_one_line_within_15_seconds(tmp_path, mode):
    make_tree(tmp_path / "in")
    server = _Server(mode) if mode != "closed" else None
    port = server.port if server else _closed_port()
    try:
        r, took = run_cli(["annotate", tmp_path / "in", "-o", tmp_path / "out", "--random-init"],
                          env={"RAY_ADDRESS": f"127.0.0.1:{port}"}, timeout=120)
    finally:
        if server:
            server.close()
    assert r.returncode == 1, r.stderr[-3000:]  # README: 1 = an unreachable cluster
    assert took < 15, f"{took:.1f} s"
    err = lines(r.stderr)
    assert len(err) == 1 and err[0].startswith("Error: ") and f"127.0.0.1:{port}" in err[0], r.stderr[-3000:]
    assert ("does not answer" if mode in ("closed", "blackhole") else "is not a Ray cluster") in err[0]
    assert "RAY_ADDRESS" in err[0]
    assert not (tmp_path / "out" / "faces").exists()


def test_run_ray_address_in_the_config_is_checked_the_same_way(tmp_path):
    make_tree(tmp_path / "in")
    server = _Server("garbage")
    (tmp_path / "c.yaml").write_text(f"run:\n  ray_address: 127.0.0.1:{server.port}\n")
    try:
        r, took = run_cli(["annotate", tmp_path / "in", "-o", tmp_path / "out", "--random-init", "--config",
                           tmp_path / "c.yaml"])
    finally:
        server.close()
    assert r.returncode == 1 and took < 15 and len(lines(r.stderr)) == 1, r.stderr[-3000:]
    assert "is not a Ray cluster" in r.stderr


def test_a_dashboard_address_is_named_as_such(tmp_path):
    make_tree(tmp_path / "in")
    r, took = run_cli(["annotate", tmp_path / "in", "-o", tmp_path / "out", "--random-init"],
                      env={"RAY_ADDRESS": "http://127.0.0.1:8265"})
    assert r.returncode == 1 and len(lines(r.stderr)) == 1, r.stderr[-3000:]
    assert "dashboard" in r.stderr and "ray job submit" in r.stderr


# ------------------------------------------------------------------------------ offline mode

def test_offline_mode_refuses_the_download_with_one_clear_line(tmp_path):
    make_tree(tmp_path / "in")
    empty = tmp_path / "no-models"
    empty.mkdir()
    r, _ = run_cli(["annotate", tmp_path / "in", "-o", tmp_path / "out", "--engine", "local"], fakes=False,
                   env={"FACEPROC_OFFLINE": "1", "FACEPROC_INSIGHTFACE_ROOT": str(empty)})
    assert r.returncode == 1, r.stderr[-3000:]
    err = lines(r.stderr)
    assert len(err) == 1, r.stderr[-3000:]
    assert "buffalo_m" in err[0] and f"not found at {empty}" in err[0]
    assert "offline mode (FACEPROC_OFFLINE) forbids downloading it" in err[0] and "FACEPROC_INSIGHTFACE_ROOT" in err[0]
    assert list(empty.iterdir()) == [] and not (tmp_path / "out").exists()  # nothing created, nothing fetched


@pytest.mark.parametrize("how", ["env", "config"])
def test_offline_mode_never_calls_the_downloader(tmp_path, monkeypatch, how):
    """In-process, with InsightFace's downloader replaced by a recorder: offline, it is never called (by the
    environment variable or by run.offline); online, the same setup does call it (so the recorder works)."""
    import insightface.utils.storage

    from faceproc.detectors.files import DetectorUnavailable
    from faceproc.engine import annotate
    from tests.helpers import cfg_for_tests

    calls = []

    def recorder(*a, **kw):
        calls.append((a, kw))
        raise OSError("no network in this test")

    monkeypatch.setattr(insightface.utils.storage, "download", recorder)
    monkeypatch.delenv("FACEPROC_OFFLINE", raising=False)
    monkeypatch.setenv("FACEPROC_INSIGHTFACE_ROOT", str(tmp_path / "no-models"))
    make_tree(tmp_path / "in")
    cfg = cfg_for_tests()
    cfg.model.random_init = False  # the detector is looked for either way; this keeps the shipped model
    if how == "env":
        monkeypatch.setenv("FACEPROC_OFFLINE", "1")
    else:
        cfg.run.offline = True
    with pytest.raises(DetectorUnavailable, match="offline mode .* forbids downloading it"):
        annotate([str(tmp_path / "in")], tmp_path / "out", cfg, engine="local")
    assert calls == []
    cfg.run.offline = False
    monkeypatch.delenv("FACEPROC_OFFLINE", raising=False)
    with pytest.raises(DetectorUnavailable, match="could not be downloaded"):
        annotate([str(tmp_path / "in")], tmp_path / "out", cfg, engine="local")
    assert len(calls) == 1


def test_offline_mode_refuses_the_imagenet_backbone_download(monkeypatch):
    from faceproc.config import resolve_backbone_weights

    monkeypatch.delenv("FACEPROC_BACKBONE_WEIGHTS", raising=False)
    monkeypatch.setenv("FACEPROC_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match="offline mode .* forbids downloading it; set FACEPROC_BACKBONE"):
        resolve_backbone_weights(None)
    assert resolve_backbone_weights("/some/local.h5") == "/some/local.h5"
    monkeypatch.delenv("FACEPROC_OFFLINE")
    assert resolve_backbone_weights(None) == "imagenet"


def test_openvino_is_imported_without_its_telemetry():
    """OpenVINO sends a Google Analytics event on every `import openvino` (openvino_telemetry, unless opted out
    in ~/intel); a process that imported faceproc first gets OpenVINO's telemetry stub instead. In a child,
    with a HOME of its own (no opt-out file of this machine's user decides)."""
    pytest.importorskip("openvino")
    code = ("import faceproc, openvino\n"
            "from openvino.tools.ovc import telemetry_utils\n"
            "print('TM', telemetry_utils.tm.__name__)")
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                       env={**CLEAN, "PYTHONPATH": str(REPO), "HOME": "/nonexistent-home"})
    assert r.returncode == 0, r.stderr[-2000:]
    assert "TM openvino.tools.ovc.telemetry_stub" in r.stdout, r.stdout
