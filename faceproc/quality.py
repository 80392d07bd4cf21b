"""When an age or gender estimate means something: face size, sharpness, and how sure the gender is.

A 12 px face still gets a confident-looking "M 47" from the model; nobody, the model included, can judge it.
So every face row carries its size (face_px: the box's shorter side in original pixels) and the sharpness of
the crop the model saw (variance of the Laplacian of the 128x128 grey crop: low when the face is blurred or
was enlarged from few pixels, e.g. a small face in a big photo decoded at 2048 px), and below either
threshold (config model.min_face_px, model.min_sharpness) age, gender and female_prob are null with the
reason in `withheld`. The thresholds come from scripts/face_size_sweep.py (benchmarks/results/face_size.json,
docs/schema.md): where on validation faces pasted into photos the estimates stop being useful.

Genders with female_prob between UNCERTAIN bounds are shown as uncertain by the report and previews (the
Parquet keeps the model's call and its probability).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

SMALL_FACE, BLURRY = "small_face", "blurry"
UNCERTAIN = (0.35, 0.65)  # female_prob in this range: the report shows the gender as uncertain ("?")


def face_px(boxes: np.ndarray) -> np.ndarray:
    """The shorter side of each (x1, y1, x2, y2) box, in the boxes' pixels."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    return np.minimum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]).clip(min=0)


def sharpness(crops: np.ndarray) -> np.ndarray:
    """Variance of the Laplacian of each crop in grey (0..255): the usual focus measure."""
    out = np.empty(len(crops), np.float64)
    for i, c in enumerate(crops):
        grey = cv2.cvtColor(np.ascontiguousarray(c), cv2.COLOR_RGB2GRAY)
        out[i] = cv2.Laplacian(grey, cv2.CV_64F).var()
    return out


def withheld(px: float, sharp: float, min_face_px: float, min_sharpness: float) -> str | None:
    """Why a face's age and gender are not given (small_face before blurry), or None."""
    if px < min_face_px:
        return SMALL_FACE
    if sharp < min_sharpness:
        return BLURRY
    return None


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def gender_mark(gender, female_prob) -> str:
    """'F', 'M', '?' (female_prob within UNCERTAIN) or '' (withheld)."""
    if _missing(female_prob) or gender is None or (isinstance(gender, float) and math.isnan(gender)):
        return ""
    if UNCERTAIN[0] <= float(female_prob) <= UNCERTAIN[1]:
        return "?"
    return "F" if gender == "female" else "M"


def shown_age(age) -> int | None:
    """The age as displayed (nearest year, halves up): captions and age bands both use it, so "30" is never
    filed under 20-29."""
    return None if _missing(age) else int(math.floor(float(age) + 0.5))


def face_label(gender, female_prob, age, reason=None) -> str:
    """A preview's or thumbnail's label: 'F 34', '? 30' (uncertain gender), 'small' / 'blurry' (withheld)."""
    if reason is not None and not (isinstance(reason, float) and math.isnan(reason)):
        return "small" if reason == SMALL_FACE else "blurry"
    a = shown_age(age)
    return f"{gender_mark(gender, female_prob)} {'' if a is None else a}".strip()
