"""GPU placement on a cluster with mixed node types (issue 22.3): GPU actors only where GPUs are, CPU actors
on the other nodes.

A head that declares one GPU (`ray start --head --num-gpus 1`: Ray takes the number on trust, so no real GPU
is needed) and a CPU-only node, two CPUs each, started with `ray start` and stopped by their own processes
(tests/ray/own_cluster.py). The stand-in models (tests.helpers.FakeModels) keep the actors cheap: the test
is about where they go. Before issue 22 every actor asked for a share of the cluster's GPUs (1/4 each), so
the CPU-only node could host none of them and the run waited forever for the two actors that did not fit.
"""

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO
from tests.helpers import make_tree, quality_off_config
from tests.ray.own_cluster import OwnCluster

pytestmark = [pytest.mark.ray, pytest.mark.slow]


@pytest.fixture(scope="module")
def mixed_cluster():
    """The cluster for this module; at the end, its processes are gone and a bystander process is not."""
    import psutil

    env = {"PYTHONPATH": str(REPO), "FACEPROC_MODEL_FACTORY": "tests.helpers:FakeModels"}
    c = OwnCluster(env)
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        c.head(num_cpus=2, num_gpus=1, dashboard=False)
        cpu_raylet = c.add_node(num_cpus=2)
        nodes = c.node_ids(2)
        gpu_node = next(n for n, r in nodes.items() if r.get("GPU"))
        cpu_node = next(n for n, r in nodes.items() if not r.get("GPU"))
        mine = {p.pid for p in c._own()}
        assert cpu_raylet in mine and bystander.pid not in mine and os.getpid() not in mine
        yield c, gpu_node, cpu_node
        c.stop()
        left = [p for p in mine if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
        assert not left, f"cluster processes left running: {left}"
        assert bystander.poll() is None, "stopping the test's cluster killed another process"
    finally:
        c.stop()
        bystander.kill()


def test_gpu_actors_go_to_the_gpu_node_and_cpu_actors_to_the_cpu_node(mixed_cluster, tmp_path):
    c, gpu_node, cpu_node = mixed_cluster
    make_tree(tmp_path / "in", n=24)
    out = tmp_path / "out"
    env = {**c.env, "RAY_ADDRESS": c.address}
    r = subprocess.run([sys.executable, "jobs/annotate.py", "--input", str(tmp_path / "in"), "--output", str(out),
                        "--random-init", "--config", quality_off_config(tmp_path), "--shard-size", "2"],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=100)
    log = r.stdout + r.stderr
    assert r.returncode == 0, log[-4000:]
    # The plan the driver made: per node, how many actors with which share (the ids shortened to 8 characters).
    assert f"node {gpu_node[:8]}: 2 x (1 CPU, 0.5 GPU)" in log, log[-4000:]
    assert f"node {cpu_node[:8]}: 2 x (1 CPU)" in log, log[-4000:]
    # What Ray did with it: two actors were given a GPU (each says once that it runs on the CPU: no CUDA here) ...
    fallback = [line for line in log.splitlines() if "onnxruntime has no CUDA provider" in line]
    assert len(fallback) == 2, log[-4000:]
    # ... and both nodes ran shards (the manifest records each shard's node): the CPU node hosted actors.
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["state"] == "complete"
    ran_on = [s["node"] for s in manifest["shards"].values()]
    assert set(ran_on) == {gpu_node, cpu_node}, ran_on


def test_gpu_share_asked_for_explicitly_still_leaves_cpu_nodes_their_actors(mixed_cluster, tmp_path):
    """run.gpus_per_worker: 1 (one whole GPU per actor): one GPU actor on the head, its other CPU idle for
    it, and the CPU node's actors as before."""
    c, gpu_node, cpu_node = mixed_cluster
    make_tree(tmp_path / "in", n=12)
    cfg = tmp_path / "gpu1.yaml"
    cfg.write_text("model: {min_face_px: 0, min_sharpness: 0}\nrun: {gpus_per_worker: 1}\n")
    env = {**c.env, "RAY_ADDRESS": c.address}
    r = subprocess.run([sys.executable, "jobs/annotate.py", "--input", str(tmp_path / "in"), "--output",
                        str(tmp_path / "out"), "--random-init", "--config", str(cfg), "--shard-size", "2"],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=100)
    log = r.stdout + r.stderr
    assert r.returncode == 0, log[-4000:]
    assert f"node {gpu_node[:8]}: 1 x (1 CPU, 1 GPU)" in log, log[-4000:]
    assert f"node {cpu_node[:8]}: 2 x (1 CPU)" in log, log[-4000:]
    assert len([line for line in log.splitlines() if "onnxruntime has no CUDA provider" in line]) == 1
    ran_on = {s["node"] for s in json.loads((tmp_path / "out" / "manifest.json").read_text())["shards"].values()}
    assert ran_on == {gpu_node, cpu_node}

