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


def test_age_gender_model_that_always_raises_fails_the_photos_with_faces_with_the_reason(tmp_path, fakes):
    """A model that raises on every batch (and on each photo alone) marks the photos whose faces it had to judge
    `failed` (they have no ages to record); photos without faces and broken files keep their rows."""

    class Broken(FakePredictor):
        def predict(self, crops):
            if crops.any():  # not the workers' warm-up (zeros)
                raise ValueError("model exploded")
            return super().predict(crops)

    make_tree(tmp_path / "in")
    rep = annotate([str(tmp_path / "in")], tmp_path / "out", cfg_for_tests(shard_size=100, workers=1), engine="local",
                   models=FakeModels(Broken))  # one shard, so one batch
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
             models=FakeModels(Broken))
    assert statuses(tmp_path / "out") == got


def _poisoned_tree(root):
    """make_tree, plus poison.png: a photo with a face whose crop is bright (the stand-in model below chokes on it)."""
    from PIL import Image

    make_tree(root)
    img = np.full((80, 100, 3), 220, np.uint8)
    img[0, 0] = 255
    Image.fromarray(img).save(root / "d1" / "poison.png")


class Poisoned(FakePredictor):
    """Raises on any batch that holds a bright crop: one photo that breaks the model, whatever batch it is in."""

    def predict(self, crops):
        if len(crops) and (crops.reshape(len(crops), -1).mean(1) > 180).any():
            raise ValueError("poisoned")
        return super().predict(crops)


def test_photo_that_breaks_the_model_fails_alone_and_its_batch_keeps_its_rows(tmp_path, fakes):
    """The model runs on batches of crops from many photos: when a batch raises, each of its photos is tried
    alone, so only the photo whose own crops break the model is `failed`; its batch mates get their ages."""
    _poisoned_tree(tmp_path / "in")
    rep = annotate([str(tmp_path / "in")], tmp_path / "out", cfg_for_tests(shard_size=100, workers=1), engine="local",
                   models=FakeModels(Poisoned))  # one shard, so one batch with all five faces
    assert not rep["failed_shards"]
    got = statuses(tmp_path / "out")
    assert got["poison.png"] == ("failed", "age/gender: ValueError: poisoned")
    assert [got[n][0] for n in ("0.png", "2.png", "4.png", "6.png")] == ["ok"] * 4
    faces = pd.read_parquet(tmp_path / "out" / "faces")
    assert len(faces) == 4 and (faces["age"] == 33.0).all() and (faces["female_prob"] == np.float32(0.8)).all()
    assert not faces["image_path"].str.endswith("poison.png").any()


def test_passing_model_fault_costs_no_row(tmp_path, fakes, monkeypatch, caplog):
    """A batch that raises once (a passing fault) and then works: every photo of it is tried again alone and
    gets its ages; the log says so."""
    import threading

    class OnceBroken(FakePredictor):
        broken = [True]
        lock = threading.Lock()

        def predict(self, crops):
            with OnceBroken.lock:
                fail = crops.any() and (OnceBroken.broken.pop() if OnceBroken.broken else False)
            if fail:
                raise ValueError("model exploded")
            return super().predict(crops)

    make_tree(tmp_path / "in")
    with caplog.at_level("WARNING"):
        annotate([str(tmp_path / "in")], tmp_path / "out", cfg_for_tests(shard_size=100, workers=1), engine="local",
                 models=FakeModels(OnceBroken))
    got = statuses(tmp_path / "out")
    assert [got[n][0] for n in ("0.png", "2.png", "4.png", "6.png")] == ["ok"] * 4
    assert len(pd.read_parquet(tmp_path / "out" / "faces")) == 4
    assert "age/gender batch of 4 photos failed, trying them one by one" in caplog.text


def test_model_answering_for_the_wrong_number_of_faces_fails_the_photos_not_the_shard(tmp_path, fakes):
    """A model that returns fewer answers than crops must not shift ages onto other faces or crash the shard."""

    class Short(FakePredictor):
        def predict(self, crops):
            ages, probs = super().predict(crops)
            return (ages[:-1], probs[:-1]) if crops.any() else (ages, probs)

    make_tree(tmp_path / "in")
    rep = annotate([str(tmp_path / "in")], tmp_path / "out", cfg_for_tests(shard_size=100, workers=1), engine="local",
                   models=FakeModels(Short))
    assert not rep["failed_shards"]
    got = statuses(tmp_path / "out")
    for name in ("0.png", "2.png", "4.png", "6.png"):
        assert got[name] == ("failed", "age/gender: ValueError: 1 face crops in, 0 model answers out"), name


def test_model_failing_on_one_batch_leaves_the_other_batches(tmp_path, fakes, monkeypatch):
    import faceproc.pipeline as P

    monkeypatch.setattr(P, "FLUSH_CROPS", 1)  # one photo a batch
    _poisoned_tree(tmp_path / "in")
    annotate([str(tmp_path / "in")], tmp_path / "out", cfg_for_tests(shard_size=100), engine="local",
             models=FakeModels(Poisoned))
    got = statuses(tmp_path / "out")
    assert sorted(s for s, _ in got.values()) == ["failed", "no_faces", "no_faces", "no_faces", "not_an_image",
                                                  "ok", "ok", "ok", "ok"]
    assert got["poison.png"][0] == "failed"
    assert len(pd.read_parquet(tmp_path / "out" / "faces")) == 4


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


def test_each_face_gets_the_answer_for_its_own_crop(tmp_path, fakes):
    """Crops of many photos go through the model in one batch; the answers are dealt back photo by photo, face
    by face. A stand-in whose age is the crop's mean grey level shows that no face gets another one's answer."""
    from PIL import Image

    class Grey(FakePredictor):
        def predict(self, crops):
            return crops.reshape(len(crops), -1).mean(1).astype(np.float32), np.full(len(crops), 0.3, np.float32)

    (tmp_path / "in").mkdir()
    levels = {f"{i}.png": 40 + 20 * i for i in range(6)}
    for name, level in levels.items():
        img = np.full((80, 100, 3), level, np.uint8)
        img[0, 0] = 255
        Image.fromarray(img).save(tmp_path / "in" / name)
    annotate([str(tmp_path / "in")], tmp_path / "out", cfg_for_tests(shard_size=100, workers=1), engine="local",
             models=FakeModels(Grey))  # one shard, one batch of six crops
    faces = pd.read_parquet(tmp_path / "out" / "faces")
    got = dict(zip(faces["image_path"].str.rsplit("/", n=1).str[-1], faces["age"]))
    assert sorted(got) == sorted(levels)
    for name, level in levels.items():
        assert abs(got[name] - level) < 2, (name, got[name])
