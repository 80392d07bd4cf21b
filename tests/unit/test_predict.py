"""The fast inference path gives the plain Keras model's outputs, in batches across images."""

import numpy as np
import pytest

import keras  # noqa: E402,F401  (a hard dependency: imported, never skipped)

from faceproc.config import ModelConfig  # noqa: E402
from faceproc.model import build_model, save_model  # noqa: E402
from faceproc.predict import AgeGenderPredictor  # noqa: E402


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    import keras

    keras.utils.set_random_seed(3)
    m = build_model("unfrozen", backbone_weights=None)
    # Give the heads a non-trivial output range so the comparison means something.
    m.get_layer("age").bias.assign(np.array([30.0], np.float32))
    d = tmp_path_factory.mktemp("w")
    save_model(m, d / "unfrozen.keras", {"variant": "unfrozen", "version": "unfrozen-test"})
    return d, m


def test_batched_fast_path_matches_plain_keras(model_dir):
    d, m = model_dir
    crops = np.random.default_rng(0).integers(0, 255, (11, 128, 128, 3), dtype=np.uint8)
    p = AgeGenderPredictor(ModelConfig(variant="unfrozen", weights_dir=str(d), batch_size=4, flip_tta=False,
                                       min_age=-1e9, max_age=1e9))
    assert p.label == "unfrozen@unfrozen-test"
    ages, probs = p.predict(crops)
    ref = m.predict(crops.astype(np.float32) / 127.5 - 1, verbose=0)
    np.testing.assert_allclose(ages, ref["age"].ravel(), rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(probs, ref["gender"].ravel(), rtol=1e-4, atol=1e-5)
    one = np.concatenate([p.predict(crops[i : i + 1])[0] for i in range(3)])
    np.testing.assert_allclose(one, ages[:3], rtol=1e-4, atol=1e-3)


def test_flip_average_and_clip(model_dir):
    d, m = model_dir
    crops = np.random.default_rng(1).integers(0, 255, (3, 128, 128, 3), dtype=np.uint8)
    p = AgeGenderPredictor(ModelConfig(variant=str(d / "unfrozen.keras"), flip_tta=True, min_age=-1e9, max_age=1e9))
    ages, probs = p.predict(crops)
    a = m.predict(crops.astype(np.float32) / 127.5 - 1, verbose=0)
    b = m.predict(crops[:, :, ::-1].astype(np.float32) / 127.5 - 1, verbose=0)
    np.testing.assert_allclose(ages, (a["age"].ravel() + b["age"].ravel()) / 2, rtol=1e-4, atol=1e-3)
    clipped = AgeGenderPredictor(ModelConfig(variant=str(d / "unfrozen.keras"), min_age=0, max_age=1))
    assert clipped.predict(crops)[0].max() <= 1.0
    assert p.predict(np.zeros((0, 128, 128, 3), np.uint8))[0].shape == (0,)


def test_missing_weights_have_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="faceproc train --variant frozen"):
        AgeGenderPredictor(ModelConfig(variant="frozen", weights_dir=str(tmp_path)))


def test_openvino_copy_is_used_only_when_made_from_this_exact_keras_file(tmp_path):
    import hashlib
    import json

    from faceproc.predict import openvino_copy

    model = tmp_path / "m.keras"
    model.write_bytes(b"weights v1")
    assert openvino_copy(model) is None  # no copy
    (tmp_path / "m.openvino.xml").write_text("<net/>")
    (tmp_path / "m.openvino.bin").write_bytes(b"\0")
    meta = tmp_path / "m.openvino.json"
    meta.write_text(json.dumps({"source_sha256": hashlib.sha256(b"weights v1").hexdigest()}))
    assert openvino_copy(model) == tmp_path / "m.openvino.xml"
    model.write_bytes(b"weights v2")  # retrained in place: the old copy must not be used
    assert openvino_copy(model) is None
    meta.write_text("not json")
    assert openvino_copy(model) is None
