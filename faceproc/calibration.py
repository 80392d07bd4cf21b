"""Post-hoc calibration that travels in the model card: a monotone map for age (isotonic regression of the
true age on the predicted one) and a two-parameter logistic map for gender (Platt scaling).

Both are fitted on the selection half of the validation people and judged on the report half, and the
predictor applies them on every runtime after mirror averaging, so a card without a `calibration` key
predicts exactly as before. Monotone maps keep the order of ages: a person predicted older stays older.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def isotonic_knots(pred: np.ndarray, true: np.ndarray, max_knots: int = 64) -> list[list[float]]:
    """Pool-adjacent-violators on (pred, true) sorted by pred: a non-decreasing step map, returned as
    (x, y) knots at block centres for linear interpolation (smoother than steps, still monotone)."""
    order = np.argsort(pred, kind="stable")
    x, y = np.asarray(pred, float)[order], np.asarray(true, float)[order]
    # Blocks: [sum_y, count, sum_x]; merge while the previous block's mean exceeds the next one's.
    blocks: list[list[float]] = []
    for xi, yi in zip(x, y):
        blocks.append([yi, 1.0, xi])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] > blocks[-1][0] / blocks[-1][1]:
            s, n, sx = blocks.pop()
            blocks[-1][0] += s
            blocks[-1][1] += n
            blocks[-1][2] += sx
    kx = np.array([b[2] / b[1] for b in blocks])
    ky = np.array([b[0] / b[1] for b in blocks])
    if len(kx) > max_knots:  # keep the card small: resample the monotone map at quantiles of pred
        q = np.quantile(x, np.linspace(0, 1, max_knots))
        kx, ky = np.unique(q), np.interp(np.unique(q), kx, ky)
    return [[round(float(a), 4), round(float(b), 4)] for a, b in zip(kx, ky)]


def apply_age(knots: list[list[float]] | None, age: np.ndarray) -> np.ndarray:
    """Map predicted ages through the card's knots (identity without knots); beyond the ends the map
    shifts by the end offsets rather than flattening, so extreme ages keep their order."""
    age = np.asarray(age, np.float32)
    if not knots:
        return age
    k = np.asarray(knots, np.float64)
    out = np.interp(age, k[:, 0], k[:, 1])
    out = np.where(age < k[0, 0], age + (k[0, 1] - k[0, 0]), out)
    out = np.where(age > k[-1, 0], age + (k[-1, 1] - k[-1, 0]), out)
    return np.clip(out, 0.0, 100.0).astype(np.float32)


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, np.float64), 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def platt(prob: np.ndarray, label: np.ndarray, iters: int = 100) -> list[float]:
    """(a, b) minimising the log loss of sigmoid(a * logit(p) + b): Newton's method with a backtracking
    line search (a saturated model has a tiny Hessian, and a full Newton step then overshoots)."""
    z, y = _logit(prob), np.asarray(label, np.float64)

    def loss(w):
        t = w[0] * z + w[1]
        return float(np.mean(np.logaddexp(0, t) - y * t))

    w = np.array([1.0, 0.0])
    cur = loss(w)
    for _ in range(iters):
        q = 1 / (1 + np.exp(-np.clip(w[0] * z + w[1], -50, 50)))
        g = np.array([np.mean((q - y) * z), np.mean(q - y)])
        r = q * (1 - q)
        h = np.array([[np.mean(r * z * z), np.mean(r * z)], [np.mean(r * z), np.mean(r)]]) + 1e-9 * np.eye(2)
        step, t = np.linalg.solve(h, g), 1.0
        while t > 1e-6 and loss(w - t * step) > cur:
            t /= 2
        if t <= 1e-6:
            break
        w -= t * step
        new = loss(w)
        if cur - new < 1e-12:
            cur = new
            break
        cur = new
    return [round(float(w[0]), 6), round(float(w[1]), 6)]


def apply_gender(ab: list[float] | None, prob: np.ndarray) -> np.ndarray:
    prob = np.asarray(prob, np.float32)
    if not ab:
        return prob
    return (1 / (1 + np.exp(-(ab[0] * _logit(prob) + ab[1])))).astype(np.float32)


def ece(prob: np.ndarray, label: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error of P(female) over equal-width confidence bins of the predicted class."""
    prob, label = np.asarray(prob, float), np.asarray(label, float)
    conf = np.maximum(prob, 1 - prob)
    correct = (prob >= 0.5) == (label >= 0.5)
    edges = np.linspace(0.5, 1.0, bins + 1)
    idx = np.clip(np.digitize(conf, edges[1:-1]), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            total += m.mean() * abs(conf[m].mean() - correct[m].mean())
    return float(total)


def fit(age_pred, female_prob, age, gender) -> dict[str, Any]:
    """Both maps from the selection half's predictions (made without calibration)."""
    return {"age_isotonic": isotonic_knots(np.asarray(age_pred), np.asarray(age)),
            "gender_platt": platt(np.asarray(female_prob), np.asarray(gender)),
            "fitted_on": "selection half of the validation split (data.split.validation_half)"}


def apply(cal: dict | None, age: np.ndarray, female_prob: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A card's calibration applied to raw predictions (identity for None or for a map left out)."""
    if not cal:
        return np.asarray(age, np.float32), np.asarray(female_prob, np.float32)
    return apply_age(cal.get("age_isotonic"), age), apply_gender(cal.get("gender_platt"), female_prob)
