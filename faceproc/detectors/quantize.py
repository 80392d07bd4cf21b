"""An int8 copy of the SCRFD file for OpenVINO (detector.scrfd.precision = int8), made once per machine."""

from __future__ import annotations

import logging

import numpy as np

from ..storage import file_sha256
from .files import DetectorUnavailable

log = logging.getLogger(__name__)


QUANT_VERSION = 1  # bump when the calibration below changes: cached copies are then made again


def _calibration_blobs(size: int = 640) -> list:
    """Deterministic calibration inputs that ship with insightface (its sample photos: a group, a portrait,
    masked faces), letterboxed at two scales the way SCRFD's passes see them: no user data, same every run."""
    import os

    import cv2
    import insightface

    folder = os.path.join(os.path.dirname(insightface.__file__), "data", "images")
    blobs = []
    for name in sorted(os.listdir(folder)):
        img = cv2.imread(os.path.join(folder, name))
        if img is None:
            continue
        for frac in (1.0, 0.5):
            h, w = img.shape[:2]
            f = frac * size / max(h, w)
            small = cv2.resize(img, (max(1, int(w * f)), max(1, int(h * f))))
            canvas = np.zeros((size, size, 3), np.uint8)
            canvas[: small.shape[0], : small.shape[1]] = small
            blobs.append(cv2.dnn.blobFromImage(canvas, 1 / 128, (size, size), (127.5, 127.5, 127.5), swapRB=True))
    return blobs


def quantized_detector(model_file: str) -> str:
    """An int8 OpenVINO copy of the SCRFD file (NNCF post-training quantization, calibrated on
    _calibration_blobs), made once per machine under $FACEPROC_CACHE (default ~/.cache/faceproc), under a lock."""
    import fcntl
    import os

    digest = file_sha256(model_file)[:16]
    cache = os.path.join(os.path.expanduser(os.environ.get("FACEPROC_CACHE", "~/.cache/faceproc")), "detectors")
    os.makedirs(cache, exist_ok=True)
    xml = os.path.join(cache, f"{digest}-int8-v{QUANT_VERSION}.xml")
    with open(os.path.join(cache, ".quantize.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one quantization per machine, whatever runs at once
        if not os.path.exists(xml):
            try:
                import nncf
                import openvino as ov
            except ImportError:
                raise DetectorUnavailable("detector.scrfd.precision = int8 needs nncf (pip install nncf)") from None
            model = ov.Core().read_model(model_file)
            model.reshape({model.inputs[0].any_name: [1, 3, 640, 640]})
            data = _calibration_blobs()
            log.info("quantizing %s to int8 once (%d calibration inputs) into %s", model_file, len(data), xml)
            q = nncf.quantize(model, nncf.Dataset(data), subset_size=len(data), preset=nncf.QuantizationPreset.MIXED)
            q.reshape({q.inputs[0].any_name: ov.PartialShape([1, 3, -1, -1])})
            tmp = xml + ".tmp.xml"
            ov.save_model(q, tmp, compress_to_fp16=False)
            os.replace(tmp[:-4] + ".bin", xml[:-4] + ".bin")
            os.replace(tmp, xml)
    return xml
