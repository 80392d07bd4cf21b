"""Long panoramas through the real SCRFD detector: a status row for each, never a traceback. Shapes whose
short side is under min_side at the detection resolution are refused from the header (too_small); every
shape up to that limit runs through all of the detector's passes."""

import logging

import numpy as np
import pytest
from PIL import Image

from faceproc.config import Config
from faceproc.discover import FileEntry
from faceproc.plan import ModelFactory, RunPlan
from tests.conftest import requires_shared
from tests.helpers import FakePredictor

pytestmark = requires_shared

SHAPES = {(20000, 20): "too_small", (20, 20000): "too_small", (4000, 16): "too_small", (2100, 16): "too_small",
          (2048, 16): "no_faces", (16, 2048): "no_faces", (4096, 32): "no_faces", (3000, 40): "no_faces",
          (8000, 200): "no_faces"}


class RealDetector(ModelFactory):
    """The real SCRFD detector with the stand-in age/gender model (no face is found on these anyway)."""

    def predictor(self, spec):
        return FakePredictor()


def test_panoramas_get_status_rows_not_tracebacks(tmp_path, caplog):
    from faceproc.pipeline import Annotator

    entries = []
    for (w, h) in SHAPES:
        p = tmp_path / f"p{w}x{h}.png"
        Image.fromarray(np.full((h, w, 3), 110, np.uint8)).save(p)
        entries.append(FileEntry(str(p)))
    with caplog.at_level(logging.WARNING):
        cfg = Config()
        cfg.model.random_init = True  # the stand-in model: no weights read
        res = Annotator(RunPlan.resolve(cfg, RealDetector())).annotate(entries)
    rows = res.images.to_pandas().set_index("image_path")
    for (w, h), want in SHAPES.items():
        row = rows.loc[str(tmp_path / f"p{w}x{h}.png")]
        assert row["status"] == want, (w, h, row["error"])
        if want == "too_small" and max(w, h) > 4000:
            assert "aspect ratio" in row["error"]
    assert not [r for r in caplog.records if "Traceback" in r.getMessage()]


@pytest.mark.parametrize("max_side", [2048, 1024])
def test_the_widest_accepted_shape_passes_every_detector_pass(max_side):
    """At the limit (short side min_side at max_side), insightface's smallest pass (160 px) still gets a
    short side of at least 1 px: no OpenCV assertion."""
    from faceproc.detectors.files import DetectorSpec
    from faceproc.detectors.registry import make_detector

    det = make_detector(DetectorSpec.resolve(Config().detector))
    rgb = np.full((16, max_side, 3), 110, np.uint8)
    assert len(det.detect(rgb, scale=1.0)) == 0
