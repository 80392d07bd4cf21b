"""ModelSpec: which age/gender model a run uses, worked out once in the driver, before any output exists.

It is the one reader of a model card. The card is the contract between training and inference: the crop
policy, the input size and the normalisation come from it, and its sha256 must be that of the weights
beside it (a card copied next to retrained weights would otherwise label their rows with the old version).
The label `variant@version` has one rule: the card's variant and version (+ a hash of its calibration maps,
when it has some), else the file's stem and sha256.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..config import ModelConfig
from ..crop import DEFAULT_POLICY, LEGACY_POLICY, CropPolicy, CropPolicyError, parse_policy
from ..modelfile import ModelFile
from .architecture import DEFAULT_VARIANT, INPUT_SIZE, NORMALISATION, NORMALISATIONS, REGISTRY, VARIANTS

log = logging.getLogger(__name__)

ENV_WEIGHTS_DIR = "FACEPROC_WEIGHTS_DIR"


class ModelCardMismatch(ValueError):
    """A model card that describes other weights than the file beside it."""


def resolve_weights_dir(cfg: ModelConfig) -> Path:
    d = cfg.weights_dir or os.environ.get(ENV_WEIGHTS_DIR)
    return Path(d).expanduser() if d else Path(__file__).resolve().parent.parent / "weights"


def card_path(model_path: str | os.PathLike) -> Path:
    return Path(model_path).with_suffix(".json")


def resolve_model_path(cfg: ModelConfig) -> Path:
    if cfg.variant in VARIANTS:
        path = resolve_weights_dir(cfg) / REGISTRY[cfg.variant].default_weights
        if not path.exists():
            raise FileNotFoundError(
                f"no trained `{cfg.variant}` weights at {path}. Train them (`faceproc train --variant {cfg.variant}`) "
                f"or point model.weights_dir / $FACEPROC_WEIGHTS_DIR at a folder holding {cfg.variant}.keras")
        return path.absolute()
    path = Path(cfg.variant).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"model file not found: {path} (use frozen, unfrozen or a .keras path)")
    return path.absolute()


def _check_keras_file(path: Path) -> None:
    """What can be checked without loading TensorFlow: a .keras archive with the model's config inside."""
    if path.is_dir():
        raise FileNotFoundError(f"--model {path} is a folder; give frozen, unfrozen or a .keras file")
    if path.suffix != ".keras" or not zipfile.is_zipfile(path):
        raise ValueError(f"{path} is not a Keras 3 .keras file (a zip archive with the model's config and weights)")
    with zipfile.ZipFile(path) as zf:
        if "config.json" not in zf.namelist():
            raise ValueError(f"{path} is not a Keras 3 .keras file (no config.json inside)")


def _read_json(path: Path) -> dict:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def read_contract(card: dict, model_path: Any = "model") -> tuple[CropPolicy, int, str]:
    """(crop policy, input size, normalisation) a card promises, checked against what this code can do. A card
    without a policy is a model from before cards named one (the legacy policy); without an input size, its
    variant's architecture."""
    if not card:
        log.warning("%s has no model card beside it: assuming crop policy %s", model_path, LEGACY_POLICY.name)
        return LEGACY_POLICY, LEGACY_POLICY.size, NORMALISATION
    policy = parse_policy(card["crop_policy"]) if card.get("crop_policy") else LEGACY_POLICY
    variant = REGISTRY.get(card.get("variant"))
    size = card.get("input_size") or [variant.input_size if variant else INPUT_SIZE] * 2 + [3]
    if list(size) != [policy.size, policy.size, 3]:
        raise CropPolicyError(f"{model_path}: card input_size {list(size)} does not match its crop policy {policy.name}")
    norm = card.get("normalisation") or NORMALISATION
    if norm not in NORMALISATIONS:
        raise CropPolicyError(f"{model_path}: card normalisation {norm!r} is not one this code applies "
                              f"({', '.join(map(repr, NORMALISATIONS))})")
    return policy, policy.size, norm


def policy_from_card(card: dict, model_path: Any = "model") -> CropPolicy:
    return read_contract(card, model_path)[0]


def openvino_copy(path: Path, sha256: str) -> tuple[ModelFile, ModelFile] | None:
    """The OpenVINO IR (.xml, .bin) beside a .keras file, if it was made from exactly this file."""
    xml, meta = path.with_suffix(".openvino.xml"), path.with_suffix(".openvino.json")
    if not (xml.exists() and xml.with_suffix(".bin").exists() and meta.exists()):
        return None
    try:
        if _read_json(meta).get("source_sha256") != sha256:
            log.warning("%s was made from another version of %s: ignored (faceproc export-openvino %s)", xml, path, path)
            return None
    except (OSError, ValueError):
        return None
    return ModelFile.at(xml), ModelFile.at(xml.with_suffix(".bin"))


@dataclass(frozen=True)
class ModelSpec:
    """Everything a worker needs to load and feed the age/gender model; nothing is looked up again there."""

    settings: ModelConfig  # batch size, mirror averaging, age range, threads, runtime
    name: str  # the rows' `model`: the card's variant, else the file's stem
    version: str  # the rows' `model_version`: the card's version, else sha256:<12 hex>
    policy: CropPolicy = DEFAULT_POLICY
    input_size: int = INPUT_SIZE
    normalisation: str = NORMALISATION
    card: dict = field(default_factory=dict, compare=False)
    keras: ModelFile | None = None  # None: random-init, or a model handed over in memory
    ir: tuple[ModelFile, ModelFile] | None = None  # its current OpenVINO copy (.xml, .bin), when there is one
    # The card's post-hoc maps (faceproc/calibration.py), applied after mirror averaging on every runtime.
    calibration: dict | None = field(default=None, compare=False)

    @property
    def label(self) -> str:
        return f"{self.name}@{self.version}"

    @classmethod
    def resolve(cls, cfg: ModelConfig) -> "ModelSpec":
        if cfg.random_init:
            variant = cfg.variant if cfg.variant in VARIANTS else DEFAULT_VARIANT
            return cls(cfg, variant, "random-init", input_size=REGISTRY[variant].input_size)
        path = resolve_model_path(cfg)
        _check_keras_file(path)
        keras = ModelFile.at(path)
        cpath = card_path(path)
        card = _read_json(cpath) if cpath.exists() else {}
        if card.get("sha256") and card["sha256"] != keras.sha256:
            raise ModelCardMismatch(
                f"{cpath} describes weights with sha256 {card['sha256'][:12]}, but {path.name} has {keras.sha256[:12]}: "
                f"the card belongs to other weights; write its card again (faceproc ship) or remove it")
        ir = openvino_copy(path, keras.sha256) if cfg.runtime != "keras" else None
        if cfg.runtime == "openvino" and ir is None:
            raise FileNotFoundError(f"model.runtime = openvino but {path} has no current OpenVINO copy beside it: "
                                    f"run `faceproc export-openvino {path}`")
        policy, size, norm = read_contract(card, path)
        version = card.get("version") or f"sha256:{keras.sha256[:12]}"
        cal = card.get("calibration") or None
        if cal:  # the maps change the rows, so they are part of the label the fingerprint holds
            version += "+cal" + hashlib.sha256(json.dumps(cal, sort_keys=True).encode()).hexdigest()[:8]
        return cls(cfg, card.get("variant") or path.stem, version, policy, size, norm, card, keras, ir, cal)

    @classmethod
    def in_memory(cls, cfg: ModelConfig, policy: CropPolicy, name: str = "model",
                  version: str = "in-memory") -> "ModelSpec":
        """A model handed over as a Keras object (training's final evaluation)."""
        return cls(cfg, name, version, policy, policy.size)

    def with_threads(self, threads: int) -> "ModelSpec":
        return replace(self, settings=replace(self.settings, threads=self.settings.threads or threads))

    def with_bytes(self, aboard: bool = True) -> "ModelSpec":
        """The spec with its files' bytes aboard (workers on other nodes load from them), or without them."""
        return replace(self, keras=self.keras and self.keras.with_bytes(aboard),
                       ir=self.ir and (self.ir[0].with_bytes(aboard), self.ir[1].with_bytes(aboard)))
