"""Seconds per stage, per shard (faceproc/pipeline.py's timers, kept in the shard's marker; issue 22.5: where
the time goes, benchmarks/annotate.py sums them): each stage's time lands under its own name, and no row
changes. Stand-in models made slow on purpose show where the seconds went."""

import json
import time

import numpy as np

from faceproc.engine import annotate
from tests.helpers import FakeDetector, FakeModels, FakePredictor, cfg_for_tests, make_tree

DETECT_S, PREDICT_S, COMMIT_S = 0.15, 0.05, 0.2


class SlowDetector(FakeDetector):
    def detect(self, rgb, scale=1.0):
        time.sleep(DETECT_S)
        return super().detect(rgb, scale)


class SlowPredictor(FakePredictor):
    def predict(self, crops):
        time.sleep(PREDICT_S)
        return super().predict(crops)


class SlowModels(FakeModels):
    def __init__(self):
        super().__init__(SlowPredictor)

    def detector(self, spec):
        return SlowDetector()


def test_each_stage_is_timed_under_its_own_name_per_shard_and_kept_in_the_marker(tmp_path, monkeypatch):
    import faceproc.runstate as runstate

    monkeypatch.setattr(runstate, "_tables_in_place", lambda store, sid: time.sleep(COMMIT_S))  # a slow commit
    make_tree(tmp_path / "in", n=8)  # 8 images (4 with a face) and one broken file, in 3 shards
    annotate([str(tmp_path / "in")], tmp_path / "out", cfg_for_tests(workers=1, shard_size=3), engine="local",
             progress=False, models=SlowModels())
    markers = [json.loads(p.read_text()) for p in (tmp_path / "out" / "_shards").glob("*.json")]
    assert len(markers) == 3
    for m in markers:  # each shard's own seconds, not a running total
        st, decoded = m["stages"], m["counts"].get("ok", 0) + m["counts"].get("no_faces", 0)
        assert set(st) == {"decode", "detect", "crop", "agegender", "rows", "commit"}, st
        assert decoded * DETECT_S <= st["detect"] < decoded * DETECT_S + 0.5, m
        assert PREDICT_S <= st["agegender"] < PREDICT_S + 0.5, m  # one batch a shard
        assert COMMIT_S <= st["commit"] < COMMIT_S + 0.5, m
        assert st["decode"] < 2 * DETECT_S and st["crop"] < 2 * DETECT_S, m  # the sleeps are not theirs
        # each stage is rounded to 4 places: their sum may pass the shard's seconds by a few 1e-5
        assert min(st.values()) >= 0 and m["seconds"] >= sum(v for k, v in st.items() if k != "commit") - 0.005
    # The rows do not carry the timers: the images table's columns are the schema's, as before.
    import pandas as pd

    from faceproc.schema import IMAGES

    assert list(pd.read_parquet(tmp_path / "out" / "images").columns) == IMAGES.names
    assert np.isfinite(pd.read_parquet(tmp_path / "out" / "images")["elapsed_ms"]).all()
