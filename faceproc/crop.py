"""Crop policies: how a detected face becomes the model's 128x128 input, shared by training and inference.

A policy is named `arcface5-s<scale>[-up<shift>]-<size>`: a least-squares similarity transform (rotation, uniform
scale, translation) maps the detector's 5 keypoints (left eye, right eye, nose, left and right mouth
corner) onto InsightFace's ArcFace template, scaled by <scale> about the crop centre (below 1 the face
is smaller and the crop keeps more forehead, hair and chin) and moved up by <shift> crop heights, into
a <size> x <size> RGB uint8 crop.
Pixels outside the photo repeat its border. Without keypoints, the box stands in for them.

The policy travels with the weights: a model card names it and the predictor cuts crops the way the
card says, so a model trained under one policy is never fed crops cut under another. Old models keep
working under their own policy; a name this module cannot reproduce is refused.

Why the default changed from `arcface5-s0.9-128` to a tighter one: UTKFace crops are 200x200, and at
s0.9 a median 44% of each training crop fell outside the source image and was filled with smeared
edge pixels, while in a photo the same region holds hair, background and other people. The model
learnt on smears and lost 6 points of gender accuracy on faces in photos (issue 9). Training can also
fill the out-of-source region with real content instead (`crop_face_filled`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import cv2
import numpy as np

CROP_SIZE = 128

# InsightFace ArcFace template for a 112x112 crop.
_ARCFACE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float64,
)

_NAME = re.compile(r"^arcface5-s(?P<scale>\d+(?:\.\d+)?)(?:-up(?P<up>\d+(?:\.\d+)?))?-(?P<size>\d+)$")


class CropPolicyError(ValueError):
    """A crop policy name this code cannot reproduce."""


@dataclass(frozen=True)
class CropPolicy:
    scale: float
    size: int = CROP_SIZE
    up: float = 0.0  # the face sits this share of the crop height higher (less above the head, more chin)

    @property
    def name(self) -> str:
        return f"arcface5-s{self.scale:g}" + (f"-up{self.up:g}" if self.up else "") + f"-{self.size}"

    def template(self) -> np.ndarray:
        unit = _ARCFACE_112 / 112.0
        return ((unit - 0.5) * self.scale + 0.5 - np.array([0.0, self.up])) * self.size

    def matrix(self, kps) -> np.ndarray:
        """2x3 transform from image pixels to crop pixels."""
        return similarity_transform(np.asarray(kps, np.float64).reshape(5, 2), self.template())


def parse_policy(name: str) -> CropPolicy:
    m = _NAME.match(str(name or ""))
    if not m:
        raise CropPolicyError(
            f"unknown crop policy {name!r}: this faceproc cuts only `arcface5-s<scale>[-up<shift>]-<size>` crops "
            "(ArcFace 5-point template scaled about the centre, optionally moved up)")
    scale, size, up = float(m["scale"]), int(m["size"]), float(m["up"] or 0.0)
    if not (0.3 <= scale <= 2.0) or not (32 <= size <= 512) or not (0.0 <= up <= 0.4):
        raise CropPolicyError(f"crop policy {name!r} is out of range (scale 0.3-2.0, up 0-0.4, size 32-512)")
    return CropPolicy(scale, size, up)


# The policy of models whose card predates policies in cards (every model before issue 9).
LEGACY_POLICY = CropPolicy(0.9, CROP_SIZE)
# The policy new models are trained under (chosen by the photo evaluation, README "crop policy").
DEFAULT_POLICY = CropPolicy(1.3, CROP_SIZE, up=0.15)
POLICY = DEFAULT_POLICY.name


def template(size: int = CROP_SIZE, scale: float | None = None) -> np.ndarray:
    """Keypoint targets of the default policy (or of a centred template at `scale`)."""
    return (_policy(size, None) if scale is None else CropPolicy(scale, size)).template()


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


def _policy(size: int | None, policy: CropPolicy | None) -> CropPolicy:
    """An explicit policy, else the default one (at another crop size when one is given)."""
    return policy or (DEFAULT_POLICY if size is None else CropPolicy(DEFAULT_POLICY.scale, size, DEFAULT_POLICY.up))


def _points(box, kps) -> np.ndarray:
    return box_keypoints(box) if kps is None else np.asarray(kps, np.float64).reshape(5, 2)


def crop_face(image: np.ndarray, box, kps=None, size: int | None = None, policy: CropPolicy | None = None) -> np.ndarray:
    """(RGB image, box, 5 keypoints in image pixels) -> policy.size square RGB uint8 crop."""
    policy = _policy(size, policy)
    m = policy.matrix(_points(box, kps))
    return cv2.warpAffine(image, m, (policy.size, policy.size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def crop_faces(image: np.ndarray, boxes, kpss, size: int | None = None, policy: CropPolicy | None = None) -> np.ndarray:
    policy = _policy(size, policy)
    n = len(boxes)
    out = np.empty((n, policy.size, policy.size, 3), np.uint8)
    for i in range(n):
        out[i] = crop_face(image, boxes[i], None if kpss is None else kpss[i], policy=policy)
    return out


def outside_fraction(kps, width: int, height: int, policy: CropPolicy | None = None) -> float:
    """Share of the crop's pixels that lie outside a width x height source (filled, not seen)."""
    policy = policy or DEFAULT_POLICY
    m = policy.matrix(kps)
    ones = np.full((height, width), 255, np.uint8)
    inside = cv2.warpAffine(ones, m, (policy.size, policy.size), flags=cv2.INTER_NEAREST, borderValue=0)
    return float(1.0 - (inside > 0).mean())


def crop_face_filled(image: np.ndarray, kps, fill: np.ndarray, policy: CropPolicy | None = None) -> np.ndarray:
    """Training crop whose out-of-source region shows `fill` (real content: another photo's patch)
    instead of smeared edge pixels, as the same region of a face in a photo would."""
    policy = policy or DEFAULT_POLICY
    m = policy.matrix(kps)
    out = np.ascontiguousarray(fill[: policy.size, : policy.size]).copy()
    cv2.warpAffine(image, m, (policy.size, policy.size), dst=out, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_TRANSPARENT)
    return out
