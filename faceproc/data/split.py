"""Seeded split stratified by age band and gender, written to a manifest so evaluation always sees
the same validation images."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from ..storage import write_text_atomic
from .records import FaceRecord

AGE_BANDS = ["0-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "70+"]


def age_band(age: float) -> str:
    """'0-9', '10-19', ..., '70+'."""
    lo = min(int(max(age, 0)) // 10, 7) * 10
    return f"{lo}+" if lo == 70 else f"{lo}-{lo + 9}"


def stratified_split(records: list[FaceRecord], val_fraction: float = 0.2, seed: int = 42) -> dict[str, str]:
    """record key -> 'train' | 'val'. Independent of record order and of where the data folder lives."""
    rng = np.random.default_rng(seed)
    strata: dict[tuple[str, int], list[str]] = {}
    for r in records:
        strata.setdefault((age_band(r.age), r.gender), []).append(r.key)
    out: dict[str, str] = {}
    for key in sorted(strata):
        keys = sorted(strata[key])
        perm = rng.permutation(len(keys))
        n_val = int(round(len(keys) * val_fraction))
        for rank, idx in enumerate(perm):
            out[keys[idx]] = "val" if rank < n_val else "train"
    return out


# The validation people are cut in two halves once and for all: the selection half serves early stopping,
# cycles, calibration and every threshold; the report half only feeds the figures a model card reports.
# A model chosen by its score on a set cannot honestly report that score.
SELECT, REPORT = "select", "report"


def validation_half(key: str, seed: int = 42) -> str:
    """'select' or 'report' for a validation key: a hash of (seed, key), so every reader (training, evaluate,
    evaluate-photos) agrees without a manifest change, whatever the order or subset of records it holds."""
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return REPORT if digest[0] & 1 else SELECT


def manifest_path(cache_path, seed: int, val_fraction: float) -> Path:
    """Where the split manifest of a crop cache lies (beside it, named by seed and fraction)."""
    cache_path = Path(cache_path)
    return cache_path.with_name(cache_path.stem + f".split-{seed}-{val_fraction}.json")


def write_manifest(path: str | os.PathLike, split: dict[str, str], meta: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    names = sorted(split)
    digest = hashlib.sha256("\n".join(f"{n}\t{split[n]}" for n in names).encode()).hexdigest()[:16]
    body = {"meta": {**meta, "digest": digest, "n_train": sum(v == "train" for v in split.values()),
                     "n_val": sum(v == "val" for v in split.values())},
            "split": {n: split[n] for n in names}}
    write_text_atomic(json.dumps(body, indent=0), path)


def read_manifest(path: str | os.PathLike) -> tuple[dict[str, str], dict]:
    body = json.loads(Path(path).read_text())
    return body["split"], body["meta"]
