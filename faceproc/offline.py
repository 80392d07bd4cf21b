"""No network calls but the first model download, and offline mode to forbid that one too.

`faceproc annotate` reads and writes local files (or the S3 store it is given) and talks to the Ray cluster
it starts or is pointed at; the one call to the Internet is InsightFace's detector pack (`buffalo_m`, from
InsightFace's GitHub releases) when it is not found under detector.scrfd.root / $FACEPROC_INSIGHTFACE_ROOT
(and, for `faceproc train`, Keras's ImageNet MobileNetV2 backbone). With FACEPROC_OFFLINE=1 or
`run.offline: true` a missing model is one clear error naming the file, where it was looked for and how
to point at a local copy, and nothing is downloaded (docs/privacy.md).

Libraries that would call home on their own are kept quiet here: OpenVINO sends a Google Analytics event
on every `import openvino` (its openvino_telemetry package, unless the user opted out in
~/intel/openvino_telemetry); faceproc's processes import OpenVINO without it (`no_library_telemetry`,
run from faceproc/__init__.py, so Ray workers do it too). Ray's: faceproc/cluster.py.
"""

from __future__ import annotations

import os
import sys

ENV_OFFLINE = "FACEPROC_OFFLINE"

_config = {"offline": False}  # run.offline of the run in progress (engine.annotate sets it)


def set_offline(flag: bool) -> None:
    """The run's config key run.offline (FACEPROC_OFFLINE=1 turns offline mode on whatever this says)."""
    _config["offline"] = bool(flag)


def _env_on() -> bool:
    return os.environ.get(ENV_OFFLINE, "").strip().lower() in ("1", "true", "yes", "on")


def offline() -> bool:
    return _env_on() or _config["offline"]


def download_forbidden(what: str, where: str, how: str) -> str | None:
    """The one-line refusal to download `what` (not found at `where`) when offline mode is on, else None."""
    if not offline():
        return None
    source = ENV_OFFLINE if _env_on() else "run.offline"
    return f"{what} not found at {where} and offline mode ({source}) forbids downloading it; {how}"


def no_library_telemetry() -> None:
    """OpenVINO then imports its telemetry stub (it falls back to it when openvino_telemetry cannot be
    imported), so `import openvino` sends nothing. Only before OpenVINO is first imported in a process."""
    if "openvino_telemetry" not in sys.modules and "openvino" not in sys.modules:
        sys.modules["openvino_telemetry"] = None  # `import openvino_telemetry` raises ImportError
