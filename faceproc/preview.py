"""Annotated JPEGs drawn from the stored rows (not from a second detection), so what a person checks
by eye is exactly what the Parquet holds."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import cv2
import numpy as np

from .config import DecodeConfig
from .decode import DecodeFailure, decode_file
from .quality import face_label
from .schema import OK, source_path
from .storage import read_table

PREVIEW_SIDE = 1280


SMALL_FACE = 28  # faces narrower than this in the preview also get an enlarged crop in a strip below
STRIP_TILE = 112


def _label(img: np.ndarray, text: str, box: tuple[int, int, int, int], color, scale: float, thick: int) -> None:
    """A filled label above the box, or below it at the top edge, always inside the image."""
    h, w = img.shape[:2]
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    x1, y1, _, y2 = box
    x = int(min(max(0, x1), max(0, w - tw - 4)))
    top = y1 - th - base - 4
    if top < 0:  # no room above: below the box (or inside it at the bottom edge)
        top = min(y2 + 2, h - th - base - 4)
    top = int(max(0, top))
    cv2.rectangle(img, (x, top), (x + tw + 4, top + th + base + 4), color, -1)
    cv2.putText(img, text, (x + 2, top + th + 2), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thick,
                cv2.LINE_AA)


def draw(rgb: np.ndarray, faces, scale: float) -> np.ndarray:
    """Boxes, landmarks and labels sized to each face (not to the photo), labels kept inside the image; when
    faces are small in the preview, a strip of enlarged face crops with the same labels goes below it."""
    img = np.ascontiguousarray(rgb[..., ::-1])
    src = img.copy()
    small = []
    for f in faces.itertuples():
        reason = getattr(f, "withheld", None)
        label = face_label(f.gender, getattr(f, "female_prob", None), f.age, reason)
        # BGR: female red, male blue, uncertain gender purple, no estimate (too small or blurred) grey
        color = ((128, 128, 128) if isinstance(reason, str) else (160, 60, 160) if label.startswith("?")
                 else (60, 60, 230) if f.gender == "female" else (230, 140, 40))
        x1, y1, x2, y2 = (int(round(v * scale)) for v in (f.x1, f.y1, f.x2, f.y2))
        side = max(1, min(x2 - x1, y2 - y1))
        thick = int(np.clip(round(side / 60), 1, 4))
        cv2.rectangle(img, (x1, y1), (x2, y2), color, thick)
        if side >= 24:  # on a smaller face the dots would hide it
            lm = np.asarray(f.landmarks, np.float32).reshape(5, 2) * scale
            for x, y in lm:
                cv2.circle(img, (int(x), int(y)), max(1, side // 40), (0, 255, 0), -1)
        _label(img, label, (x1, y1, x2, y2), color, float(np.clip(side / 120, 0.4, 1.0)), 1)
        if side < SMALL_FACE:
            small.append((label, color, (x1, y1, x2, y2)))
    if not small:
        return img
    h, w = img.shape[:2]
    per_row = max(1, w // STRIP_TILE)
    rows = (len(small) + per_row - 1) // per_row
    strip = np.full((rows * STRIP_TILE, w, 3), 32, np.uint8)
    for i, (label, color, (x1, y1, x2, y2)) in enumerate(small):
        m = (x2 - x1) // 2
        crop = src[max(0, y1 - m): y2 + m, max(0, x1 - m): x2 + m]
        if crop.size == 0:
            continue
        tile = cv2.resize(crop, (STRIP_TILE - 8, STRIP_TILE - 8), interpolation=cv2.INTER_CUBIC)
        r, c = divmod(i, per_row)
        y0, x0 = r * STRIP_TILE + 4, c * STRIP_TILE + 4
        strip[y0: y0 + STRIP_TILE - 8, x0: x0 + STRIP_TILE - 8] = tile
        cv2.rectangle(strip, (x0, y0), (x0 + STRIP_TILE - 9, y0 + STRIP_TILE - 9), color, 2)
        _label(strip, label, (x0, y0 + STRIP_TILE - 8, x0 + STRIP_TILE - 8, y0 + STRIP_TILE - 8), color, 0.45, 1)
    return np.vstack([img, strip])


def preview_name(image_path: str) -> str:
    """File name of a photo's preview in OUT/previews (the report links thumbnails to it by this name): its
    two parent folders and its name, so a person can tell "2019_summer_IMG_0001" from another IMG_0001, plus
    a hash of the whole path."""
    p = Path(image_path)
    readable = re.sub(r"[^\w.-]+", "_", "_".join([*p.parent.parts[-2:], p.stem]).lstrip("/"))[-90:].strip("_.")
    while len(readable.encode("utf-8", "surrogateescape")) > 150:  # file names have 255 bytes at most
        readable = readable[1:]
    return f"{readable}-{hashlib.sha1(image_path.encode('utf-8', 'surrogateescape')).hexdigest()[:8]}.jpg"


def write_previews(out, n: int, dec_cfg: DecodeConfig | None = None) -> list[str]:
    """Previews of the n images with the most faces (ties: path order) into OUT/previews/."""
    from .storage import Store

    out = out if isinstance(out, Store) else Store(out)
    faces = read_table(out, "faces").to_pandas()
    images = read_table(out, "images").to_pandas()
    ok = images[images["status"] == OK].sort_values(["n_faces", "image_path"], ascending=[False, True]).head(n)
    # min_side 1: these photos were read for detection already; a long panorama must not fail the shape
    # check again at the smaller preview size.
    cfg = DecodeConfig(**{**(dec_cfg or DecodeConfig()).__dict__, "max_side": PREVIEW_SIDE, "min_side": 1})
    written = []
    for path, raw in zip(ok["image_path"], ok["image_path_bytes"]):
        try:
            dec = decode_file(source_path(path, raw), cfg)
        except DecodeFailure:
            continue
        img = draw(dec.rgb, faces[faces["image_path"] == path], dec.scale)
        ok_, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 88])
        rel = f"previews/{preview_name(path)}"
        out.write_bytes(rel, buf.tobytes())
        written.append(out.where(rel))
    return written
