"""The fast inference path gives the plain Keras model's outputs, in batches across images."""

import numpy as np
import pytest

import keras  # noqa: E402,F401  (a hard dependency: imported, never skipped)

from faceproc.agegender.architecture import build_model  # noqa: E402
from faceproc.agegender.files import save_model  # noqa: E402
from faceproc.agegender.runtime import AgeGenderPredictor  # noqa: E402
from faceproc.agegender.spec import ModelSpec  # noqa: E402
from faceproc.config import ModelConfig  # noqa: E402


def predictor(**settings):
    return AgeGenderPredictor(ModelSpec.resolve(ModelConfig(**settings)))


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
    p = predictor(variant="unfrozen", weights_dir=str(d), batch_size=4, flip_tta=False, min_age=-1e9, max_age=1e9)
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
    p = predictor(variant=str(d / "unfrozen.keras"), flip_tta=True, min_age=-1e9, max_age=1e9)
    ages, probs = p.predict(crops)
    a = m.predict(crops.astype(np.float32) / 127.5 - 1, verbose=0)
    b = m.predict(crops[:, :, ::-1].astype(np.float32) / 127.5 - 1, verbose=0)
    np.testing.assert_allclose(ages, (a["age"].ravel() + b["age"].ravel()) / 2, rtol=1e-4, atol=1e-3)
    clipped = predictor(variant=str(d / "unfrozen.keras"), min_age=0, max_age=1)
    assert clipped.predict(crops)[0].max() <= 1.0
    assert p.predict(np.zeros((0, 128, 128, 3), np.uint8))[0].shape == (0,)


def test_missing_weights_have_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="faceproc train --variant frozen"):
        ModelSpec.resolve(ModelConfig(variant="frozen", weights_dir=str(tmp_path)))


def test_openvino_copy_is_used_only_when_made_from_this_exact_keras_file(tmp_path):
    import hashlib
    import json

    from faceproc.agegender.spec import openvino_copy
    from faceproc.storage import file_sha256

    model = tmp_path / "m.keras"
    model.write_bytes(b"weights v1")
    ir = lambda: openvino_copy(model, file_sha256(model))  # noqa: E731
    assert ir() is None  # no copy
    (tmp_path / "m.openvino.xml").write_text("<net/>")
    (tmp_path / "m.openvino.bin").write_bytes(b"\0")
    meta = tmp_path / "m.openvino.json"
    meta.write_text(json.dumps({"source_sha256": hashlib.sha256(b"weights v1").hexdigest()}))
    assert [f.path for f in ir()] == [str(tmp_path / "m.openvino.xml"), str(tmp_path / "m.openvino.bin")]
    model.write_bytes(b"weights v2")  # retrained in place: the old copy must not be used
    assert ir() is None
    meta.write_text("not json")
    assert ir() is None
