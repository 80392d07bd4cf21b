"""The age/gender architectures: the registry of variants (one entry each) and the Keras builders.

frozen:   MobileNetV2(include_top=False, ImageNet, not trainable) -> GAP -> Dropout(0.5)
          -> age Dense(1, linear), gender Dense(1, sigmoid); MSE + BCE; Adam(); MAE + accuracy.
unfrozen: the same with BatchNormalization after the pooling, backbone trainable, Adam(1e-4).

Plain Keras 3 (no TensorFlow-only ops), so the same code builds and trains under JAX or PyTorch.
Preprocessing (`mobilenet_v2.preprocess_input`, x/127.5 - 1) is applied outside the graph; the model
card records its name and the input size, and inference takes both from the card (agegender/spec.py), so
these constants are only what new models are built and trained with.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

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
    input_size: int = INPUT_SIZE  # square RGB input, pixels; cards record it, crop policies cut it

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


# Normalisations this code applies, by the name model cards give them (a card naming another is refused).
NORMALISATIONS = {NORMALISATION: preprocess}


def _keras():
    import keras

    return keras


def build_backbone(weights: str | None, size: int = INPUT_SIZE):
    keras = _keras()
    return keras.applications.MobileNetV2(input_shape=(size, size, 3), include_top=False, weights=weights, alpha=1.0)


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
    """The full (size x size x 3) -> {age, gender} model of one variant, ImageNet-initialised."""
    v = get_variant(variant)
    keras = _keras()
    if backbone_weights not in (None, "imagenet") and not Path(backbone_weights).exists():
        raise FileNotFoundError(f"backbone weights not found: {backbone_weights}")
    inputs = keras.Input((v.input_size, v.input_size, 3), name="image")
    base = build_backbone(backbone_weights, v.input_size)
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
