"""RunPlan (issue 20): resolved once in the driver; the fingerprint and model labels that existing outputs were
written under; the model card checked against its weights; workers load from the plan's bytes."""

import json
import pickle
import shutil
import zipfile
from dataclasses import dataclass, field, replace

import numpy as np
import pytest

from faceproc.agegender.spec import ModelCardMismatch, ModelSpec
from faceproc.config import SAME_ROWS, Config, ModelConfig
from faceproc.configcheck import walk
from faceproc.plan import ModelFactory, RunPlan, result_fingerprint
from tests.conftest import INSIGHTFACE_ROOT, REPO, requires_shared

DET = INSIGHTFACE_ROOT / "models" / "buffalo_m" / "det_2.5g.onnx"

def cal_suffix(variant):
    """The shipped card's calibration maps (issue 24) are part of its label: +cal and a hash of the maps."""
    import hashlib

    card = json.loads((REPO / "faceproc" / "weights" / f"{variant}.json").read_text())
    cal = card.get("calibration")
    return "+cal" + hashlib.sha256(json.dumps(cal, sort_keys=True).encode()).hexdigest()[:8] if cal else ""


# What main at commit 47872e7 computed (engine.preflight, runstate.describe_model, runstate.result_fingerprint)
# for the default config: an output written then must resume now, so these may never change by accident.
BEFORE = {
    "decode": {"max_pixels": 120000000, "max_side": 2048, "min_side": 16},
    "detector": {"kind": "scrfd", "threshold": 0.5, "nms_threshold": 0.4, "min_face": 8.0, "max_faces": 0,
                 "scrfd.pack": None, "scrfd.sizes": [160], "scrfd.main_size": 640, "scrfd.smallest_face": 40.0,
                 "scrfd.max_size": 2048, "scrfd.runtime": "auto", "scrfd.precision": "auto"},
    "detector_file": "det_2.5g.onnx:3292009",
    # min_face_px/min_sharpness: added on purpose after 47872e7 (quality thresholds change rows: withheld); 24/6.0
    # until re-measured on the selection half (benchmarks/results/face_size.json)
    "model": {"flip_tta": True, "min_age": 0.0, "max_age": 100.0, "min_face_px": 20.0, "min_sharpness": 6.2,
              "runtime": "auto", "random_init": False},
    "model_label": "unfrozen@unfrozen-258e7119e52e" + cal_suffix("unfrozen"),  # + the card's maps (issue 24)
    "schema_version": 4,  # 2 at 47872e7; bumped on purpose by the new columns (faceproc/schema.py: 3, 4)
}


def config(overrides) -> Config:
    """A default config with dotted settings set (detector.scrfd.root ...)."""
    cfg = Config()
    for dotted, value in dict(overrides).items():
        *parents, name = dotted.split(".")
        obj = cfg
        for p in parents:
            obj = getattr(obj, p)
        setattr(obj, name, value)
    return cfg


def fake_keras(path):
    """A file that passes the driver's .keras checks (a zip with config.json), byte-identical every time."""
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(zipfile.ZipInfo("config.json", date_time=(2020, 1, 1, 0, 0, 0)), "{}")
    return path


@requires_shared
def test_fingerprint_and_labels_equal_those_existing_outputs_were_written_under(tmp_path):
    """As 47872e7 computed them, except that a card with calibration maps adds their hash to its version
    (the maps change female_prob and ages, so outputs written without them are not resumed)."""
    u, f = cal_suffix("unfrozen"), cal_suffix("frozen")
    carded = fake_keras(tmp_path / "carded.keras")
    (tmp_path / "carded.json").write_text(json.dumps({"variant": "unfrozen", "version": "mine-1",
                                                      "crop_policy": "arcface5-s1.3-up0.15-128"}))
    cases = {  # overrides -> (label, what differs from BEFORE), as 47872e7 computed them
        (): (f"unfrozen@unfrozen-258e7119e52e{u}", {}),
        # the shipped frozen changed on purpose (2026-12-01: the brief's MSE loss; its card names the file)
        (("model.variant", "frozen"),): (f"frozen@frozen-15fcb7d6ba91{f}", {}),
        (("model.variant", str(fake_keras(tmp_path / "custom.keras"))),): ("custom@sha256:663e5a432277", {}),
        (("model.variant", str(carded)),): ("unfrozen@mine-1", {}),
        (("model.random_init", True),): ("unfrozen@random-init", {"model": {**BEFORE["model"], "random_init": True}}),
        (("detector.threshold", 0.6), ("decode.max_side", 1024), ("model.flip_tta", False)): (
            f"unfrozen@unfrozen-258e7119e52e{u}",
            {"decode": {**BEFORE["decode"], "max_side": 1024},
             "detector": {**BEFORE["detector"], "threshold": 0.6}, "model": {**BEFORE["model"], "flip_tta": False}}),
        # where the files lie and how fast they run changes no row
        (("detector.scrfd.root", str(INSIGHTFACE_ROOT)), ("detector.threads", 3), ("model.batch_size", 8)): (
            f"unfrozen@unfrozen-258e7119e52e{u}", {}),
    }
    for overrides, (label, changed) in cases.items():
        plan = RunPlan.resolve(config(overrides))
        assert plan.model.label == label, overrides
        assert plan.fingerprint == {**BEFORE, **changed, "model_label": label}, overrides


@requires_shared
def test_a_card_copied_beside_other_weights_is_refused_before_any_output(tmp_path):
    from faceproc.engine import annotate

    model = fake_keras(tmp_path / "m.keras")
    card = {"variant": "unfrozen", "version": "unfrozen-aaaaaaaaaaaa", "sha256": "a" * 64,
            "crop_policy": "arcface5-s1.3-up0.15-128"}
    (tmp_path / "m.json").write_text(json.dumps(card))
    cfg = config({"model.variant": str(model)})
    with pytest.raises(ModelCardMismatch) as e:
        RunPlan.resolve(cfg)
    msg = str(e.value)
    assert "\n" not in msg and "m.json" in msg and "aaaaaaaaaaaa" in msg
    (tmp_path / "in").mkdir()
    with pytest.raises(ModelCardMismatch):
        annotate([str(tmp_path / "in")], tmp_path / "out", cfg, engine="local")
    assert not (tmp_path / "out").exists()
    from faceproc.storage import file_sha256

    (tmp_path / "m.json").write_text(json.dumps({**card, "sha256": file_sha256(model)}))  # its own weights: fine
    assert RunPlan.resolve(cfg).model.label == "unfrozen@unfrozen-aaaaaaaaaaaa"


def test_input_size_and_normalisation_come_from_the_card(tmp_path):
    model = fake_keras(tmp_path / "m.keras")
    (tmp_path / "m.json").write_text(json.dumps({"crop_policy": "arcface5-s1.2-160", "input_size": [160, 160, 3]}))
    spec = ModelSpec.resolve(ModelConfig(variant=str(model)))
    assert (spec.input_size, spec.policy.size, spec.name) == (160, 160, "m")
    (tmp_path / "m.json").write_text(json.dumps({"crop_policy": "arcface5-s1.2-160", "input_size": [160, 160, 3],
                                                 "normalisation": "x / 255"}))
    with pytest.raises(ValueError, match="normalisation 'x / 255'"):
        ModelSpec.resolve(ModelConfig(variant=str(model)))


def test_every_row_setting_is_in_the_fingerprint_and_no_other(tmp_path):
    """Derived from the config's field metadata: a setting (or a whole section) added later is covered without
    anyone naming it, and a SAME_ROWS one stays out."""

    @dataclass
    class Extra:
        knob: int = 1
        speed: int = field(default=2, metadata=SAME_ROWS)

    @dataclass
    class Bigger(Config):
        extra: Extra = field(default_factory=Extra)

    fp = result_fingerprint(Bigger(), "det.onnx:1", "m@v")
    assert fp["extra"] == {"knob": 1}
    cfg = Config()
    fp = result_fingerprint(cfg, "det.onnx:1", "m@v")
    for key, f, value in walk(cfg):
        section, rest = key.split(".", 1)
        inactive = rest.startswith("yunet.")
        assert (rest in fp.get(section, {})) == (f.metadata.get("rows", True) and not inactive), key


def test_workers_get_their_thread_share_without_losing_explicit_counts(fakes):
    cfg = Config()
    cfg.model.random_init = True
    cfg.detector.threads = 5
    plan = RunPlan.resolve(cfg, fakes).for_workers(2.5)
    assert (plan.detector.settings.threads, plan.model.settings.threads) == (5, 2)
    assert cfg.model.threads == 0  # the caller's config is never changed
    cfg.detector.threads, cfg.model.threads = 0, 7
    plan = RunPlan.resolve(cfg, fakes).for_workers(3)
    assert (plan.detector.settings.threads, plan.model.settings.threads) == (3, 7)
    assert pickle.loads(pickle.dumps(plan)).fingerprint == plan.fingerprint  # Ray actors take it as it is


@requires_shared
def test_a_worker_keeps_no_model_bytes_once_loaded(fakes):
    from faceproc.pipeline import Annotator

    cfg = Config()
    cfg.model.random_init = True
    plan = RunPlan.resolve(cfg, ModelFactory()).for_workers(1, portable=True)  # the real files (fakes: only loading)
    assert plan.detector.file.data and plan.detector.file.data[:4] == DET.read_bytes()[:4]
    annotator = Annotator(replace(plan, models=fakes))
    assert annotator.plan.detector.file.data is None and annotator.plan.fingerprint == plan.fingerprint


@requires_shared
def test_a_worker_loads_the_detector_from_the_plans_bytes_when_the_file_is_gone(tmp_path):
    import gc

    import insightface

    from faceproc.detectors.registry import make_detector

    shutil.copy(DET, tmp_path / "det_2.5g.onnx")
    cfg = config({"detector.scrfd.model_file": str(tmp_path / "det_2.5g.onnx"),
                  "detector.scrfd.runtime": "onnxruntime", "model.random_init": True})
    plan = RunPlan.resolve(cfg)
    img = insightface.data.get_image("t1")[..., ::-1]
    here = make_detector(plan.detector.with_threads(1)).detect(img)
    sent = pickle.dumps(plan.for_workers(1, portable=True))  # what a Ray actor on another node receives
    (tmp_path / "det_2.5g.onnx").unlink()
    det = make_detector(pickle.loads(sent).detector)
    got = det.detect(img)
    assert len(got) == len(here) == 6
    np.testing.assert_allclose(got.boxes, here.boxes, atol=1e-3)
    copy = det.model.model_file
    assert copy != str(tmp_path / "det_2.5g.onnx") and __import__("os").path.exists(copy)
    del det
    gc.collect()
    assert not __import__("os").path.exists(copy)  # the private copy goes with the detector


def test_a_worker_loads_the_age_gender_model_from_the_plans_bytes_when_the_file_is_gone(tmp_path):
    pytest.importorskip("keras")
    from faceproc.agegender.architecture import build_model
    from faceproc.agegender.files import save_model
    from faceproc.agegender.runtime import AgeGenderPredictor

    save_model(build_model("frozen", backbone_weights=None), tmp_path / "m.keras", {"variant": "frozen"})
    spec = ModelSpec.resolve(ModelConfig(variant=str(tmp_path / "m.keras"), runtime="keras", flip_tta=False))
    crops = np.random.default_rng(0).integers(0, 255, (3, 128, 128, 3), dtype=np.uint8)
    want = AgeGenderPredictor(spec).predict(crops)
    sent = pickle.dumps(spec.with_bytes())
    for p in tmp_path.iterdir():
        p.unlink()
    got = AgeGenderPredictor(pickle.loads(sent)).predict(crops)
    np.testing.assert_allclose(got[0], want[0], atol=1e-4)
    np.testing.assert_allclose(got[1], want[1], atol=1e-6)
    damaged = replace(spec, keras=replace(spec.keras, data=b"not the model"))
    with pytest.raises(ValueError, match="arrived damaged"):
        AgeGenderPredictor(damaged)


def test_a_worker_refuses_model_files_changed_since_the_plan(tmp_path):
    """The plan labels the rows with the weights it hashed; a worker that loads later (a thread, a Ray actor
    restarted hours into a run) from the path must find the same file, or refuse with the way out."""
    from faceproc.modelfile import ModelFile, lasting_paths, local_paths

    (tmp_path / "m.keras").write_bytes(b"the weights the plan saw")
    (tmp_path / "det.onnx").write_bytes(b"a detector")
    keras, det = ModelFile.at(tmp_path / "m.keras"), ModelFile.at(tmp_path / "det.onnx")
    with local_paths(keras, det) as paths:
        assert paths == [keras.path, det.path]  # unchanged: the files as they are, no copies
    (tmp_path / "m.keras").write_bytes(b"weights retrained since")
    with pytest.raises(ValueError, match="changed after the run was planned"):
        with local_paths(keras):
            pass
    with pytest.raises(ValueError, match="changed after the run was planned"):
        lasting_paths(object(), det, keras)
