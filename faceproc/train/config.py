"""The training configuration (configs/train_*.yaml): one dataclass, every option documented at its field."""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml


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
