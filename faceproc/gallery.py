"""The report's gallery of faces: thumbnails cut from the photos with the stored boxes, each linked
(URL-encoded) to its preview or photo. Captions and bands use the same displayed age (quality.shown_age), so
a "30 y" is never filed under 20-29; faces whose estimates were withheld get a group of their own.

Size bound: every thumbnail is THUMB px and at most THUMB_BYTES (lower JPEG quality, then fewer pixels, for
content that compresses badly), so the gallery is at most (16 + 1) x GALLERY_PER_GROUP x THUMB_BYTES."""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np

GALLERY_PER_GROUP = 8  # thumbnails per (age band, gender): the page stays bounded for a million faces
THUMB = 112  # pixels of a thumbnail (shown at this size in a grid that fills the window)
THUMB_BYTES = 3000  # the most one thumbnail's JPEG may weigh (4 KB in base64; a face at 112 px: quality 65-80)
WITHHELD = "not estimated"  # the band of faces too small or blurred for an age (faces.withheld)


def encode_thumb(crop: np.ndarray) -> bytes:
    """A THUMB px JPEG of an RGB crop within THUMB_BYTES: quality down first, then fewer pixels (a crop of
    noise or fine texture), so the page's size bound holds whatever the photos hold."""
    import cv2

    for side in (THUMB, 96, 80, 64, 48, 32):
        img = cv2.resize(crop, (side, side), interpolation=cv2.INTER_AREA)[..., ::-1]
        for q in (80, 65, 50, 35):
            buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, q])[1].tobytes()
            if len(buf) <= THUMB_BYTES:
                return buf
    return buf  # 32 px at quality 35 is far below the budget


def gallery(faces, images, previews: list[str], seed: int = 0) -> list[dict]:
    """Thumbnails of a seeded sample of faces per (age band, gender), cut from the photos with the stored
    boxes; each links to its photo's preview when there is one, else to the photo."""
    from .config import DecodeConfig
    from .data.split import AGE_BANDS, age_band
    from .quality import shown_age
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
    shown = faces["age"].map(shown_age)
    f = faces.assign(band=[WITHHELD if a is None or a != a else age_band(a) for a in shown],
                     rank=faces["image_path"].map(rank))
    if "withheld" not in f:
        f["withheld"] = None
    picks = []
    for band, gender in [(b, g) for b in AGE_BANDS for g in ("female", "male")] + [(WITHHELD, None)]:
        grp = f[(f["band"] == band) & ((f["gender"] == gender) if gender else True)]
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
    rels = dict(zip(images["image_path"], images["rel_path"])) if "rel_path" in images else {}
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
            buf = encode_thumb(crop)
            pv = preview_name(path)
            link = _href(path, pv in previews)
            out_cards.append({"band": r.band, "gender": r.gender if r.band != WITHHELD else None,
                              "age": None if r.age != r.age else float(r.age), "score": float(r.det_score),
                              "female_prob": None if r.female_prob != r.female_prob else float(r.female_prob),
                              "withheld": r.withheld if isinstance(r.withheld, str) else None,
                              "path": path, "rel": rels.get(path) or path, "link": link,
                              "jpeg": base64.b64encode(buf).decode()})
        return out_cards

    # Photos are decoded on every core (the decoders release the GIL): the report is the end of every run.
    from concurrent.futures import ThreadPoolExecutor

    import os

    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        for c in pool.map(thumbs, list(sel.groupby("image_path", sort=False))):
            cards += c
    order = {b: i for i, b in enumerate([*AGE_BANDS, WITHHELD])}
    return sorted(cards, key=lambda c: (order[c["band"]], c["gender"] or "", c["age"] or 0, c["path"]))


def _href(path: str, previewed: bool) -> str:
    """A thumbnail's link, URL-encoded (a '#' or '?' in a file name would otherwise cut the link): its
    preview, else the photo."""
    from urllib.parse import quote

    from .preview import preview_name

    if previewed:
        return f"previews/{quote(preview_name(path))}"
    return Path(path).as_uri() if path.startswith("/") else quote(path, safe=":/")
