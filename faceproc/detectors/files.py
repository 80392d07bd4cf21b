"""Which detector file a run uses: found (or downloaded once, under a lock) and checksummed in the driver,
before any worker starts, and described by a DetectorSpec that workers load from, its bytes aboard when
they run on other nodes. Resolution order: explicit setting -> environment variable -> the online default.
"""

from __future__ import annotations

import copy
import logging
import os
from dataclasses import dataclass, replace

from ..config import DetectorConfig
from ..modelfile import ModelFile
from ..storage import file_sha256

log = logging.getLogger(__name__)

# Environment variables that point the code at offline model folders (tests set them to ../shared).
ENV_INSIGHTFACE_ROOT = "FACEPROC_INSIGHTFACE_ROOT"
ENV_DETECTOR_PACK = "FACEPROC_DETECTOR_PACK"
ENV_DETECTOR_FILE = "FACEPROC_DETECTOR_FILE"


def resolve_insightface_root(cfg: DetectorConfig) -> str:
    return cfg.scrfd.root or os.environ.get(ENV_INSIGHTFACE_ROOT) or "~/.insightface"


def resolve_detector_pack(cfg: DetectorConfig) -> str:
    return cfg.scrfd.pack or os.environ.get(ENV_DETECTOR_PACK) or "buffalo_m"


def resolve_detector_file(cfg: DetectorConfig) -> str | None:
    """The chosen kind's explicit model file (its model_file, else $FACEPROC_DETECTOR_FILE)."""
    return cfg.active.model_file or os.environ.get(ENV_DETECTOR_FILE) or None


@dataclass(frozen=True)
class DetectorSpec:
    """The detector a run uses: its kind and settings, and the verified model file."""

    settings: DetectorConfig
    file: ModelFile | None  # None only for stand-ins in tests
    label: str  # the file as the output's fingerprint names it, "det_2.5g.onnx:3292009" (name:bytes)

    @property
    def kind(self) -> str:
        return self.settings.kind

    @property
    def runtime(self) -> str:
        """The kind's runtime setting; `auto` is settled in the worker, which knows its own GPU."""
        return getattr(self.settings.active, "runtime", "opencv")

    @classmethod
    def resolve(cls, cfg: DetectorConfig) -> "DetectorSpec":
        path = ensure_detector_file(cfg)
        return cls(copy.deepcopy(cfg), ModelFile.at(path), f"{os.path.basename(path)}:{os.path.getsize(path)}")

    def with_threads(self, threads: int) -> "DetectorSpec":
        return replace(self, settings=replace(self.settings, threads=self.settings.threads or threads))

    def with_bytes(self, aboard: bool = True) -> "DetectorSpec":
        return replace(self, file=self.file and self.file.with_bytes(aboard))


class DetectorUnavailable(RuntimeError):
    """The SCRFD model file cannot be found or fetched; the message names the setting to use."""


_HOW = ("point detector.scrfd.root / $FACEPROC_INSIGHTFACE_ROOT at a folder holding models/<pack>/det_*.onnx, "
        "or detector.scrfd.model_file / $FACEPROC_DETECTOR_FILE at an SCRFD .onnx file")


def ensure_detector_file(cfg: DetectorConfig) -> str:
    """The SCRFD .onnx to load, checked (and downloaded at most once, under a lock) in the driver, before
    any worker starts: workers then never download, race or die one by one on a missing model."""
    import glob
    import os

    explicit = resolve_detector_file(cfg)
    if cfg.kind != "scrfd" and not explicit:
        raise DetectorUnavailable(f"detector kind {cfg.kind} needs its model file: set detector.{cfg.kind}.model_file or "
                                  f"$FACEPROC_DETECTOR_FILE")
    if explicit:
        path = os.path.abspath(os.path.expanduser(explicit))
        if not os.path.isfile(path):
            raise DetectorUnavailable(f"detector model file {path} does not exist: {_HOW}")
        return path
    root = os.path.abspath(os.path.expanduser(resolve_insightface_root(cfg)))
    pack = resolve_detector_pack(cfg)
    folder = os.path.join(root, "models", pack)

    def found():
        files = sorted(glob.glob(os.path.join(folder, "det_*.onnx")))
        return files[0] if files else None

    if path := found():
        return _verified(pack, path, downloaded=False)
    if os.path.isdir(folder) and os.listdir(folder):
        raise DetectorUnavailable(f"{folder} holds no det_*.onnx (an interrupted download?): remove the folder to "
                                  f"download it again, or {_HOW}")
    from ..offline import download_forbidden
    if why := download_forbidden(f"detector model {pack}/det_*.onnx", folder, _HOW):
        raise DetectorUnavailable(why)
    import fcntl

    os.makedirs(os.path.join(root, "models"), exist_ok=True)
    with open(os.path.join(root, "models", f".{pack}.download.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one download per machine, however many runs start at once
        if not found():
            try:
                from insightface.utils.storage import download

                log.info("downloading InsightFace pack %s into %s (once)", pack, root)
                download("models", pack, root=root)
            except Exception as e:
                import shutil

                shutil.rmtree(folder, ignore_errors=True)  # never leave a half pack that looks present
                raise DetectorUnavailable(f"InsightFace pack {pack!r} is not under {root}/models and could not be "
                                          f"downloaded ({type(e).__name__}: {e}). Offline? {_HOW}") from None
    if not (path := found()):
        raise DetectorUnavailable(f"the downloaded pack {pack!r} in {folder} holds no det_*.onnx: {_HOW}")
    return _verified(pack, path, downloaded=True)


# SHA-256 of InsightFace's own detector files, per pack (checked against the files in ../shared, which are
# byte-identical to the packs'). A pack not listed is used as found, with its checksum logged.
KNOWN_SHA256 = {
    ("buffalo_m", "det_2.5g.onnx"): "041f73f47371333d1d17a6fee6c8ab4e6aecabefe398ff32cca4e2d5eaee0af9",
    ("buffalo_s", "det_500m.onnx"): "5e4447f50245bbd7966bd6c0fa52938c61474a04ec7def48753668a9d8b4ea3a",
}


def _verified(pack: str, path: str, downloaded: bool) -> str:
    """A corrupt or tampered detector must stop the run before any worker loads it."""
    import os
    import shutil

    want = KNOWN_SHA256.get((pack, os.path.basename(path)))
    got = file_sha256(path)
    if want is None:
        log.info("detector %s sha256 %s (no reference checksum for pack %s)", path, got, pack)
        return path
    if got != want:
        folder = os.path.dirname(path)
        if downloaded:
            shutil.rmtree(folder, ignore_errors=True)  # never leave a bad pack that looks present
            raise DetectorUnavailable(f"the downloaded {pack!r} detector has sha256 {got}, expected {want}: the "
                                      f"download was corrupted or tampered with; nothing was kept, retry or {_HOW}")
        raise DetectorUnavailable(f"{path} has sha256 {got}, expected {want} for InsightFace's {pack!r}: the file is "
                                  f"corrupt or not the pack's; remove {folder} to download it again, or {_HOW}")
    return path
