"""A worker node that cannot see the inputs stops the run at its start, with one line naming the node and the
input (issue 22.1, faceproc/executors/probe.py), instead of thousands of `unreadable` rows.

Three nodes started with `ray start` (tests/ray/own_cluster.py): a head with no CPU and a worker node, both
in a private mount namespace with an empty tmpfs over the photos folder (as a pod without the archive's
volume), and a worker node that sees it. The driver (jobs/annotate.py, attached through RAY_ADDRESS) sees
the photos too. The blind head hosts no worker, so it is not probed and not named; the blind worker node is.
A second folder, visible everywhere, then runs to the end on the same cluster: the probe lets it through.
Stand-in models (tests.helpers.FakeModels) keep the actors cheap.
"""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.helpers import make_tree, quality_off_config
from tests.ray.own_cluster import OwnCluster, can_hide_folders

pytestmark = [pytest.mark.ray, pytest.mark.slow,
              pytest.mark.skipif(not can_hide_folders(),
                                 reason="needs root and unshare(1) to hide a folder from a node")]


def annotate_job(c: OwnCluster, src: Path, out: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "jobs/annotate.py", "--input", str(src), "--output", str(out),
                           "--random-init", "--config", quality_off_config(tmp_path), "--shard-size", "4"],
                          cwd=REPO, env={**c.env, "RAY_ADDRESS": c.address}, capture_output=True, text=True,
                          timeout=150)


def test_a_node_that_cannot_read_the_inputs_stops_the_run_before_any_row(tmp_path):
    photos, seen = tmp_path / "photos", tmp_path / "seen"
    make_tree(photos, n=12)
    make_tree(seen, n=12)
    c = OwnCluster({"PYTHONPATH": str(REPO), "FACEPROC_MODEL_FACTORY": "tests.helpers:FakeModels"})
    try:
        c.head(num_cpus=0, dashboard=False, hide=[photos])
        c.add_node(num_cpus=1)
        blind_raylet = c.add_node(num_cpus=2, hide=[photos])
        nodes = c.node_ids(3)
        by_cpus = {r.get("CPU", 0): n for n, r in nodes.items()}
        head, seeing, blind = by_cpus[0], by_cpus[1], by_cpus[2]
        # The premise: the blind node (and every worker it starts) sees the folder empty; the driver does not.
        assert (photos / "d0" / "0.png").exists()
        assert not Path(f"/proc/{blind_raylet}/root{photos}/d0").exists()

        out = tmp_path / "out"
        r = annotate_job(c, photos, out, tmp_path)
        errors = [line for line in r.stderr.splitlines() if line.startswith("Error:")]
        assert r.returncode == 1, (r.stdout + r.stderr)[-4000:]
        assert len(errors) == 1 and "Traceback" not in r.stderr, r.stderr[-4000:]
        # "node IP (id...)": the IP is the one Ray registered for the node
        assert re.match(rf"Error: node [\d.]+ \({blind[:8]}\) cannot read the input {re.escape(str(photos))} \(",
                        errors[0]), errors[0]
        assert "FileNotFoundError" in errors[0] and "Stopped before any row was written" in errors[0]
        assert seeing[:8] not in errors[0] and head[:8] not in errors[0]  # the head hosts no worker: not probed
        assert not list(out.rglob("*.parquet")), "rows were written"
        assert not list(out.glob("_shards/*.json")), "a shard was committed"

        # The same cluster, inputs every node sees: the probe lets the run through, on both worker nodes.
        out2 = tmp_path / "out2"
        r = annotate_job(c, seen, out2, tmp_path)
        assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
        manifest = json.loads((out2 / "manifest.json").read_text())
        assert manifest["state"] == "complete"
        assert {s["node"] for s in manifest["shards"].values()} <= {seeing, blind}
        assert "readable on 2 node(s)" in (out2 / "faceproc.log").read_text()
    finally:
        c.stop()
