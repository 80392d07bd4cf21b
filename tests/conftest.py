"""Shared fixtures. Tests find the offline models and data in ../shared (next to the repo) unless the
FACEPROC_* environment variables already point elsewhere."""

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FACEPROC_SHARED", REPO.parent / "shared"))
INSIGHTFACE_ROOT = SHARED / "models" / "insightface"
BACKBONE = SHARED / "models" / "mobilenet_v2" / "mobilenet_v2_1.0_imagenet_no_top.weights.h5"
UTKFACE = SHARED / "data" / "utkface"

os.environ.setdefault("FACEPROC_INSIGHTFACE_ROOT", str(INSIGHTFACE_ROOT))
os.environ.setdefault("FACEPROC_BACKBONE_WEIGHTS", str(BACKBONE))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "integration" in item.nodeid.split(os.sep) or "/integration/" in item.nodeid:
            item.add_marker(pytest.mark.integration)
        if "/ray/" in item.nodeid:
            item.add_marker(pytest.mark.ray)


def shared_available() -> bool:
    return (INSIGHTFACE_ROOT / "models" / "buffalo_m" / "det_2.5g.onnx").exists() and UTKFACE.is_dir()


if os.environ.get("FACEPROC_REQUIRE_SHARED") == "1" and not shared_available():
    raise RuntimeError(f"FACEPROC_REQUIRE_SHARED=1 but the offline models/data are not under {SHARED}")

requires_shared = pytest.mark.skipif(not shared_available(), reason="../shared models/data not present")


@pytest.fixture(scope="session")
def utk_files():
    if not UTKFACE.is_dir():
        pytest.skip("UTKFace not available")
    return sorted(str(p) for p in UTKFACE.glob("*.jpg"))


@pytest.fixture
def rng():
    return np.random.default_rng(0)
