"""Progress per file on the Ray engine (issue 23, item 5): actors return whole shards, yet a terminal run's
line moves while a shard is in flight (executors/ray_progress.py: the workers' counts through a board actor
the driver polls). One worker, one shard of slow photos: the line must show counts between 0 and all."""

import re
import time

from faceproc.engine import annotate
from faceproc.progress import ProgressLine
from tests.helpers import FakeDetector, FakeModels, cfg_for_tests, make_tree

N_PHOTOS = 10


class SlowDetector(FakeDetector):
    def detect(self, rgb, scale=1.0):
        time.sleep(0.3)  # a photo takes a while: several of the workers' messages fall inside the one shard
        return super().detect(rgb, scale)


class SlowModels(FakeModels):
    def detector(self, spec):
        return SlowDetector()


def test_a_one_shard_ray_run_moves_per_file(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(ProgressLine, "MIN_INTERVAL", 0.0)
    make_tree(tmp_path / "in", n=N_PHOTOS)
    total = N_PHOTOS + 1  # and a broken file
    rep = annotate([str(tmp_path / "in")], tmp_path / "out", cfg_for_tests(shard_size=1000, workers=1),
                   engine="ray", progress=True, models=SlowModels())
    assert rep["files"] == total and not rep["failed_shards"]
    err = capsys.readouterr().err
    drawn = [int(m) for m in re.findall(rf"(\d+)/{total} files", err)]
    assert drawn[0] == 0 and drawn[-1] == total
    assert len({d for d in drawn if 0 < d < total}) >= 2, drawn  # moved inside the one shard, not 0 -> 100%
    assert re.search(r"\d+ faces?", err)
    log = (tmp_path / "out" / "faceproc.log").read_text()
    assert f"done ({total} files, 5 faces) | 1/1 shards" in log and "summary: " in log
