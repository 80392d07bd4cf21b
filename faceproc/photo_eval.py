"""Evaluation on what users run: validation faces inside group photos, through the real `annotate` path.

Crop-level validation (`faceproc evaluate`) scores the model on crops cut from UTKFace's 200x200
images. Users give photos: the face has real surroundings, any size, any format, EXIF rotation,
greyscale scans. This module builds seeded group photos from validation-split faces only (never a
training face), runs `faceproc.engine.annotate` on them exactly as a user would, matches the detected
faces to the truth and reports age MAE, gender accuracy, recall and false positives, next to the same
faces given to `annotate` as bare crops, so the crop-to-photo gap is measured on the same faces.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

log = logging.getLogger(__name__)

FORMATS = (("jpg", 0.55), ("png", 0.2), ("webp", 0.25))
ASPECTS = (4 / 3, 3 / 2, 16 / 9, 1.0, 3 / 4, 2 / 3)
SIZE_BANDS = ((0, 64), (64, 96), (96, 192), (192, 400), (400, 100000))
_SCENES = ("coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "brick", "grass", "gravel",
           "moon", "coins", "retina", "cell", "clock", "stereo_motorcycle", "colorwheel")


@dataclass
class TruthFace:
    key: str
    source: str  # the face's image file
    age: float
    gender: int  # 0 male, 1 female
    tile: tuple[float, float, float, float]  # where the source square was pasted, display pixels


def _scenes() -> list[np.ndarray]:
    """Public-domain scenes that ship with scikit-image (no faces among them), when it is installed."""
    try:
        import skimage.data as sd
    except ImportError:
        return []
    out = []
    for name in _SCENES:
        try:
            im = getattr(sd, name)()
        except Exception:  # a scene that needs a download
            continue
        im = np.asarray(im[0] if isinstance(im, tuple) else im)
        if im.dtype != np.uint8:
            im = (im.astype(np.float32) * (255.0 / max(float(im.max()), 1.0))).astype(np.uint8)
        if im.ndim == 2:
            im = np.repeat(im[..., None], 3, axis=2)
        out.append(np.ascontiguousarray(im[..., :3]))
    return out


def _background(h: int, w: int, kind: str, rng: np.random.Generator, scenes: list[np.ndarray]) -> np.ndarray:
    from .synth import background

    if kind == "scene" and scenes:
        sc = scenes[int(rng.integers(len(scenes)))]
        return cv2.resize(sc, (w, h), interpolation=cv2.INTER_LINEAR if w > sc.shape[1] else cv2.INTER_AREA)
    img = background(h, w, rng)
    if kind == "clutter":  # shapes, lines and text: edges and textures a detector might fire on
        for _ in range(int(rng.integers(20, 80))):
            c = tuple(int(v) for v in rng.integers(0, 256, 3))
            x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
            r = int(rng.uniform(0.01, 0.15) * min(w, h)) + 2
            shape = rng.integers(0, 4)
            if shape == 0:
                cv2.rectangle(img, (x, y), (x + r, y + int(r * rng.uniform(0.3, 2))), c, -1)
            elif shape == 1:
                cv2.circle(img, (x, y), r, c, int(rng.integers(-1, 6)))
            elif shape == 2:
                cv2.line(img, (x, y), (int(rng.integers(0, w)), int(rng.integers(0, h))), c, int(rng.integers(1, 8)))
            else:
                cv2.putText(img, "faceproc %d" % rng.integers(1000), (x, y), cv2.FONT_HERSHEY_SIMPLEX,
                            max(r / 40, 0.4), c, max(1, r // 20))
    return img


def _place(w: int, h: int, sides: list[int], rng: np.random.Generator) -> list[tuple[int, int, int]]:
    """Non-overlapping squares (x, y, side) on a w x h canvas; a square that does not fit is dropped."""
    placed: list[tuple[int, int, int]] = []
    for s in sorted(sides, reverse=True):
        for _ in range(60):
            x, y = int(rng.integers(0, max(w - s, 0) + 1)), int(rng.integers(0, max(h - s, 0) + 1))
            if all(x + s <= px or px + ps <= x or y + s <= py or py + ps <= y for px, py, ps in placed):
                placed.append((x, y, s))
                break
    return placed


def _save(img: np.ndarray, path: Path, fmt: str, grey: bool, orientation: int) -> None:
    from PIL import Image

    pil = Image.fromarray(img).convert("L") if grey else Image.fromarray(img)
    kw: dict[str, Any] = {}
    if orientation in (3, 6, 8):  # store the pixels rotated and let the EXIF tag undo it
        pil = pil.transpose({3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_90,
                             8: Image.Transpose.ROTATE_270}[orientation])
        exif = Image.Exif()
        exif[0x0112] = orientation
        kw["exif"] = exif
    if fmt == "jpg":
        pil.save(path, quality=int(90), **kw)
    elif fmt == "webp":
        pil.save(path, quality=88)
    else:
        pil.save(path)


def build_photos(faces: list, out: str | Path, n_photos: int = 150, seed: int = 0,
                 min_face: int = 48, max_faces: int = 12, megapixels: tuple[float, float] = (0.5, 12.0)) -> dict[str, Any]:
    """Write seeded group photos of `faces` (records with key, path, age, gender) under out/photos and the
    same faces as bare files under out/crops; return the truth. Each face is used at most once."""
    from PIL import Image

    out = Path(out)
    (out / "photos").mkdir(parents=True, exist_ok=True)
    (out / "crops").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    scenes = _scenes()
    order = list(rng.permutation(len(faces)))
    photos: dict[str, list[dict]] = {}
    specs = []
    for i in range(n_photos):
        mp = float(np.exp(rng.uniform(np.log(megapixels[0]), np.log(megapixels[1]))))
        aspect = ASPECTS[int(rng.integers(len(ASPECTS)))]
        w = int(round(np.sqrt(mp * 1e6 * aspect)))
        h = int(round(w / aspect))
        k = 0 if rng.random() < 0.08 else int(rng.integers(1, max_faces + 1))
        # Face side (the detector's box is about half the pasted square): 48 px to a third of the photo.
        lo, hi = min_face, max(min_face + 1, min(w, h) / 3)
        sides = [int(2 * np.exp(rng.uniform(np.log(lo), np.log(hi)))) for _ in range(k)]
        spots = _place(w, h, sides, rng)
        kind = ("scene", "clutter", "smooth")[int(rng.choice(3, p=[0.5, 0.3, 0.2]))]
        img = _background(h, w, kind, rng, scenes)
        truth = []
        for x, y, s in spots:
            if not order:
                break
            f = faces[order.pop()]
            src = cv2.imread(f.path, cv2.IMREAD_COLOR)
            if src is None:
                raise FileNotFoundError(f.path)
            img[y : y + s, x : x + s] = cv2.resize(src[..., ::-1], (s, s), interpolation=cv2.INTER_AREA
                                                   if s < src.shape[0] else cv2.INTER_CUBIC)
            truth.append(TruthFace(f.key, f.path, float(f.age), int(f.gender), (x, y, x + s, y + s)))
        fmt = FORMATS[int(rng.choice(len(FORMATS), p=[p for _, p in FORMATS]))][0]
        grey = bool(rng.random() < 0.15)
        orientation = int(rng.choice([1, 3, 6, 8], p=[0.7, 0.1, 0.1, 0.1])) if fmt == "jpg" else 1
        name = f"photo{i:04d}.{fmt}"
        _save(img, out / "photos" / name, fmt, grey, orientation)
        photos[name] = [t.__dict__ for t in truth]
        specs.append({"file": name, "width": w, "height": h, "faces": len(truth), "background": kind,
                      "format": fmt, "grey": grey, "orientation": orientation})
        for t in truth:  # the same face as a bare crop, for the gap
            Image.open(t.source).save(out / "crops" / f"{t.key.replace('/', '_')}.png")
    body = {"seed": seed, "n_photos": n_photos, "scenes": len(scenes), "photos": photos, "specs": specs}
    (out / "truth.json").write_text(json.dumps(body, indent=0))
    return body


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
                rows.append((t["age"], t["gender"], r.age, r.female_prob, (t["tile"][2] - t["tile"][0]) / 2))
    arr = np.array(rows, np.float64).reshape(-1, 5)
    err = np.abs(arr[:, 2] - arr[:, 0])
    correct = (arr[:, 3] >= 0.5) == (arr[:, 1] >= 0.5)
    res = {"photos": len(truth["photos"]), "faces": n_true, "matched": int(len(arr)),
           "recall": len(arr) / max(n_true, 1), "false_positives": int(fp), **_summary(err, correct)}
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
        rows.append((t["age"], t["gender"], r.age, r.female_prob))
    arr = np.array(rows, np.float64).reshape(-1, 4)
    err = np.abs(arr[:, 2] - arr[:, 0])
    correct = (arr[:, 3] >= 0.5) == (arr[:, 1] >= 0.5)
    return {"faces": len(labels), "found": int(len(arr)), **_summary(err, correct)}


def validation_faces(data: str, seed: int = 42, val_fraction: float = 0.2) -> list:
    """The UTKFace validation split (the same seeded stratified split training uses)."""
    from .data.split import stratified_split
    from .data.utkface import read_utkface

    records, _ = read_utkface(data)
    split = stratified_split(records, val_fraction, seed)
    return [r for r in records if split[r.key] == "val"]


def evaluate_photos(models: list[str], data: str, work: str | Path, n_photos: int = 150, seed: int = 0,
                    cfg=None, engine: str = "local", crops: bool = True) -> dict[str, Any]:
    """Build (or reuse) the photo set, annotate it with each model, score photos and bare crops."""
    import dataclasses

    from .config import Config
    from .engine import annotate
    from .model import read_card
    from .predict import resolve_model_path

    work = Path(work)
    tpath = work / "truth.json"
    truth = json.loads(tpath.read_text()) if tpath.exists() else None
    if not truth or truth.get("n_photos") != n_photos or truth.get("seed") != seed:
        val = validation_faces(data)
        truth = build_photos(val, work, n_photos=n_photos, seed=seed)
    results: dict[str, Any] = {}
    for m in models:
        base = cfg or Config()
        c = dataclasses.replace(base, model=dataclasses.replace(base.model, variant=m))
        path = resolve_model_path(c.model)
        card = read_card(path)
        label = card.get("version") or Path(m).stem
        r: dict[str, Any] = {"model": m, "version": label, "crop_policy": card.get("crop_policy")}
        t0 = time.time()
        annotate([str(work / "photos")], work / "out" / label / "photos", c, engine=engine, progress=False)
        r["photos"] = score_photos(work / "out" / label / "photos", truth)
        if crops:
            annotate([str(work / "crops")], work / "out" / label / "crops", c, engine=engine, progress=False)
            r["crops"] = score_crops(work / "out" / label / "crops", truth)
            r["gap"] = {"age_mae": r["photos"]["age_mae"] - r["crops"]["age_mae"],
                        "gender_acc": r["photos"]["gender_acc"] - r["crops"]["gender_acc"]}
        val = (card.get("evaluation") or {}).get("val") or (card.get("metrics") or {}).get("val_flip_tta")
        if val:
            r["crop_validation"] = {"age_mae": val["age_mae"], "gender_acc": val["gender_acc"], "n": val["n"]}
        r["seconds"] = round(time.time() - t0, 1)
        results[m] = r
    return {"photo_set": {"dir": str(work), "seed": seed, "photos": n_photos,
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
