"""The real SCRFD detector from ../shared on real and generated photos."""

import numpy as np
import pytest

from faceproc.config import DetectorConfig, ScrfdConfig, YunetConfig
from faceproc.synth import box_inside, mosaic
from tests.conftest import requires_shared

pytestmark = requires_shared


def detector_for(cfg):
    from faceproc.detectors.files import DetectorSpec
    from faceproc.detectors.registry import make_detector

    return make_detector(DetectorSpec.resolve(cfg))


@pytest.fixture(scope="module")
def detector():
    return detector_for(DetectorConfig())


def iou(a, b):
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0, x2 - x1) * max(0, y2 - y1)
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_group_photo_t1_has_six_faces_on_the_faces(detector):
    import insightface
    from insightface.app import FaceAnalysis

    from tests.conftest import INSIGHTFACE_ROOT

    bgr = insightface.data.get_image("t1")
    det = detector.detect(bgr[..., ::-1].copy())
    assert len(det) == 6 and (det.scores > 0.6).all()
    # Independent reference: insightface's own FaceAnalysis at its 640 default on the same photo.
    app = FaceAnalysis(name="buffalo_m", root=str(INSIGHTFACE_ROOT), allowed_modules=["detection"],
                       providers=["CPUExecutionProvider"])
    app.prepare(ctx_id=-1, det_size=(640, 640))
    ref = app.get(bgr)
    assert len(ref) == 6
    for f in ref:
        assert max(iou(f.bbox, b) for b in det.boxes) > 0.8
    for b, k in zip(det.boxes, det.kps):  # the 5 landmarks sit inside their box
        assert (k[:, 0] > b[0]).all() and (k[:, 0] < b[2]).all() and (k[:, 1] > b[1]).all() and (k[:, 1] < b[3]).all()


def test_astronaut_one_face(detector):
    import skimage.data

    det = detector.detect(skimage.data.astronaut())
    assert len(det) == 1
    x1, y1, x2, y2 = det.boxes[0]
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    assert 180 < cx < 280 and 80 < cy < 170  # Eileen Collins' face, upper middle of the 512x512 photo


def test_close_ups_that_fill_the_frame(detector, utk_files):
    import cv2

    files = utk_files[::1000][:20]
    found = 0
    for f in files:
        rgb = cv2.imread(f)[..., ::-1].copy()
        det = detector.detect(rgb)
        if len(det):
            b = det.boxes[0]
            found += abs((b[0] + b[2]) / 2 - 100) < 40 and (b[2] - b[0]) > 60
    assert found >= 19, f"{found}/20 close-ups found"


def test_forty_pixel_faces_in_a_12mp_photo(detector, utk_files):
    """UTKFace crops pasted at 48 px (the detected face box ~40 px wide) into a 4000x3000 photo, decoded the
    way the pipeline decodes (long side <= 2048), detected with and without the full-resolution pass."""
    import cv2

    from faceproc.decode import decode_file

    rng = np.random.default_rng(5)
    picks = [utk_files[i] for i in rng.choice(len(utk_files), 12, replace=False)]
    img, placed = mosaic(picks, (4000, 3000), 48, rng)
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "big.jpg"
        cv2.imwrite(str(p), img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 92])
        dec = decode_file(str(p))
    det = detector.detect(dec.rgb, scale=dec.scale)
    boxes = det.boxes / dec.scale
    widths = boxes[:, 2] - boxes[:, 0]
    hits = sum(any(box_inside(b, pl.box, slack=0.1) for b in boxes) for pl in placed)
    assert hits >= 11, f"{hits}/12 small faces found"
    assert 30 < np.median(widths) < 46
    plain = detector_for(DetectorConfig(scrfd=ScrfdConfig(smallest_face=0))).detect(dec.rgb, scale=dec.scale)
    hits_plain = sum(any(box_inside(b, pl.box, slack=0.1) for b in plain.boxes / dec.scale) for pl in placed)
    assert hits_plain <= 6 < hits  # the big main pass (here at the decoded resolution) is what finds them


@pytest.mark.parametrize("size", [(2048, 1536), (1600, 1200)])
def test_forty_pixel_faces_in_mid_size_photos_on_a_smaller_canvas(detector, utk_files, size):
    """In a photo decoded whole, the main pass runs below the decoded resolution (40 px faces at ~25 px):
    the same faces are still found, on a canvas with 2-3x fewer pixels than the photo."""
    import tempfile
    from pathlib import Path

    import cv2

    from faceproc.decode import decode_file

    rng = np.random.default_rng(11)
    picks = [utk_files[i] for i in rng.choice(len(utk_files), 12, replace=False)]
    img, placed = mosaic(picks, size, 48, rng)
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "mid.jpg"
        cv2.imwrite(str(p), img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 92])
        dec = decode_file(str(p))
    assert dec.scale == 1.0
    main = detector.passes(*dec.rgb.shape[:2], scale=dec.scale)[-1]
    assert main[0] * main[1] * 2 < size[0] * size[1]
    det = detector.detect(dec.rgb, scale=dec.scale)
    hits = sum(any(box_inside(b, pl.box, slack=0.1) for b in det.boxes) for pl in placed)
    assert hits >= 11, f"{hits}/12 faces of ~40 px found on a {main} canvas"


def test_yunet_through_the_same_seam():
    """A second detector kind behind make_detector: YuNet finds t1's six faces with keypoints in the order
    the crop templates expect (image-left eye first), and the pipeline runs on it unchanged."""
    import insightface

    from faceproc.config import Config, DetectorConfig
    from tests.conftest import SHARED

    model = SHARED / "models" / "yunet" / "face_detection_yunet_2023mar.onnx"
    if not model.exists():
        from tests.conftest import skip_unless_shared

        skip_unless_shared(f"the YuNet model is not at {model}")
    img = insightface.data.get_image("t1")[..., ::-1]
    det = detector_for(DetectorConfig(kind="yunet", yunet=YunetConfig(model_file=str(model)))).detect(img)
    assert len(det) == 6 and (det.scores > 0.8).all()
    assert (det.kps[:, 0, 0] < det.kps[:, 1, 0]).all() and (det.kps[:, 3, 0] < det.kps[:, 4, 0]).all()
    ref = detector_for(DetectorConfig()).detect(img)  # SCRFD: the same faces
    centres = lambda d: np.sort((d.boxes[:, 0] + d.boxes[:, 2]) / 2)  # noqa: E731
    assert np.abs(centres(det) - centres(ref)).max() < 15
    cfg = Config()
    cfg.detector.kind, cfg.detector.yunet.model_file = "yunet", str(model)
    cfg.model.random_init = True
    from faceproc.pipeline import Annotator
    from faceproc.plan import RunPlan

    assert Annotator(RunPlan.resolve(cfg)).detector.__class__.__name__ == "YuNetDetector"
