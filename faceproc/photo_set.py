"""The photo evaluation's photo set: seeded group photos built from validation faces only (never a training
face), in the formats, sizes, orientations and backgrounds users give, plus the same faces as bare crops."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

FORMATS = (("jpg", 0.55), ("png", 0.2), ("webp", 0.25))
ASPECTS = (4 / 3, 3 / 2, 16 / 9, 1.0, 3 / 4, 2 / 3)
_SCENES = ("coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "brick", "grass", "gravel",
           "moon", "coins", "retina", "cell", "clock", "stereo_motorcycle", "colorwheel")


@dataclass
class TruthFace:
    key: str
    source: str  # the face's image file
    age: float
    gender: int  # 0 male, 1 female
    tile: tuple[float, float, float, float]  # where the source square was pasted, display pixels


# The photo sets evaluate-photos builds. "standard": the training-like set (faces from 48 px, JPEG 90).
# "hard": unlike it on purpose: another seed, faces from 24 px, strong JPEG (quality 25-60), more faces.
PHOTO_SETS = {
    "standard": {"seed": 0, "min_face": 48, "jpeg_quality": (90, 90), "max_faces": 12},
    "hard": {"seed": 1001, "min_face": 24, "jpeg_quality": (25, 60), "max_faces": 16},
}


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


def _save(img: np.ndarray, path: Path, fmt: str, grey: bool, orientation: int, quality: int = 90) -> None:
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
        pil.save(path, quality=int(quality), **kw)
    elif fmt == "webp":
        pil.save(path, quality=88)
    else:
        pil.save(path)


def build_photos(faces: list, out: str | Path, n_photos: int = 150, seed: int = 0,
                 min_face: int = 48, max_faces: int = 12, megapixels: tuple[float, float] = (0.5, 12.0),
                 jpeg_quality: tuple[int, int] = (90, 90), meta: dict | None = None) -> dict[str, Any]:
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
        q = int(rng.integers(jpeg_quality[0], jpeg_quality[1] + 1)) if jpeg_quality[0] < jpeg_quality[1] else jpeg_quality[0]
        _save(img, out / "photos" / name, fmt, grey, orientation, q)
        photos[name] = [t.__dict__ for t in truth]
        specs.append({"file": name, "width": w, "height": h, "faces": len(truth), "background": kind,
                      "format": fmt, "grey": grey, "orientation": orientation, "jpeg_quality": q if fmt == "jpg" else None})
        for t in truth:  # the same face as a bare crop, for the gap
            Image.open(t.source).save(out / "crops" / f"{t.key.replace('/', '_')}.png")
    body = {"seed": seed, "n_photos": n_photos, "scenes": len(scenes), "photos": photos, "specs": specs,
            "min_face": min_face, "jpeg_quality": list(jpeg_quality), **(meta or {})}
    (out / "truth.json").write_text(json.dumps(body, indent=0))
    return body


def validation_faces(data: str, seed: int = 42, val_fraction: float = 0.2, half: str | None = "report") -> list:
    """The UTKFace validation split (the same seeded stratified split training uses), by default only its
    report half: photo figures that a card reports must come from faces no choice was made on."""
    from .data.split import stratified_split, validation_half
    from .data.utkface import read_utkface

    records, _ = read_utkface(data)
    split = stratified_split(records, val_fraction, seed)
    return [r for r in records if split[r.key] == "val" and (half is None or validation_half(r.key, seed) == half)]
