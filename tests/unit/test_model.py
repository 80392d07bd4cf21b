"""The two variants are built exactly as the brief specifies; files load only in safe mode."""

import numpy as np
import pytest

import keras  # noqa: E402  (a hard dependency: imported, never skipped)

from faceproc.agegender.architecture import build_model  # noqa: E402
from faceproc.agegender.files import UnsafeModelError, load_model, save_model  # noqa: E402


def _layers(model):
    return {l.name: l for l in model.layers}


@pytest.fixture(scope="module")
def models():
    return {v: build_model(v, backbone_weights=None) for v in ("frozen", "unfrozen")}


@pytest.mark.parametrize("variant", ["frozen", "unfrozen"])
def test_structure(models, variant):
    m = models[variant]
    assert m.input_shape == (None, 128, 128, 3)
    layers = _layers(m)
    base = next(l for l in m.layers if l.name.startswith("mobilenetv2"))
    assert base.output_shape == (None, 4, 4, 1280)  # include_top=False at 128 px
    types = [type(l).__name__ for l in m.layers]
    assert types[:3] == ["InputLayer", "Functional", "GlobalAveragePooling2D"]
    head = types[3:]
    if variant == "unfrozen":
        assert head[:2] == ["BatchNormalization", "Dropout"]
    else:
        assert "BatchNormalization" not in head and head[0] == "Dropout"
    drop = next(l for l in m.layers if isinstance(l, keras.layers.Dropout))
    assert drop.rate == 0.5
    assert layers["age"].units == 1 and layers["age"].activation.__name__ == "linear"
    assert layers["gender"].units == 1 and layers["gender"].activation.__name__ == "sigmoid"
    assert base.trainable is (variant == "unfrozen")
    n_base_trainable = sum(int(np.prod(w.shape)) for w in base.trainable_weights)
    assert (n_base_trainable > 2_000_000) is (variant == "unfrozen")
    # Compile settings: losses, metrics, optimiser and learning rate.
    assert m.loss["age"] in ("mean_squared_error", "mse")
    assert m.loss["gender"] == "binary_crossentropy"
    assert type(m.optimizer).__name__ == "Adam"
    lr = float(keras.ops.convert_to_numpy(m.optimizer.learning_rate))
    assert lr == pytest.approx(1e-3 if variant == "frozen" else 1e-4)
    x = np.zeros((2, 128, 128, 3), np.float32)
    out = m.predict(x, verbose=0)
    assert set(out) == {"age", "gender"} and out["age"].shape == (2, 1)
    assert m._compile_config.config["metrics"] == {"age": ["mae"], "gender": ["accuracy"]}


def test_roundtrip_and_card(tmp_path, models):
    m = models["frozen"]
    card = save_model(m, tmp_path / "frozen.keras", {"variant": "frozen"})
    assert card["input_size"] == [128, 128, 3] and len(card["sha256"]) == 64
    back = load_model(tmp_path / "frozen.keras")
    x = np.random.default_rng(0).uniform(-1, 1, (2, 128, 128, 3)).astype(np.float32)
    a, b = m.predict(x, verbose=0), back.predict(x, verbose=0)
    np.testing.assert_allclose(a["age"], b["age"], rtol=1e-5, atol=1e-5)


def test_unsafe_model_is_refused(tmp_path):
    inp = keras.Input((128, 128, 3))
    x = keras.layers.Lambda(lambda t: t * 2.0)(inp)
    x = keras.layers.GlobalAveragePooling2D()(x)
    m = keras.Model(inp, {"age": keras.layers.Dense(1, name="age")(x),
                          "gender": keras.layers.Dense(1, activation="sigmoid", name="gender")(x)})
    m.save(tmp_path / "evil.keras")
    with pytest.raises(UnsafeModelError):
        load_model(tmp_path / "evil.keras")


def test_foreign_model_is_refused(tmp_path):
    inp = keras.Input((4,))
    m = keras.Model(inp, keras.layers.Dense(1)(inp))
    m.save(tmp_path / "other.keras")
    with pytest.raises(ValueError, match="not a faceproc"):
        load_model(tmp_path / "other.keras")
