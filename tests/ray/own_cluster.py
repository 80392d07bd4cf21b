"""Ray nodes a test starts with `ray start`, and stops by their own processes.

Never `ray stop`: it ends every Ray cluster on the machine, other tests' and other users' included. Each
cluster here has its own temp dir (`--temp-dir`, under a short folder of its own: Ray's socket paths must
stay under ~100 characters), its own ports, and a fresh token (token authentication on, as the docs tell
cluster users to run). A node can be started with folders hidden from it: its `ray start` runs in a
private mount namespace (`unshare -m`) with an empty tmpfs over each folder, so the node and every worker
process it starts see an empty folder where the driver sees model files (root only, as in this suite).
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

RAY = str(Path(sys.executable).with_name("ray")) if Path(sys.executable).with_name("ray").exists() else "ray"
TOKEN_VARS = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def can_hide_folders() -> bool:
    """Whether this process may make a private mount namespace with a tmpfs in it (root, unshare present)."""
    if not shutil.which("unshare") or os.geteuid() != 0:
        return False
    probe = tempfile.mkdtemp(prefix="fp-ns-")
    try:
        r = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c",
                            f"mount -t tmpfs none {probe}"], capture_output=True, timeout=30)
        return r.returncode == 0
    finally:
        os.rmdir(probe)


class OwnCluster:
    """A head and nodes started for one test; `stop()` kills exactly their processes."""

    def __init__(self, env: dict[str, str] | None = None):
        self.root = Path(tempfile.mkdtemp(prefix="fpr-", dir="/tmp"))
        self.token = secrets.token_hex(16)
        base = {k: v for k, v in os.environ.items() if k not in TOKEN_VARS + ("RAY_ADDRESS",)}
        self.env = {**base, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": self.token, "RAY_USAGE_STATS_ENABLED": "0",
                    **(env or {})}
        self.port, self.dashboard_port, self.client_port = free_port(), free_port(), free_port()
        self.nodes = 0
        self.raylets: list[int] = []

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def dashboard(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    def _start(self, args: list[str], hide=(), env=None) -> None:
        temp = self.root / f"n{self.nodes}"
        self.nodes += 1
        cmd = [RAY, "start", "--node-ip-address", "127.0.0.1", "--temp-dir", str(temp), "--disable-usage-stats",
               "--dashboard-agent-listen-port", str(free_port()), *args]
        if hide:
            mounts = " && ".join(f"mount -t tmpfs -o size=1m,mode=0755 faceproc-hidden {shlex_quote(str(h))}"
                                 for h in hide)
            cmd = ["unshare", "-m", "--propagation", "private", "sh", "-c",
                   f"{mounts} && exec {' '.join(shlex_quote(c) for c in cmd)}"]
        r = subprocess.run(cmd, env={**self.env, **(env or {})}, capture_output=True, text=True, timeout=180)
        assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
        raylet = [p for p in self._own() if "raylet/raylet" in " ".join(p.cmdline()[:1]) and str(temp) in
                  " ".join(p.cmdline())]
        assert raylet, f"no raylet of {temp} running"
        self.raylets.append(raylet[0].pid)

    def head(self, num_cpus: float, num_gpus: float = 0, dashboard: bool = True, env=None, hide=()) -> "OwnCluster":
        args = ["--head", "--port", str(self.port), "--num-cpus", str(num_cpus), "--num-gpus", str(num_gpus),
                "--ray-client-server-port", str(self.client_port)]
        args += (["--include-dashboard", "true", "--dashboard-host", "127.0.0.1", "--dashboard-port",
                  str(self.dashboard_port)] if dashboard else ["--include-dashboard", "false"])
        self._start(args, hide, env=env)
        return self

    def add_node(self, num_cpus: float, num_gpus: float = 0, hide=(), env=None) -> int:
        """A worker node; `hide`: folders it (and its workers) see empty. Returns its raylet's pid."""
        self._start(["--address", self.address, "--num-cpus", str(num_cpus), "--num-gpus", str(num_gpus)],
                    hide, env)
        return self.raylets[-1]

    def node_ids(self, n: int, timeout: float = 60) -> dict[str, dict]:
        """node id -> resources of the live nodes, once `n` have registered (asked in a child process)."""
        code = ("import json, sys, time, ray\nray.init(address=sys.argv[1], logging_level='ERROR')\n"
                "deadline = time.time() + float(sys.argv[3])\n"
                "while True:\n    nodes = [x for x in ray.nodes() if x['Alive']]\n"
                "    if len(nodes) >= int(sys.argv[2]) or time.time() > deadline: break\n    time.sleep(0.5)\n"
                "print('NODES', json.dumps({x['NodeID']: x['Resources'] for x in nodes}))\n")
        r = subprocess.run([sys.executable, "-c", code, self.address, str(n), str(timeout)], env=self.env,
                           capture_output=True, text=True, timeout=timeout + 60)
        line = [x for x in r.stdout.splitlines() if x.startswith("NODES ")]
        assert line, (r.stdout + r.stderr)[-3000:]
        import json

        nodes = json.loads(line[0][6:])
        assert len(nodes) >= n, nodes
        return nodes

    def _own(self) -> list[psutil.Process]:
        """This cluster's processes: those naming its temp dir or its ports, and all their descendants."""
        marks = (str(self.root) + "/", f":{self.port} ", f"--port={self.client_port}")
        found: dict[int, psutil.Process] = {}
        for p in psutil.process_iter(["pid", "cmdline"]):
            try:
                cmd = " ".join(p.info["cmdline"] or []) + " "
                if any(m in cmd for m in marks):
                    found[p.pid] = p
                    for c in p.children(recursive=True):
                        found[c.pid] = c
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        for pid in self.raylets:  # worker processes (ray::ShardWorker) name neither: they are the raylets' children
            try:
                for c in psutil.Process(pid).children(recursive=True):
                    found[c.pid] = c
            except psutil.NoSuchProcess:
                pass
        return [p for pid, p in found.items() if pid != os.getpid()]

    def stop(self) -> None:
        procs = self._own()
        for p in procs:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(procs, timeout=20)
        time.sleep(0.2)
        shutil.rmtree(self.root, ignore_errors=True)


def shlex_quote(s: str) -> str:
    import shlex

    return shlex.quote(s)
