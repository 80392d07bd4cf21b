"""Batched age/gender on face crops from many images at once (+ mirror-image averaging), from a ModelSpec.

The fast path: under TensorFlow the model is called through one traced `tf.function` with a fixed
batch shape (batches are padded), which avoids `model.predict`'s per-call dataset/graph overhead
and retracing; under other backends `predict_on_batch` is used. Both give the plain Keras outputs.
"""

from __future__ import annotations

import numpy as np

from .. import calibration
from ..modelfile import local_paths
from .architecture import NORMALISATIONS
from .backend import import_backend_quietly, set_threads
from .spec import ModelSpec


def _gpu_visible() -> bool:
    """A GPU this process may use (Ray sets CUDA_VISIBLE_DEVICES for actors given GPUs): then `auto` keeps
    the Keras backend, which runs there, instead of OpenVINO on the CPU."""
    import os

    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    return visible is not None and visible.strip() not in ("", "-1")


def _has_openvino() -> bool:
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


def _openvino_call(xml: str, threads: int = 0):
    import openvino as ov

    config = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY", "ENABLE_CPU_PINNING": False}
    if threads:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    compiled = ov.Core().compile_model(str(xml), "CPU", config)
    request = compiled.create_infer_request()
    names = {o.get_any_name(): o for o in compiled.outputs}

    def call(x):
        res = request.infer({0: x})
        return {"age": np.asarray(res[names["age"]]), "gender": np.asarray(res[names["gender"]])}

    return call


def uses_openvino(spec: ModelSpec) -> bool:
    """Whether a predictor built from `spec` runs on OpenVINO (no TensorFlow in the process). The in-process
    engine asks it: OpenVINO models load in a blink and release the GIL, so worker threads pay; Keras ones
    cost seconds each to load and share TensorFlow's thread pool, so one worker is quicker there."""
    s = spec.settings
    use_ir = spec.ir is not None and (s.runtime == "openvino" or (s.runtime == "auto" and not _gpu_visible()))
    if use_ir and not _has_openvino():
        if s.runtime == "openvino":
            raise ImportError("model.runtime = openvino needs the openvino package (pip install openvino)")
        return False
    return use_ir


class AgeGenderPredictor:
    """prepare once (load + trace), then predict(crops) -> (age years, female probability)."""

    def __init__(self, spec: ModelSpec, model=None):
        """From the plan's ModelSpec (its files, or their bytes), or with an in-memory Keras `model` (training's
        final evaluation): one predict path for annotate, evaluate and training."""
        self.spec, s = spec, spec.settings
        self.preprocess = NORMALISATIONS[spec.normalisation]
        self.batch_size = int(s.batch_size) or 64  # 0 = auto: 64 on Keras, 16 on OpenVINO (below)
        if model is None and uses_openvino(spec):  # no TensorFlow at all in this process
            self.model, self.runtime = None, "openvino"
            # On a CPU core 16 crops a call beat 64 (their activations stay in cache): 2.23 vs 2.66 s for the
            # 711 faces of the photos corpus (benchmarks/annotate.py, predict_seconds_by_batch).
            self.batch_size = int(s.batch_size) or 16
            with local_paths(*spec.ir) as (xml, _):
                self._call = _openvino_call(xml, s.threads)
            return
        self.runtime = "keras"
        import_backend_quietly()
        set_threads(s.threads)
        if model is not None:
            self.model = model
        elif spec.keras is None:  # random init: only for tests and benchmarks before weights exist
            import keras

            from .architecture import build_model

            keras.utils.set_random_seed(0)  # the same "random" model in every worker and every run
            self.model = build_model(spec.name, backbone_weights=None, compile=False)
        else:
            from .files import load_model

            with local_paths(spec.keras) as (path,):
                self.model = load_model(path, input_size=spec.input_size)
        self._call = self._make_call()

    @property
    def label(self) -> str:
        return self.spec.label

    @property
    def policy(self):
        return self.spec.policy

    def _make_call(self):
        import keras

        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            size = self.spec.input_size
            spec = tf.TensorSpec((self.batch_size, size, size, 3), tf.float32)
            fn = tf.function(lambda x: self.model(x, training=False), input_signature=[spec])
            return lambda x: {k: v.numpy() for k, v in fn(tf.convert_to_tensor(x)).items()}
        return lambda x: {k: np.asarray(v) for k, v in self.model.predict_on_batch(x).items()}

    def _run(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = len(x)
        ages, probs = np.empty(n, np.float32), np.empty(n, np.float32)
        bs = self.batch_size
        for i in range(0, n, bs):
            chunk = x[i : i + bs]
            m = len(chunk)
            if m < bs:  # fixed shape: pad rather than retrace
                chunk = np.concatenate([chunk, np.zeros((bs - m,) + chunk.shape[1:], chunk.dtype)])
            out = self._call(self.preprocess(chunk))
            ages[i : i + m] = np.asarray(out["age"]).reshape(-1)[:m]
            probs[i : i + m] = np.asarray(out["gender"]).reshape(-1)[:m]
        return ages, probs

    def predict(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """uint8 RGB crops (N, size, size, 3) -> ages clipped to [min_age, max_age], P(female)."""
        s = self.spec.settings
        if len(crops) == 0:
            return np.zeros(0, np.float32), np.zeros(0, np.float32)
        if s.flip_tta:
            a, p = self._run(np.concatenate([crops, crops[:, :, ::-1]]))
            n = len(crops)
            ages, probs = (a[:n] + a[n:]) / 2, (p[:n] + p[n:]) / 2
        else:
            ages, probs = self._run(crops)
        ages, probs = calibration.apply(self.spec.calibration, ages, probs)
        return np.clip(ages, s.min_age, s.max_age), np.clip(probs, 0.0, 1.0)
