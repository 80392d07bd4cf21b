"""Crop policies travel with the weights: parsing, card checks, real-content fill."""

import json

import numpy as np
import pytest

from faceproc.agegender.architecture import INPUT_SIZE, NORMALISATION
from faceproc.agegender.spec import policy_from_card
from faceproc.crop import (DEFAULT_POLICY, LEGACY_POLICY, CropPolicy, CropPolicyError, crop_face, crop_face_filled,
                           outside_fraction, parse_policy)


def test_policy_names_round_trip():
    for p in (LEGACY_POLICY, DEFAULT_POLICY, CropPolicy(1.25, 128), CropPolicy(1.3, 128, 0.15)):
        assert parse_policy(p.name) == p
    assert LEGACY_POLICY.name == "arcface5-s0.9-128"
    assert CropPolicy(1.3, 128, 0.15).name == "arcface5-s1.3-up0.15-128"
    # moving the template up moves every keypoint up by the same share of the crop
    d = CropPolicy(1.3).template() - CropPolicy(1.3, up=0.15).template()
    np.testing.assert_allclose(d, [[0, 0.15 * 128]] * 5)


@pytest.mark.parametrize("name", ["", "arcface5-0.9-128", "dlib68-s1.0-128", "arcface5-s9-128", "arcface5-s1.0-8",
                                  "arcface5-s1.0-up0.9-128", "arcface5-s1.0-down0.1-128"])
def test_unknown_or_out_of_range_policies_are_refused(name):
    with pytest.raises(CropPolicyError):
        parse_policy(name)


def test_card_is_the_contract():
    card = {"crop_policy": "arcface5-s1.1-128", "input_size": [128, 128, 3], "normalisation": NORMALISATION}
    assert policy_from_card(card) == CropPolicy(1.1, 128)
    # a card from before policies were read still names its own (legacy) policy
    assert policy_from_card({"crop_policy": "arcface5-s0.9-128"}) == LEGACY_POLICY
    assert policy_from_card({"variant": "unfrozen"}) == LEGACY_POLICY
    with pytest.raises(CropPolicyError, match="unknown crop policy"):
        policy_from_card({"crop_policy": "mtcnn-square-160"})
    with pytest.raises(CropPolicyError, match="normalisation"):
        policy_from_card({**card, "normalisation": "imagenet mean/std"})
    with pytest.raises(CropPolicyError, match="input_size"):
        policy_from_card({**card, "input_size": [160, 160, 3]})
    with pytest.raises(CropPolicyError, match=str(INPUT_SIZE)):
        policy_from_card({"crop_policy": "arcface5-s1.0-160"})


def test_tighter_policy_shows_a_bigger_face():
    tpl_legacy, tpl_new = LEGACY_POLICY.template(), CropPolicy(1.2).template()
    eye_dist = lambda t: np.linalg.norm(t[1] - t[0])  # noqa: E731
    assert eye_dist(tpl_new) == pytest.approx(eye_dist(tpl_legacy) * 1.2 / 0.9)


def test_outside_fraction_and_real_fill():
    # A 200x200 source whose keypoints sit on the legacy template scaled to fill it.
    src = np.full((200, 200, 3), 200, np.uint8)
    kps = LEGACY_POLICY.template() / 128 * 200
    assert outside_fraction(kps, 200, 200, LEGACY_POLICY) == pytest.approx(0.0, abs=0.02)
    loose = CropPolicy(0.6)
    frac = outside_fraction(kps, 200, 200, loose)
    assert 0.3 < frac < 0.9
    fill = np.zeros((128, 128, 3), np.uint8)
    fill[..., 2] = 77
    out = crop_face_filled(src, kps, fill, loose)
    outside = (out == fill).all(axis=2)
    assert abs(outside.mean() - frac) < 0.05  # the fill shows exactly where the source does not reach
    assert (out[64, 64] == 200).all()  # the face itself comes from the source
    rep = crop_face(src, None, kps, policy=loose)
    assert (rep == 200).all()  # the repeated border: what the model used to learn on


def test_predictor_refuses_a_card_it_cannot_reproduce(tmp_path):
    from faceproc.agegender.architecture import build_model
    from faceproc.agegender.spec import ModelSpec
    from faceproc.config import ModelConfig

    m = build_model("frozen", backbone_weights=None, compile=False)
    path = tmp_path / "m.keras"
    m.save(path)
    (tmp_path / "m.json").write_text(json.dumps({"crop_policy": "retinaface-square-128"}))
    with pytest.raises(CropPolicyError):
        ModelSpec.resolve(ModelConfig(variant=str(path)))
    (tmp_path / "m.json").write_text(json.dumps({"crop_policy": "arcface5-s1.1-128"}))
    assert ModelSpec.resolve(ModelConfig(variant=str(path))).policy == CropPolicy(1.1)


def _cache_with_sources(tmp_path, n=6):
    import cv2
    import pyarrow as pa
    import pyarrow.parquet as pq

    from faceproc.data.cache import CACHE_SCHEMA
    from faceproc.data.split import write_manifest

    rng = np.random.default_rng(0)
    rows = {k: [] for k in CACHE_SCHEMA.names}
    kps = (LEGACY_POLICY.template() / 128 * 200).reshape(-1)
    split = {}
    for i in range(n):
        p = tmp_path / f"{i}.jpg"
        cv2.imwrite(str(p), cv2.resize(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8), (200, 200)))
        crop = crop_face(cv2.imread(str(p))[..., ::-1], None, kps, policy=LEGACY_POLICY)
        vals = (f"u/{i}", str(p), "utkface", 20.0 + i, i % 2, 1.0, 1.0, "ok", 0.9, 1,
                cv2.imencode(".jpg", crop[..., ::-1])[1].tobytes(), [0, 0, 200, 200], list(kps), 200, 200)
        for k, v in zip(CACHE_SCHEMA.names, vals):
            rows[k].append(v)
        split[f"u/{i}"] = "val" if i < 2 else "train"
    pq.write_table(pa.table(rows, schema=CACHE_SCHEMA), tmp_path / "c.parquet")
    (tmp_path / "c.json").write_text(json.dumps({"crop_policy": LEGACY_POLICY.name}))
    write_manifest(tmp_path / "c.split-42-0.2.json", split, {"seed": 42})
    return tmp_path / "c.parquet"


def test_cache_recuts_any_policy_and_packs_it(tmp_path):
    from faceproc.data.cache import load_cache
    from faceproc.data.recut import load_crops, pack_cache

    cache = _cache_with_sources(tmp_path)
    stored = load_crops(cache, LEGACY_POLICY)  # the stored crops, no source needed
    assert np.array_equal(stored["crops"], load_cache(cache)["crops"])
    tight = CropPolicy(1.3, up=0.15)
    a, b = load_crops(cache, tight), load_crops(cache, tight)
    assert np.array_equal(a["crops"], b["crops"]) and not np.array_equal(a["crops"], stored["crops"])
    filled = load_crops(cache, CropPolicy(0.6), "real", groups={f"u/{i}": "train" for i in range(6)}, seed=1)
    bare = load_crops(cache, CropPolicy(0.6))
    assert not np.array_equal(filled["crops"][:, :10], bare["crops"][:, :10])  # the border shows other content
    info = pack_cache(cache, tmp_path / "p" / "packed.parquet", policy=tight, fill="real")
    meta = json.loads((tmp_path / "p" / "packed.json").read_text())
    assert info["rows"] == 6 and meta["crop_policy"] == tight.name and meta["crop_fill"] == "real"
    packed = load_crops(tmp_path / "p" / "packed.parquet", tight)  # its own policy: the packed crops
    val = [i for i, k in enumerate(packed["key"]) if k in ("u/0", "u/1")]
    import cv2

    assert min(cv2.PSNR(packed["crops"][i], a["crops"][i]) for i in val) > 30  # validation rows: bare crops


def test_annotate_cuts_crops_the_way_the_model_card_says(tmp_path):
    from PIL import Image

    from dataclasses import replace

    from faceproc.crop import crop_faces
    from faceproc.discover import FileEntry
    from faceproc.pipeline import Annotator
    from faceproc.plan import RunPlan

    from tests.helpers import FakeDetector, FakeModels, cfg_for_tests

    class P:
        def __init__(self, spec):
            self.seen = []

        def predict(self, crops):
            self.seen.append(crops.copy())
            return np.full(len(crops), 30.0, np.float32), np.full(len(crops), 0.2, np.float32)

    img = (np.random.default_rng(0).random((120, 160, 3)) * 255).astype(np.uint8)
    img[0, 0] = 255
    Image.fromarray(img).save(tmp_path / "a.png")
    det = FakeDetector().detect(img)
    plan = RunPlan.resolve(cfg_for_tests(), FakeModels(P))
    for policy in (LEGACY_POLICY, CropPolicy(1.3, up=0.15)):  # the plan's model spec says how to cut
        annotator = Annotator(replace(plan, model=replace(plan.model, policy=policy)))
        annotator.annotate([FileEntry(str(tmp_path / "a.png"))])
        np.testing.assert_array_equal(annotator.predictor.seen[0], crop_faces(img, det.boxes, det.kps, policy=policy))
