"""Augmentation and the batch loader: numpy/OpenCV only, so any Keras backend trains with it; batches depend
on (seed, epoch, index) alone, whatever the number of loader threads."""

from __future__ import annotations

import logging
import math

import numpy as np

from ..model import preprocess
from .config import TrainConfig

log = logging.getLogger(__name__)


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
