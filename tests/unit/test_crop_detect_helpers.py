import numpy as np

from faceproc.crop import CROP_SIZE, crop_face, similarity_transform, template
from faceproc.config import DetectorConfig
from faceproc.detectors.base import Detections, finish
from faceproc.detectors.scrfd import FaceDetector


def test_similarity_recovers_known_transform(rng):
    src = rng.uniform(0, 100, (5, 2))
    a, s, t = 0.3, 1.7, np.array([12.0, -4.0])
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    dst = s * src @ rot.T + t
    m = similarity_transform(src, dst)
    np.testing.assert_allclose(m[:, :2], s * rot, atol=1e-9)
    np.testing.assert_allclose(m[:, 2], t, atol=1e-9)


def test_crop_puts_keypoints_on_the_template():
    # Mark 5 keypoints in a big image; after cropping they must sit on the template.
    img = np.zeros((600, 800, 3), np.uint8)
    tpl = template()
    kps = tpl * 2.3 + np.array([300.0, 150.0])  # a face 2.3x the crop size somewhere in the photo
    for x, y in kps:
        img[int(round(y)) - 1 : int(round(y)) + 2, int(round(x)) - 1 : int(round(x)) + 2] = 255
    crop = crop_face(img, (0, 0, 1, 1), kps)
    assert crop.shape == (CROP_SIZE, CROP_SIZE, 3) and crop.dtype == np.uint8
    for x, y in tpl:
        assert crop[int(round(y)), int(round(x))].max() > 100


def test_finish_is_the_one_post_processing():
    boxes = np.array([[-5, 60, 30, 90], [40, 0, 80, 45], [0, 0, 5, 5], [100, 2, 190, 60]], np.float32)
    kps = np.zeros((4, 5, 2), np.float32)
    det = Detections(boxes, kps, np.array([0.9, 0.8, 0.95, 0.6], np.float32))
    cfg = DetectorConfig(min_face=10)
    out = finish(det, 150, 100, cfg)
    assert out.boxes[:, 0].min() >= 0 and out.boxes[:, 2].max() <= 150  # clipped to the image
    assert len(out) == 3 and 0.95 not in out.scores  # the 5 px box is below min_face
    np.testing.assert_allclose(out.scores, [0.8, 0.6, 0.9])  # reading order: top row left to right, then the next row
    # min_face is in original pixels: on an image decoded at half size a 6 px box is a 12 px face
    assert len(finish(det, 150, 100, DetectorConfig(min_face=10), scale=0.5)) == 4
    np.testing.assert_allclose(finish(det, 150, 100, DetectorConfig(min_face=0, max_faces=2)).scores, [0.95, 0.9])


def test_pass_canvases_follow_smallest_face_are_few_and_fit():
    det = FaceDetector.__new__(FaceDetector)  # no model needed for the size rule
    det.cfg, det.step = DetectorConfig(), 128
    # a VGA-ish photo: the close-up pass and the main pass at 640, canvases shaped like the photo
    assert det.passes(768, 1024) == [(160, 128), (640, 480)]
    # a 12 MP photo decoded at half size: the main pass at the decoded resolution (40 px faces -> 20 px there)
    assert det.passes(1500, 2000, scale=0.5)[-1] == (2048, 1536)
    assert det.passes(2000, 1500, scale=0.5)[-1] == (1536, 2048)
    # a 2048 px photo decoded whole: 40 px faces need only a 1280 canvas (25 px each)
    assert det.passes(1536, 2048)[-1] == (1280, 960)
    assert det.passes(1152, 2048)[-1] == (1280, 736)  # 16:9
    # smaller smallest_face: a bigger main pass, never above the decoded size (rounded up) or max_size
    det.cfg.scrfd.smallest_face = 20
    assert det.passes(1536, 2048)[-1] == (2048, 1536)
    det.cfg.scrfd.max_size = 1536
    assert det.passes(1536, 2048)[-1] == (1536, 1152)
    det.cfg.scrfd.smallest_face = 0  # the main pass only at main_size
    assert det.passes(1536, 2048, scale=0.5)[-1] == (640, 480)
    det.cfg = DetectorConfig()
    sizes = set()
    for h in range(200, 2049, 37):
        for w in range(200, 2049, 41):
            for scale in (1.0, 0.5):
                for cw, ch in det.passes(h, w, scale):
                    # the image fits at the scale the pass asked for (long side binding), canvases step by 32
                    f = max(cw, ch) / max(h, w)
                    assert h * f <= ch + 0.5 and w * f <= cw + 0.5 and cw % 32 == 0 and ch % 32 == 0
                    sizes.add((cw, ch))
    assert len(sizes) <= 100
    det.step = 512  # onnxruntime: a session per size, so fewer sizes
    assert det.passes(1536, 2048)[-1] == (1536, 1152)
    assert len({p for h in range(200, 2049, 37) for w in range(200, 2049, 41) for p in det.passes(h, w)}) <= 40
