"""Evaluation on what users run: validation faces inside group photos, through the real `annotate` path.

Crop-level validation (`faceproc evaluate`) scores the model on crops cut from UTKFace's 200x200
images. Users give photos: the face has real surroundings, any size, any format, EXIF rotation,
greyscale scans. This module builds seeded group photos from the report half of the validation people only
(never a training face, never a face any choice was made on; faceproc/photo_set.py), runs `faceproc.engine.annotate` on them as a user would, matches the detected
faces to the truth and reports age MAE, gender accuracy, recall and false positives, next to the same
faces given to `annotate` as bare crops, so the crop-to-photo gap is measured on the same faces.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from .groups import group_metrics, utkface_ethnicity
from .photo_set import PHOTO_SETS, build_photos, validation_faces

log = logging.getLogger(__name__)

SIZE_BANDS = ((0, 24), (24, 32), (32, 48), (48, 64), (64, 96), (96, 192), (192, 400), (400, 100000))


def match(det_boxes: np.ndarray, det_scores: np.ndarray, tiles: list) -> tuple[list[int], int]:
    """Greedy one-to-one match, best score first: detection -> truth index (or -1); a detection matches a
    face when its centre lies in the middle of the pasted square and its size fits it."""
    from .synth import box_inside

    assigned = [-1] * len(det_boxes)
    used: set[int] = set()
    for d in np.argsort(-np.asarray(det_scores, np.float64), kind="stable"):
        best, best_dist = -1, np.inf
        cx, cy = (det_boxes[d][0] + det_boxes[d][2]) / 2, (det_boxes[d][1] + det_boxes[d][3]) / 2
        for t, tile in enumerate(tiles):
            if t in used or not box_inside(det_boxes[d], tile):
                continue
            dist = (cx - (tile[0] + tile[2]) / 2) ** 2 + (cy - (tile[1] + tile[3]) / 2) ** 2
            if dist < best_dist:
                best, best_dist = t, dist
        if best >= 0:
            assigned[d] = best
            used.add(best)
    return assigned, sum(a < 0 for a in assigned)


def _summary(err: np.ndarray, correct: np.ndarray) -> dict[str, Any]:
    n = int(len(err))
    return {"n": n, "age_mae": float(err.mean()) if n else None, "gender_acc": float(correct.mean()) if n else None}


def _scored(rows: list[tuple]) -> tuple[dict[str, Any], np.ndarray, np.ndarray, np.ndarray]:
    """rows: (key, true age, true gender, age, female_prob, face size). Faces whose estimate was withheld
    (too small or blurry: no age) are counted apart, not scored. Returns (figures, scored rows, |age error|,
    gender right) so that callers can cut the same rows by face size."""
    est = [r for r in rows if r[3] == r[3] and r[3] is not None]  # NaN/None: withheld
    arr = np.array([r[1:] for r in est], np.float64).reshape(-1, 5)
    err = np.abs(arr[:, 2] - arr[:, 0])
    correct = (arr[:, 3] >= 0.5) == (arr[:, 1] >= 0.5)
    res = {"withheld": len(rows) - len(est), **_summary(err, correct)}
    res["groups"] = group_metrics(arr[:, 2], arr[:, 3], arr[:, 0], arr[:, 1], [utkface_ethnicity(r[0]) for r in est])
    return res, arr, err, correct


def score_photos(out_dir: str | Path, truth: dict) -> dict[str, Any]:
    """Match an annotate output folder against the truth of build_photos."""
    import pandas as pd

    faces = pd.read_parquet(Path(out_dir) / "faces")
    by_name = {Path(p).name: g for p, g in faces.groupby("image_path")}
    n_true = fp = 0
    rows = []
    for name, tf in truth["photos"].items():
        g = by_name.get(name)
        n_true += len(tf)
        if g is None:
            continue
        boxes = g[["x1", "y1", "x2", "y2"]].to_numpy(np.float64)
        assigned, n_fp = match(boxes, g["det_score"].to_numpy(), [t["tile"] for t in tf])
        fp += n_fp
        for (_, r), a in zip(g.iterrows(), assigned):
            if a >= 0:
                t = tf[a]
                rows.append((t["key"], t["age"], t["gender"], r.age, r.female_prob, (t["tile"][2] - t["tile"][0]) / 2))
    scored, arr, err, correct = _scored(rows)
    res = {"photos": len(truth["photos"]), "faces": n_true, "matched": len(rows),
           "recall": len(rows) / max(n_true, 1), "false_positives": int(fp), **scored}
    res["by_face_size"] = {f"{lo}-{hi if hi < 100000 else ''}px": _summary(err[m], correct[m])
                           for lo, hi in SIZE_BANDS for m in [(arr[:, 4] >= lo) & (arr[:, 4] < hi)]}
    return res


def score_crops(out_dir: str | Path, truth: dict) -> dict[str, Any]:
    """The same faces given to annotate as bare crop files: the face annotate picks (large, central)."""
    import pandas as pd

    from .data.cache import pick_face

    faces = pd.read_parquet(Path(out_dir) / "faces")
    labels = {f"{t['key'].replace('/', '_')}.png": t for tf in truth["photos"].values() for t in tf}
    rows = []
    for p, g in faces.groupby("image_path"):
        t = labels.get(Path(p).name)
        if t is None:
            continue
        boxes = g[["x1", "y1", "x2", "y2"]].to_numpy(np.float32)
        j = pick_face(boxes, g["det_score"].to_numpy(np.float32), 200, 200)
        r = g.iloc[j]
        rows.append((t["key"], t["age"], t["gender"], r.age, r.female_prob, 100.0))
    scored = _scored(rows)[0]
    return {"faces": len(labels), "found": len(rows), **scored}


def evaluate_photos(models: list[str], data: str, work: str | Path, n_photos: int = 150, seed: int | None = None,
                    cfg=None, engine: str = "local", crops: bool = True, photo_set: str = "standard") -> dict[str, Any]:
    """Build (or reuse) the photo set, annotate it with each model, score photos and bare crops."""
    import dataclasses

    from .config import Config
    from .engine import annotate
    from .plan import RunPlan

    work = Path(work)
    tpath = work / "truth.json"
    truth = json.loads(tpath.read_text()) if tpath.exists() else None
    spec = dict(PHOTO_SETS[photo_set])
    set_seed = spec.pop("seed")
    seed = set_seed if seed is None else seed
    meta = {"faces_from": "report half", "set": photo_set}
    if not truth or truth.get("n_photos") != n_photos or truth.get("seed") != seed or any(
            truth.get(k) != v for k, v in meta.items()):
        val = validation_faces(data)  # the report half only
        truth = build_photos(val, work, n_photos=n_photos, seed=seed, meta=meta, **spec)
    results: dict[str, Any] = {}
    for m in models:
        base = cfg or Config()
        plan = RunPlan.resolve(dataclasses.replace(base, model=dataclasses.replace(base.model, variant=m)))
        label, card = plan.model.version.replace(":", "-"), plan.model.card
        r: dict[str, Any] = {"model": m, "version": plan.model.version, "crop_policy": plan.model.policy.name}
        t0 = time.time()
        annotate([str(work / "photos")], work / "out" / label / "photos", plan=plan, engine=engine, progress=False)
        r["photos"] = score_photos(work / "out" / label / "photos", truth)
        if crops:
            annotate([str(work / "crops")], work / "out" / label / "crops", plan=plan, engine=engine, progress=False)
            r["crops"] = score_crops(work / "out" / label / "crops", truth)
            r["gap"] = {"age_mae": r["photos"]["age_mae"] - r["crops"]["age_mae"],
                        "gender_acc": r["photos"]["gender_acc"] - r["crops"]["gender_acc"]}
        val = (card.get("evaluation") or {}).get("val") or (card.get("metrics") or {}).get("val_flip_tta")
        if val:
            r["crop_validation"] = {"age_mae": val["age_mae"], "gender_acc": val["gender_acc"], "n": val["n"]}
        r["seconds"] = round(time.time() - t0, 1)
        results[m] = r
    return {"photo_set": {"dir": str(work), "set": photo_set, "seed": seed, "photos": n_photos, "faces_from": "report half",
                          "faces": sum(len(v) for v in truth["photos"].values())}, "models": results}


def format_photo_table(res: dict) -> str:
    lines = [f"{'model':<28} {'photos MAE':>10} {'gender':>7} {'recall':>7} {'FP':>4} | {'crops MAE':>9} {'gender':>7}"
             f" | {'gap':>13} | {'crop val':>14}"]

    def f(v, pct=False):
        return "-" if v is None else (f"{100 * v:6.2f}%" if pct else f"{v:.2f}")

    for m, r in res["models"].items():
        p, c, g, v = r["photos"], r.get("crops", {}), r.get("gap", {}), r.get("crop_validation", {})
        lines.append(
            f"{r['version'][:28]:<28} {f(p['age_mae']):>10} {f(p['gender_acc'], True):>7} {100 * p['recall']:6.2f}% "
            f"{p['false_positives']:>4} | {f(c.get('age_mae')):>9} {f(c.get('gender_acc'), True):>7} | "
            f"{(f(g.get('age_mae')) + '/' + f(100 * g['gender_acc'] if g else None)):>13} | "
            f"{(f(v.get('age_mae')) + '/' + f(v.get('gender_acc'), True).strip()):>14}")
    lines.append("by face size (photos, age MAE / gender acc): " + "; ".join(
        f"{r['version'][:18]}: " + ", ".join(f"{b} {f(s['age_mae'])}/{f(s['gender_acc'], True).strip()} (n={s['n']})"
                                              for b, s in r["photos"]["by_face_size"].items() if s["n"])
        for r in res["models"].values()))
    return "\n".join(lines)
