"""Helpers shared by test modules (stand-in models, generated folders and data); fixtures are in conftest."""

import numpy as np
from PIL import Image

from faceproc.config import Config
from faceproc.detectors.base import Detections
from faceproc.agegender.spec import ModelSpec
from faceproc.detectors.files import DetectorSpec
from faceproc.plan import ModelFactory


class FakeDetector:
    """One 'face' in the middle of every image whose top-left pixel is white."""

    def __init__(self, cfg=None):
        pass

    def detect(self, rgb, scale=1.0):
        h, w = rgb.shape[:2]
        if rgb[0, 0].min() < 250:
            return Detections.empty()
        box = np.array([[w * 0.25, h * 0.25, w * 0.75, h * 0.75]], np.float32)
        kps = np.array([[[w * 0.4, h * 0.4], [w * 0.6, h * 0.4], [w * 0.5, h * 0.5], [w * 0.42, h * 0.6],
                         [w * 0.58, h * 0.6]]], np.float32)
        return Detections(box, kps, np.array([0.9], np.float32))


class FakePredictor:
    calls = []

    def __init__(self, spec=None):
        pass

    def predict(self, crops):
        import os
        import time

        time.sleep(float(os.environ.get("FACEPROC_FAKE_DELAY", "0")))  # a slow model, for tests that kill runs
        FakePredictor.calls.append(len(crops))
        return np.full(len(crops), 33.0, np.float32), np.full(len(crops), 0.8, np.float32)


def install_fakes(setter=None):
    """Name the stand-ins' factory for every run of this process and its children. `setter`: a pytest
    monkeypatch's setenv (or setattr: its monkeypatch is used), so the test undoes it; otherwise (a child
    process that a test kills) os.environ is set for good."""
    import os

    from faceproc.plan import ENV_MODEL_FACTORY

    mp = getattr(setter, "__self__", None)
    if mp is not None and hasattr(mp, "setenv"):
        mp.setenv(ENV_MODEL_FACTORY, "tests.helpers:FakeModels")
    else:
        os.environ[ENV_MODEL_FACTORY] = "tests.helpers:FakeModels"
    return FakeModels()


class FakeModels(ModelFactory):
    """The stand-ins behind the factory the executors take (a plain class of this module: picklable). The
    age/gender spec is resolved for real (tests use random-init settings, which need no file)."""

    def __init__(self, predictor=FakePredictor):
        self.predictor_class = predictor
        FakePredictor.calls.clear()

    def resolve(self, cfg):
        import copy

        return DetectorSpec(copy.deepcopy(cfg.detector), None, "fake-detector.onnx"), ModelSpec.resolve(cfg.model)

    def detector(self, spec):
        return FakeDetector()

    def predictor(self, spec):
        return self.predictor_class(spec)

    def threads_pay(self, spec):
        return True  # the stand-ins are cheap and thread-safe: tests run the in-process engine's threads


def make_tree(root, n=7):
    for i in range(n):
        img = np.full((80, 100, 3), 100, np.uint8)
        if i % 2 == 0:
            img[0, 0] = 255  # has a "face"
        d = root / f"d{i % 3}"
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(d / f"{i}.png")
    (root / "d0" / "broken.jpg").write_bytes(b"nope")


def cfg_for_tests(**run):
    cfg = Config()
    cfg.model.random_init = True
    # The generated photos are flat grey: their "faces" would be withheld as blurry (quality.py has its own tests)
    cfg.model.min_face_px = cfg.model.min_sharpness = 0.0
    for k, v in run.items():
        setattr(cfg.run, k, v)
    return cfg


def quality_off_config(folder) -> str:
    """A config file for CLI runs with cfg_for_tests' quality thresholds (off): rows comparable to its runs."""
    from pathlib import Path

    path = Path(folder) / "quality-off.yaml"
    path.write_text("model: {min_face_px: 0, min_sharpness: 0}\n")
    return str(path)


def synthetic(n, rng):
    """Crops whose brightness encodes age and whose red/blue balance encodes gender (ages kept small so
    a few steps can fit them from a zero-initialised output)."""
    age = rng.uniform(0, 4, n).astype(np.float32)
    gender = rng.integers(0, 2, n).astype(np.float32)
    base = (age / 4 * 160 + 40)[:, None, None, None]
    crops = np.repeat(np.repeat(base, 128, 1), 128, 2).repeat(3, 3)
    crops[..., 0] += gender[:, None, None] * 40
    crops[..., 2] += (1 - gender)[:, None, None] * 40
    crops = np.clip(crops + rng.normal(0, 8, crops.shape), 0, 255).astype(np.uint8)
    return {"crops": crops, "age": age, "gender": gender, "key": np.array([f"s/{i}" for i in range(n)])}


def annotated_sample(tmp_path, n=12, previews=2):
    """A small tree annotated with the stand-in models: the output folder."""
    from faceproc.engine import annotate

    make_tree(tmp_path / "in", n=n)
    cfg = cfg_for_tests()
    cfg.run.previews = previews
    out = tmp_path / "out"
    annotate([str(tmp_path / "in")], out, cfg, engine="local", models=FakeModels())
    return out


def fail_first_commit(monkeypatch, error: Exception) -> list:
    """Make the first shard commit raise `error` between "tables in place" and "marker written" (runstate's
    crash point); later commits go through. Returns the list that receives the failed shard's id."""
    import faceproc.runstate as R

    victims: list = []

    def boom(store, shard_id):
        if not victims:
            victims.append(shard_id)
            raise error

    monkeypatch.setattr(R, "_tables_in_place", boom)
    return victims
