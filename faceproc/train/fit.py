"""The recipe: prepared crops -> the variant trained the way the registry says -> model.keras + model card."""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from ..config import resolve_backbone_weights
from ..crop import DEFAULT_POLICY, parse_policy
from ..agegender.architecture import get_variant, preprocess
from .augment import CropSequence, augmented_copy
from .batchnorm import batchnorm_layers, recalibrate_batchnorm
from .callbacks import _budget_callback, _lr_callback
from .config import TrainConfig
from .data import _targets, prepare_data
from .features import _cached_features, copy_head_weights, fit_heads

log = logging.getLogger(__name__)


def _earlier_stage(init_from: str | None) -> dict | None:
    """The card of the model a further cycle started from (read at card time, so a resumed run has it too)."""
    if not init_from:
        return None
    earlier = _spec(init_from).card
    return {"path": init_from, **{k: earlier.get(k) for k in ("version", "command", "train_config", "metrics")}}


def _spec(path: str):
    """The model a further cycle starts from, read once (its card checked against its weights)."""
    from ..agegender.spec import ModelSpec
    from ..config import ModelConfig

    return ModelSpec.resolve(ModelConfig(variant=str(path), runtime="keras"))


def _backbone_source(backbone: str | None) -> str:
    if backbone is None:
        return "random init (no pretrained weights)"
    if backbone == "imagenet":
        return "keras.applications ImageNet weights (download)"
    return f"ImageNet MobileNetV2 1.0 no-top weights file {Path(backbone).name}"


def train(cfg: TrainConfig, out: str | os.PathLike, command: str | None = None) -> dict[str, Any]:
    """Records -> crop cache -> split -> fit -> model.keras with its card."""

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    return fit(cfg, prepare_data(cfg, out), out, command)


def fit(cfg: TrainConfig, data: dict[str, Any], out: Path, command: str | None = None) -> dict[str, Any]:
    """Train on prepared arrays (prepare_data's dict), save model.keras + model card into `out`."""
    import keras

    from ..agegender.architecture import build_model
    from ..agegender.files import save_model

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    backbone = resolve_backbone_weights(cfg.backbone_weights)
    command = command or " ".join(shlex.quote(a) for a in [Path(sys.argv[0]).name] + sys.argv[1:])
    (out / "config.yaml").write_text(yaml.safe_dump(dataclasses.asdict(cfg), sort_keys=False))
    t0 = time.time()
    tr, va = data["train"], data["val"]
    log.info("train %d, val %d crops (cache %s)", len(tr["age"]), len(va["age"]), data.get("cache"))
    ytr, yva = _targets(tr), _targets(va)
    cache_dir = Path(data["cache"]).parent if data.get("cache") else out
    history: dict[str, Any] = {}

    variant = get_variant(cfg.variant)
    need_features = variant.training == "heads" or (cfg.warm_start and not cfg.init_from)
    if need_features:
        ftr = _cached_features(cache_dir, "train", backbone, tr["crops"], False)
        fva = _cached_features(cache_dir, "val", backbone, va["crops"], False)
        parts = [ftr]
        if cfg.feature_flip:
            parts.append(_cached_features(cache_dir, "train-flip", backbone, tr["crops"], True))
        for i in range(cfg.feature_augment_copies):
            parts.append(_cached_features(cache_dir, f"train-aug{i}", backbone, augmented_copy(tr["crops"], cfg, i), False))
        ftr = np.concatenate(parts)
        ytr_h = {k: np.concatenate([v] * len(parts)) for k, v in ytr.items()}
    if variant.training == "heads":
        head, history = fit_heads(cfg.variant, cfg, ftr, ytr_h, fva, yva, cfg.epochs, out, "heads")
        model = build_model(cfg.variant, backbone, age_loss=cfg.age_loss, learning_rate=cfg.learning_rate, loss_weights=cfg.loss_weights)
        copy_head_weights(head, model)
    else:
        ckpt = out / "checkpoint.keras"
        log_csv = out / "log.csv"
        initial_epoch = 0
        if ckpt.exists():
            model = keras.saving.load_model(ckpt, compile=True, safe_mode=True)
            if log_csv.exists():
                with open(log_csv) as fh:
                    initial_epoch = sum(1 for _ in csv.DictReader(fh))
            log.info("resuming from %s at epoch %d", ckpt, initial_epoch)
        else:
            # With init_from every weight is overwritten: no need to fetch ImageNet weights first.
            model = build_model(cfg.variant, None if cfg.init_from else backbone, age_loss=cfg.age_loss,
                                learning_rate=cfg.learning_rate, loss_weights=cfg.loss_weights)
            if cfg.init_from:
                from ..agegender.files import load_model

                model.set_weights(load_model(cfg.init_from, input_size=variant.input_size).get_weights())  # same architecture; fresh optimizer
            elif cfg.warm_start:
                head, history["warm_start"] = fit_heads(cfg.variant, cfg, ftr, ytr_h, fva, yva, cfg.warm_start_epochs, out, "warm_start")
                copy_head_weights(head, model)
        if cfg.bn_momentum is not None:
            for layer in batchnorm_layers(model):
                layer.momentum = cfg.bn_momentum
        keras.utils.set_random_seed(cfg.seed + initial_epoch)
        seq = CropSequence(tr["crops"], ytr, cfg.batch_size, cfg.augment, cfg.seed + initial_epoch, cfg.steps_per_epoch,
                           cfg.loader_workers)
        val_x = preprocess(va["crops"])
        cbs = [
            keras.callbacks.CSVLogger(str(log_csv), append=True),
            keras.callbacks.ModelCheckpoint(str(ckpt), save_best_only=False),
            keras.callbacks.ModelCheckpoint(str(out / "best.keras"), monitor="val_loss", save_best_only=True),
            keras.callbacks.EarlyStopping(monitor="val_loss", patience=cfg.patience, restore_best_weights=True),
        ]
        base_lr = cfg.learning_rate or 1e-4
        if (cb := _lr_callback(cfg, base_lr)) is not None:
            cbs.append(cb)
        if cfg.time_budget_s:
            cbs.append(_budget_callback(cfg))
        if initial_epoch < cfg.epochs:
            hist = model.fit(seq, validation_data=(val_x, yva), epochs=cfg.epochs, initial_epoch=initial_epoch,
                             callbacks=cbs, verbose=2)
            history["fine_tune"] = hist.history
        if (out / "best.keras").exists():
            model = keras.saving.load_model(out / "best.keras", compile=True, safe_mode=True)
        if cfg.bn_recalibration_batches:
            t = time.time()
            recalibrate_batchnorm(model, tr["crops"], cfg.bn_recalibration_batches, cfg.batch_size, cfg.seed)
            log.info("batch-norm statistics re-estimated on %d batches in %.0f s", cfg.bn_recalibration_batches, time.time() - t)

    from ..evaluate import evaluate_arrays

    from ..agegender.runtime import AgeGenderPredictor
    from ..agegender.spec import ModelSpec
    from ..config import ModelConfig

    def pred(flip):  # the predictor annotate runs, on the crops of this model's policy
        policy = parse_policy(data.get("crop_policy") or DEFAULT_POLICY.name)
        return AgeGenderPredictor(ModelSpec.in_memory(ModelConfig(flip_tta=flip), policy), model=model)

    metrics = {
        "validation_halves": "val = the selection half (early stopping, best checkpoint, calibration); "
                             "report = the report half, used for nothing but these figures (data.split.validation_half)",
        "val": evaluate_arrays(pred(False), va["crops"], va["age"], va["gender"]),
        "val_flip_tta": evaluate_arrays(pred(True), va["crops"], va["age"], va["gender"]),
    }
    rep = data.get("report")
    if rep is not None and len(rep["age"]):
        metrics["report"] = evaluate_arrays(pred(False), rep["crops"], rep["age"], rep["gender"])
        metrics["report_flip_tta"] = evaluate_arrays(pred(True), rep["crops"], rep["age"], rep["gender"])
    card = {
        "variant": cfg.variant,
        "architecture": variant.architecture,
        "crop_policy": data.get("crop_policy") or DEFAULT_POLICY.name,
        "crop_fill_in_training": cfg.crop_fill or "none (repeated border)",
        "backbone_source": _backbone_source(backbone),
        "training_data": {"datasets": cfg.datasets, "read_stats": data.get("read_stats"), "cache": data.get("cache_summary"),
                          "split_manifest": Path(data.get("manifest") or "").name, "n_train": int(len(tr["age"])), "n_val": int(len(va["age"])),
                          "n_report": int(len((data.get("report") or {"age": []})["age"]))},
        "train_config": dataclasses.asdict(cfg),
        "earlier_stage": _earlier_stage(cfg.init_from),
        "command": command,
        "metrics": metrics,
        "seconds": round(time.time() - t0, 1),
        "keras_backend": keras.backend.backend(),
    }
    card = save_model(model, out / "model.keras", card)  # with file size, sha256 and version
    (out / "history.json").write_text(json.dumps(history, indent=1, default=float))
    return card
