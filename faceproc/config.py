"""Configuration: the settings with their defaults and why, YAML overrides, and which settings change rows.

Model locations are resolved where the models are (faceproc/detectors/files.py, faceproc/agegender/spec.py):
explicit value (CLI flag or YAML key) -> environment variable -> the normal online default (InsightFace
downloads its pack into ~/.insightface, the trained age/gender weights ship inside the package).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any

import yaml

from .configcheck import ConfigError, broken_rules, build, walk

ENV_BACKBONE_WEIGHTS = "FACEPROC_BACKBONE_WEIGHTS"


# Marks a setting that does not change any output row (threads, batch sizes, worker counts, where files
# lie): a rerun may change it freely. Every other setting enters the output's fingerprint
# (`row_settings`), and a rerun with another value is refused without --force.
SAME_ROWS = {"rows": False}


@dataclass
class DecodeConfig:
    # Files above this many pixels are refused (decompression-bomb guard) before any pixel is decoded.
    max_pixels: int = 120_000_000
    # Photos are decoded (JPEG draft mode) or resized to at most this long side for detection and
    # cropping; boxes are mapped back to original pixels. 2048 keeps 40 px faces of a 12 MP photo at 20 px.
    max_side: int = 2048
    # Below this short side no face can be found; such files get status `too_small`.
    min_side: int = 16


@dataclass
class ScrfdConfig:
    """InsightFace's SCRFD (boxes + 5 keypoints), from a pack folder or an explicit .onnx file."""

    pack: str | None = None  # InsightFace pack; None -> $FACEPROC_DETECTOR_PACK -> buffalo_m (SCRFD-2.5GF)
    # Where the model file lies does not change rows (the pack and its file do, through the model label).
    root: str | None = field(default=None, metadata=SAME_ROWS)  # None -> $FACEPROC_INSIGHTFACE_ROOT -> ~/.insightface
    model_file: str | None = field(default=None, metadata=SAME_ROWS)  # explicit SCRFD .onnx, bypasses pack lookup
    # Whole-image passes, merged by NMS. `sizes`: small fixed passes for faces that fill the frame. The
    # main pass: a canvas of main_size for normal photos, larger for big photos, so that faces from
    # `smallest_face` pixels wide (original pixels) land at ~25 px on it, the size SCRFD still finds
    # reliably (benchmarks/detect_options.py); at most max_size and never above the decoded resolution.
    # Smaller smallest_face finds smaller faces in big photos at more cost (~quadratic); 0 = main_size only.
    sizes: list[int] = field(default_factory=lambda: [160])
    main_size: int = 640
    smallest_face: float = 40.0
    max_size: int = 2048
    # Inference runtime: auto (onnxruntime on CUDA when present, else openvino when installed, else
    # onnxruntime on the CPU) | onnxruntime | openvino (CPU: the same outputs at f32, 1.2x faster).
    runtime: str = "auto"
    # openvino: auto (OpenVINO's default: bf16 on CPUs with bf16 units, about 2x faster than f32 with
    # the same recall, slightly different scores; f32 elsewhere) | f32 | bf16.
    precision: str = "auto"


@dataclass
class YunetConfig:
    """OpenCV's YuNet (cv2.FaceDetectorYN): a 230 KB model, several times cheaper than SCRFD-2.5G."""

    model_file: str | None = field(default=None, metadata=SAME_ROWS)  # required: face_detection_yunet_2023mar.onnx
    max_side: int = 640  # one pass at the decoded resolution, at most this long side ...
    full_res: str = "auto"  # ... or at up to 2048 px for photos above full_res_above (auto | always | never)
    full_res_above: int = 1100


@dataclass
class DetectorConfig:
    """Settings every detector kind shares; each kind's own settings sit under its name."""

    kind: str = "scrfd"  # faceproc.detectors.registry.DETECTORS: scrfd | yunet
    threshold: float = 0.5
    nms_threshold: float = 0.4
    min_face: float = 8.0  # drop boxes smaller than this (original pixels, shorter side)
    max_faces: int = 0  # 0 = keep all
    threads: int = field(default=0, metadata=SAME_ROWS)  # inference intra-op threads; 0 = the runtime's default
    scrfd: ScrfdConfig = field(default_factory=ScrfdConfig)
    yunet: YunetConfig = field(default_factory=YunetConfig)

    @property
    def active(self):
        """The settings of the chosen kind."""
        return getattr(self, self.kind)


@dataclass
class ModelConfig:
    # `frozen`, `unfrozen` (shipped weights) or a path to a .keras file with a model card beside it.
    # (the model's identity enters the fingerprint as its label, variant@version)
    variant: str = field(default="unfrozen", metadata=SAME_ROWS)
    weights_dir: str | None = field(default=None, metadata=SAME_ROWS)  # None -> $FACEPROC_WEIGHTS_DIR -> faceproc/weights
    batch_size: int = field(default=0, metadata=SAME_ROWS)  # crops a model call; 0 = auto (16 on OpenVINO, 64 on Keras)
    flip_tta: bool = True  # average predictions over the crop and its mirror image
    min_age: float = 0.0
    max_age: float = 100.0
    # Age and gender are withheld (null, with the reason in faces.withheld) for faces whose box's shorter side
    # is below min_face_px original pixels, or whose crop's sharpness is below min_sharpness (faceproc/quality.py;
    # chosen from scripts/face_size_sweep.py on the selection half, benchmarks/results/face_size.json). 0 = never.
    min_face_px: float = 20.0
    min_sharpness: float = 6.2
    threads: int = field(default=0, metadata=SAME_ROWS)  # inference intra-op threads; 0 = the runtime's default
    # keras (TensorFlow or another Keras 3 backend) | openvino (the model's OpenVINO copy beside its .keras,
    # made by `faceproc export-openvino`: no TensorFlow in the workers, ~4 s less start-up each, outputs
    # within 3e-5 years of Keras) | auto (openvino when that copy exists, openvino is installed and no GPU is
    # visible to the worker, else keras).
    runtime: str = "auto"
    # Random weights instead of trained ones: only for tests and benchmarks before weights exist.
    random_init: bool = False


@dataclass
class RunConfig:
    # At most this many files per shard (fewer when that spreads the work over every worker); committed
    # shards are never re-cut, so it may change between runs.
    shard_size: int = field(default=256, metadata=SAME_ROWS)
    workers: int = field(default=0, metadata=SAME_ROWS)  # Ray worker actors; 0 = one per CPU of the cluster
    cpus_per_worker: float = field(default=1.0, metadata=SAME_ROWS)
    # None = auto: share the GPUs of the cluster when present
    gpus_per_worker: float | None = field(default=None, metadata=SAME_ROWS)
    # Shards given to a worker at once: 1 lets the last (small) shards go to whichever worker is free first;
    # more hides the driver's round trip, which only matters for shards of a few ms.
    max_in_flight: int = field(default=1, metadata=SAME_ROWS)
    # None = an embedded local Ray for the run; "auto" or host:port = an existing cluster
    ray_address: str | None = field(default=None, metadata=SAME_ROWS)
    max_task_retries: int = field(default=3, metadata=SAME_ROWS)
    previews: int = field(default=0, metadata=SAME_ROWS)
    # Merge committed shards of fewer files than this (nightly runs add a few photos each) once 8 of them
    # have accumulated, into shards of up to shard_size files; 0 = never.
    compact_below: int = field(default=64, metadata=SAME_ROWS)
    # Symlinks whose target lies outside the inputs are not followed (they are counted in the report);
    # true follows them. Which files are inputs, not how a row is made: the rows of a file stay the same.
    follow_external_symlinks: bool = field(default=False, metadata=SAME_ROWS)
    # Never download a model (the detector pack on first use): a missing one is an error (also FACEPROC_OFFLINE=1).
    offline: bool = field(default=False, metadata=SAME_ROWS)
    # false: report.html shows no face (no gallery thumbnails, no previews; previews must then be 0).
    faces_in_report: bool = field(default=True, metadata=SAME_ROWS)


@dataclass
class Config:
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "Config":
        return build(cls, data or {}, _RULES, _REPLACED).validate()

    @classmethod
    def load(cls, path: str | os.PathLike | None = None, overrides: dict | None = None) -> "Config":
        """YAML file + overrides, validated as a whole before any work: every problem is listed."""
        data: dict[str, Any] = {}
        if path is not None:
            try:
                with open(path, encoding="utf-8") as fh:
                    data = yaml.safe_load(fh) or {}
            except yaml.YAMLError as e:
                raise ConfigError([f"{path}: not valid YAML: {e}"]) from None
            except (OSError, UnicodeDecodeError) as e:
                raise ConfigError([f"{path}: cannot read: {e}"]) from None
        data = {k: dict(v) if isinstance(v, dict) else v for k, v in data.items()} if isinstance(data, dict) else data
        for dotted, value in (overrides or {}).items():
            if value is None:
                continue
            section, key = dotted.split(".", 1)
            if not isinstance(data, dict) or not isinstance(data.setdefault(section, {}), dict):
                continue
            data[section][key] = value
        try:
            cfg = cls.from_dict(data)
        except ConfigError as e:
            raise ConfigError([f"{path}: {p}" if path else p for p in e.problems]) from None
        return cfg

    def validate(self) -> "Config":
        problems = _validate(self)
        if problems:
            raise ConfigError(problems)
        return self


# Detector kind -> its settings section under DetectorConfig (one entry per kind, as in detectors.registry).
_DETECTOR_KINDS = {"scrfd": ScrfdConfig, "yunet": YunetConfig}

# Value checks beyond the types (the types themselves are checked by pydantic from the annotations).
_RULES: dict[str, tuple[Any, str]] = {
    "decode.max_pixels": (lambda v: v > 0, "must be > 0"),
    "decode.max_side": (lambda v: v >= 64, "must be >= 64"),
    "decode.min_side": (lambda v: v >= 1, "must be >= 1"),
    "detector.kind": (lambda v: v in _DETECTOR_KINDS, f"must be one of {', '.join(_DETECTOR_KINDS)} "
                      f"(faceproc.detectors.registry.DETECTORS)"),
    "detector.scrfd.sizes": (lambda v: all(32 <= x <= 4096 for x in v), "must be a list of sizes 32..4096"),
    "detector.scrfd.main_size": (lambda v: 64 <= v <= 4096, "must be 64..4096"),
    "detector.scrfd.smallest_face": (lambda v: v >= 0, "must be >= 0 (0 = the main pass at main_size only)"),
    "detector.scrfd.max_size": (lambda v: 64 <= v <= 8192, "must be 64..8192"),
    "detector.scrfd.runtime": (lambda v: v in ("auto", "onnxruntime", "openvino"), "must be auto, onnxruntime or openvino"),
    "detector.scrfd.precision": (lambda v: v in ("auto", "f32", "bf16", "int8"), "must be auto, f32, bf16 or int8"),
    "detector.yunet.max_side": (lambda v: 32 <= v <= 4096, "must be 32..4096"),
    "detector.yunet.full_res": (lambda v: v in ("auto", "always", "never"), "must be auto, always or never"),
    "detector.yunet.full_res_above": (lambda v: v > 0, "must be > 0"),
    "detector.threshold": (lambda v: 0 < v < 1, "must be between 0 and 1"),
    "detector.nms_threshold": (lambda v: 0 < v < 1, "must be between 0 and 1"),
    "detector.min_face": (lambda v: v >= 0, "must be >= 0"),
    "detector.max_faces": (lambda v: v >= 0, "must be >= 0 (0 = all)"),
    "detector.threads": (lambda v: v >= 0, "must be >= 0 (0 = default)"),
    "model.batch_size": (lambda v: 0 <= v <= 4096, "must be 0..4096 (0 = auto)"),
    "model.threads": (lambda v: v >= 0, "must be >= 0 (0 = default)"),
    "model.min_face_px": (lambda v: v >= 0, "must be >= 0 (0 = never withhold)"),
    "model.min_sharpness": (lambda v: v >= 0, "must be >= 0 (0 = never withhold)"),
    "model.runtime": (lambda v: v in ("auto", "keras", "openvino"), "must be auto, keras or openvino"),
    "run.shard_size": (lambda v: v >= 1, "must be >= 1"),
    "run.workers": (lambda v: v >= 0, "must be >= 0 (0 = one per CPU)"),
    "run.cpus_per_worker": (lambda v: v > 0, "must be > 0"),
    "run.gpus_per_worker": (lambda v: v is None or v >= 0, "must be >= 0 or null (auto)"),
    "run.max_in_flight": (lambda v: v >= 1, "must be >= 1"),
    "run.max_task_retries": (lambda v: v >= 0, "must be >= 0"),
    "run.previews": (lambda v: v >= 0, "must be >= 0"),
    "run.compact_below": (lambda v: v >= 0, "must be >= 0 (0 = never)"),
}


def row_settings(cfg: "Config") -> dict[str, dict[str, Any]]:
    """The settings that change rows (fields not marked SAME_ROWS), by section, nested keys dotted."""
    out: dict[str, dict[str, Any]] = {}
    inactive = tuple(f"detector.{k}." for k in _DETECTOR_KINDS if k != cfg.detector.kind)
    for key, f, value in walk(cfg):
        if f.metadata.get("rows", True) and not key.startswith(inactive):
            section, rest = key.split(".", 1)
            out.setdefault(section, {})[rest] = value
    return out


def _validate(cfg: "Config") -> list[str]:
    problems = broken_rules(cfg, _RULES)
    if cfg.run.previews and not cfg.run.faces_in_report:
        problems.append(f"run.previews = {cfg.run.previews}: previews show faces, and run.faces_in_report is false")
    if cfg.model.min_age >= cfg.model.max_age:
        problems.append(f"model.min_age ({cfg.model.min_age}) must be below model.max_age ({cfg.model.max_age})")
    sc = cfg.detector.scrfd
    if any(x >= sc.main_size for x in sc.sizes):
        problems.append(f"detector.scrfd.sizes = {sc.sizes}: only the small close-up passes, each below main_size "
                        f"({sc.main_size}); the main pass is sized by main_size, smallest_face and max_size")
    if sc.max_size < sc.main_size:
        problems.append(f"detector.scrfd.max_size ({sc.max_size}) must be >= main_size ({sc.main_size})")
    if cfg.detector.scrfd.precision in ("bf16", "int8") and cfg.detector.scrfd.runtime == "onnxruntime":
        problems.append(f"detector.scrfd.precision = {cfg.detector.scrfd.precision} needs detector.scrfd.runtime = "
                        f"openvino (or auto)")
    return problems


# Settings that were replaced: the unknown-key error says by what.
_REPLACED = {
    ("ScrfdConfig", "full_res"): "the big-photo pass is now sized by detector.scrfd.smallest_face (0 = never) and max_size",
    ("ScrfdConfig", "full_res_above"): "the big-photo pass is now sized by detector.scrfd.smallest_face",
    ("ScrfdConfig", "full_res_max"): "it is now detector.scrfd.max_size",
}


def resolve_backbone_weights(value: str | None = None) -> str | None:
    """`imagenet` (Keras download) unless a local .h5 is configured; `none` = random init (tests)."""
    v = value or os.environ.get(ENV_BACKBONE_WEIGHTS) or "imagenet"
    from .offline import download_forbidden
    if v == "imagenet" and (why := download_forbidden("the ImageNet MobileNetV2 backbone", "~/.keras/models",
                                                      f"set {ENV_BACKBONE_WEIGHTS} to a local no-top .h5")):
        raise FileNotFoundError(why)
    return None if v == "none" else v
