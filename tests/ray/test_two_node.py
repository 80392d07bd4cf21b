"""Two nodes that share no model folder (issue 22.2): the documented `ray job submit` with a custom model.

The cluster is the one issue 22 was found on: a head with 0 CPUs (it only schedules, and runs the job's
driver) and a worker node that cannot see the driver's model folder, as Kubernetes pods without a shared
volume. The worker node's `ray start` runs in a private mount namespace with an empty tmpfs over that
folder (tests/ray/own_cluster.py), so it and every worker process it starts see the folder empty. The
folder holds a custom age/gender model (a .keras with its card, version `custom-7`, and its OpenVINO copy),
the SCRFD .onnx and the run's config; the photos are on a path both nodes read (a shared volume).

The job goes in exactly as docs/cluster-nodes.md says (`--working-dir . --runtime-env
jobs/runtime-env.yaml`), from a checkout that holds virtualenvs, an output folder and caches, with Ray's own
defaults (.gitignore, a few folder names) switched off: the runtime env's excludes alone keep them out.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from faceproc.synth import mosaic
from tests.conftest import INSIGHTFACE_ROOT, REPO, requires_shared
from tests.ray.own_cluster import OwnCluster, can_hide_folders

pytestmark = [requires_shared, pytest.mark.ray, pytest.mark.slow,
              pytest.mark.skipif(not can_hide_folders(), reason="needs root and unshare(1) to hide a folder from a node")]

WEIGHTS = REPO / "faceproc" / "weights"


@pytest.fixture(scope="module")
def driver_models(tmp_path_factory):
    """The driver's model folder: custom.keras (+ card, + OpenVINO copy), the detector, the config."""
    d = tmp_path_factory.mktemp("driver-models")
    for suffix in (".keras", ".openvino.xml", ".openvino.bin", ".openvino.json"):
        shutil.copyfile(WEIGHTS / f"unfrozen{suffix}", d / f"custom{suffix}")
    card = json.loads((WEIGHTS / "unfrozen.json").read_text())
    card.update(version="custom-7", file="custom.keras")  # the same weights (sha256 unchanged), our own label
    card.pop("calibration", None)  # no maps: the rows' model_version is the card's version as it stands
    (d / "custom.json").write_text(json.dumps(card))
    shutil.copyfile(INSIGHTFACE_ROOT / "models" / "buffalo_m" / "det_2.5g.onnx", d / "det.onnx")
    (d / "annotate.yaml").write_text(yaml.safe_dump({"detector": {"scrfd": {"model_file": str(d / "det.onnx")}}}))
    return d


@pytest.fixture(scope="module")
def photos(tmp_path_factory, utk_files):
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(22)
    for i in range(6):
        picks = [utk_files[j] for j in rng.choice(len(utk_files), 1 + i % 3, replace=False)]
        img, _ = mosaic(picks, (640, 480), 150, rng)
        Image.fromarray(img).save(root / f"p{i}.jpg", quality=90)
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    return root


def checkout(dest: Path) -> Path:
    """This repository's files (tracked and new, as git lists them) plus what a developer's checkout also
    holds: a virtualenv, an output folder, caches."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, capture_output=True,
                           check=True).stdout.decode().split("\0")
    for f in filter(None, files):
        if (REPO / f).is_file():
            (dest / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / f, dest / f)
    for junk in (".venv/lib/python3.11/site-packages/torch/big.so", "venv/bin/python", "out/run1/faces/x.parquet",
                 ".pytest_cache/v/cache/lastfailed", ".mypy_cache/3.11/x.json", "sample/group.jpg"):
        (dest / junk).parent.mkdir(parents=True, exist_ok=True)
        (dest / junk).write_bytes(b"\0" * 4096)
    (dest / ".gitignore").unlink()  # Ray skips what .gitignore lists: without it, the excludes alone are tested
    return dest


def rows(out):
    faces = pd.read_parquet(Path(out) / "faces").sort_values(["image_path", "face_index"]).reset_index(drop=True)
    images = pd.read_parquet(Path(out) / "images").sort_values("image_path").reset_index(drop=True)
    return faces, images


def test_worker_node_without_the_model_folder_runs_a_custom_model(driver_models, photos, tmp_path):
    from faceproc.config import Config
    from faceproc.engine import annotate

    # The reference: the same photos, model and config in this process (it sees the folder).
    cfg = Config.load(str(driver_models / "annotate.yaml"), {"model.variant": str(driver_models / "custom.keras")})
    annotate([str(photos)], tmp_path / "local", cfg, engine="local", progress=False)

    # No FACEPROC_* variable on the nodes: a worker has nothing to find models with but the plan's bytes.
    c = OwnCluster({"FACEPROC_INSIGHTFACE_ROOT": "/nonexistent", "FACEPROC_WEIGHTS_DIR": "/nonexistent",
                    "FACEPROC_BACKBONE_WEIGHTS": "/nonexistent", "PYTHONPATH": ""})
    try:
        c.head(num_cpus=0)
        raylet = c.add_node(num_cpus=2, hide=[driver_models])
        nodes = c.node_ids(2)
        worker_node = next(n for n, r in nodes.items() if r.get("CPU"))
        # The premise: the worker node sees the folder empty (through its raylet's own view of the filesystem).
        assert (driver_models / "custom.keras").exists()
        assert not Path(f"/proc/{raylet}/root{driver_models}/custom.keras").exists()
        assert Path(f"/proc/{raylet}/root{photos}/p0.jpg").exists()

        repo = checkout(tmp_path / "checkout")
        out = tmp_path / "cluster-out"
        # docs/cluster-nodes.md's command. Ray 2.60 leaves out .git, .venv, venv and __pycache__ by itself, and what
        # .gitignore lists: both off (and .gitignore gone from the checkout), so the excludes alone are tested.
        cmd = ["ray", "job", "submit", "--address", c.dashboard, "--working-dir", ".", "--runtime-env",
               "jobs/runtime-env.yaml", "--", sys.executable, "jobs/annotate.py", "--input", str(photos),
               "--output", str(out), "--model", str(driver_models / "custom.keras"),
               "--config", str(driver_models / "annotate.yaml")]
        cmd[0] = str(Path(sys.executable).with_name("ray"))
        r = subprocess.run(cmd, cwd=repo, env={**c.env, "RAY_RUNTIME_ENV_IGNORE_GITIGNORE": "1",
                                                "RAY_OVERRIDE_RUNTIME_ENV_DEFAULT_EXCLUDES": ""},
                           capture_output=True, text=True, timeout=110)
        log = r.stdout + r.stderr
        assert r.returncode == 0, log[-5000:]

        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["state"] == "complete"
        assert {s["node"] for s in manifest["shards"].values()} == {worker_node}  # the head has no CPU for shards
        faces, images = rows(out)
        ref_faces, ref_images = rows(tmp_path / "local")
        assert images["image_path"].tolist() == ref_images["image_path"].tolist()
        assert images["status"].tolist() == ref_images["status"].tolist()
        assert (images.set_index("image_path")["status"][str(photos / "broken.jpg")]) == "not_an_image"
        assert len(faces) == len(ref_faces) >= 6
        assert set(faces["model_version"]) == {"custom-7"}  # the custom model ran, on the worker node
        np.testing.assert_allclose(faces["age"], ref_faces["age"], atol=0.05)
        np.testing.assert_allclose(faces["female_prob"], ref_faces["female_prob"], atol=1e-3)

        # What was uploaded: the code, without the virtualenvs, the output folder and the caches.
        pkgs = [p for p in c.root.rglob("_ray_pkg_*") if p.is_dir()]
        assert pkgs and all((p / "faceproc" / "engine.py").exists() for p in pkgs)
        for p in pkgs:
            for junk in (".venv", "venv", "out", ".pytest_cache", ".mypy_cache", "sample"):
                assert not (p / junk).exists(), f"{junk} was uploaded with the working dir"
    finally:
        c.stop()
