"""Post-hoc calibration that travels in the model card: a monotone map for age (a significance-gated bias
correction per predicted-age bin) and a two-parameter logistic map for gender (Platt scaling; by default temperature only).

Both are fitted on the selection half of the validation people and judged on the report half, and the
predictor applies them on every runtime after mirror averaging, so a card without a `calibration` key
predicts exactly as before. Monotone maps keep the order of ages: a person predicted older stays older.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def monotone_knots(pred: np.ndarray, true: np.ndarray, bins: int = 16, z: float = 2.0) -> list[list[float]]:
    """A monotone bias correction: in each of `bins` quantile bins of the predicted age, the mean residual
    (true - predicted) if it stands out of its noise (|mean| > z standard errors), else none; then made
    non-decreasing. Where the model is unbiased the map is the identity, so a band without bias cannot be
    made worse by fitting noise; where it is biased (old ages pulled down) the map moves it back."""
    x, y = np.asarray(pred, float), np.asarray(true, float)
    edges = np.unique(np.quantile(x, np.linspace(0, 1, bins + 1)))
    idx = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, len(edges) - 2)
    kx, ky = [], []
    for b in range(len(edges) - 1):
        m = idx == b
        if m.sum() < 10:
            continue
        r = y[m] - x[m]
        d = float(r.mean())
        if abs(d) <= z * float(r.std(ddof=1)) / np.sqrt(m.sum()):
            d = 0.0
        xm = float(x[m].mean())
        kx.append(xm)
        ky.append(xm + d)
    ky = list(np.maximum.accumulate(np.asarray(ky))) if ky else ky
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


def platt(prob: np.ndarray, label: np.ndarray, iters: int = 100, bias: bool = False) -> list[float]:
    """(a, b) minimising the log loss of sigmoid(a * logit(p) + b): Newton's method with a backtracking
    line search (a saturated model has a tiny Hessian, and a full Newton step then overshoots). Without
    `bias`, b stays 0 (temperature scaling): every decision at 0.5 is kept, so accuracy cannot change."""
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
        step, t = (np.linalg.solve(h, g) if bias else np.array([g[0] / h[0, 0], 0.0])), 1.0
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
    return {"age_monotone": monotone_knots(np.asarray(age_pred), np.asarray(age)),
            "gender_platt": platt(np.asarray(female_prob), np.asarray(gender)),
            "fitted_on": "selection half of the validation split (data.split.validation_half)"}


def apply(cal: dict | None, age: np.ndarray, female_prob: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A card's calibration applied to raw predictions (identity for None or for a map left out)."""
    if not cal:
        return np.asarray(age, np.float32), np.asarray(female_prob, np.float32)
    return apply_age(cal.get("age_monotone"), age), apply_gender(cal.get("gender_platt"), female_prob)
