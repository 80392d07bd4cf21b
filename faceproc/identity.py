"""An output folder's identity: the settings that change its rows (`result_fingerprint`). A rerun with
another identity is refused (or, with --force, starts again), so no output mixes rows of two settings."""

from __future__ import annotations

import os
from typing import Any

from .config import Config
from .schema import SCHEMA_VERSION


def describe_model(cfg: Config) -> str:
    """variant@version without loading TensorFlow (reads the model card / hashes the file)."""
    from .model import DEFAULT_VARIANT, VARIANTS, model_version, read_card
    from .predict import resolve_model_path

    if cfg.model.random_init:
        return f"{cfg.model.variant if cfg.model.variant in VARIANTS else DEFAULT_VARIANT}@random-init"
    path = resolve_model_path(cfg.model)
    card = read_card(path)
    return f"{card.get('variant') or path.stem}@{model_version(path, card)}"


def result_fingerprint(cfg: Config, model_label: str) -> dict[str, Any]:
    """The settings that change the rows (config fields not marked SAME_ROWS), the model's identity and the
    row contract's version."""
    from .config import row_settings

    rows = row_settings(cfg)
    det_file = cfg.detector.active.model_file  # resolved by preflight: which model file, whatever pointed at it
    try:
        det_label = f"{os.path.basename(det_file)}:{os.path.getsize(det_file)}" if det_file else None
    except OSError:
        det_label = os.path.basename(det_file)
    return {"decode": rows["decode"], "detector": rows["detector"], "detector_file": det_label, "model": rows["model"],
            "model_label": model_label, "schema_version": SCHEMA_VERSION}


def _diff(a: dict, b: dict, prefix: str = "") -> list[str]:
    out = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += _diff(va, vb, f"{prefix}{k}.")
        elif va != vb:
            out.append(f"{prefix}{k}: {va!r} -> {vb!r}")
    return out
