"""OpenCV's YuNet detector (detector.kind = yunet)."""

from __future__ import annotations

import numpy as np

from ..config import DetectorConfig
from .base import Detections, finish


class YuNetDetector:
    """OpenCV's YuNet (`cv2.FaceDetectorYN`, a 230 KB model): several times cheaper than SCRFD-2.5G on a CPU,
    with the same 5 keypoints in the same order (image-left eye first). The model file comes from
    detector.yunet.model_file / $FACEPROC_DETECTOR_FILE (OpenCV zoo: face_detection_yunet_2023mar.onnx).
    One pass at the decoded resolution up to yunet.max_side (or, with full_res, 2048 px)."""

    def __init__(self, cfg: DetectorConfig, model_file: str):
        import cv2

        self.cfg = cfg
        self.net = cv2.FaceDetectorYN.create(model_file, "", (320, 320), self.cfg.threshold, self.cfg.nms_threshold, 5000)

    def detect(self, rgb: np.ndarray, scale: float = 1.0) -> Detections:
        import cv2

        h, w = rgb.shape[:2]
        y = self.cfg.yunet
        big = y.full_res == "always" or (y.full_res == "auto" and max(h, w) > y.full_res_above)
        limit = 2048 if big else y.max_side
        f = min(1.0, limit / max(h, w))
        bgr = np.ascontiguousarray(rgb[..., ::-1])
        if f < 1.0:
            bgr = cv2.resize(bgr, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)
        self.net.setInputSize((bgr.shape[1], bgr.shape[0]))
        _, faces = self.net.detect(bgr)
        if faces is None or not len(faces):
            return Detections.empty()
        faces = faces.astype(np.float32)
        xy = faces[:, :14] / np.float32(f)  # back to the pixels we were given
        boxes = np.stack([xy[:, 0], xy[:, 1], xy[:, 0] + xy[:, 2], xy[:, 1] + xy[:, 3]], axis=1)
        det = Detections(boxes, xy[:, 4:14].reshape(-1, 5, 2).copy(), faces[:, 14].copy())
        return finish(det, w, h, self.cfg, scale)
