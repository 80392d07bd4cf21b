"""Whom the model fails: age MAE and gender accuracy per ethnicity label, gender and age band, and the
ethnicity-by-age-band table that separates a group's figure from the ages it holds (UTKFace's Asian
group holds many young children, whose gender is hard for every model).

Every cell carries its count and a 95% interval, because small groups move by chance: a t-interval for
the MAE and a Wilson interval for the accuracy. The labels are UTKFace's own annotations (its file names),
not anyone's self-description.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from .data.split import AGE_BANDS, age_band

# UTKFace's race field (age_gender_race_datetime.jpg): the dataset's own five labels.
ETHNICITY = {0: "White", 1: "Black", 2: "Asian", 3: "Indian", 4: "Others"}
# Coarser bands for the cross table, so its cells are not too small to read.
CROSS_BANDS = [("0-9", 0, 10), ("10-19", 10, 20), ("20-39", 20, 40), ("40-59", 40, 60), ("60+", 60, 1000)]


def utkface_ethnicity(name: str) -> str | None:
    """The ethnicity label in a UTKFace file name, or None when the field is missing or malformed."""
    parts = os.path.basename(name).split("_")
    if len(parts) < 4:  # a few names lack the race field
        return None
    try:
        return ETHNICITY.get(int(parts[2]))
    except ValueError:
        return None


def _mae_interval(err: np.ndarray) -> list[float] | None:
    n = len(err)
    if n < 2:
        return None
    half = 1.96 * float(np.std(err, ddof=1)) / math.sqrt(n)
    m = float(err.mean())
    return [round(max(m - half, 0.0), 3), round(m + half, 3)]


def _wilson(k: int, n: int, z: float = 1.96) -> list[float] | None:
    if n == 0:
        return None
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return [round(c - h, 4), round(c + h, 4)]


def cell(err: np.ndarray, correct: np.ndarray) -> dict[str, Any]:
    """Count, age MAE and gender accuracy of one group, each with its 95% interval."""
    n = int(len(err))
    if n == 0:
        return {"n": 0, "age_mae": None, "age_mae_ci95": None, "gender_acc": None, "gender_acc_ci95": None}
    k = int(correct.sum())
    return {"n": n, "age_mae": round(float(err.mean()), 3), "age_mae_ci95": _mae_interval(err),
            "gender_acc": round(k / n, 4), "gender_acc_ci95": _wilson(k, n)}


def _cross_band(a: float) -> str:
    return next(name for name, lo, hi in CROSS_BANDS if lo <= a < hi)


def group_metrics(age_pred, female_prob, age, gender, ethnicity) -> dict[str, Any]:
    """The per-group figures for one set of predictions (ethnicity: a label per face, None where unknown)."""
    age_pred, female_prob = np.asarray(age_pred, float), np.asarray(female_prob, float)
    age, gender = np.asarray(age, float), np.asarray(gender, float)
    eth = np.array([e or "unknown" for e in ethnicity], dtype=object)
    err = np.abs(age_pred - age)
    correct = (female_prob >= 0.5) == (gender >= 0.5)
    bands = np.array([age_band(a) for a in age])
    cross = np.array([_cross_band(a) for a in age])
    names = [e for e in list(ETHNICITY.values()) + ["unknown"] if (eth == e).any()]

    def pick(mask):
        return cell(err[mask], correct[mask])

    return {
        "n": int(len(age)),
        "labels": "UTKFace's own ethnicity and binary gender annotations (file names); true age",
        "all": pick(np.ones(len(age), bool)),
        "by_ethnicity": {e: pick(eth == e) for e in names},
        "by_gender": {"male": pick(gender < 0.5), "female": pick(gender >= 0.5)},
        "by_age_band": {b: pick(bands == b) for b in AGE_BANDS if (bands == b).any()},
        "ethnicity_by_age": {e: {b: pick((eth == e) & (cross == b)) for b, _, _ in CROSS_BANDS} for e in names},
        "ethnicity_by_gender": {e: {g: pick((eth == e) & m) for g, m in (("male", gender < 0.5), ("female", gender >= 0.5))}
                                for e in names},
    }


def _fmt(c: dict) -> str:
    if not c["n"]:
        return f"{'-':>16}"
    return f"{c['age_mae']:5.2f} / {100 * c['gender_acc']:5.1f}% ({c['n']:>4})"


def format_groups(g: dict[str, Any]) -> str:
    """Plain-text tables: MAE / gender accuracy (count) per group, then ethnicity x age band."""
    lines = [f"{'group':<14} {'MAE / gender (n)':>24}   95% interval (MAE; gender)"]
    for title, part in (("ethnicity", "by_ethnicity"), ("gender", "by_gender"), ("age band", "by_age_band")):
        lines.append(f"-- by {title}")
        for name, c in g[part].items():
            ci = f"{c['age_mae_ci95']}; {c['gender_acc_ci95']}" if c["n"] else ""
            lines.append(f"{name:<14} {_fmt(c):>24}   {ci}")
    lines.append("-- ethnicity x age band: MAE / gender (n)")
    lines.append(f"{'':<10}" + "".join(f"{b:>24}" for b, _, _ in CROSS_BANDS))
    for e, row in g["ethnicity_by_age"].items():
        lines.append(f"{e:<10}" + "".join(f"{_fmt(c):>24}" for c in row.values()))
    return "\n".join(lines)
