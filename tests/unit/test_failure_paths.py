"""A failure inside one photo's work costs that photo's row, never its shard (issue 21): a raising detector,
a raising age/gender model, a row that cannot be converted. Exit code 0: these are rows with a status
(`failed`, with the reason), not unfinished shards (README "Exit status")."""

import numpy as np
import pandas as pd
import pyarrow as pa
from click.testing import CliRunner

from faceproc.cli import main
from faceproc.engine import annotate
from faceproc.schema import FACES, IMAGES, to_table

from tests.helpers import FakeDetector, FakeModels, FakePredictor, cfg_for_tests, make_tree


def statuses(out) -> dict:
    images = pd.read_parquet(out / "images")
    return dict(zip(images["image_path"].str.rsplit("/", n=1).str[-1], zip(images["status"], images["error"])))


def test_raising_detector_fails_only_its_photo(tmp_path, fakes, monkeypatch):
    class Flaky(FakeDetector):
        def detect(self, rgb, scale=1.0):
            if rgb.shape[1] == 101:  # the one photo made 101 px wide
                raise RuntimeError("detector exploded")
            return super().detect(rgb, scale)

    monkeypatch.setattr(FakeModels, "detector", lambda self, spec: Flaky())  # the CLI's stand-ins (fakes)
    make_tree(tmp_path / "in")
    from PIL import Image

    img = np.full((80, 101, 3), 100, np.uint8)
    img[0, 0] = 255
    Image.fromarray(img).save(tmp_path / "in" / "d0" / "odd.png")
    r = CliRunner().invoke(main, ["annotate", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--engine", "local",
                                  "--random-init", "--shard-size", "100"])
    assert r.exit_code == 0, r.output
    got = statuses(tmp_path / "out")
    assert got["odd.png"] == ("failed", "detection: RuntimeError: detector exploded")
    assert [s for s, _ in got.values()].count("ok") == 4 and got["1.png"][0] == "no_faces"  # the shard's others
    faces = pd.read_parquet(tmp_path / "out" / "faces")
    assert len(faces) == 4 and not faces["image_path"].str.endswith("odd.png").any()
    assert "2 files failed" in r.output


def test_raising_age_gender_model_fails_the_photos_of_its_batch_with_the_reason(tmp_path, fakes, monkeypatch):
    """The model runs on batches of crops from many photos: a batch that raises marks the photos whose faces
    were in it `failed` (they have no ages to record); photos without faces, broken files and the photos of
    the next batch keep their rows."""

    class OnceBroken(FakePredictor):
        broken = [True]

        def predict(self, crops):
            if crops.any() and (OnceBroken.broken.pop() if OnceBroken.broken else False):  # not the warm-up
                raise ValueError("model exploded")
            return super().predict(crops)

    make_tree(tmp_path / "in")
    rep = annotate([str(tmp_path / "in")], tmp_path / "out", cfg_for_tests(shard_size=100, workers=1), engine="local",
                   models=FakeModels(OnceBroken))  # one shard, so one batch
    assert not rep["failed_shards"]
    got = statuses(tmp_path / "out")
    assert len(got) == 8
    with_faces = ["0.png", "2.png", "4.png", "6.png"]
    for name in with_faces:
        assert got[name] == ("failed", "age/gender: ValueError: model exploded"), name
    assert [got[n][0] for n in ("1.png", "3.png", "5.png", "broken.jpg")] == ["no_faces"] * 3 + ["not_an_image"]
    assert len(pd.read_parquet(tmp_path / "out" / "faces")) == 0  # no face row without its age and gender
    images = pd.read_parquet(tmp_path / "out" / "images")  # no face count where the file was not processed
    assert (images.loc[images["status"] == "no_faces", "n_faces"] == 0).all()
    assert images.loc[images["status"] != "no_faces", "n_faces"].isna().all()
    # a rerun keeps the finished shard as it is (a failed row is a result, not unfinished work)
    annotate([str(tmp_path / "in")], tmp_path / "out", cfg_for_tests(shard_size=100, workers=1), engine="local",
             models=FakeModels(OnceBroken))
    assert statuses(tmp_path / "out") == got


def test_model_failing_on_one_batch_leaves_the_other_batches(tmp_path, fakes, monkeypatch):
    import faceproc.pipeline as P

    monkeypatch.setattr(P, "FLUSH_CROPS", 1)  # one photo a batch

    import threading

    class SecondBatchBroken(FakePredictor):
        n = [0]
        lock = threading.Lock()  # the in-process engine's worker threads share the count

        def predict(self, crops):
            with SecondBatchBroken.lock:
                SecondBatchBroken.n[0] += bool(crops.any())  # the workers' warm-up calls (zeros) do not count
                second = SecondBatchBroken.n[0] == 2 and crops.any()
            if second:
                raise ValueError("model exploded")
            return super().predict(crops)

    make_tree(tmp_path / "in")
    annotate([str(tmp_path / "in")], tmp_path / "out", cfg_for_tests(shard_size=100), engine="local",
             models=FakeModels(SecondBatchBroken))
    got = statuses(tmp_path / "out")
    assert sorted(s for s, _ in got.values()) == ["failed", "no_faces", "no_faces", "no_faces", "not_an_image",
                                                  "ok", "ok", "ok"]
    assert len(pd.read_parquet(tmp_path / "out" / "faces")) == 3


def test_row_that_cannot_be_converted_costs_only_itself(tmp_path, fakes, monkeypatch):
    """An images row whose value does not fit its column becomes a `failed` row saying why; the shard's other
    rows are written as they are."""
    import faceproc.decode as D

    real = D.decode_file

    def huge_width(path, cfg, digest=None):
        dec = real(path, cfg, digest)
        if path.endswith("2.png"):
            dec.width = 2**40  # does not fit int32
        return dec

    monkeypatch.setattr(D, "decode_file", huge_width)
    make_tree(tmp_path / "in")
    rep = annotate([str(tmp_path / "in")], tmp_path / "out", cfg_for_tests(shard_size=100), engine="local")
    assert not rep["failed_shards"]
    got = statuses(tmp_path / "out")
    assert len(got) == 8 and got["2.png"][0] == "failed" and got["2.png"][1].startswith("row: ")
    assert [got[n][0] for n in ("0.png", "1.png", "4.png", "6.png")] == ["ok", "no_faces", "ok", "ok"]


def test_to_table_keeps_good_rows_and_names_the_bad_ones():
    good = {"image_path": "/a.jpg", "status": "ok", "n_faces": 1, "shard": "s", "run_id": "r"}
    bad = {"image_path": "/b.jpg", "status": "ok", "n_faces": "three", "shard": "s", "run_id": "r"}
    t = to_table([good, bad], IMAGES).to_pandas()
    assert t["image_path"].tolist() == ["/a.jpg", "/b.jpg"] and t["status"].tolist() == ["ok", "failed"]
    assert t["error"].iloc[1].startswith("row: ") and t["shard"].iloc[1] == "s" and t["run_id"].iloc[1] == "r"
    odd = {"image_path": "/\udce9.jpg", "status": "ok", "n_faces": "x"}  # a non-UTF-8 name keeps its bytes
    row = to_table([odd], IMAGES).to_pylist()[0]
    assert row["status"] == "failed" and row["image_path_bytes"] == b"/\xe9.jpg"
    faces = [{"image_path": "/a.jpg", "face_index": 0, "landmarks": [0.0] * 10},
             {"image_path": "/a.jpg", "face_index": 1, "landmarks": [0.0] * 3}]  # a faces row has no status: dropped
    assert to_table(faces, FACES).column("face_index").to_pylist() == [0]
    assert to_table([good], IMAGES).num_rows == 1 and isinstance(to_table([], FACES), pa.Table)


def test_raising_decoder_costs_its_own_row(tmp_path, fakes, monkeypatch):
    import faceproc.decode as D

    real = D.decode_file

    def flaky(path, cfg, digest=None):
        if path.endswith("4.png"):
            raise MemoryError("decoder exploded")
        return real(path, cfg, digest)

    monkeypatch.setattr(D, "decode_file", flaky)
    make_tree(tmp_path / "in")
    annotate([str(tmp_path / "in")], tmp_path / "out", cfg_for_tests(shard_size=100), engine="local")
    got = statuses(tmp_path / "out")
    assert got["4.png"] == ("corrupt", "MemoryError: decoder exploded") and got["6.png"][0] == "ok"
