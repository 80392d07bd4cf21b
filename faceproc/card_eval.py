"""A model's figures on the two validation halves, its calibration, and whom it fails: what a card reports.

The selection half chooses (the calibration maps are fitted on it, and each map is kept only if it helps
there); the report half only measures, so the card's figures are not selected on. A map is shipped only
if, on the report half, it also lowers the error without making any age band worse (age) or lowers the
calibration error without costing accuracy (gender); otherwise the card records why it was left out.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from . import calibration
from .data.split import AGE_BANDS, REPORT, SELECT, age_band, manifest_path, read_manifest, validation_half
from .groups import group_metrics, utkface_ethnicity

log = logging.getLogger(__name__)


def _bias_by_band(pred: np.ndarray, age: np.ndarray) -> dict[str, dict]:
    bands = np.array([age_band(a) for a in age])
    out = {}
    for b in AGE_BANDS:
        m = bands == b
        if m.any():
            d = pred[m] - age[m]
            out[b] = {"n": int(m.sum()), "bias": round(float(d.mean()), 3), "age_mae": round(float(np.abs(d).mean()), 3)}
    return out


def _summary(age_pred, female_prob, age, gender) -> dict[str, Any]:
    correct = (female_prob >= 0.5) == (gender >= 0.5)
    conf = np.maximum(female_prob, 1 - female_prob)
    low = (conf < 0.7)
    return {"n": int(len(age)), "age_mae": round(float(np.abs(age_pred - age).mean()), 4),
            "gender_acc": round(float(correct.mean()), 4), "gender_ece": round(calibration.ece(female_prob, gender), 4),
            "accuracy_at_confidence_below_0.7": round(float(correct[low].mean()), 4) if low.any() else None,
            "n_confidence_below_0.7": int(low.sum()), "by_age_band": _bias_by_band(age_pred, age)}


def _accept_age(raw: dict, cal: dict) -> tuple[bool, str]:
    if cal["age_mae"] >= raw["age_mae"]:
        return False, f"age MAE not lowered ({raw['age_mae']} -> {cal['age_mae']})"
    worse = [b for b, r in raw["by_age_band"].items() if cal["by_age_band"][b]["age_mae"] > r["age_mae"]]
    if worse:
        return False, f"age bands made worse: {', '.join(worse)}"
    return True, f"age MAE {raw['age_mae']} -> {cal['age_mae']}, no band worse"


def _accept_gender(raw: dict, cal: dict) -> tuple[bool, str]:
    if cal["gender_ece"] >= raw["gender_ece"]:
        return False, f"ECE not lowered ({raw['gender_ece']} -> {cal['gender_ece']})"
    if cal["gender_acc"] < raw["gender_acc"] - 0.001:
        return False, f"accuracy lowered ({raw['gender_acc']} -> {cal['gender_acc']})"
    return True, f"ECE {raw['gender_ece']} -> {cal['gender_ece']}, accuracy {raw['gender_acc']} -> {cal['gender_acc']}"


def halves_evaluation(predict_raw, keys, crops, age, gender, seed: int = 42) -> dict[str, Any]:
    """predict_raw(crops) -> (age, P(female)) without calibration. Returns the card's `evaluation_halves`,
    `calibration` (only the accepted maps; None if neither) and `groups` (report half)."""
    halves = np.array([validation_half(k, seed) for k in keys])
    a_pred, p_pred = (np.asarray(v, np.float64) for v in predict_raw(crops))
    age, gender = np.asarray(age, np.float64), np.asarray(gender, np.float64)
    sel, rep = halves == SELECT, halves == REPORT
    maps = calibration.fit(a_pred[sel], p_pred[sel], age[sel], gender[sel])
    out: dict[str, Any] = {"halves": "selection = fits and choices; report = figures only (data.split.validation_half)"}
    decisions, kept = {}, {"fitted_on": maps["fitted_on"]}
    for half, m in ((SELECT, sel), (REPORT, rep)):
        raw = _summary(a_pred[m], p_pred[m], age[m], gender[m])
        ca, cp = calibration.apply(maps, a_pred[m], p_pred[m])
        out[half] = {"raw": raw, "calibrated": _summary(ca.astype(np.float64), cp.astype(np.float64), age[m], gender[m])}
    for name, accept, key in (("age", _accept_age, "age_monotone"), ("gender", _accept_gender, "gender_platt")):
        ok_sel, why_sel = accept(out[SELECT]["raw"], out[SELECT]["calibrated"])
        ok_rep, why_rep = accept(out[REPORT]["raw"], out[REPORT]["calibrated"])
        decisions[name] = {"kept": ok_sel and ok_rep, "selection": why_sel, "report": why_rep}
        if ok_sel and ok_rep:
            kept[key] = maps[key]
    cal = kept if len(kept) > 1 else None
    ra, rp = calibration.apply(cal, a_pred[rep], p_pred[rep])
    eth = [utkface_ethnicity(k) for k in np.asarray(keys)[rep]]
    out["report_shipped"] = _summary(ra.astype(np.float64), rp.astype(np.float64), age[rep], gender[rep])
    return {"evaluation_halves": out, "calibration": cal, "calibration_decisions": decisions,
            "groups": group_metrics(ra, rp, age[rep], gender[rep], eth) | {"half": "report"}}


def split_files(cfg) -> tuple[str, str] | None:
    """An existing crop cache and split manifest for a training config (no crops are cut to find them),
    or None when either is missing (then the caller prepares them)."""
    if not cfg.cache:
        return None
    cache = Path(cfg.cache)
    manifest = manifest_path(cache, cfg.seed, cfg.val_fraction)
    return (str(cache), str(manifest)) if cache.exists() and manifest.exists() else None


def evaluate_model_halves(model_path: str, cache: str, manifest: str, seed: int = 42, flip: bool = True) -> dict[str, Any]:
    """The validation crops of a crop cache, under the model's own crop policy, through the predictor annotate
    runs (mirror averaging on), with any calibration in its card switched off for the fit."""
    from .data.recut import load_crops
    from .evaluate import predictor_for

    assignment, _ = read_manifest(manifest)
    val_keys = {k for k, v in assignment.items() if v == "val"}
    pred = predictor_for(model_path, flip, calibrated=False)  # the maps are fitted on raw predictions
    policy = pred.policy
    data = load_crops(cache, policy, keys=val_keys)
    res = halves_evaluation(pred.predict, data["key"], data["crops"], data["age"], data["gender"], seed)
    res["model"] = str(Path(model_path))
    res["crop_policy"] = policy.name
    return res


def card_fields(res: dict[str, Any]) -> dict[str, Any]:
    """What a card keeps of evaluate_model_halves: the maps the predictor applies, the report half's figures
    (as shipped: with those maps) and whom the model fails."""
    kids = res["groups"]["by_age_band"].get("0-9") or {}
    limits = {"doc": "docs/limitations.md",
              "age": "apparent age as UTKFace labelled it, not true age; errors grow past 40 (by_age_band)",
              "gender": "UTKFace's binary label, not a person's gender identity"}
    if kids.get("n"):
        limits["children"] = (f"gender of children aged 0-9 is right {100 * kids['gender_acc']:.1f}% of the time "
                              f"(report half, {kids['n']} faces, 95% interval {kids['gender_acc_ci95']}): hard for every model")
    return {"calibration": res["calibration"], "calibration_decisions": res["calibration_decisions"],
            "evaluation_halves": res["evaluation_halves"], "groups": res["groups"], "limitations": limits}


def format_halves(results: dict[str, dict]) -> str:
    """Per model: both halves raw and calibrated, what was kept, then the report half's group tables."""
    from .groups import format_groups

    out = []
    for m, r in results.items():
        h = r["evaluation_halves"]
        out.append(f"== {m} ({r['crop_policy']})")
        out.append(f"{'half':<10} {'raw MAE':>8} {'gender':>7} {'ECE':>6} | {'calibrated MAE':>14} {'gender':>7} {'ECE':>6}")
        for half in ("select", "report"):
            a, c = h[half]["raw"], h[half]["calibrated"]
            out.append(f"{half:<10} {a['age_mae']:8.3f} {100 * a['gender_acc']:6.2f}% {a['gender_ece']:6.3f} | "
                       f"{c['age_mae']:14.3f} {100 * c['gender_acc']:6.2f}% {c['gender_ece']:6.3f}")
        for k, d in r["calibration_decisions"].items():
            out.append(f"{k} map: {'kept' if d['kept'] else 'left out'} (selection: {d['selection']}; report: {d['report']})")
        s = h["report_shipped"]
        out.append("report half as shipped, bias / MAE by age band: " + ", ".join(
            f"{b} {v['bias']:+.1f}/{v['age_mae']:.1f}" for b, v in s["by_age_band"].items()))
        out.append(format_groups(r["groups"]))
    return "\n".join(out)
