"""Training away from the raw images: a packed cache alone feeds training, a time budget caps the
epochs, a trained model seeds a further cycle, and batches do not depend on the loader's threads."""

import csv
import json

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import keras  # noqa: E402,F401  (a hard dependency: imported, never skipped)

from faceproc.data.split import validation_half  # noqa: E402

from faceproc.data.cache import CACHE_SCHEMA, cache_records, load_cache  # noqa: E402
from faceproc.data.recut import pack_cache  # noqa: E402
from faceproc.data.split import stratified_split, write_manifest  # noqa: E402
from faceproc.train import CropSequence, TrainConfig, augmented_copy, fit, prepare_data  # noqa: E402

from tests.helpers import synthetic  # noqa: E402


def write_cache(path, n=40, seed=0):
    """A crop cache as build_cache writes it (JPEG q95), one no_face row, its meta and a split manifest."""
    d = synthetic(n, np.random.default_rng(seed))
    rows = {k: [] for k in CACHE_SCHEMA.names}
    for i in range(n + 1):
        ok = i < n
        jpeg = cv2.imencode(".jpg", d["crops"][i][..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes() if ok else None
        for k, v in zip(CACHE_SCHEMA.names, (f"utkface/{i}.jpg", f"/data/{i}.jpg", "utkface", float(d["age"][i % n]) * 10,
                                              int(d["gender"][i % n]), 1.0, 1.0, "ok" if ok else "no_face", 0.9, int(ok), jpeg,
                                              None, None, None, None)):
            rows[k].append(v)
    pq.write_table(pa.table(rows, schema=CACHE_SCHEMA), path)
    path.with_suffix(".json").write_text(json.dumps({"fingerprint": "x", "counts": {"ok": n, "no_face": 1}}))
    split = stratified_split(cache_records(path), 0.25, 42)
    write_manifest(path.with_name(path.stem + ".split-42-0.25.json"), split, {"seed": 42})
    return split


def test_pack_cache_keeps_labels_split_and_pixels(tmp_path):
    split = write_cache(tmp_path / "c.parquet")
    info = pack_cache(tmp_path / "c.parquet", tmp_path / "p" / "packed.parquet", quality=90)
    assert info["rows"] == 40  # the no_face row is not training data
    assert (tmp_path / "p" / "packed.split-42-0.25.json").read_text() == (tmp_path / "c.split-42-0.25.json").read_text()
    meta = json.loads((tmp_path / "p" / "packed.json").read_text())
    assert meta["encoding"] == "webp q90" and meta["packed_from"] == "c.parquet" and meta["fingerprint"] == "x"
    a, b = load_cache(tmp_path / "c.parquet"), load_cache(tmp_path / "p" / "packed.parquet")
    assert list(a["key"]) == list(b["key"]) and np.array_equal(a["age"], b["age"]) and np.array_equal(a["gender"], b["gender"])
    assert np.mean([cv2.PSNR(x, y) for x, y in zip(a["crops"], b["crops"])]) > 30
    assert {r.key for r in cache_records(tmp_path / "p" / "packed.parquet")} <= set(split)


def test_prepare_data_from_a_cache_alone(tmp_path):
    split = write_cache(tmp_path / "c.parquet")
    pack_cache(tmp_path / "c.parquet", tmp_path / "packed.parquet")
    cfg = TrainConfig(variant="unfrozen", datasets=[], cache=str(tmp_path / "packed.parquet"), val_fraction=0.25)
    data = prepare_data(cfg, tmp_path / "run")
    # the validation people in two halves: selection (val) and report, apart, together the split's val
    assert set(data["val"]["key"]) | set(data["report"]["key"]) == {k for k, v in split.items() if v == "val"}
    assert {validation_half(k) for k in data["val"]["key"]} == {"select"}
    assert {validation_half(k) for k in data["report"]["key"]} == {"report"}
    assert len(data["train"]["key"]) + len(data["val"]["key"]) + len(data["report"]["key"]) == 40
    with pytest.raises(ValueError, match="no training data"):
        prepare_data(TrainConfig(datasets=[], cache=str(tmp_path / "missing.parquet")), tmp_path / "run")


def test_batches_depend_on_seed_epoch_and_index_only():
    d = synthetic(20, np.random.default_rng(0))
    aug = {"flip": True, "shift": 0.05, "rotate": 5, "color": 0.1}
    targets = {"age": d["age"][:, None], "gender": d["gender"][:, None]}
    s1 = CropSequence(d["crops"], targets, 8, aug, seed=3, workers=1)
    s2 = CropSequence(d["crops"], targets, 8, aug, seed=3, workers=3)
    for i in (2, 0, 1):  # any order, any number of threads: the same batch
        assert np.array_equal(s1[i][0], s2[i][0])
    first = s1[0][0]
    s1.on_epoch_end()
    assert not np.array_equal(first, s1[0][0])
    cfg = TrainConfig(augment=aug)
    assert np.array_equal(augmented_copy(d["crops"], cfg, 0, chunk=7), augmented_copy(d["crops"], cfg, 0, chunk=7))
    assert not np.array_equal(augmented_copy(d["crops"], cfg, 0), augmented_copy(d["crops"], cfg, 1))


def test_time_budget_caps_epochs_and_init_from_continues(tmp_path):
    rng = np.random.default_rng(0)
    data = {"train": synthetic(16, rng), "val": synthetic(8, rng)}
    cfg = TrainConfig(variant="unfrozen", backbone_weights="none", epochs=6, batch_size=8, learning_rate=1e-2,
                      patience=10, augment={}, time_budget_s=1e-3, lr_schedule="cosine")
    first = fit(cfg, data, tmp_path / "a", command="test")
    with open(tmp_path / "a" / "log.csv") as fh:
        assert len(list(csv.DictReader(fh))) == 2  # planned from the 2nd epoch: nothing more fits
    assert first["train_config"]["epochs"] == 2
    cfg2 = TrainConfig(variant="unfrozen", backbone_weights="none", epochs=1, batch_size=8, learning_rate=1e-3,
                       augment={}, init_from=str(tmp_path / "a" / "model.keras"))
    second = fit(cfg2, data, tmp_path / "b", command="test")
    assert second["earlier_stage"]["version"] == first["version"]
    assert second["earlier_stage"]["command"] == "test"
    assert not (tmp_path / "b" / "warm_start_log.csv").exists()
