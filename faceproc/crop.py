"""The one crop policy, shared by training (crop cache) and inference (annotate).

Policy `arcface5-s0.75-128`: a least-squares similarity transform (rotation, uniform scale,
translation) maps the detector's 5 keypoints (left eye, right eye, nose, left and right mouth corner)
onto InsightFace's ArcFace template, shrunk by 0.9 about the crop centre so the crop keeps forehead,
hair and chin (context that carries age and gender cues, and that UTKFace's own crops keep). Output is
a 128x128 RGB uint8 crop; pixels outside the photo repeat the border. Without keypoints, the box
centre and size stand in for them. Because training crops come from this same function applied to the
detector's output, the model never sees a crop cut differently from the ones it is used on.
"""

from __future__ import annotations

import cv2
import numpy as np

CROP_SIZE = 128
TEMPLATE_SCALE = 0.9
POLICY = f"arcface5-s{TEMPLATE_SCALE}-{CROP_SIZE}"

# InsightFace ArcFace template for a 112x112 crop.
_ARCFACE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float64,
)


def template(size: int = CROP_SIZE, scale: float = TEMPLATE_SCALE) -> np.ndarray:
    unit = _ARCFACE_112 / 112.0
    return ((unit - 0.5) * scale + 0.5) * size


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """2x3 matrix of the least-squares similarity src -> dst (Umeyama, no reflection)."""
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    var_s = (s**2).sum() / len(src)
    cov = d.T @ s / len(src)
    u, sig, vt = np.linalg.svd(cov)
    sign = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[-1] = -1
    rot = u @ np.diag(sign) @ vt
    scale = (sig * sign).sum() / var_s if var_s > 0 else 1.0
    m = np.zeros((2, 3))
    m[:, :2] = scale * rot
    m[:, 2] = mu_d - scale * rot @ mu_s
    return m


def box_keypoints(box) -> np.ndarray:
    """Pseudo keypoints from a box, for detections that carry none."""
    x1, y1, x2, y2 = [float(v) for v in box[:4]]
    unit = _ARCFACE_112 / 112.0
    return np.stack([x1 + unit[:, 0] * (x2 - x1), y1 + unit[:, 1] * (y2 - y1)], axis=1)


def crop_face(image: np.ndarray, box, kps=None, size: int = CROP_SIZE) -> np.ndarray:
    """(RGB image, box, 5 keypoints in image pixels) -> size x size RGB uint8 crop."""
    pts = box_keypoints(box) if kps is None else np.asarray(kps, np.float64).reshape(5, 2)
    m = similarity_transform(pts, template(size))
    return cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def crop_faces(image: np.ndarray, boxes, kpss, size: int = CROP_SIZE) -> np.ndarray:
    n = len(boxes)
    out = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        out[i] = crop_face(image, boxes[i], None if kpss is None else kpss[i], size)
    return out
