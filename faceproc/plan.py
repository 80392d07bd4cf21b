"""RunPlan: what a run loads and what its rows depend on, worked out once in the driver before any output exists.

The plan holds the verified detector (DetectorSpec) and age/gender model (ModelSpec), the decode settings and
the output's fingerprint. Executors, the pipeline and the run state take the plan; nothing downstream reads
a model card, looks for a model file or resolves an environment variable again. Workers get the plan (with
the models' bytes aboard when they may run on other nodes), never a config to resolve anew.

How specs become loaded models is a ModelFactory's job; tests hand the executors a factory of stand-ins
(picklable, so Ray actors can take it too) instead of patching module attributes.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from .agegender.spec import ModelSpec
from .config import Config, DecodeConfig, RunConfig, row_settings
from .detectors.files import DetectorSpec
from .schema import SCHEMA_VERSION


class ModelFactory:
    """Settings -> verified specs (in the driver), and specs -> loaded models (in workers); the real models by
    default."""

    def resolve(self, cfg: Config) -> tuple[DetectorSpec, ModelSpec]:
        model = ModelSpec.resolve(cfg.model)  # first: no detector download for a run whose model is refused
        return DetectorSpec.resolve(cfg.detector), model

    def detector(self, spec: DetectorSpec):
        from .detectors.registry import make_detector

        return make_detector(spec)

    def predictor(self, spec: ModelSpec):
        from .agegender.runtime import AgeGenderPredictor

        return AgeGenderPredictor(spec)

    def threads_pay(self, spec: ModelSpec) -> bool:
        """Whether worker threads of one process beat one worker there (the in-process engine asks)."""
        from .agegender.runtime import uses_openvino

        return uses_openvino(spec)


# A factory named here ("module:Class") replaces the real models for whole processes that a test starts
# (the CLI in a child process, a run a test kills); in-process callers pass `models=` instead.
ENV_MODEL_FACTORY = "FACEPROC_MODEL_FACTORY"


def default_factory() -> ModelFactory:
    import os

    named = os.environ.get(ENV_MODEL_FACTORY)
    if not named:
        return ModelFactory()
    import importlib

    module, _, attr = named.partition(":")
    return getattr(importlib.import_module(module), attr)()


def result_fingerprint(cfg: Config, detector_label: str | None, model_label: str) -> dict[str, Any]:
    """What the rows depend on: every setting not marked SAME_ROWS (by section, from the config's own field
    metadata, so a new section or setting cannot be left out), which detector file and model, and the row
    contract's version. A rerun into an output with another fingerprint is refused (or, with --force, redone)."""
    return {**row_settings(cfg), "detector_file": detector_label, "model_label": model_label,
            "schema_version": SCHEMA_VERSION}


@dataclass(frozen=True)
class RunPlan:
    config: Config  # as the caller gave it (run settings; recorded in the manifest)
    decode: DecodeConfig
    detector: DetectorSpec
    model: ModelSpec
    models: ModelFactory = field(default_factory=ModelFactory, compare=False)

    @property
    def run(self) -> RunConfig:
        """The driver's settings (shards, workers, compaction, previews, report): none of them changes a row."""
        return self.config.run

    @property
    def fingerprint(self) -> dict[str, Any]:
        """The output's fingerprint, from the plan's own config and models (so no copy of it can go stale)."""
        return result_fingerprint(self.config, self.detector.label, self.model.label)

    @property
    def summary(self) -> dict[str, Any]:
        """What the manifest records of the resolved models."""
        f = self.detector.file
        return {"model": self.model.label, "detector": {"kind": self.detector.kind, "label": self.detector.label,
                                                        "file": f and f.path, "sha256": f and f.sha256}}

    @classmethod
    def resolve(cls, cfg: Config, models: ModelFactory | None = None) -> "RunPlan":
        """Find, fetch (at most once) and check both models; one clear error for a missing, corrupt or refused one."""
        models = models or default_factory()
        detector, model = models.resolve(cfg)
        return cls(cfg, cfg.decode, detector, model, models)

    def for_workers(self, cpus: float, portable: bool = False) -> "RunPlan":
        """The plan a worker gets: thread counts that default to its CPU share and, `portable`, the models'
        bytes aboard for workers on nodes that do not share the driver's filesystem."""
        threads = max(1, int(cpus))
        det, model = self.detector.with_threads(threads), self.model.with_threads(threads)
        if portable:
            det, model = det.with_bytes(), model.with_bytes()
        return replace(self, detector=det, model=model)

    def without_bytes(self) -> "RunPlan":
        """What a worker keeps once its models are loaded (the bytes would cost its memory for nothing)."""
        return replace(self, detector=self.detector.with_bytes(False), model=self.model.with_bytes(False))
