"""FFHQ-Aging reader: `ffhq_aging_labels.csv` beside the FFHQ images.

CSV columns (FFHQ-Aging release): image_number, age_group (e.g. `20-29`, `70-120`), age_group_confidence,
gender (`male`/`female`), gender_confidence, plus head pose/glasses columns that are ignored. Images are
`<image_number zero-padded to 5>.png` (any of png/jpg/webp, optionally under thousand-folders). The age
target is the range midpoint; rows below the confidence thresholds are dropped and counted.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from .records import FaceRecord, ReadStats

_EXTS = (".png", ".jpg", ".jpeg", ".webp")


def age_midpoint(group: str) -> float:
    lo, hi = group.strip().split("-")
    lo_f, hi_f = float(lo), float(hi)
    if hi_f >= 100:  # the open-ended top group `70-120`: use a realistic midpoint
        hi_f = lo_f + 10
    return (lo_f + hi_f) / 2.0


def _index_images(image_dir: Path) -> dict[int, str]:
    found: dict[int, str] = {}
    for p in image_dir.rglob("*"):
        if p.suffix.lower() in _EXTS and p.stem.isdigit():
            found.setdefault(int(p.stem), str(p))
    return found


def read_ffhq_aging(
    labels_csv: str | os.PathLike,
    image_dir: str | os.PathLike | None = None,
    min_age_conf: float = 0.0,
    min_gender_conf: float = 0.0,
) -> tuple[list[FaceRecord], ReadStats]:
    labels_csv = Path(labels_csv)
    image_dir = Path(image_dir) if image_dir else labels_csv.parent
    images = _index_images(image_dir)
    stats = ReadStats()
    records = []
    with open(labels_csv, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            stats.files += 1
            try:
                num = int(row["image_number"])
                age = age_midpoint(row["age_group"])
                age_conf = float(row.get("age_group_confidence") or 1.0)
                gender_txt = row["gender"].strip().lower()
                gender_conf = float(row.get("gender_confidence") or 1.0)
            except (KeyError, ValueError, AttributeError):
                stats.skip(str(row.get("image_number")))
                continue
            if gender_txt not in ("male", "female") or num not in images:
                stats.skip(str(num))
                continue
            if age_conf < min_age_conf or gender_conf < min_gender_conf:
                stats.skip(f"{num} (low confidence)")
                continue
            stats.parsed += 1
            records.append(
                FaceRecord(images[num], age, int(gender_txt == "female"), "ffhq_aging", age_conf, gender_conf)
            )
    return records, stats
