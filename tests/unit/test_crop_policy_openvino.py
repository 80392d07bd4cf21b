"""The crop policy is read from the model card on the OpenVINO path too (issue 21): OpenVINO is what a CPU
worker runs by default (`model.runtime: auto`), and it loads no Keras. A tiny OpenVINO model stands in for
the exported network: its age output is a function of the crop's pixels, so the ages written by annotate
show which crops it was given."""

import json
import zipfile

import numpy as np
import pytest

from faceproc.agegender.runtime import AgeGenderPredictor
from faceproc.agegender.spec import ModelSpec
from faceproc.config import Config, ModelConfig
from faceproc.crop import DEFAULT_POLICY, CropPolicy, CropPolicyError, crop_faces
from faceproc.storage import file_sha256

CARD_POLICY = CropPolicy(1.1, 128)  # not the default: a predictor that ignores the card gets it wrong


def tiny_openvino_model(tmp_path, card: dict):
    """m.keras (never loaded on this path), its card, and an OpenVINO copy made "from" it: age = 50 + 40 *
    mean pixel of the preprocessed crop, P(female) = sigmoid(mean)."""
    import openvino as ov
    import openvino.opset13 as ops

    path = tmp_path / "m.keras"
    with zipfile.ZipFile(path, "w") as zf:  # passes the driver's .keras checks; the OpenVINO path never opens it
        zf.writestr("config.json", "{}")
    path.with_suffix(".json").write_text(json.dumps(card))
    x = ops.parameter([-1, 128, 128, 3], np.float32, name="input")
    mean = ops.unsqueeze(ops.reduce_mean(x, np.array([1, 2, 3]), keep_dims=False), np.array([1]))
    age = ops.add(ops.multiply(mean, np.array([[40.0]], np.float32)), np.array([[50.0]], np.float32))
    gender = ops.sigmoid(mean)
    age.output(0).get_tensor().set_names({"age"})
    gender.output(0).get_tensor().set_names({"gender"})
    ov.save_model(ov.Model([age, gender], [x], "tiny"), str(path.with_suffix(".openvino.xml")))
    path.with_suffix(".openvino.json").write_text(json.dumps({"source_sha256": file_sha256(path)}))
    return path


@pytest.mark.parametrize("runtime", ["openvino", "auto"])
def test_openvino_predictor_takes_the_policy_from_the_card(tmp_path, runtime, monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)  # auto on a CPU: OpenVINO
    path = tiny_openvino_model(tmp_path, {"crop_policy": CARD_POLICY.name, "variant": "tiny", "version": "t-1"})
    spec = ModelSpec.resolve(ModelConfig(variant=str(path), runtime=runtime))
    pred = AgeGenderPredictor(spec)
    assert pred.runtime == "openvino" and pred.model is None  # no Keras model behind it
    assert spec.policy == CARD_POLICY != DEFAULT_POLICY
    assert (spec.name, spec.version) == ("tiny", "t-1")
    ages, probs = pred.predict(np.zeros((3, 128, 128, 3), np.uint8))
    np.testing.assert_allclose(ages, 10.0, atol=1e-3)  # black crops: mean -1 after preprocessing
    # a card from before policies were read keeps its own (legacy) policy on this path as well
    path.with_suffix(".json").write_text(json.dumps({"variant": "tiny"}))
    assert ModelSpec.resolve(ModelConfig(variant=str(path), runtime=runtime)).policy.name == "arcface5-s0.9-128"


def test_openvino_predictor_refuses_a_card_it_cannot_reproduce(tmp_path):
    path = tiny_openvino_model(tmp_path, {"crop_policy": "mtcnn-square-160"})
    with pytest.raises(CropPolicyError):
        ModelSpec.resolve(ModelConfig(variant=str(path), runtime="openvino"))


def test_annotate_on_openvino_feeds_crops_cut_the_card_s_way(tmp_path, monkeypatch):
    """Through the Annotator: the ages it records are the tiny model's on crops cut with the card's policy,
    not the default's."""
    from PIL import Image

    from faceproc.discover import FileEntry
    from faceproc.pipeline import Annotator
    from faceproc.plan import RunPlan

    from tests.helpers import FakeDetector, FakeModels

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    path = tiny_openvino_model(tmp_path, {"crop_policy": CARD_POLICY.name, "variant": "tiny", "version": "t-1"})
    img = np.full((160, 200, 3), 230, np.uint8)
    img[40:120, 50:150] = 20  # a dark face on a bright ground: a tighter crop shows more of the face
    img[0, 0] = 255
    Image.fromarray(img).save(tmp_path / "a.png")
    cfg = Config()
    cfg.model.variant, cfg.model.flip_tta = str(path), False
    ann = Annotator(RunPlan.resolve(cfg, FakeModels(AgeGenderPredictor)))  # the stand-in detector, the real predictor
    assert ann.predictor.runtime == "openvino" and ann.policy == CARD_POLICY
    age = ann.annotate([FileEntry(str(tmp_path / "a.png"))]).faces.column("age").to_pylist()
    det = FakeDetector().detect(img)
    want = {p: float(ann.predictor.predict(crop_faces(img, det.boxes, det.kps, policy=p))[0][0])
            for p in (CARD_POLICY, DEFAULT_POLICY)}
    assert abs(want[CARD_POLICY] - want[DEFAULT_POLICY]) > 1.0  # the two policies are told apart here
    assert age == [pytest.approx(want[CARD_POLICY], abs=1e-4)]
