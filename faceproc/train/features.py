"""Cached backbone features and heads trained on them: the whole training of `frozen` (its backbone is
fixed and in inference mode), the warm start of `unfrozen`."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from ..agegender.architecture import get_variant, preprocess
from .config import TrainConfig

log = logging.getLogger(__name__)


def backbone_features(backbone_weights: str, crops: np.ndarray, batch_size: int = 128, flip: bool = False) -> np.ndarray:
    """Pooled ImageNet MobileNetV2 features (inference mode) of uint8 crops."""
    import keras

    size = crops.shape[1]  # the variant's input size, as the crops were cut
    base = keras.applications.MobileNetV2(input_shape=(size, size, 3), include_top=False, weights=backbone_weights)
    inp = keras.Input((size, size, 3))
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

    from ..agegender.architecture import build_head, compile_model

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


def copy_head_weights(head, model) -> None:
    for layer in head.layers:
        if layer.weights and layer.name in {l.name for l in model.layers}:
            model.get_layer(layer.name).set_weights(layer.get_weights())
