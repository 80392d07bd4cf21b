"""The two age/gender variants exactly as specified, plus safe loading and saving with a model card.

frozen:   MobileNetV2(include_top=False, ImageNet, not trainable) -> GAP -> Dropout(0.5)
          -> age Dense(1, linear), gender Dense(1, sigmoid); MSE + BCE; Adam(); MAE + accuracy.
unfrozen: the same with BatchNormalization after the pooling, backbone trainable, Adam(1e-4).

Plain Keras 3 (no TensorFlow-only ops), so the same code builds and trains under JAX or PyTorch.
Preprocessing (`mobilenet_v2.preprocess_input`, x/127.5 - 1) is applied outside the graph; the model
card records it so inference reads it instead of repeating constants.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

INPUT_SIZE = 128
NORMALISATION = "mobilenet_v2.preprocess_input: RGB float32, x / 127.5 - 1"


@dataclass(frozen=True)
class Variant:
    """One age/gender variant, declared once: the builder, the compiler, training and the CLI read it."""

    name: str
    head_batchnorm: bool  # BatchNormalization between the pooling and the dropout
    backbone_trainable: bool  # False: ImageNet backbone frozen and run in inference mode
    learning_rate: float | None  # the spec's Adam rate; None = Keras's Adam() default
    # "heads": backbone features computed once, then the heads trained on them (the same optimisation
    # when the backbone is frozen); "end_to_end": augmented crops through the whole model.
    training: str
    default_weights: str  # file name of the shipped weights in the weights folder

    @property
    def architecture(self) -> str:
        return ("MobileNetV2(alpha=1.0, include_top=False) -> GAP" + (" -> BN" if self.head_batchnorm else "")
                + " -> Dropout(0.5) -> age Dense(1, linear), gender Dense(1, sigmoid)")


REGISTRY: dict[str, Variant] = {
    v.name: v for v in (
        Variant("frozen", head_batchnorm=False, backbone_trainable=False, learning_rate=None, training="heads",
                default_weights="frozen.keras"),
        Variant("unfrozen", head_batchnorm=True, backbone_trainable=True, learning_rate=1e-4, training="end_to_end",
                default_weights="unfrozen.keras"),
    )
}
VARIANTS = tuple(REGISTRY)
DEFAULT_VARIANT = "unfrozen"


def get_variant(name: str) -> Variant:
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"variant must be one of {VARIANTS}, got {name!r}") from None


def preprocess(crops_uint8):
    """mobilenet_v2.preprocess_input written out, so it needs no backend: x / 127.5 - 1."""
    import numpy as np

    return np.asarray(crops_uint8).astype(np.float32) / 127.5 - 1.0


def _keras():
    import keras

    return keras


def build_backbone(weights: str | None):
    keras = _keras()
    return keras.applications.MobileNetV2(
        input_shape=(INPUT_SIZE, INPUT_SIZE, 3), include_top=False, weights=weights, alpha=1.0
    )


def build_head(features, variant: str, name_prefix: str = ""):
    """GAP features -> (age, gender) outputs; shared by the full model and the cached-feature trainer."""
    keras = _keras()
    x = features
    if get_variant(variant).head_batchnorm:
        x = keras.layers.BatchNormalization(name=f"{name_prefix}head_bn")(x)
    x = keras.layers.Dropout(0.5, name=f"{name_prefix}head_dropout")(x)
    age = keras.layers.Dense(1, activation="linear", name="age")(x)
    gender = keras.layers.Dense(1, activation="sigmoid", name="gender")(x)
    return age, gender


def compile_model(model, variant: str, age_loss: str = "mse", learning_rate: float | None = None, loss_weights=None):
    """Reference losses/metrics; `age_loss` and `learning_rate` are the measured options beyond it."""
    keras = _keras()
    rate = learning_rate if learning_rate is not None else get_variant(variant).learning_rate
    opt = keras.optimizers.Adam() if rate is None else keras.optimizers.Adam(rate)
    losses = {"mse": "mean_squared_error", "mae": "mean_absolute_error", "huber": keras.losses.Huber(delta=5.0)}
    model.compile(
        optimizer=opt,
        loss={"age": losses[age_loss], "gender": "binary_crossentropy"},
        loss_weights=loss_weights,
        metrics={"age": ["mae"], "gender": ["accuracy"]},
    )
    return model


def build_model(variant: str, backbone_weights: str | None = "imagenet", compile: bool = True, **compile_kwargs):
    """The full 128x128x3 -> {age, gender} model of one variant, ImageNet-initialised."""
    v = get_variant(variant)
    keras = _keras()
    if backbone_weights not in (None, "imagenet") and not Path(backbone_weights).exists():
        raise FileNotFoundError(f"backbone weights not found: {backbone_weights}")
    inputs = keras.Input((INPUT_SIZE, INPUT_SIZE, 3), name="image")
    base = build_backbone(backbone_weights)
    base.trainable = v.backbone_trainable
    # A frozen backbone runs in inference mode, so its batch-norm statistics stay ImageNet's.
    x = base(inputs) if v.backbone_trainable else base(inputs, training=False)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    age, gender = build_head(x, variant)
    model = keras.Model(inputs, {"age": age, "gender": gender}, name=f"faceproc_{variant}")
    if compile:
        compile_model(model, variant, **compile_kwargs)
    return model


def build_frozen(backbone_weights: str | None = "imagenet", **kw):
    return build_model("frozen", backbone_weights, **kw)


def build_unfrozen(backbone_weights: str | None = "imagenet", **kw):
    return build_model("unfrozen", backbone_weights, **kw)


# ---------------------------------------------------------------------------------------- files

def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def card_path(model_path: str | os.PathLike) -> Path:
    return Path(model_path).with_suffix(".json")


def read_card(model_path: str | os.PathLike) -> dict[str, Any]:
    p = card_path(model_path)
    return json.loads(p.read_text()) if p.exists() else {}


def model_version(model_path: str | os.PathLike, card: dict | None = None) -> str:
    card = read_card(model_path) if card is None else card
    return card.get("version") or f"sha256:{file_sha256(model_path)[:12]}"


def load_model(path: str | os.PathLike, compile: bool = False):
    """Load a .keras file in Keras safe mode: a file that needs arbitrary code (Lambda layers,
    pickled functions) is refused, never executed."""
    keras = _keras()
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"model file not found: {path}")
    if path.suffix != ".keras":
        raise ValueError(f"expected a Keras 3 .keras file, got {path.name}")
    try:
        model = keras.saving.load_model(path, compile=compile, safe_mode=True)
    except ValueError as e:
        if "safe_mode" in str(e) or "unsafe" in str(e).lower() or "lambda" in str(e).lower():
            raise UnsafeModelError(f"{path} needs unsafe deserialisation and was refused: {e}") from None
        raise
    outs = model.output if isinstance(model.output, dict) else None
    if outs is None or set(outs) != {"age", "gender"} or tuple(model.input_shape[1:]) != (INPUT_SIZE, INPUT_SIZE, 3):
        raise ValueError(f"{path} is not a faceproc age/gender model (input {model.input_shape}, outputs {list(outs or [])})")
    return model


class UnsafeModelError(ValueError):
    pass


def save_model(model, path: str | os.PathLike, card: dict[str, Any]) -> dict[str, Any]:
    """Write the .keras file atomically, then its model card (with size, sha256 and version)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.keras")
    model.save(tmp)
    os.replace(tmp, path)
    sha = file_sha256(path)
    card = {
        "input_size": [INPUT_SIZE, INPUT_SIZE, 3],
        "normalisation": NORMALISATION,
        **card,
        "file": path.name,
        "bytes": path.stat().st_size,
        "sha256": sha,
    }
    card.setdefault("version", f"{card.get('variant', 'model')}-{sha[:12]}")
    _write_card(path, card)
    return card


def _write_card(model_path: Path, card: dict[str, Any]) -> None:
    from .schema import write_text_atomic

    write_text_atomic(json.dumps(card, indent=2, default=str), card_path(model_path))


def publish(model_path: str | os.PathLike, variant: str, dest: str | os.PathLike | None = None,
            extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Copy model + card to <weights dir>/<variant>.keras/.json; the card keeps its training record."""
    src = Path(model_path)
    dest_dir = Path(dest) if dest else Path(__file__).parent / "weights"
    dest_dir.mkdir(parents=True, exist_ok=True)
    card = read_card(src)
    if card.get("variant") not in (None, variant):
        raise ValueError(f"{src} is a {card.get('variant')} model, not {variant}")
    target = dest_dir / f"{variant}.keras"
    tmp = target.with_name(target.stem + ".tmp.keras")
    # Loaded without compiling, the model is saved without optimizer state (Adam's two moments would
    # triple a fine-tuned model's file); inference never needs it, resuming uses the run's checkpoint.
    load_model(src, compile=False).save(tmp)
    os.replace(tmp, target)
    sha = file_sha256(target)
    card.update(extra or {})
    card.update(file=target.name, bytes=target.stat().st_size, sha256=sha, variant=variant,
                version=f"{variant}-{sha[:12]}")
    _write_card(target, card)
    return card
