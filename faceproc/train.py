"""Training of both variants through the crop cache.

frozen:   the backbone is frozen and runs in inference mode, so its pooled features are computed once
          (for each crop and its mirror image) and the heads are trained on them; the heads are then
          copied into the full model. Same model and loss as training end to end, minutes instead of hours.
unfrozen: optional warm start (heads, incl. the BN, trained on cached features first), then the whole
          network is fine-tuned on augmented crops with checkpoints every epoch, a CSV log, early
          stopping on validation loss and resume after interruption.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import math
import os
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from .config import resolve_backbone_weights
from .crop import DEFAULT_POLICY, LEGACY_POLICY, parse_policy, policy_from_card
from .model import get_variant, preprocess

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    variant: str = "unfrozen"
    datasets: list[dict] = field(default_factory=list)  # [{type: utkface, root: ...}, {type: ffhq_aging, labels: ...}]
    cache: str | None = None  # crop cache parquet; default <out>/../cache/<datasets>.parquet
    backbone_weights: str | None = None  # None -> $FACEPROC_BACKBONE_WEIGHTS -> "imagenet"
    val_fraction: float = 0.2
    seed: int = 42
    epochs: int = 10
    batch_size: int = 64
    learning_rate: float | None = None  # None = reference (Adam() frozen, Adam(1e-4) unfrozen)
    lr_schedule: str = "constant"  # constant | cosine
    age_loss: str = "mse"  # mse (reference) | huber | mae
    loss_weights: dict | None = None  # None = reference (1:1)
    augment: dict = field(default_factory=lambda: {"flip": True, "shift": 0.0, "scale": 0.0, "rotate": 0.0, "color": 0.0})
    feature_flip: bool = True  # frozen: mirrored crops' features as extra training rows
    # frozen: features of N augmented copies of the training crops (cfg.augment) as extra rows; the
    # frozen backbone makes augmentation a fixed set of feature rows, computed once like the others.
    feature_augment_copies: int = 0
    warm_start: bool = False  # unfrozen: fit the heads on cached features before fine-tuning
    # unfrozen: start from this trained model's weights (a further cosine cycle, a warm restart) instead
    # of ImageNet + warm start; its card is kept in the new card as the earlier stage.
    init_from: str | None = None
    warm_start_epochs: int = 30
    patience: int = 4
    # keras.applications' MobileNetV2 keeps BN moving averages with momentum 0.999 (a ~1000-step memory,
    # 4 epochs here), so during fine-tuning they lag the weights and inference-mode outputs drift from
    # training-mode ones (measured: val MAE 9.5 vs 5.9 after re-estimating the statistics). 0.99 tracks
    # the weights; None keeps Keras's value.
    bn_momentum: float | None = None
    # After fine-tuning, re-estimate every BN layer's statistics on this many un-augmented training
    # batches (training-mode forward passes, no weight update) before evaluation and saving. 0 = off.
    bn_recalibration_batches: int = 0
    steps_per_epoch: int | None = None  # cap per epoch (smoke tests); None = whole train split
    # Wall-clock seconds for the fine-tuning epochs (a GPU lease): after the second epoch (the first
    # carries compilation) the run caps `epochs` at what fits, so the cosine schedule still completes.
    time_budget_s: float | None = None
    loader_workers: int = 1  # threads preparing augmented batches (OpenCV and numpy release the GIL)
    min_age_conf: float = 0.0
    min_gender_conf: float = 0.0
    # Crop policy the model is trained under (faceproc/crop.py); None = the init_from model's, else the default.
    crop_policy: str | None = None
    # What training crops show outside their source image: none (repeated border) or real (patches of
    # other training images, as a face in a photo has real surroundings). Validation crops always repeat
    # the border, as annotate does on a bare crop.
    crop_fill: str | None = None

    @classmethod
    def load(cls, path: str | os.PathLike | None, **overrides) -> "TrainConfig":
        data = {}
        if path:
            data = yaml.safe_load(Path(path).read_text()) or {}
        unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown training config key(s): {sorted(unknown)}")
        cfg = cls(**data)
        for k, v in overrides.items():
            if v is not None:
                setattr(cfg, k, v)
        return cfg


# ------------------------------------------------------------------------------------ data

def read_records(cfg: TrainConfig):
    from .data.ffhq_aging import read_ffhq_aging
    from .data.utkface import read_utkface

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
    from .data.cache import build_cache, cache_records, load_crops
    from .data.split import read_manifest, stratified_split, write_manifest

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
    manifest = cache_path.with_name(cache_path.stem + f".split-{cfg.seed}-{cfg.val_fraction}.json")
    if manifest.exists():
        split, _ = read_manifest(manifest)
    else:
        split = stratified_split(records, cfg.val_fraction, cfg.seed)
        write_manifest(manifest, split, {"seed": cfg.seed, "val_fraction": cfg.val_fraction, "stratified_by": "age band x gender"})
    policy = training_policy(cfg, None if cfg.datasets else (cache_meta.get("crop_policy") or LEGACY_POLICY.name))
    groups = {k: split.get(k, "train") for k in pq_keys(cache_path)}
    train_keys = {k for k, g in groups.items() if g == "train"}
    train = load_crops(cache_path, policy, cfg.crop_fill, keys=train_keys, seed=cfg.seed, groups=groups)
    val = load_crops(cache_path, policy, None, keys=set(groups) - train_keys, seed=cfg.seed)
    return {
        "train": train,
        "val": val,
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
    cache-only training set holds (`stored`), else the default."""
    if cfg.crop_policy:
        policy = parse_policy(cfg.crop_policy)
    elif cfg.init_from:
        from .model import read_card

        policy = policy_from_card(read_card(cfg.init_from), cfg.init_from)
    elif stored:
        policy = parse_policy(stored)
    else:
        policy = DEFAULT_POLICY
    if cfg.init_from:
        from .model import read_card

        earlier = policy_from_card(read_card(cfg.init_from), cfg.init_from)
        if earlier != policy:
            log.info("warm start from a %s model under crop policy %s", earlier.name, policy.name)
    return policy


def augment_batch(x: np.ndarray, rng: np.random.Generator, aug: dict) -> np.ndarray:
    """Flip, small similarity jitter and colour jitter on uint8 crops (numpy/OpenCV: backend-free)."""
    import cv2

    x = x.copy()
    n, s = len(x), x.shape[1]
    if aug.get("flip"):
        f = rng.random(n) < 0.5
        x[f] = x[f, :, ::-1]
    shift, scale, rot = aug.get("shift", 0.0), aug.get("scale", 0.0), aug.get("rotate", 0.0)
    if shift or scale or rot:
        for i in range(n):
            a = rng.uniform(-rot, rot)
            z = 1.0 + rng.uniform(-scale, scale)
            m = cv2.getRotationMatrix2D((s / 2, s / 2), a, z)
            m[:, 2] += rng.uniform(-shift, shift, 2) * s
            # Reflect, not replicate: smeared edges are what a crop in a photo never shows.
            x[i] = cv2.warpAffine(x[i], m, (s, s), borderMode=cv2.BORDER_REFLECT_101)
    c = aug.get("color", 0.0)
    if c:
        xf = x.astype(np.float32)
        gain = 1.0 + rng.uniform(-c, c, (n, 1, 1, 1))
        bias = rng.uniform(-c, c, (n, 1, 1, 1)) * 64
        gray = xf.mean(axis=3, keepdims=True)
        sat = 1.0 + rng.uniform(-c, c, (n, 1, 1, 1))
        xf = gray + (xf - gray) * sat
        x = np.clip(xf * gain + bias, 0, 255).astype(np.uint8)
    return x


def augmented_copy(crops: np.ndarray, cfg: "TrainConfig", copy: int, chunk: int = 1024) -> np.ndarray:
    """One deterministic augmented copy of all crops (copy index -> its own random stream)."""
    out = np.empty_like(crops)
    for i in range(0, len(crops), chunk):
        out[i : i + chunk] = augment_batch(crops[i : i + chunk], np.random.default_rng([cfg.seed, 1000 + copy, i]), cfg.augment)
    return out


def _targets(d: dict) -> dict[str, np.ndarray]:
    return {"age": d["age"].reshape(-1, 1).astype(np.float32), "gender": d["gender"].reshape(-1, 1).astype(np.float32)}


class CropSequence:
    """Keras PyDataset over in-memory crops with per-epoch shuffling and augmentation."""

    def __new__(cls, *args, **kwargs):
        import keras

        class _Seq(keras.utils.PyDataset):
            def __init__(self, crops, targets, batch_size, aug, seed, steps=None, workers=1):
                super().__init__(workers=workers, use_multiprocessing=False)
                self.crops, self.targets, self.bs, self.aug = crops, targets, batch_size, aug
                self.seed, self.epoch, self.steps = seed, 0, steps
                self.order = np.random.default_rng([seed, 0]).permutation(len(crops))

            def __len__(self):
                n = math.ceil(len(self.crops) / self.bs)
                return min(n, self.steps) if self.steps else n

            def __getitem__(self, i):
                idx = np.sort(self.order[i * self.bs : (i + 1) * self.bs])
                # One generator per batch: the same batches whatever the number of loader threads.
                rng = np.random.default_rng([self.seed, self.epoch, i])
                x = augment_batch(self.crops[idx], rng, self.aug) if self.aug else self.crops[idx]
                return preprocess(x), {k: v[idx] for k, v in self.targets.items()}

            def on_epoch_end(self):
                self.epoch += 1
                self.order = np.random.default_rng([self.seed, self.epoch]).permutation(len(self.crops))

        return _Seq(*args, **kwargs)


# ------------------------------------------------------------------------------------ features

def backbone_features(backbone_weights: str, crops: np.ndarray, batch_size: int = 128, flip: bool = False) -> np.ndarray:
    """Pooled ImageNet MobileNetV2 features (inference mode) of uint8 crops."""
    import keras

    base = keras.applications.MobileNetV2(input_shape=(128, 128, 3), include_top=False, weights=backbone_weights)
    inp = keras.Input((128, 128, 3))
    feat = keras.Model(inp, keras.layers.GlobalAveragePooling2D()(base(inp, training=False)))
    out = np.empty((len(crops), feat.output_shape[-1]), np.float32)
    for i in range(0, len(crops), 1024):
        c = crops[i : i + 1024]
        if flip:
            c = c[:, :, ::-1]
        out[i : i + len(c)] = feat.predict(preprocess(c), batch_size=batch_size, verbose=0)
    return out


def _cached_features(cache_dir: Path, tag: str, backbone_weights: str, crops: np.ndarray, flip: bool) -> np.ndarray:
    """Backbone features are a pure function of crops and weights: keep them beside the cache."""
    import hashlib

    h = hashlib.sha256(crops[:: max(1, len(crops) // 64)].tobytes())
    h.update(f"{len(crops)}|{backbone_weights}|{flip}".encode())
    path = cache_dir / f"features-{tag}-{h.hexdigest()[:12]}.npy"
    if path.exists():
        return np.load(path)
    t = time.time()
    f = backbone_features(backbone_weights, crops, flip=flip)
    np.save(path, f)
    log.info("features %s: %d crops in %.0f s", tag, len(crops), time.time() - t)
    return f


def fit_heads(variant, cfg: TrainConfig, ftr, ytr, fva, yva, epochs, out: Path, tag: str):
    """Train GAP-feature -> heads (the trainable part of `frozen`, the warm start of `unfrozen`)."""
    import keras

    from .model import build_head, compile_model

    keras.utils.set_random_seed(cfg.seed)
    inp = keras.Input((ftr.shape[1],), name="features")
    age, gender = build_head(inp, variant)
    head = keras.Model(inp, {"age": age, "gender": gender})
    # Training the shipped heads uses the variant's rate; a warm start of end-to-end training may move faster.
    lr = cfg.learning_rate if get_variant(variant).training == "heads" else 1e-3
    compile_model(head, variant, age_loss=cfg.age_loss, learning_rate=lr, loss_weights=cfg.loss_weights)
    # Start the age bias at the mean age: saves hundreds of epochs of walking up from 0 with MSE.
    head.get_layer("age").bias.assign(np.array([float(ytr["age"].mean())], np.float32))
    cbs = [
        keras.callbacks.CSVLogger(str(out / f"{tag}_log.csv")),
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=max(cfg.patience, 8), restore_best_weights=True),
    ]
    hist = head.fit(ftr, ytr, validation_data=(fva, yva), epochs=epochs, batch_size=256, callbacks=cbs, verbose=2)
    return head, hist.history


def batchnorm_layers(model):
    import keras

    out = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            out.append(layer)
        elif hasattr(layer, "layers"):
            out += batchnorm_layers(layer)
    return out


def recalibrate_batchnorm(model, crops: np.ndarray, batches: int, batch_size: int = 64, seed: int = 0) -> None:
    """Re-estimate BN moving statistics for the final weights (forward passes in training mode; the
    weights do not change). Momentum 0.9 over >= 50 batches forgets the stale averages entirely."""
    layers = batchnorm_layers(model)
    saved = [l.momentum for l in layers]
    for l in layers:
        l.momentum = 0.9
    rng = np.random.default_rng(seed)
    reps = -(-batches * batch_size // len(crops))  # cycle through the crops when there are few
    idx = np.concatenate([rng.permutation(len(crops)) for _ in range(reps)])[: batches * batch_size]
    for i in range(0, len(idx), batch_size):
        model(preprocess(crops[np.sort(idx[i : i + batch_size])]), training=True)
    for l, m in zip(layers, saved):
        l.momentum = m


def copy_head_weights(head, model) -> None:
    for layer in head.layers:
        if layer.weights and layer.name in {l.name for l in model.layers}:
            model.get_layer(layer.name).set_weights(layer.get_weights())


# ------------------------------------------------------------------------------------ main

def _lr_callback(cfg: TrainConfig, base_lr: float):
    import keras

    if cfg.lr_schedule == "cosine":
        return keras.callbacks.LearningRateScheduler(
            lambda e, lr: float(base_lr * 0.5 * (1 + math.cos(math.pi * min(e, cfg.epochs) / cfg.epochs)))
        )
    if cfg.lr_schedule == "plateau":
        return keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.3, patience=1)
    return None


def _budget_callback(cfg: TrainConfig):
    """Cap cfg.epochs to what fits cfg.time_budget_s (measured on the second epoch of this process)."""
    import keras

    class _Budget(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.t0, self.n = time.time(), 0

        def on_epoch_begin(self, epoch, logs=None):
            self.te = time.time()

        def on_epoch_end(self, epoch, logs=None):
            self.n += 1
            if self.n == 2:
                per = time.time() - self.te
                left = cfg.time_budget_s - (time.time() - self.t0)
                fits = epoch + 1 + max(0, int(left // (per * 1.03)))
                if fits < cfg.epochs:
                    log.info("time budget %.0f s, %.1f s an epoch: %d epochs instead of %d", cfg.time_budget_s, per, fits, cfg.epochs)
                    cfg.epochs = max(fits, epoch + 1)
            if epoch + 1 >= cfg.epochs:
                self.model.stop_training = True

    return _Budget()


def _earlier_stage(init_from: str | None) -> dict | None:
    """The card of the model a further cycle started from (read at card time, so a resumed run has it too)."""
    if not init_from:
        return None
    from .model import read_card

    earlier = read_card(init_from)
    return {"path": init_from, **{k: earlier.get(k) for k in ("version", "command", "train_config", "metrics")}}


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

    from .model import build_model, save_model

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
                from .model import load_model

                model.set_weights(load_model(cfg.init_from).get_weights())  # same architecture; fresh optimizer
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

    from .evaluate import evaluate_arrays

    from .config import ModelConfig
    from .predict import AgeGenderPredictor

    def pred(flip):  # the predictor annotate runs, on the crops of this model's policy
        return AgeGenderPredictor(ModelConfig(flip_tta=flip), model=model, policy=parse_policy(data.get("crop_policy")
                                  or DEFAULT_POLICY.name))

    metrics = {
        "val": evaluate_arrays(pred(False), va["crops"], va["age"], va["gender"]),
        "val_flip_tta": evaluate_arrays(pred(True), va["crops"], va["age"], va["gender"]),
    }
    card = {
        "variant": cfg.variant,
        "architecture": variant.architecture,
        "crop_policy": data.get("crop_policy") or DEFAULT_POLICY.name,
        "crop_fill_in_training": cfg.crop_fill or "none (repeated border)",
        "backbone_source": _backbone_source(backbone),
        "training_data": {"datasets": cfg.datasets, "read_stats": data.get("read_stats"), "cache": data.get("cache_summary"),
                          "split_manifest": Path(data.get("manifest") or "").name, "n_train": int(len(tr["age"])), "n_val": int(len(va["age"]))},
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
