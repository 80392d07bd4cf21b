"""Nothing leaves the machine (issue 25, item 3): the embedded Ray cluster sends no usage statistics, and a
whole `faceproc annotate` run (embedded Ray, real models from ../shared) succeeds with no network at all,
without even trying to reach one.

The no-network run is a child in its own network namespace (`unshare -n`: only a loopback interface), and,
where strace is installed, every connect()/sendto() of every process of the run is recorded: any address
that is not loopback fails the test with the list. Before this change that list held Google Analytics
(OpenVINO's telemetry, on every `import openvino`, from the driver and from each Ray worker) and the
cloud-metadata addresses 169.254.169.254 / metadata.google.internal (Ray's dashboard process, which runs
its usage-stats module even with the dashboard off and usage stats disabled).
"""

import json
import os
import re
import shutil
import subprocess
import sys
import warnings

import numpy as np
import pytest
from PIL import Image

from tests.conftest import REPO, requires_shared

TOKEN_VARS = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")

EMBEDDED_USAGE = r"""
import json, os, psutil, ray
from faceproc.config import Config
from faceproc.cluster import init_ray, wait_embedded_ray
init_ray(Config())
try:
    from ray._common.usage import usage_lib
except ImportError:  # older Ray
    from ray._private.usage import usage_lib
meta = usage_lib.get_cluster_metadata(ray._private.worker.global_worker.gcs_client)
envs, cmds = {}, []
for p in psutil.Process().children(recursive=True):
    try:
        envs[p.name()] = p.environ().get("RAY_USAGE_STATS_ENABLED")
        cmds.append(" ".join(p.cmdline()))
    except psutil.Error:
        pass
print("RESULT", json.dumps({"meta": sorted(meta), "envs": envs,
                            "dashboard": any("dashboard/dashboard.py" in c for c in cmds)}), flush=True)
wait_embedded_ray()
print("AFTER", json.dumps(os.environ.get("RAY_USAGE_STATS_ENABLED")), flush=True)
"""


def _embedded(tmp_path, extra_env):
    env = {k: v for k, v in os.environ.items() if k not in TOKEN_VARS + ("RAY_ADDRESS", "RAY_USAGE_STATS_ENABLED")}
    env.update(HOME=str(tmp_path / "home"), PYTHONPATH=str(REPO), **extra_env)  # no ~/.ray/config.json of ours
    (tmp_path / "home").mkdir(exist_ok=True)
    r = subprocess.run([sys.executable, "-c", EMBEDDED_USAGE], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    out = dict(line.split(" ", 1) for line in r.stdout.splitlines() if line.startswith(("RESULT", "AFTER")))
    return json.loads(out["RESULT"]), json.loads(out["AFTER"])


@pytest.mark.parametrize("caller", [None, "1"])
def test_embedded_cluster_sends_no_usage_stats(tmp_path, caller):
    """Ray records in the cluster's metadata whether usage stats are on (the OS, commit and start time are
    only recorded when they are); the cluster's processes carry RAY_USAGE_STATS_ENABLED=0, whatever the
    caller had, and the process that would report (the dashboard) is not started. The caller's value is
    back afterwards (Ray's own ray.init leaves 0 in the driver's environment)."""
    res, after = _embedded(tmp_path, {} if caller is None else {"RAY_USAGE_STATS_ENABLED": caller})
    assert "os" not in res["meta"] and "session_start_timestamp_ms" not in res["meta"], res
    ray_procs = {n: v for n, v in res["envs"].items() if n in ("gcs_server", "raylet")}
    assert set(ray_procs) == {"gcs_server", "raylet"} and set(ray_procs.values()) == {"0"}, res["envs"]
    assert res["dashboard"] is False
    assert after == caller


# ------------------------------------------------------------------------------ a run with no network

def _netns_usable() -> str | None:
    if not shutil.which("unshare") or not shutil.which("ip"):
        return "unshare/ip not installed"
    r = subprocess.run(["unshare", "-n", "sh", "-c", "ip link set lo up"], capture_output=True, text=True)
    return None if r.returncode == 0 else f"cannot make a network namespace here: {r.stderr.strip()[:200]}"


NOT_LOOPBACK = re.compile(r'(?:inet_addr\("(?!127\.)([0-9.]+)"\)|inet_pton\(AF_INET6, "(?!::1"|::ffff:127\.)([^"]+)")')


@requires_shared
def test_a_run_with_no_network_succeeds_and_tries_no_network(tmp_path):
    why = _netns_usable()
    if why:
        warnings.warn(f"NO-NETWORK TEST SKIPPED: {why}")
        pytest.skip(why)
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 255, (120, 160, 3), np.uint8)).save(folder / f"{i}.jpg")
    from faceproc.synth import sample_folder

    sample_folder(str(folder / "sample"), None, 0)  # insightface's group photo and the astronaut: real faces
    out = tmp_path / "out"
    trace = tmp_path / "trace"
    tracer = (f"strace -f --seccomp-bpf -qq -e trace=connect,sendto,sendmsg -o {trace} "
              if shutil.which("strace") else "")
    if not tracer:
        warnings.warn("strace not installed: the no-network run is checked for success only, not for attempts")
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_USAGE_STATS_ENABLED")}
    env.update(PYTHONPATH=str(REPO))
    cmd = f"ip link set lo up && exec {tracer}{sys.executable} -m faceproc.cli annotate {folder} -o {out} --previews 2 --engine ray"
    r = subprocess.run(["unshare", "-n", "sh", "-c", cmd], cwd=REPO, env=env, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    import pandas as pd

    assert len(pd.read_parquet(out / "faces")) >= 2 and (out / "report.html").exists()
    if tracer:
        tried = sorted({a or b for a, b in NOT_LOOPBACK.findall(trace.read_text())})
        assert tried == [], f"the run tried to reach {tried}"
