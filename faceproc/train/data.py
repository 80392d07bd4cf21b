"""Records -> crop cache -> split -> crops of the training policy (filled or bare) for train and val."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ..agegender.architecture import get_variant
from ..crop import DEFAULT_POLICY, parse_policy
from .config import TrainConfig

log = logging.getLogger(__name__)


def read_records(cfg: TrainConfig):
    from ..data.ffhq_aging import read_ffhq_aging
    from ..data.utkface import read_utkface

    records, stats = [], {}
    for ds in cfg.datasets:
        kind = ds.get("type", "utkface")
        if kind == "utkface":
            recs, st = read_utkface(ds["root"])
        elif kind == "ffhq_aging":
            recs, st = read_ffhq_aging(ds["labels"], ds.get("images"), cfg.min_age_conf, cfg.min_gender_conf)
        else:
            raise ValueError(f"unknown dataset type {kind!r}")
        records += recs
        stats[f"{kind}:{ds.get('root') or ds.get('labels')}"] = st.as_dict()
    if not records:
        raise ValueError("no training records: give at least one dataset (--data DIR)")
    return records, stats


def prepare_data(cfg: TrainConfig, out: Path) -> dict[str, Any]:
    """Records -> split manifest -> crop cache -> arrays for train and val."""
    from ..data.cache import build_cache, cache_records, stored_policy
    from ..data.recut import load_crops
    from ..data.split import REPORT, SELECT, manifest_path, read_manifest, stratified_split, validation_half, write_manifest

    cache_path = Path(cfg.cache) if cfg.cache else out.parent / "cache" / "train_crops.parquet"
    if cfg.datasets:
        records, read_stats = read_records(cfg)
        cache_meta = build_cache(records, cache_path)
    elif cache_path.exists():
        # No raw images here (a GPU machine given a packed cache): the cache is the dataset.
        records, read_stats = cache_records(cache_path), {"cache_only": str(cache_path)}
        meta_path = cache_path.with_suffix(".json")
        cache_meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    else:
        raise ValueError("no training data: give a dataset (--data DIR) or an existing crop cache (--cache FILE)")
    manifest = manifest_path(cache_path, cfg.seed, cfg.val_fraction)
    if manifest.exists():
        split, _ = read_manifest(manifest)
    else:
        split = stratified_split(records, cfg.val_fraction, cfg.seed)
        write_manifest(manifest, split, {"seed": cfg.seed, "val_fraction": cfg.val_fraction, "stratified_by": "age band x gender"})
    policy = training_policy(cfg, None if cfg.datasets else stored_policy(cache_path))
    groups = {k: split.get(k, "train") for k in pq_keys(cache_path)}
    train_keys = {k for k, g in groups.items() if g == "train"}
    train = load_crops(cache_path, policy, cfg.crop_fill, keys=train_keys, seed=cfg.seed, groups=groups)
    val_keys = set(groups) - train_keys
    halves = {k: validation_half(k, cfg.seed) for k in val_keys}
    val = load_crops(cache_path, policy, None, keys={k for k in val_keys if halves[k] == SELECT}, seed=cfg.seed)
    report = load_crops(cache_path, policy, None, keys={k for k in val_keys if halves[k] == REPORT}, seed=cfg.seed)
    return {
        "train": train,
        "val": val,  # the selection half: early stopping, checkpoints, calibration
        "report": report,  # the report half: only the card's figures
        "crop_policy": policy.name,
        "cache": str(cache_path),
        "manifest": str(manifest),
        "read_stats": read_stats,
        "cache_summary": {k: v for k, v in cache_meta.items() if k != "failed_keys"} | {"failed_examples": cache_meta.get("failed_keys", [])[:50]},
    }


def pq_keys(cache_path) -> list[str]:
    import pyarrow.parquet as pq

    return pq.read_table(cache_path, columns=["key"]).column("key").to_pylist()


def training_policy(cfg: TrainConfig, stored: str | None = None):
    """Explicit policy, else the init_from model's own (read from its card), else the policy of the crops a
    cache-only training set holds (`stored`), else the default one at the variant's input size."""
    if cfg.crop_policy:
        policy = parse_policy(cfg.crop_policy)
    elif cfg.init_from:
        policy = _init_policy(cfg.init_from)
    elif stored:
        policy = parse_policy(stored)
    else:
        size = get_variant(cfg.variant).input_size
        policy = DEFAULT_POLICY if size == DEFAULT_POLICY.size else replace(DEFAULT_POLICY, size=size)
    if cfg.init_from:
        earlier = _init_policy(cfg.init_from)
        if earlier != policy:
            log.info("warm start from a %s model under crop policy %s", earlier.name, policy.name)
    return policy


def _init_policy(path: str):
    """The crop policy of the model a further cycle starts from (its card, through the one card reader)."""
    from ..agegender.spec import ModelSpec
    from ..config import ModelConfig

    return ModelSpec.resolve(ModelConfig(variant=str(path), runtime="keras")).policy


def _targets(d: dict) -> dict[str, np.ndarray]:
    return {"age": d["age"].reshape(-1, 1).astype(np.float32), "gender": d["gender"].reshape(-1, 1).astype(np.float32)}
