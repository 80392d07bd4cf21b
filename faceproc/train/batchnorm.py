"""Batch-norm statistics after fine-tuning: Keras MobileNetV2's moving averages lag the weights, so they
are re-estimated on training batches before evaluation and saving."""

from __future__ import annotations

import logging

import numpy as np

from ..agegender.architecture import preprocess

log = logging.getLogger(__name__)


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
