"""The photo evaluation: seeded photos with known faces, EXIF-correct truth, one-to-one matching."""

import json
from dataclasses import dataclass

import cv2
import numpy as np
import pandas as pd

from faceproc.decode import decode_file
from faceproc.photo_eval import match, score_crops, score_photos
from faceproc.photo_set import build_photos


@dataclass
class Rec:
    key: str
    path: str
    age: float
    gender: int


def _faces(tmp_path, n=30):
    out = []
    rng = np.random.default_rng(1)
    for i in range(n):
        colour = rng.integers(0, 256, 3)
        img = np.zeros((200, 200, 3), np.uint8)
        img[:] = colour
        p = tmp_path / "src" / f"{i}_0_0_x.jpg.chip.jpg"
        p.parent.mkdir(exist_ok=True)
        cv2.imwrite(str(p), img)
        out.append(Rec(f"utk/{p.name}", str(p), float(10 + i), i % 2))
    return out


def test_photos_hold_each_face_once_where_the_truth_says(tmp_path):
    faces = _faces(tmp_path)
    truth = build_photos(faces, tmp_path / "pe", n_photos=12, seed=3, max_faces=4, megapixels=(0.3, 1.5))
    again = build_photos(faces, tmp_path / "pe2", n_photos=12, seed=3, max_faces=4, megapixels=(0.3, 1.5))
    norm = lambda t: json.loads(json.dumps(t["photos"]))  # noqa: E731
    assert norm(truth) == json.loads((tmp_path / "pe2" / "truth.json").read_text())["photos"] == norm(again)
    keys = [t["key"] for tf in truth["photos"].values() for t in tf]
    assert len(keys) == len(set(keys)) > 0  # no face twice
    specs = truth["specs"]
    assert {s["format"] for s in specs} >= {"jpg"} and any(s["orientation"] != 1 for s in specs)
    by_key = {f.key: f for f in faces}
    for name, tf in truth["photos"].items():
        dec = decode_file(str(tmp_path / "pe" / "photos" / name))  # display orientation, as annotate sees it
        spec = next(s for s in specs if s["file"] == name)
        assert (dec.width, dec.height) == (spec["width"], spec["height"])
        for t in tf:
            x1, y1, x2, y2 = (int(v * dec.scale) for v in t["tile"])
            s = (x2 - x1) // 4
            patch = dec.rgb[y1 + s : y2 - s, x1 + s : x2 - s].reshape(-1, 3).mean(0)
            want = cv2.imread(by_key[t["key"]].path)[0, 0, ::-1].astype(float)
            if spec["grey"]:
                want = np.full(3, want @ [0.299, 0.587, 0.114])
            assert np.abs(patch - want).max() < 12, (name, t["key"])
            assert (x2 - x1) / dec.scale >= 2 * 48 - 2  # faces of at least ~48 px
    assert len(list((tmp_path / "pe" / "crops").iterdir())) == len(keys)


def test_match_is_one_to_one_and_counts_false_positives():
    tiles = [(0, 0, 100, 100), (200, 0, 300, 100)]
    dets = np.array([[25, 25, 75, 75], [30, 30, 70, 70], [225, 25, 275, 75], [500, 500, 550, 550]], float)
    assigned, fp = match(dets, np.array([0.9, 0.8, 0.95, 0.99]), tiles)
    assert assigned == [0, -1, 1, -1] and fp == 2


def test_scores_from_an_annotate_output(tmp_path):
    truth = {"photos": {"a.jpg": [{"key": "utk/k1", "age": 30.0, "gender": 1, "tile": [0, 0, 200, 200]},
                                  {"key": "utk/k2", "age": 50.0, "gender": 0, "tile": [300, 0, 500, 200]}],
                        "b.png": [{"key": "utk/k3", "age": 5.0, "gender": 0, "tile": [0, 0, 120, 120]}]}}
    out = tmp_path / "out"
    (out / "faces").mkdir(parents=True)
    pd.DataFrame({"image_path": ["/x/a.jpg", "/x/a.jpg", "/x/a.jpg"], "x1": [50.0, 350, 600], "y1": [50.0, 50, 0],
                  "x2": [150.0, 450, 700], "y2": [150.0, 150, 100], "det_score": [0.9, 0.9, 0.6],
                  "age": [34.0, 48.0, 20.0], "female_prob": [0.8, 0.7, 0.1]}).to_parquet(out / "faces" / "s.parquet")
    r = score_photos(out, truth)
    assert r["faces"] == 3 and r["matched"] == 2 and r["false_positives"] == 1
    assert abs(r["recall"] - 2 / 3) < 1e-9 and r["age_mae"] == 3.0 and r["gender_acc"] == 0.5
    crops = tmp_path / "crops"
    (crops / "faces").mkdir(parents=True)
    pd.DataFrame({"image_path": ["/c/utk_k1.png", "/c/utk_k3.png", "/c/utk_k3.png"], "x1": [50.0, 0, 60],
                  "y1": [50.0, 0, 60], "x2": [150.0, 30, 140], "y2": [150.0, 30, 140], "det_score": [0.9, 0.9, 0.8],
                  "age": [31.0, 90.0, 7.0], "female_prob": [0.6, 0.9, 0.2]}).to_parquet(crops / "faces" / "s.parquet")
    c = score_crops(crops, truth)
    assert c["faces"] == 3 and c["found"] == 2 and c["age_mae"] == 1.5 and c["gender_acc"] == 1.0


def test_photo_faces_come_from_the_report_half_only(tmp_path):
    from faceproc.data.split import validation_half
    from faceproc.photo_set import validation_faces

    d = tmp_path / "utk"
    d.mkdir()
    for i in range(200):
        (d / f"{20 + i % 50}_{i % 2}_{i % 5}_2017{i:05d}.jpg.chip.jpg").write_bytes(b"x")
    report = validation_faces(str(d))
    both = validation_faces(str(d), half=None)
    assert report and len(report) < len(both)
    assert {validation_half(r.key) for r in report} == {"report"}
    assert {r.key for r in report} < {r.key for r in both}


def test_withheld_faces_are_counted_not_scored():
    from faceproc.photo_eval import _scored

    rows = [("utkface/30_0_2_x.jpg", 30, 0, 34.0, 0.1, 80), ("utkface/40_1_0_y.jpg", 40, 1, float("nan"), float("nan"), 20),
            ("utkface/50_1_1_z.jpg", 50, 1, 44.0, 0.9, 120)]
    res = _scored(rows)[0]
    assert res["withheld"] == 1 and res["n"] == 2 and res["age_mae"] == 5.0 and res["gender_acc"] == 1.0
    assert res["groups"]["by_ethnicity"]["Asian"]["n"] == 1 and "White" not in res["groups"]["by_ethnicity"]
