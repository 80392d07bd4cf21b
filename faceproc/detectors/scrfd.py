"""InsightFace SCRFD detection: a few whole-image passes at different scales, merged by NMS.

One input size does not serve all photos: at 640 SCRFD finds no face in a headshot that fills the frame
(a small close-up pass does), and 40 px faces of a 12 MP photo vanish when it is shrunk to 640. So the
main pass grows with the photo: its scale puts faces of `smallest_face` original pixels at ~25 px, the
size SCRFD still finds reliably, so its cost follows what the user asks for instead of the photo's
resolution (a 2048 px photo is looked at on a 1280 canvas, not 2048: 2.5x fewer pixels, with the same
recall on the group photos of benchmarks/detect_options.py). SCRFD is fully convolutional, so a big
canvas is one run (measured 2.4x cheaper than 640 px tiles with overlap, and no faces cut at tile edges).
"""

from __future__ import annotations

import logging

import numpy as np

from ..config import DetectorConfig
from .base import Detections, finish
from .openvino import OpenVinoSessions

log = logging.getLogger(__name__)


# Canvas shapes (long / short side) a pass may take: photos of any aspect share a few input sizes (one
# onnxruntime session each), with a little padding.
ASPECTS = (1.0, 4 / 3, 3 / 2, 16 / 9)
FACE_PX = 25  # where smallest_face lands on the main pass: SCRFD's smallest anchors are 16 px


def canvas(h: int, w: int, long: float, step: int = 32) -> tuple[int, int]:
    """(width, height) of a pass that sees the h x w image with its long side at `long` px: the long side
    rounded up to `step`, the short side from the widest listed aspect the image still fits at that scale."""
    L = int(np.ceil(long / step) * step)
    f = L / max(h, w)
    short = min(h, w) * f
    r = max(a for a in ASPECTS if L / a >= short - 0.5)  # 1.0 always fits
    S = min(L, max(32, int(np.ceil(L / r / 32) * 32)))
    return (L, S) if w >= h else (S, L)


def load_scrfd(cfg: DetectorConfig, model_file: str):
    """The SCRFD model object of insightface (model_zoo), on CPU or CUDA as onnxruntime offers, or with its
    inference on OpenVINO (detector.scrfd.runtime): insightface's pre- and post-processing either way."""
    import onnxruntime as ort
    from insightface.model_zoo import model_zoo

    ort.set_default_logger_severity(3)
    providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in ort.get_available_providers()]
    kwargs = {"providers": providers}
    if cfg.threads:
        so = ort.SessionOptions()
        so.intra_op_num_threads = int(cfg.threads)
        so.inter_op_num_threads = 1
        kwargs["sess_options"] = so
    model = model_zoo.get_model(model_file, **kwargs)
    if model is None or getattr(model, "taskname", None) != "detection":
        raise RuntimeError(f"{model_file} is not an SCRFD detection model")
    if scrfd_runtime(cfg.scrfd.runtime, providers) == "openvino":
        from insightface.model_zoo.scrfd import SCRFD

        factory = OpenVinoSessions(cfg.scrfd.precision, cfg.threads, model.model_file)
        model = SCRFD(model_file=model.model_file, session=model.session, resolution_session_factory=factory)
        factory.normalise = (model.input_mean, model.input_std)
        # The canvas goes in as it is (uint8, RGB, a channels-first view without a copy); the compiled model
        # converts and normalises it itself (OpenVINO preprocessing): float conversion in numpy cost ~15%
        # of a big pass (30 of 192 ms at 2048x1536, one thread).
        model._prepare_input_blob = lambda img, size: img[None].transpose(0, 3, 1, 2)
        providers = ["CPUExecutionProvider"]
    else:
        import cv2

        mean, std = model.input_mean, model.input_std
        # insightface expects BGR and swaps to RGB; faceproc gives it RGB, which saves a copy of every photo.
        model._prepare_input_blob = lambda img, size: cv2.dnn.blobFromImage(img, 1.0 / std, size, (mean,) * 3,
                                                                            swapRB=False)
    model.prepare(0 if "CUDAExecutionProvider" in providers else -1, det_thresh=cfg.threshold, nms_thresh=cfg.nms_threshold)
    return model


def scrfd_runtime(setting: str, providers: list[str]) -> str:
    """auto: onnxruntime where it has CUDA, else OpenVINO when installed (about 2x faster on a CPU at the
    same recall, benchmarks/detect_options.py), else onnxruntime on the CPU."""
    if setting != "auto":
        return setting
    if "CUDAExecutionProvider" in providers:
        return "onnxruntime"
    try:
        import openvino  # noqa: F401
    except ImportError:
        return "onnxruntime"
    return "openvino"


class FaceDetector:
    """prepare once, then detect(rgb) -> Detections in the pixels of the given image."""

    def __init__(self, cfg: DetectorConfig, model_file: str):
        self.cfg = cfg
        self.model = load_scrfd(cfg, model_file)
        self.step = 128 if isinstance(getattr(self.model, "resolution_session_factory", None), OpenVinoSessions) else 512

    def _pass(self, rgb: np.ndarray, sizes) -> Detections:
        sizes = [(int(s), int(s)) if np.isscalar(s) else (int(s[0]), int(s[1])) for s in sizes]
        det, kps = self.model.detect(rgb, input_size=sizes, det_thresh=self.cfg.threshold)
        if det.shape[0] == 0:
            return Detections.empty()
        if kps is None:
            kps = np.zeros((det.shape[0], 5, 2), np.float32)
        return Detections(det[:, :4].astype(np.float32), kps.astype(np.float32), det[:, 4].astype(np.float32))

    def passes(self, h: int, w: int, scale: float = 1.0) -> list[tuple[int, int]]:
        """Canvas (width, height) of each pass for an h x w decoded image (`scale`: decoded pixels per
        original pixel): the close-up sizes, then the main pass (see the module docstring)."""
        s = self.cfg.scrfd
        long = float(s.main_size)
        if s.smallest_face > 0:
            want = max(h, w) / scale * FACE_PX / s.smallest_face  # original long side at the wanted scale
            long = max(long, min(want, max(h, w), s.max_size))
        # Above main_size the canvas steps by 128 px, so big photos share a few sizes too (onnxruntime: 512,
        # as it holds a session per size, with its own memory arena on a GPU).
        main = canvas(h, w, long, 32 if long <= s.main_size else self.step)
        return [canvas(h, w, x) for x in s.sizes] + [main]

    def detect(self, rgb: np.ndarray, scale: float = 1.0) -> Detections:
        h, w = rgb.shape[:2]
        # insightface's SCRFD runs every input size and merges them with its own NMS (at nms_threshold); it
        # gets the RGB image as it is (load_scrfd's input blob takes RGB).
        det = self._pass(np.ascontiguousarray(rgb), self.passes(h, w, scale))
        return finish(det, w, h, self.cfg, scale)
