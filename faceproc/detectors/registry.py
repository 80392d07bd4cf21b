"""Detector kinds (DetectorConfig.kind) -> class, and the one construction site of detectors."""

from __future__ import annotations

from ..modelfile import lasting_paths
from .base import Detector
from .files import DetectorSpec
from .scrfd import FaceDetector
from .yunet import YuNetDetector

# Detector kinds -> class (each takes its settings and a local model file); a new detector is one class and
# one entry here, and its settings section in config.py.
DETECTORS: dict[str, type] = {"scrfd": FaceDetector, "yunet": YuNetDetector}


class _Files:
    """Holds a detector's private model copies (when its spec carried the bytes) for as long as it lives."""


def make_detector(spec: DetectorSpec) -> Detector:
    """The one construction site of detectors (pipeline workers and the training crop cache)."""
    cfg = spec.settings
    try:
        cls = DETECTORS[cfg.kind]
    except KeyError:
        raise ValueError(f"unknown detector kind {cfg.kind!r} (known: {', '.join(DETECTORS)})") from None
    if cfg.threads:  # OpenCV (YuNet itself, decode resizes, letterboxing, crops) keeps to the worker's share
        import cv2    # too: by default it starts a thread per core in every worker process

        cv2.setNumThreads(int(cfg.threads))
    files = _Files()
    (path,) = lasting_paths(files, spec.file)  # SCRFD opens its file again for every new input size
    detector = cls(cfg, path)
    detector._files = files
    return detector
