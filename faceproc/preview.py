"""Annotated JPEGs drawn from the stored rows (not from a second detection), so what a person checks
by eye is exactly what the Parquet holds."""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np

from .config import DecodeConfig
from .decode import DecodeFailure, decode_file
from .schema import OK, read_table, source_path

PREVIEW_SIDE = 1280


def draw(rgb: np.ndarray, faces, scale: float) -> np.ndarray:
    img = np.ascontiguousarray(rgb[..., ::-1])
    thick = max(1, round(max(img.shape[:2]) / 500))
    for f in faces.itertuples():
        color = (60, 60, 230) if f.gender == "female" else (230, 140, 40)
        p1 = (int(f.x1 * scale), int(f.y1 * scale))
        p2 = (int(f.x2 * scale), int(f.y2 * scale))
        cv2.rectangle(img, p1, p2, color, thick)
        lm = np.asarray(f.landmarks, np.float32).reshape(5, 2) * scale
        for x, y in lm:
            cv2.circle(img, (int(x), int(y)), thick, (0, 255, 0), -1)
        label = f"{f.gender[0].upper()} {f.age:.0f}"
        cv2.putText(img, label, (p1[0], max(12, p1[1] - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.4 * thick + 0.2, color, thick)
    return img


def preview_name(image_path: str) -> str:
    """File name of a photo's preview in OUT/previews (the report links thumbnails to it by this name)."""
    return f"{Path(image_path).stem[:60]}-{hashlib.sha1(image_path.encode('utf-8', 'surrogateescape')).hexdigest()[:8]}.jpg"


def write_previews(out, n: int, dec_cfg: DecodeConfig | None = None) -> list[str]:
    """Previews of the n images with the most faces (ties: path order) into OUT/previews/."""
    from .storage import Store

    out = out if isinstance(out, Store) else Store(out)
    faces = read_table(out, "faces").to_pandas()
    images = read_table(out, "images").to_pandas()
    ok = images[images["status"] == OK].sort_values(["n_faces", "image_path"], ascending=[False, True]).head(n)
    cfg = DecodeConfig(**{**(dec_cfg or DecodeConfig()).__dict__, "max_side": PREVIEW_SIDE})
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
