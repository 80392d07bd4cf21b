import csv
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from faceproc.data.ffhq_aging import age_midpoint, read_ffhq_aging
from faceproc.data.records import FaceRecord
from faceproc.data.split import age_band, read_manifest, stratified_split, write_manifest
from faceproc.data.utkface import parse_name, read_utkface


@pytest.mark.parametrize("name,expected", [
    ("25_1_3_20170104231305129.jpg.chip.jpg", (25.0, 1, False)),
    ("1_0_0_20161219140623097.jpg.chip.jpg", (1.0, 0, False)),
    ("39_1_20170116174525125.jpg.chip.jpg", (39.0, 1, True)),          # missing race field
    ("24_0_1_20170116220224657 .jpg.chip.jpg", (24.0, 0, True)),       # space before the extension
    ("55_0_0_20170116232725357jpg.chip.jpg", (55.0, 0, True)),         # missing dot
    ("28_1_2_201701161846515488.jpg.chip.jpg", (28.0, 1, True)),       # over-long timestamp
    ("61_3_0_20170109142408075.jpg.chip.jpg", None),                   # gender not 0/1
    ("abc_0_0_20170109142408075.jpg.chip.jpg", None),
    ("130_0_0_20170109142408075.jpg.chip.jpg", None),                  # impossible age
    ("25.jpg", None),
])
def test_parse_name(name, expected):
    assert parse_name(name) == expected


def test_read_utkface_counts(tmp_path):
    names = ["25_1_3_20170104231305129.jpg.chip.jpg", "39_1_20170116174525125.jpg.chip.jpg", "x_y.jpg", "notes.txt"]
    for n in names:
        (tmp_path / n).write_bytes(b"")
    recs, st = read_utkface(tmp_path)
    assert [r.age for r in recs] == [25.0, 39.0]
    assert (st.files, st.parsed, st.repaired, st.skipped) == (3, 2, 1, 1)
    assert st.skipped_examples == ["x_y.jpg"]


def test_ffhq_aging_fixture(tmp_path):
    rows = [
        ("0", "20-29", "0.95", "female", "0.99"),
        ("1", "0-2", "0.80", "male", "0.90"),
        ("2", "70-120", "0.99", "male", "0.97"),
        ("3", "30-39", "0.30", "female", "0.99"),  # low age confidence
        ("4", "50-69", "0.90", "unknown", "0.5"),  # no usable gender
        ("5", "40-49", "0.90", "male", "0.99"),  # image missing
    ]
    with open(tmp_path / "ffhq_aging_labels.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["image_number", "age_group", "age_group_confidence", "gender", "gender_confidence",
                    "head_pitch", "head_roll", "head_yaw", "left_eye_occluded", "right_eye_occluded", "glasses"])
        for r in rows:
            w.writerow(list(r) + ["0", "0", "0", "0", "0", "None"])
    img_dir = tmp_path / "images" / "00000"
    img_dir.mkdir(parents=True)
    for i in range(5):
        Image.fromarray(np.full((32, 32, 3), 100, np.uint8)).save(img_dir / f"{i:05d}.png")
    recs, st = read_ffhq_aging(tmp_path / "ffhq_aging_labels.csv", tmp_path / "images", min_age_conf=0.5)
    assert [(r.age, r.gender) for r in recs] == [(24.5, 1), (1.0, 0), (75.0, 0)]
    assert st.skipped == 3 and st.parsed == 3
    assert all(r.source == "ffhq_aging" and r.path.endswith(".png") for r in recs)
    assert recs[0].key == "ffhq_aging/00000.png"
    assert age_midpoint("20-29") == 24.5


def test_split_is_deterministic_and_stratified(tmp_path):
    rng = np.random.default_rng(0)
    recs = [FaceRecord(f"/d/{i}.jpg", float(rng.integers(0, 90)), int(rng.integers(0, 2)), "utkface") for i in range(3000)]
    a = stratified_split(recs, 0.2, seed=7)
    b = stratified_split(list(reversed(recs)), 0.2, seed=7)
    assert a == b
    assert stratified_split(recs, 0.2, seed=8) != a
    strata = Counter((age_band(r.age), r.gender) for r in recs)
    val = Counter((age_band(r.age), r.gender) for r in recs if a[r.key] == "val")
    for k, n in strata.items():
        assert abs(val[k] - 0.2 * n) <= 1, k
    write_manifest(tmp_path / "m.json", a, {"seed": 7})
    back, meta = read_manifest(tmp_path / "m.json")
    assert back == a and meta["n_val"] == sum(v == "val" for v in a.values())


def test_age_bands():
    assert [age_band(a) for a in (0, 9.9, 10, 69, 70, 110)] == ["0-9", "0-9", "10-19", "60-69", "70+", "70+"]


def test_crop_cache_key_follows_only_what_changes_crops(tmp_path):
    """Issue 20: moving the model folder or another thread count must not throw away a 25-minute crop cache;
    a detector setting that changes boxes, another detector file or other labels must."""
    import json
    from dataclasses import replace

    from faceproc.config import DecodeConfig, DetectorConfig, ScrfdConfig
    from faceproc.data.cache import _legacy_fingerprint, build_cache, cache_fingerprint
    from faceproc.detectors.files import DetectorSpec
    from faceproc.modelfile import ModelFile

    recs = [FaceRecord(path=f"/x/{i}.jpg", age=20.0 + i, gender=i % 2, source="utkface") for i in range(3)]
    spec = DetectorSpec(DetectorConfig(), ModelFile("/models/det.onnx", "a" * 64), "det.onnx:1")
    key = cache_fingerprint(recs, spec, DecodeConfig())
    moved = DetectorConfig(threads=4, scrfd=ScrfdConfig(root="/elsewhere", model_file="/elsewhere/det.onnx"))
    assert cache_fingerprint(recs, replace(spec, settings=moved, file=ModelFile("/elsewhere/det.onnx", "a" * 64)),
                             DecodeConfig()) == key
    assert cache_fingerprint(recs, replace(spec, settings=DetectorConfig(threshold=0.6)), DecodeConfig()) != key
    assert cache_fingerprint(recs, replace(spec, file=ModelFile("/models/det.onnx", "b" * 64)), DecodeConfig()) != key
    assert cache_fingerprint(recs, spec, DecodeConfig(max_side=1024)) != key
    assert cache_fingerprint(recs[:2], spec, DecodeConfig()) != key
    # a cache built under the key before issue 20 is reused (not rebuilt: no detector is loaded) and re-keyed
    (tmp_path / "det.onnx").write_bytes(b"a detector")
    cfg = DetectorConfig(scrfd=ScrfdConfig(model_file=str(tmp_path / "det.onnx")))
    (tmp_path / "c.parquet").write_bytes(b"")
    (tmp_path / "c.json").write_text(json.dumps({"fingerprint": _legacy_fingerprint(recs, cfg, DecodeConfig())}))
    key = cache_fingerprint(recs, DetectorSpec.resolve(cfg), DecodeConfig())
    assert build_cache(recs, tmp_path / "c.parquet", cfg)["fingerprint"] == key
    assert json.loads((tmp_path / "c.json").read_text())["fingerprint"] == key
