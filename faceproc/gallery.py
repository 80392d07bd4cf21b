"""The report's gallery of faces: thumbnails cut from the photos with the stored boxes, each linked
(URL-encoded) to its preview or photo."""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np

GALLERY_PER_GROUP = 8  # thumbnails per (age band, gender): the page stays bounded for a million faces
THUMB = 72


def gallery(faces, images, previews: list[str], seed: int = 0) -> list[dict]:
    """Thumbnails of a seeded sample of faces per (age band, gender), cut from the photos with the stored
    boxes; each links to its photo's preview when there is one, else to the photo."""
    import cv2

    from .config import DecodeConfig
    from .data.split import AGE_BANDS, age_band
    from .decode import DecodeFailure, decode_file
    from .schema import source_path

    if not len(faces):
        return []
    # Photos in a seeded random order, JPEGs first (decoded at the size a thumbnail needs; PNG and WebP only
    # whole); every group takes its faces from the first photos in that order, so the picks share photos
    # and the end of every run decodes few (128 thumbnails of the 150 evaluate-photos photos: 50 photos,
    # 25 of them JPEG, in 1.05 s instead of 85 photos in 1.94 s; JPEGs first: 49 photos, 38 JPEG, 0.6-0.8 s).
    photos = faces["image_path"].unique()
    jpeg = np.array([str(p).lower().endswith((".jpg", ".jpeg")) for p in photos])
    order = np.lexsort((np.random.default_rng(seed).random(len(photos)), ~jpeg))
    rank = dict(zip(photos[order], range(len(photos))))
    f = faces.assign(band=faces["age"].map(age_band), rank=faces["image_path"].map(rank))
    picks = []
    for band in AGE_BANDS:
        for gender in ("female", "male"):
            grp = f[(f["band"] == band) & (f["gender"] == gender)]
            if len(grp):
                picks.append(grp.sort_values(["rank", "face_index"], kind="stable").head(GALLERY_PER_GROUP))
    if not picks:
        return []
    import pandas as pd

    sel = pd.concat(picks)
    from .preview import preview_name

    previews = set(previews)  # file names in OUT/previews
    cards = []
    im = images.dropna(subset=["width", "height"])
    sizes = dict(zip(im["image_path"], np.maximum(im["width"].astype(float), im["height"].astype(float))))
    def thumbs(item):
        path, rows = item
        raw = rows["image_path_bytes"].iloc[0] if "image_path_bytes" in rows else None
        # Decode only as large as the smallest picked face needs for its thumbnail (JPEG draft mode makes
        # that several times cheaper than a full decode), between 256 and 1600 px.
        side, long_side = float((rows["x2"] - rows["x1"]).min()), sizes.get(path)
        need = 1600 if not long_side or side <= 0 else int(np.clip(long_side * THUMB / side, 256, 1600))
        try:
            dec = decode_file(source_path(path, raw), DecodeConfig(max_side=need, min_side=1))  # a photo read before
        except (DecodeFailure, OSError):
            return []
        out_cards = []
        for r in rows.itertuples():
            x1, y1, x2, y2 = (float(v) * dec.scale for v in (r.x1, r.y1, r.x2, r.y2))
            m = 0.25 * max(x2 - x1, y2 - y1)
            crop = dec.rgb[max(0, int(y1 - m)) : int(y2 + m), max(0, int(x1 - m)) : int(x2 + m)]
            if crop.size == 0:
                continue
            crop = cv2.resize(crop, (THUMB, THUMB), interpolation=cv2.INTER_AREA)
            ok, buf = cv2.imencode(".jpg", crop[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 80])
            pv = preview_name(path)
            link = _href(path, pv in previews)
            out_cards.append({"band": r.band, "gender": r.gender, "age": float(r.age), "score": float(r.det_score),
                              "path": path, "link": link, "jpeg": base64.b64encode(buf.tobytes()).decode()})
        return out_cards

    # Photos are decoded on every core (the decoders release the GIL): the report is the end of every run.
    from concurrent.futures import ThreadPoolExecutor

    import os

    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        for c in pool.map(thumbs, list(sel.groupby("image_path", sort=False))):
            cards += c
    order = {b: i for i, b in enumerate(AGE_BANDS)}
    return sorted(cards, key=lambda c: (order[c["band"]], c["gender"], c["age"]))


def _href(path: str, previewed: bool) -> str:
    """A thumbnail's link, URL-encoded (a '#' or '?' in a file name would otherwise cut the link): its
    preview, else the photo."""
    from urllib.parse import quote

    from .preview import preview_name

    if previewed:
        return f"previews/{quote(preview_name(path))}"
    return Path(path).as_uri() if path.startswith("/") else quote(path, safe=":/")
