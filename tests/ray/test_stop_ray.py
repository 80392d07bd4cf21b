"""Stop means stop (issue 19, item 8), Ray engine: Ctrl-C (SIGINT to the whole process group, as a terminal
sends it) or SIGTERM (to the driver, as `kill` or a scheduler sends it) ends `faceproc annotate` on its
embedded Ray within seconds with exit 130: the actors are killed before the driver cleans up, so the shard
in flight is dropped or committed whole; finished shards stay committed and intact; no Ray process of the
run is left; the same command again finishes the rest with the rows of an uninterrupted run.

Through the real command line, real models (../shared detector, the shipped age/gender model).
"""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest
from PIL import Image

from faceproc.synth import mosaic
from tests.conftest import REPO, requires_shared

pytestmark = requires_shared

TOKEN_VARS = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")


def cli(args, home):
    env = {k: v for k, v in os.environ.items() if k not in TOKEN_VARS + ("RAY_ADDRESS",)}
    env.update(PYTHONPATH=str(REPO), HOME=str(home))
    return subprocess.Popen([sys.executable, "-m", "faceproc.cli", *map(str, args)], cwd=REPO, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)


def rows(out):
    faces = pd.read_parquet(Path(out) / "faces").drop(columns=["run_id"])
    images = pd.read_parquet(Path(out) / "images").drop(columns=["run_id", "elapsed_ms", "shard"])
    return (faces.sort_values(["image_path", "face_index"]).reset_index(drop=True),
            images.sort_values("image_path").reset_index(drop=True))


def same(a, b):
    assert list(a.columns) == list(b.columns) and len(a) == len(b)
    for c in a.columns:
        if a[c].dtype.kind == "f":
            np.testing.assert_allclose(a[c], b[c], rtol=1e-3, atol=1e-2)
        elif c == "landmarks":
            np.testing.assert_allclose(np.stack(a[c]), np.stack(b[c]), atol=1e-2)
        else:
            assert a[c].tolist() == b[c].tolist(), c


def committed(out) -> dict[str, str]:
    return {m.stem: hashlib.sha256(b"".join((Path(out) / t / f"{m.stem}.parquet").read_bytes()
                                            for t in ("faces", "images"))).hexdigest()
            for m in (Path(out) / "_shards").glob("*.json")}


def raylets() -> set[int]:
    return {p.pid for p in psutil.process_iter(["name"]) if p.info["name"] == "raylet"}


@pytest.fixture(scope="module")
def archive(tmp_path_factory, utk_files):
    root = tmp_path_factory.mktemp("stop-ray")
    rng = np.random.default_rng(5)
    for i in range(48):
        d = root / "in" / f"d{i % 3}"
        d.mkdir(parents=True, exist_ok=True)
        picks = [utk_files[j] for j in rng.choice(len(utk_files), int(rng.integers(0, 4)), replace=False)]
        img, _ = mosaic(picks, (640, 480), 150, rng)
        Image.fromarray(img).save(d / f"{i:02d}.jpg", quality=90)
    home = root / "home"
    home.mkdir()
    p = cli(["annotate", root / "in", "-o", root / "ref", "--shard-size", "4", "--engine", "ray"], home)
    _, err = p.communicate(timeout=600)
    assert p.returncode == 0, err[-3000:]
    return root / "in", root / "ref", home


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_ray_engine_stops_within_seconds_and_a_rerun_finishes(archive, tmp_path, how):
    inp, ref, home = archive
    out = tmp_path / "out"
    before = raylets()
    p = cli(["annotate", inp, "-o", out, "--shard-size", "4", "--engine", "ray"], home)
    deadline = time.time() + 400
    while len(list((out / "_shards").glob("*.json"))) < 2:
        assert p.poll() is None, f"ended before 2 shards: {p.stderr.read()[-3000:]}"
        assert time.time() < deadline, "no 2 shards committed in time"
        time.sleep(0.05)
    t = time.time()
    if how == "ctrl-c":
        os.killpg(p.pid, signal.SIGINT)  # the terminal's Ctrl-C reaches every process of the group
    else:
        p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=120)
    took = time.time() - t
    assert p.returncode == 130, err[-3000:]
    assert took < 10, f"stopping took {took:.1f} s"
    assert "run the same command again" in err and "Traceback" not in err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["state"] == "interrupted"
    kept = committed(out)
    assert 2 <= len(kept) < len(manifest["shards"])
    assert {s for s, v in manifest["shards"].items() if v["state"] == "done"} == set(kept)
    for table in ("faces", "images"):
        assert {f.stem for f in (out / table).glob("*.parquet")} <= set(kept)
    assert not (out / "_staging").exists() and not (out / ".faceproc.lock").exists()
    deadline = time.time() + 15
    while not raylets() <= before and time.time() < deadline:
        time.sleep(0.5)
    assert raylets() <= before, "the run's Ray processes outlived it"
    time.sleep(3)  # had an actor survived, it would commit its shard meanwhile
    assert committed(out) == kept

    p = cli(["annotate", inp, "-o", out, "--shard-size", "4", "--engine", "ray"], home)
    _, err = p.communicate(timeout=600)
    assert p.returncode == 0, err[-3000:]
    assert json.loads((out / "manifest.json").read_text())["state"] == "complete"
    after = committed(out)
    assert all(after[s] == h for s, h in kept.items())
    ref_faces, ref_images = rows(ref)
    faces, images = rows(out)
    same(images, ref_images)
    same(faces, ref_faces)
