"""What every face detector gives the pipeline (Detections) and the one box post-processing (finish)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ..config import DetectorConfig


@dataclass
class Detections:
    boxes: np.ndarray  # (N, 4) float32 x1 y1 x2 y2, pixels of the image given to detect()
    kps: np.ndarray  # (N, 5, 2) float32
    scores: np.ndarray  # (N,) float32

    def __len__(self) -> int:
        return len(self.scores)

    def scaled(self, factor: float) -> "Detections":
        return Detections(self.boxes * factor, self.kps * factor, self.scores)

    @staticmethod
    def empty() -> "Detections":
        return Detections(np.zeros((0, 4), np.float32), np.zeros((0, 5, 2), np.float32), np.zeros(0, np.float32))


class Detector(Protocol):
    """What the pipeline needs from a face detector: boxes, 5 keypoints and scores in the pixels of the
    image it was given, post-processed by `finish`."""

    def detect(self, rgb: np.ndarray, scale: float = 1.0) -> Detections: ...



def finish(det: Detections, w: int, h: int, cfg: DetectorConfig, scale: float = 1.0) -> Detections:
    """The one place for box post-processing, whatever the detector: clip to the image, drop boxes below
    min_face (original pixels: `scale` is given pixels per original pixel), keep the max_faces best, and
    order in reading order (top to bottom in rows, then left to right) for a deterministic face_index."""
    if not len(det):
        return Detections.empty()
    boxes, kps, scores = det.boxes.copy(), det.kps, det.scores
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, w)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, h)
    side = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    ok = (side >= 1.0) & (side / scale >= cfg.min_face)
    boxes, kps, scores = boxes[ok], kps[ok], scores[ok]
    if cfg.max_faces and len(scores) > cfg.max_faces:
        top = np.argsort(-scores, kind="stable")[: cfg.max_faces]
        boxes, kps, scores = boxes[top], kps[top], scores[top]
    order = np.lexsort((boxes[:, 0], np.round(boxes[:, 1] / 32)))
    return Detections(boxes[order], kps[order], scores[order])
