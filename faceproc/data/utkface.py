"""UTKFace reader: labels live in file names `age_gender_race_datetime.jpg.chip.jpg`.

A few names are malformed (a space before the extension, a missing dot, a missing race field, an
over-long timestamp). A name is used when its first two fields are still a clear age (0-116) and gender
(0 male, 1 female); every other file is skipped and counted, never guessed.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .records import FaceRecord, ReadStats

_CANONICAL = re.compile(r"^(\d{1,3})_([01])_([0-4])_(\d{17})\.jpg\.chip\.jpg$")
_LENIENT = re.compile(r"^(\d{1,3})_([01])_")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
MAX_AGE = 116


def parse_name(name: str) -> tuple[float, int, bool] | None:
    """(age, gender, was_malformed) or None when age and gender are not clear."""
    m = _CANONICAL.match(name)
    if m:
        age, gender = int(m.group(1)), int(m.group(2))
        return (float(age), gender, False) if age <= MAX_AGE else None
    m = _LENIENT.match(name)
    if not m:
        return None
    age, gender = int(m.group(1)), int(m.group(2))
    if age > MAX_AGE:
        return None
    return float(age), gender, True


def read_utkface(root: str | os.PathLike) -> tuple[list[FaceRecord], ReadStats]:
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"UTKFace folder not found: {root}")
    stats = ReadStats()
    records = []
    for path in sorted(root.rglob("*")):
        if not path.is_file() or not path.name.lower().endswith(IMAGE_SUFFIXES):
            continue
        stats.files += 1
        parsed = parse_name(path.name)
        if parsed is None:
            stats.skip(path.name)
            continue
        age, gender, malformed = parsed
        if malformed:
            stats.repaired += 1
            if len(stats.repaired_examples) < 20:
                stats.repaired_examples.append(path.name)
        stats.parsed += 1
        records.append(FaceRecord(str(path), age, gender, "utkface"))
    return records, stats
