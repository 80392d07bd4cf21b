"""Evaluation on the crop cache's fixed split: the reference results table plus per-band breakdowns.

Predictions go through `faceproc.agegender.runtime.AgeGenderPredictor`, the code annotate runs (mirror averaging,
ages clipped to [0, 100], crops cut under the model card's policy), so the figures are what users get.

Losses are recomputed here the reference way (MSE on age in years + binary cross-entropy on gender,
model in inference mode), so models trained with other loss options stay comparable.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from .data.split import AGE_BANDS, age_band


def predictor_for(model, flip: bool = False, batch_size: int = 128, calibrated: bool = True):
    """The predictor annotate uses (mirror averaging, age clipping, fixed-shape batches), so reported
    metrics come from the path users run; `model` is a .keras path, a ModelSpec or an in-memory Keras model."""
    from .agegender.runtime import AgeGenderPredictor
    from .agegender.spec import ModelSpec
    from .config import ModelConfig

    if isinstance(model, ModelSpec):
        return AgeGenderPredictor(replace(model, settings=replace(model.settings, flip_tta=flip, batch_size=batch_size)))
    if isinstance(model, (str, Path)):
        spec = ModelSpec.resolve(ModelConfig(variant=str(model), flip_tta=flip, batch_size=batch_size))
        return AgeGenderPredictor(spec if calibrated else replace(spec, calibration=None))
    from .crop import DEFAULT_POLICY

    return AgeGenderPredictor(ModelSpec.in_memory(ModelConfig(flip_tta=flip, batch_size=batch_size), DEFAULT_POLICY),
                              model=model)


def metrics_from_predictions(age_pred, female_prob, age, gender) -> dict[str, Any]:
    age_pred, female_prob = np.asarray(age_pred, np.float64), np.asarray(female_prob, np.float64)
    age, gender = np.asarray(age, np.float64), np.asarray(gender, np.float64)
    p = np.clip(female_prob, 1e-7, 1 - 1e-7)
    mse = float(np.mean((age_pred - age) ** 2)) if len(age) else float("nan")
    bce = float(-np.mean(gender * np.log(p) + (1 - gender) * np.log(1 - p))) if len(age) else float("nan")
    correct = (female_prob >= 0.5) == (gender >= 0.5)
    err = np.abs(age_pred - age)

    def summary(mask):
        n = int(mask.sum())
        return {"n": n, "age_mae": float(err[mask].mean()) if n else None, "gender_acc": float(correct[mask].mean()) if n else None}

    bands = np.array([age_band(a) for a in age])
    return {
        "n": int(len(age)),
        "loss": mse + bce,
        "age_mse": mse,
        "gender_bce": bce,
        "age_mae": float(err.mean()) if len(age) else float("nan"),
        "gender_acc": float(correct.mean()) if len(age) else float("nan"),
        "by_age_band": {b: summary(bands == b) for b in AGE_BANDS},
        "by_gender": {"male": summary(gender < 0.5), "female": summary(gender >= 0.5)},
    }


def evaluate_arrays(model, crops, age, gender, flip: bool = False) -> dict[str, Any]:
    """Metrics of a model (or a ready AgeGenderPredictor, whose own flip setting then holds) on crops."""
    from .agegender.runtime import AgeGenderPredictor

    pred = model if isinstance(model, AgeGenderPredictor) else predictor_for(model, flip)
    a, g = pred.predict(crops)
    return metrics_from_predictions(a, g, age, gender)


def format_table(results: dict[str, dict]) -> str:
    """The reference project's table (train loss, val loss, age MAE, gender accuracy), one row per model,
    then age MAE / gender accuracy per age band and per gender."""
    w = max([28] + [len(n) + 1 for n in results])
    lines = [f"{'model':<{w}} {'train loss':>10} {'val loss':>10} {'age MAE':>8} {'gender acc':>10}"]
    for name, r in results.items():
        tl = r.get("train", {}).get("loss")
        tl_s = "-" if tl is None else f"{tl:.3f}"
        v = r["val"]
        lines.append(f"{name:<{w}} {tl_s:>10} {v['loss']:10.3f} {v['age_mae']:8.2f} {100 * v['gender_acc']:9.2f}%")
    lines.append("")
    groups = list(AGE_BANDS) + ["male", "female"]
    lines.append(f"{'age MAE / gender acc':<{w}} " + " ".join(f"{g:>13}" for g in groups))
    for name, r in results.items():
        v = r["val"]
        cells = []
        for g in groups:
            s = v["by_gender"][g] if g in ("male", "female") else v["by_age_band"][g]
            cells.append(f"{s['age_mae']:5.2f}/{100 * s['gender_acc']:5.1f}%" if s["n"] else "-")
        lines.append(f"{name:<{w}} " + " ".join(f"{c:>13}" for c in cells))
    lines.append("n per group: " + ", ".join(
        f"{g}={(next(iter(results.values()))['val']['by_gender'] if g in ('male', 'female') else next(iter(results.values()))['val']['by_age_band'])[g]['n']}"
        for g in groups) if results else "")
    return "\n".join(lines)


def evaluate_models(model_paths: list[str], cache: str, manifest: str, split: str = "val", flip: bool = False,
                    train_limit: int | None = 4000, seed: int = 0) -> dict[str, dict]:
    """Evaluate .keras files on the manifest's split of the crop cache (and a train subset for train loss)."""
    from .agegender.spec import ModelSpec
    from .config import ModelConfig
    from .data.recut import load_crops
    from .data.split import read_manifest

    assignment, _ = read_manifest(manifest)
    by_policy: dict = {}
    results = {}
    for p in model_paths:
        spec = ModelSpec.resolve(ModelConfig(variant=str(p)))
        policy = spec.policy  # each model sees crops cut the way it was trained
        if policy not in by_policy:
            by_policy[policy] = load_crops(cache, policy)
        data = by_policy[policy]
        which = np.array([assignment.get(k, "") for k in data["key"]])
        model = predictor_for(spec, flip)
        name = Path(p).parent.name if Path(p).name == "model.keras" else Path(p).stem
        r: dict[str, Any] = {"path": str(p), "crop_policy": policy.name}
        for part in ([split, "train"] if split != "train" else ["train"]):
            idx = np.flatnonzero(which == part)
            if part == "train" and split != "train" and train_limit and len(idx) > train_limit:
                idx = np.sort(np.random.default_rng(seed).choice(idx, train_limit, replace=False))
            key = "val" if part == split else "train"
            r[key] = evaluate_arrays(model, data["crops"][idx], data["age"][idx], data["gender"][idx])
        if split == "train":
            r["val"] = r["train"]
        results[name] = r
    return results


def write_results(results: dict, path: str | Path) -> None:
    Path(path).write_text(json.dumps(results, indent=1))
