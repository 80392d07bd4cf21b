"""The shipped age/gender weights: they load, carry a model card, and are accurate on 200 validation
faces of UTKFace run through the real pipeline (decode -> detect -> crop -> predict)."""

import json
from pathlib import Path

import numpy as np

from faceproc import calibration
import pytest

from faceproc.agegender.runtime import AgeGenderPredictor
from faceproc.agegender.spec import ModelSpec
from faceproc.config import ModelConfig
from tests.conftest import UTKFACE, requires_shared

pytestmark = requires_shared
WEIGHTS = Path(__file__).resolve().parents[2] / "faceproc" / "weights"

# Floors, in one place: each is the figure measured with the shipped weights plus a written margin, so a
# regression fails here instead of passing under a loose bound. Measured 2025-12 on commit 47872e7 (card
# unfrozen-258e7119e52e) and 2026-12-01 (card frozen-15fcb7d6ba91, the MSE frozen; `pytest -s` on this file prints the figures). The runs are
# deterministic on one machine; the margins cover another CPU/runtime (OpenVINO bf16 detection moves
# keypoints by a fraction of a pixel: ~0.1 y of MAE) and little more. New weights: rerun and move these.
# 200 validation faces through decode -> detect -> crop -> predict:
FLOORS = {
    "unfrozen": {"mae": 5.72 + 0.5,     # measured 5.72 y (the card's full validation split: 5.44)
                 "acc": 0.955 - 0.02},  # measured 0.955 (0.02 = 4 of 200 faces)
    "frozen": {"mae": 9.23 + 0.5,       # measured 9.23 y (card, report half: 8.94)
               "acc": 0.835 - 0.02},    # measured 0.835
}
# `faceproc evaluate-photos unfrozen --photos 3 --seed 5` (18 faces; one face is 1/18 of each figure):
PHOTO_RECALL = 1.0              # measured 1.0 (14 of 14, report-half faces since issue 24): one missed face fails
PHOTO_AGE_MAE = 5.15 + 1.3      # measured 5.15 y; +1.3 = one face 18 y further off
PHOTO_GENDER_ACC = 0.857 - 0.08  # measured 0.857 (12 of 14); one more wrong face passes, two fail


@pytest.fixture(scope="module")
def val_faces():
    """200 faces of the seeded validation split (the same split training used), cropped by the pipeline."""
    from faceproc.config import DecodeConfig, DetectorConfig
    from faceproc.data.cache import pick_face
    from faceproc.data.split import stratified_split
    from faceproc.data.utkface import read_utkface
    from faceproc.decode import decode_file
    from faceproc.detectors.files import DetectorSpec
    from faceproc.detectors.registry import make_detector

    records, _ = read_utkface(UTKFACE)
    split = stratified_split(records, 0.2, seed=42)
    val = [r for r in records if split[r.key] == "val"]
    picks = [val[i] for i in np.random.default_rng(0).choice(len(val), 200, replace=False)]
    det = make_detector(DetectorSpec.resolve(DetectorConfig()))
    faces, ages, genders = [], [], []
    for r in picks:
        dec = decode_file(r.path, DecodeConfig())
        d = det.detect(dec.rgb)
        if not len(d):
            continue
        j = pick_face(d.boxes, d.scores, dec.rgb.shape[1], dec.rgb.shape[0])
        faces.append((dec.rgb, d.boxes[j], d.kps[j]))
        ages.append(r.age)
        genders.append(r.gender)
    assert len(faces) >= 195
    return faces, np.array(ages), np.array(genders)


def cut(faces, policy):
    """Crops the way a model's card says (what annotate does)."""
    from faceproc.crop import crop_face

    return np.stack([crop_face(rgb, box, kps, policy=policy) for rgb, box, kps in faces])


@pytest.mark.parametrize("variant", ["unfrozen", "frozen"])
def test_shipped_model_is_accurate(variant, val_faces):

    path = WEIGHTS / f"{variant}.keras"
    assert path.exists(), f"{path} is not shipped"
    assert path.stat().st_size < 15e6
    card = json.loads(path.with_suffix(".json").read_text())
    for key in ("input_size", "crop_policy", "normalisation", "backbone_source", "training_data", "command",
                "metrics", "sha256", "version"):
        assert key in card, key
    from faceproc.crop import POLICY, parse_policy
    from faceproc.storage import file_sha256

    assert card["crop_policy"] == POLICY and card["variant"] == variant
    assert card["sha256"] == file_sha256(path)
    # both figures travel with the weights: crop-level validation and the photo evaluation
    pe = card["photo_evaluation"]
    assert pe["photos"]["faces"] >= 700 and pe["photos"]["recall"] >= 0.99 and "gap" in pe and "crops" in pe
    faces, ages, genders = val_faces
    pred = AgeGenderPredictor(ModelSpec.resolve(ModelConfig(variant=variant)))
    assert pred.policy == parse_policy(card["crop_policy"])  # the card is the contract
    a, p = pred.predict(cut(faces, pred.policy))
    mae = float(np.abs(a - ages).mean())
    acc = float(((p >= 0.5) == (genders == 1)).mean())
    print(f"{variant}: MAE {mae:.2f}, gender {acc:.3f} on {len(ages)} faces")
    assert mae <= FLOORS[variant]["mae"] and acc >= FLOORS[variant]["acc"], (mae, acc)


@pytest.mark.parametrize("variant", ["unfrozen", "frozen"])
def test_fast_inference_path_equals_plain_keras_on_real_crops(variant, val_faces):
    """Both inference paths against plain `model.predict` on real face crops: the traced fixed-batch Keras
    path (padding the last batch) and the shipped OpenVINO copy (no TensorFlow), each within 0.01 years of
    age and 1e-4 of P(female)."""

    common = dict(variant=variant, batch_size=16, flip_tta=False, min_age=-1e9, max_age=1e9)
    fast = AgeGenderPredictor(ModelSpec.resolve(ModelConfig(runtime="keras", **common)))
    ov = AgeGenderPredictor(ModelSpec.resolve(ModelConfig(runtime="openvino", **common)))
    assert (fast.runtime, ov.runtime) == ("keras", "openvino") and ov.policy == fast.policy
    crops = cut(val_faces[0][:45], fast.policy)
    ref = fast.model.predict(crops.astype(np.float32) / 127.5 - 1.0, batch_size=45, verbose=0)
    # the card's calibration maps (issue 24) apply on every runtime, after the network
    ref_a, ref_p = calibration.apply(fast.spec.calibration, ref["age"].ravel(), ref["gender"].ravel())
    assert fast.spec.calibration and fast.spec.calibration == ov.spec.calibration
    for predictor in (fast, ov):
        a, p = predictor.predict(crops)
        np.testing.assert_allclose(a, ref_a, atol=0.01)
        np.testing.assert_allclose(p, ref_p, atol=1e-4)


def test_group_photo_genders_and_ages_with_the_shipped_model():
    """insightface's t1 (six adults): the shipped unfrozen model through the whole pipeline."""
    import insightface

    from faceproc.config import Config
    from faceproc.pipeline import Annotator

    with __import__("tempfile").TemporaryDirectory() as d:
        p = Path(d) / "t1.jpg"
        import cv2

        cv2.imwrite(str(p), insightface.data.get_image("t1"))
        from faceproc.discover import FileEntry

        from faceproc.plan import RunPlan

        res = Annotator(RunPlan.resolve(Config())).annotate([FileEntry(str(p))])
    faces = res.faces.to_pandas().sort_values("x1")
    assert len(faces) == 6
    assert faces["gender"].tolist() == ["female", "female", "male", "male", "male", "female"]  # left to right
    # Adults: none read as a child or as old, and the group's median a young adult's. (One face sits near 18:
    # 19.2 with the previous detection passes, 18.0 now; single faces move ~1 y with keypoint jitter, the
    # model's MAE is ~5 y, and the photo evaluation over 710 faces is unchanged, README "Faces in photos".)
    assert faces["age"].between(15, 50).all() and 20 <= faces["age"].median() <= 35, faces["age"].tolist()


def test_photo_evaluation_end_to_end(tmp_path):
    """faceproc evaluate-photos on a few validation group photos: real detector, shipped model, the
    annotate path; every face is found and scored, as photos and as bare crops."""
    from click.testing import CliRunner

    from faceproc.cli import main

    r = CliRunner().invoke(main, ["evaluate-photos", "unfrozen", "--data", str(UTKFACE), "--work", str(tmp_path),
                                  "--photos", "3", "--seed", "5"])
    assert r.exit_code == 0, r.output
    res = json.loads((tmp_path / "results.json").read_text())["models"]["unfrozen"]
    truth = json.loads((tmp_path / "truth.json").read_text())
    n = sum(len(v) for v in truth["photos"].values())
    print(f"evaluate-photos: {n} faces, recall {res['photos']['recall']:.3f}, age MAE {res['photos']['age_mae']:.2f}, "
          f"gender {res['photos']['gender_acc']:.3f}, crops found {res['crops']['found']}")
    assert n > 0 and res["photos"]["faces"] == n and res["photos"]["recall"] >= PHOTO_RECALL
    assert res["crops"]["found"] >= n - 1 and res["photos"]["age_mae"] <= PHOTO_AGE_MAE
    assert res["photos"]["gender_acc"] >= PHOTO_GENDER_ACC
    train_keys = set()
    from faceproc.data.split import stratified_split
    from faceproc.data.utkface import read_utkface

    records, _ = read_utkface(UTKFACE)
    split = stratified_split(records, 0.2, seed=42)
    train_keys = {k for k, v in split.items() if v == "train"}
    assert not train_keys & {t["key"] for tf in truth["photos"].values() for t in tf}  # no training face
