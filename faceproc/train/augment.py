"""Augmentation and the batch loader: numpy/OpenCV only, so any Keras backend trains with it; batches depend
on (seed, epoch, index) alone, whatever the number of loader threads."""

from __future__ import annotations

import logging
import math

import numpy as np

from ..agegender.architecture import preprocess
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
    x = _photo_degrade(x, rng, aug)
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


def _photo_degrade(x: np.ndarray, rng: np.random.Generator, aug: dict) -> np.ndarray:
    """What a photo does to a face that a dataset crop never shows: the face was small (down-up resampling
    to `resample` [lo, hi] px), JPEG-compressed (`jpeg` [qlo, qhi]), grey, slightly out of focus or noisy.
    Each applies to a crop with its own probability (`*_p`), so clean crops stay in every batch."""
    import cv2

    n, s = len(x), x.shape[1]
    res, jpg = aug.get("resample"), aug.get("jpeg")
    for i in range(n):
        im = x[i]
        if res and rng.random() < aug.get("resample_p", 0.5):
            side = int(rng.integers(res[0], res[1] + 1))
            if side < s:
                small = cv2.resize(im, (side, side), interpolation=cv2.INTER_AREA if rng.random() < 0.5 else cv2.INTER_LINEAR)
                im = cv2.resize(small, (s, s), interpolation=cv2.INTER_LINEAR if rng.random() < 0.5 else cv2.INTER_CUBIC)
        if aug.get("blur") and rng.random() < aug.get("blur_p", 0.2):
            im = cv2.GaussianBlur(im, (0, 0), rng.uniform(0.3, aug["blur"]))
        if aug.get("noise") and rng.random() < aug.get("noise_p", 0.2):
            im = np.clip(im + rng.normal(0, rng.uniform(1, aug["noise"]), im.shape), 0, 255).astype(np.uint8)
        if jpg and rng.random() < aug.get("jpeg_p", 0.5):
            ok, buf = cv2.imencode(".jpg", im, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(jpg[0], jpg[1] + 1))])
            im = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED) if ok else im
        if aug.get("grey_p") and rng.random() < aug["grey_p"]:
            im = np.repeat(cv2.cvtColor(im, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2)
        x[i] = im
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
