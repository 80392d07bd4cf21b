"""Batched age/gender on face crops from many images at once (+ mirror-image averaging).

The fast path: under TensorFlow the model is called through one traced `tf.function` with a fixed
batch shape (batches are padded), which avoids `model.predict`'s per-call dataset/graph overhead
and retracing; under other backends `predict_on_batch` is used. Both give the plain Keras outputs.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from .config import ModelConfig, resolve_weights_dir
from .crop import DEFAULT_POLICY, CropPolicy, policy_from_card
from .model import DEFAULT_VARIANT, REGISTRY, VARIANTS, file_sha256, load_model, model_version, preprocess, read_card

log = logging.getLogger(__name__)


def resolve_model_path(cfg: ModelConfig) -> Path:
    if cfg.variant in VARIANTS:
        path = resolve_weights_dir(cfg) / REGISTRY[cfg.variant].default_weights
        if not path.exists():
            raise FileNotFoundError(
                f"no trained `{cfg.variant}` weights at {path}. Train them (`faceproc train --variant {cfg.variant}`) "
                f"or point model.weights_dir / $FACEPROC_WEIGHTS_DIR at a folder holding {cfg.variant}.keras"
            )
        return path
    path = Path(cfg.variant).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"model file not found: {path} (use frozen, unfrozen or a .keras path)")
    return path


def check_model_file(cfg: ModelConfig) -> Path:
    """Everything about the age/gender model that can be checked without loading TensorFlow, in the driver
    before any output is written: the file exists, is a .keras archive, and its card names a crop policy
    this code reproduces."""
    import zipfile

    path = resolve_model_path(cfg)
    if path.is_dir():
        raise FileNotFoundError(f"--model {path} is a folder; give frozen, unfrozen or a .keras file")
    if path.suffix != ".keras" or not zipfile.is_zipfile(path):
        raise ValueError(f"{path} is not a Keras 3 .keras file (a zip archive with the model's config and weights)")
    with zipfile.ZipFile(path) as zf:
        if "config.json" not in zf.namelist():
            raise ValueError(f"{path} is not a Keras 3 .keras file (no config.json inside)")
    policy_from_card(read_card(path), path)  # raises CropPolicyError for a policy this code cannot cut
    return path


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


def _ir_paths(path: Path) -> tuple[Path, Path]:
    return path.with_suffix(".openvino.xml"), path.with_suffix(".openvino.json")


def openvino_copy(path: Path) -> Path | None:
    """The OpenVINO IR beside a .keras file, if it was made from exactly this file (its sha256 recorded)."""
    import json

    xml, meta = _ir_paths(path)
    if not (xml.exists() and xml.with_suffix(".bin").exists() and meta.exists()):
        return None
    try:
        if json.loads(meta.read_text()).get("source_sha256") != file_sha256(path):
            log.warning("%s was made from another version of %s: ignored (faceproc export-openvino %s)", xml, path, path)
            return None
    except (OSError, ValueError):
        return None
    return xml


def export_openvino(path: str | Path) -> Path:
    """Write MODEL.openvino.xml/.bin (f32 IR, through a TF SavedModel) and MODEL.openvino.json beside MODEL.keras;
    checked against the Keras outputs on random crops before anything is written."""
    import json
    import tempfile

    import openvino as ov

    path = Path(path)
    keras = import_backend_quietly()
    model = load_model(path)
    xml, meta = _ir_paths(path)
    with tempfile.TemporaryDirectory() as d:
        model.export(d, format="tf_saved_model", verbose=False)
        ir = ov.convert_model(d)
    x = preprocess(np.random.default_rng(0).integers(0, 256, (8, 128, 128, 3), dtype=np.uint8))
    ref = {k: np.asarray(v).reshape(-1) for k, v in model(x, training=False).items()}
    compiled = ov.Core().compile_model(ir, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    got = compiled(x)
    out = {o.get_any_name(): np.asarray(got[o]).reshape(-1) for o in compiled.outputs}
    diff = {k: float(np.abs(out[k] - ref[k]).max()) for k in ("age", "gender")}
    if diff["age"] > 0.25 or diff["gender"] > 1e-3:
        raise RuntimeError(f"the OpenVINO copy of {path} disagrees with Keras ({diff}); nothing written")
    ov.save_model(ir, str(xml), compress_to_fp16=False)
    meta.write_text(json.dumps({"source": path.name, "source_sha256": file_sha256(path), "precision": "f32",
                                "max_abs_diff_vs_keras": diff, "keras_backend": keras.backend.backend(),
                                "openvino": ov.get_version()}, indent=1))
    return xml


def _openvino_call(xml: Path, threads: int = 0):
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


def import_backend_quietly():
    """Import Keras (and its backend) with native stderr captured: TensorFlow's C++ start-up lines (absl,
    cuInit, oneDNN) ignore TF_CPP_MIN_LOG_LEVEL and would land on the user's terminal from every worker.
    They go to the debug log instead; Python errors still raise as usual."""
    import os
    import sys
    import tempfile

    if "keras" in sys.modules:
        return sys.modules["keras"]
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            import keras

            if keras.backend.backend() == "tensorflow":
                import tensorflow as tf

                tf.config.list_physical_devices("GPU")  # the CUDA probe prints its lines here, not later
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
        tmp.seek(0)
        for line in tmp.read().decode("utf-8", "replace").splitlines():
            if line.strip():
                log.debug("backend start-up: %s", line)
    return keras


def set_threads(n: int) -> None:
    """Cap TensorFlow's thread pools so several workers on one machine do not fight over the cores."""
    if not n:
        return
    try:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(int(n))
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except (ImportError, RuntimeError) as e:  # RuntimeError: TF already initialised
        log.debug("could not set TF threads: %s", e)


class AgeGenderPredictor:
    """prepare once (load + trace), then predict(crops) -> (age years, female probability)."""

    def __init__(self, cfg: ModelConfig | None = None, model=None, policy: CropPolicy | None = None,
                 name: str = "model", version: str = "in-memory"):
        """From the config (a shipped variant or a .keras file with its card), or from an in-memory Keras
        `model` (training's final evaluation): one predict path for annotate, evaluate and training."""
        self.cfg = cfg or ModelConfig()
        self.batch_size = int(self.cfg.batch_size) or 64  # 0 = auto: 64 on Keras, 16 on OpenVINO (below)
        ir = None
        if model is None and not self.cfg.random_init:
            path = resolve_model_path(self.cfg)
            ir = openvino_copy(path) if self.cfg.runtime == "openvino" or (
                self.cfg.runtime == "auto" and not _gpu_visible()) else None
            if self.cfg.runtime == "openvino" and ir is None:
                raise FileNotFoundError(f"model.runtime = openvino but {path} has no current OpenVINO copy beside it: "
                                        f"run `faceproc export-openvino {path}`")
            if ir is not None and not _has_openvino():
                if self.cfg.runtime == "openvino":
                    raise ImportError("model.runtime = openvino needs the openvino package (pip install openvino)")
                ir = None
        if ir is not None:  # no TensorFlow at all in this process
            self.card = read_card(path)
            self.policy = policy_from_card(self.card, path)
            self.name = self.card.get("variant") or path.stem
            self.version = model_version(path, self.card)
            self.model, self.runtime = None, "openvino"
            # On a CPU core 16 crops a call beat 64 (their activations stay in cache): 2.23 vs 2.66 s for the
            # 711 faces of the photos corpus (benchmarks/annotate.py, predict_seconds_by_batch).
            self.batch_size = int(self.cfg.batch_size) or 16
            self._call = _openvino_call(ir, self.cfg.threads)
            return
        self.runtime = "keras"
        import_backend_quietly()
        set_threads(self.cfg.threads)
        if model is not None:
            self.model, self.card = model, {}
            self.policy = policy or DEFAULT_POLICY
            self.name, self.version = name, version
        elif self.cfg.random_init:
            from .model import build_model

            import keras

            variant = self.cfg.variant if self.cfg.variant in VARIANTS else DEFAULT_VARIANT
            keras.utils.set_random_seed(0)  # the same "random" model in every worker and every run
            self.model = build_model(variant, backbone_weights=None, compile=False)
            self.name, self.version, self.card = variant, "random-init", {}
            self.policy: CropPolicy = DEFAULT_POLICY
        else:
            path = resolve_model_path(self.cfg)
            self.card = read_card(path)
            # The card is the contract: crops are cut the way the model was trained (refused if unknown).
            self.policy = policy_from_card(self.card, path)
            self.model = load_model(path)
            self.name = self.card.get("variant") or path.stem
            self.version = model_version(path, self.card)
        self._call = self._make_call()

    @property
    def label(self) -> str:
        return f"{self.name}@{self.version}"

    def _make_call(self):
        import keras

        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            size = self.policy.size
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
            out = self._call(preprocess(chunk))
            ages[i : i + m] = np.asarray(out["age"]).reshape(-1)[:m]
            probs[i : i + m] = np.asarray(out["gender"]).reshape(-1)[:m]
        return ages, probs

    def predict(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """uint8 RGB crops (N,128,128,3) -> ages clipped to [min_age, max_age], P(female)."""
        if len(crops) == 0:
            return np.zeros(0, np.float32), np.zeros(0, np.float32)
        if self.cfg.flip_tta:
            a, p = self._run(np.concatenate([crops, crops[:, :, ::-1]]))
            n = len(crops)
            ages, probs = (a[:n] + a[n:]) / 2, (p[:n] + p[n:]) / 2
        else:
            ages, probs = self._run(crops)
        return np.clip(ages, self.cfg.min_age, self.cfg.max_age), np.clip(probs, 0.0, 1.0)
