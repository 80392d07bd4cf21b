"""Progress per file on the Ray engine (issue 23, item 5): actors return whole shards, yet a terminal run's
line moves while a shard is in flight (executors/ray_progress.py: the workers' counts through a board actor
the driver polls). One worker, one shard of slow photos: the line must show counts between 0 and all.

The run is a child process: an embedded Ray in pytest's own process would fix Ray's auth settings for the
process, and test_ray_job.py's token-auth cluster after it could no longer be reached."""

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.helpers import make_tree

REPO = Path(__file__).resolve().parents[2]
N_PHOTOS = 10
CHILD = r"""
import sys, time
from faceproc.engine import annotate
from faceproc.progress import ProgressLine
from tests.helpers import FakeDetector, FakeModels, cfg_for_tests

class SlowDetector(FakeDetector):
    def detect(self, rgb, scale=1.0):
        time.sleep(0.3)  # a photo takes a while: several of the workers' messages fall inside the one shard
        return super().detect(rgb, scale)

class SlowModels(FakeModels):
    def detector(self, spec):
        return SlowDetector()

ProgressLine.MIN_INTERVAL = 0.0
rep = annotate([sys.argv[1]], sys.argv[2], cfg_for_tests(shard_size=1000, workers=1), engine="ray", progress=True,
               models=SlowModels())
print("FILES", rep["files"], "FAILED", len(rep["failed_shards"]))
"""


def test_a_one_shard_ray_run_moves_per_file(tmp_path):
    make_tree(tmp_path / "in", n=N_PHOTOS)
    total = N_PHOTOS + 1  # and a broken file
    env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_USAGE_STATS_ENABLED": "0"}
    for k in ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN"):
        env.pop(k, None)
    r = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path / "in"), str(tmp_path / "out")], cwd=REPO,
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"FILES {total} FAILED 0" in r.stdout
    drawn = [int(m) for m in re.findall(rf"(\d+)/{total} files", r.stderr)]
    assert drawn[0] == 0 and drawn[-1] == total
    assert len({d for d in drawn if 0 < d < total}) >= 2, drawn  # moved inside the one shard, not 0 -> 100%
    assert re.search(r"\d+ faces?", r.stderr)
    log = (tmp_path / "out" / "faceproc.log").read_text()
    assert f"done ({total} files, 5 faces) | 1/1 shards" in log and "summary: " in log
