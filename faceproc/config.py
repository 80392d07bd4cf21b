"""Configuration: dataclass defaults, YAML overrides, environment overrides for model locations.

Resolution order for every model location: explicit value (CLI flag or YAML key) -> environment
variable -> the normal online default (InsightFace downloads its pack into ~/.insightface, Keras
downloads ImageNet weights, the trained age/gender weights ship inside the package).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

# Environment variables that point the code at offline model folders (tests set them to ../shared).
ENV_INSIGHTFACE_ROOT = "FACEPROC_INSIGHTFACE_ROOT"
ENV_DETECTOR_PACK = "FACEPROC_DETECTOR_PACK"
ENV_DETECTOR_FILE = "FACEPROC_DETECTOR_FILE"
ENV_BACKBONE_WEIGHTS = "FACEPROC_BACKBONE_WEIGHTS"
ENV_WEIGHTS_DIR = "FACEPROC_WEIGHTS_DIR"


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
class DetectorConfig:
    pack: str | None = None  # InsightFace pack; None -> $FACEPROC_DETECTOR_PACK -> buffalo_m (SCRFD-2.5GF)
    root: str | None = None  # pack root; None -> $FACEPROC_INSIGHTFACE_ROOT -> ~/.insightface (download)
    model_file: str | None = None  # explicit SCRFD .onnx, bypasses pack lookup
    # Whole-image passes merged by NMS: small sizes find faces that fill the frame, 640 normal photos.
    sizes: list[int] = field(default_factory=lambda: [160, 640])
    # One more pass at about the decoded resolution for big photos, so small faces are not lost when
    # the photo is shrunk to 640.
    full_res: str = "auto"  # auto (when the decoded long side > full_res_above) | always | never
    full_res_above: int = 1100
    threshold: float = 0.5
    nms_threshold: float = 0.4
    min_face: float = 8.0  # drop boxes smaller than this (original pixels, shorter side)
    max_faces: int = 0  # 0 = keep all
    threads: int = 0  # onnxruntime intra-op threads; 0 = onnxruntime default


@dataclass
class ModelConfig:
    # `frozen`, `unfrozen` (shipped weights) or a path to a .keras file with a model card beside it.
    variant: str = "unfrozen"
    weights_dir: str | None = None  # None -> $FACEPROC_WEIGHTS_DIR -> faceproc/weights
    batch_size: int = 64
    flip_tta: bool = True  # average predictions over the crop and its mirror image
    min_age: float = 0.0
    max_age: float = 100.0
    threads: int = 0  # TensorFlow intra-op threads; 0 = TF default
    # Random weights instead of trained ones: only for tests and benchmarks before weights exist.
    random_init: bool = False


@dataclass
class RunConfig:
    shard_size: int = 256  # files per shard (large directories are split into chunks of this size)
    workers: int = 0  # Ray worker actors; 0 = one per CPU of the cluster
    cpus_per_worker: float = 1.0
    gpus_per_worker: float | None = None  # None = auto: share the GPUs of the cluster when present
    max_in_flight: int = 2  # shards queued per worker (back-pressure)
    ray_address: str | None = None  # None = start/attach a local Ray; "auto" = existing cluster
    max_task_retries: int = 3
    previews: int = 0


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
        return _build(cls, data or {}, "")

    @classmethod
    def load(cls, path: str | os.PathLike | None = None, overrides: dict | None = None) -> "Config":
        data: dict[str, Any] = {}
        if path is not None:
            with open(path, encoding="utf-8") as fh:
                data = yaml.safe_load(fh) or {}
        cfg = cls.from_dict(data)
        for dotted, value in (overrides or {}).items():
            if value is not None:
                cfg.set(dotted, value)
        return cfg

    def set(self, dotted: str, value: Any) -> None:
        section, key = dotted.split(".", 1)
        obj = getattr(self, section)
        if not hasattr(obj, key):
            raise KeyError(f"unknown config key {dotted!r}")
        setattr(obj, key, value)


def _build(cls, data: dict[str, Any], where: str):
    if not isinstance(data, dict):
        raise ValueError(f"config section {where or '<root>'} must be a mapping, got {type(data).__name__}")
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(data) - set(known)
    if unknown:
        raise ValueError(f"unknown config key(s) in {where or '<root>'}: {sorted(unknown)}")
    kwargs = {}
    for name, value in data.items():
        sub = _SECTIONS.get(name) if cls is Config else None
        kwargs[name] = _build(sub, value or {}, name) if sub else value
    return cls(**kwargs)


_SECTIONS = {"decode": DecodeConfig, "detector": DetectorConfig, "model": ModelConfig, "run": RunConfig}


def resolve_insightface_root(cfg: DetectorConfig) -> str:
    return cfg.root or os.environ.get(ENV_INSIGHTFACE_ROOT) or "~/.insightface"


def resolve_detector_pack(cfg: DetectorConfig) -> str:
    return cfg.pack or os.environ.get(ENV_DETECTOR_PACK) or "buffalo_m"


def resolve_detector_file(cfg: DetectorConfig) -> str | None:
    return cfg.model_file or os.environ.get(ENV_DETECTOR_FILE) or None


def resolve_weights_dir(cfg: ModelConfig) -> Path:
    d = cfg.weights_dir or os.environ.get(ENV_WEIGHTS_DIR)
    return Path(d).expanduser() if d else Path(__file__).parent / "weights"


def resolve_backbone_weights(value: str | None = None) -> str | None:
    """`imagenet` (Keras download) unless a local .h5 is configured; `none` = random init (tests)."""
    v = value or os.environ.get(ENV_BACKBONE_WEIGHTS) or "imagenet"
    return None if v == "none" else v
