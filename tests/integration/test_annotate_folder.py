"""One `faceproc annotate` call over real photos, UTKFace mosaics and every kind of bad file."""

import os

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from faceproc.cli import main
from faceproc.synth import box_inside
from tests.conftest import requires_shared
from tests.integration.builders import build_folder

pytestmark = requires_shared


@pytest.fixture(scope="module")
def random_model(tmp_path_factory):
    """A real .keras file (untrained) so the file-loading path runs; trained weights are tested elsewhere."""
    from faceproc.agegender.architecture import build_model
    from faceproc.agegender.files import save_model

    d = tmp_path_factory.mktemp("model")
    save_model(build_model("unfrozen", backbone_weights=None), d / "untrained.keras", {"variant": "unfrozen"})
    return d / "untrained.keras"


@pytest.fixture(scope="module")
def run(tmp_path_factory, utk_files, random_model):
    root = tmp_path_factory.mktemp("mixed")
    spec = build_folder(root / "in", utk_files, np.random.default_rng(11))
    cfg = root / "cfg.yaml"
    cfg.write_text("decode:\n  max_pixels: 3000000\n")
    res = CliRunner().invoke(main, ["annotate", str(root / "in"), "-o", str(root / "out"), "--engine", "local",
                                    "--model", str(random_model), "--config", str(cfg), "--previews", "3",
                                    "--batch-size", "16"])
    yield root, spec, res
    os.chmod(root / "in" / "locked.jpg", 0o644)


def test_exit_code_and_message(run):
    root, spec, res = run
    assert res.exit_code == 0, res.output + repr(res.exception)
    n_bad = sum(s not in ("ok", "no_faces") for s in spec["expect"].values())
    assert f"{n_bad} file{'' if n_bad == 1 else 's'} failed" in res.output


def test_one_row_per_file_with_the_right_status(run):
    root, spec, _ = run
    images = pd.read_parquet(root / "out" / "images")
    rel = images["image_path"].map(lambda p: os.path.relpath(p, root / "in"))
    assert rel.is_unique
    got = dict(zip(rel, images["status"]))
    assert got == spec["expect"]
    bad = images[~images["status"].isin(["ok", "no_faces"])]
    assert bad["error"].notna().all() and bad["n_faces"].isna().all()  # failed: no face count, not 0 faces
    assert (images["rel_path"] == rel).all() and (images["input_root"] == str(root / "in")).all()


def test_faces_are_where_the_faces_are(run):
    root, spec, _ = run
    faces = pd.read_parquet(root / "out" / "faces")
    faces["rel"] = faces["image_path"].map(lambda p: os.path.relpath(p, root / "in"))
    assert (faces.groupby("rel").size()["t1.jpg"]) == 6
    assert (faces.groupby("rel").size()["astronaut.png"]) == 1
    for rel, boxes in spec["truth"].items():
        got = faces.loc[faces["rel"] == rel, ["x1", "y1", "x2", "y2"]].to_numpy()
        assert len(got) == len(boxes), rel
        for b in boxes:  # each pasted face has a detected box on it (display orientation for EXIF files)
            assert any(box_inside(g, b) for g in got), (rel, b, got)
    assert faces["face_px"].gt(0).all() and faces["sharpness"].gt(0).all()
    judged = faces[faces["withheld"].isna()]  # real faces of 40 px and more, sharp: all estimated
    assert len(judged) == len(faces) and judged["gender"].isin(["male", "female"]).all()
    assert judged["age"].between(0, 100).all() and judged["female_prob"].between(0, 1).all()
    assert (faces["model"] == "unfrozen").all() and faces["model_version"].str.startswith("unfrozen-").all()
    images = pd.read_parquet(root / "out" / "images").set_index("image_path")
    e6 = images.loc[str(root / "in" / "exif6.jpg")]
    assert (e6["width"], e6["height"]) == (480, 360)


def test_report_and_previews(run):
    import json

    root, spec, _ = run
    rep = json.loads((root / "out" / "report.json").read_text())
    assert rep["files"] == len(spec["expect"]) and rep["ignored_non_image_files"] == 1
    assert rep["status_counts"]["not_an_image"] == 2
    html = (root / "out" / "report.html").read_text()
    assert "truncated.jpg" in html and html.count('<figure id="plot-') == 3 and html.count("<svg ") == 3  # the plots
    previews = sorted((root / "out" / "previews").glob("*.jpg"))
    assert len(previews) == 3 and previews[0].stat().st_size > 10_000
    assert html.count('<img class="p" src="previews/') == 3  # shown in the report
    assert rep["gallery_faces"] >= min(rep["faces"], 8) and html.count('<figure class="t">') == rep["gallery_faces"]
    res = CliRunner().invoke(main, ["report", str(root / "out")])
    assert res.exit_code == 0 and f"{rep['files']} files" in res.output


def test_missing_input_and_unwritable_output_fail_early(tmp_path):
    res = CliRunner().invoke(main, ["annotate", str(tmp_path / "nope"), "-o", str(tmp_path / "o"), "--engine", "local"])
    assert res.exit_code != 0 and "input not found" in res.output
    (tmp_path / "f").write_text("x")
    (tmp_path / "in").mkdir()
    res = CliRunner().invoke(main, ["annotate", str(tmp_path / "in"), "-o", str(tmp_path / "f" / "o"), "--engine", "local"])
    assert res.exit_code != 0 and "not writable" in res.output
