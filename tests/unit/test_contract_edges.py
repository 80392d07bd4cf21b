"""Small pieces the guarantees rest on (survivors of the first mutation run, docs/mutation.md): the pandas
types of the row contract, reading a local file, planning shards with its defaults."""

import json

import pyarrow as pa
import pytest

from faceproc.discover import plan_shards
from faceproc.schema import _with_pandas_types
from faceproc.storage import read_bytes


def test_pandas_types_of_the_row_contract():
    schema = pa.schema([pa.field("n", pa.int32()), pa.field("c", pa.dictionary(pa.int8(), pa.string()))])
    typed = _with_pandas_types(schema, {"n": "Int32"})
    meta = json.loads(typed.metadata[b"pandas"])
    assert meta["index_columns"] == [] and [c["name"] for c in meta["columns"]] == ["n", "c"]
    df = pa.Table.from_pylist([{"n": None, "c": "a"}, {"n": 3, "c": "b"}], schema=typed).to_pandas()
    assert str(df["n"].dtype) == "Int32" and df["n"].isna().tolist() == [True, False]  # not float64 with NaN
    assert str(df["c"].dtype) == "category"


def test_read_bytes_of_a_local_file(tmp_path):
    (tmp_path / "a.bin").write_bytes(b"\x00\xffbytes")
    assert read_bytes(str(tmp_path / "a.bin")) == b"\x00\xffbytes"
    with pytest.raises(FileNotFoundError):
        read_bytes(str(tmp_path / "missing.bin"))


def test_plan_shards_defaults_done_and_exclude(tmp_path):
    for i in range(257):
        (tmp_path / "in").mkdir(exist_ok=True)
        (tmp_path / "in" / f"{i:03d}.jpg").write_bytes(b"x")
    (tmp_path / "in" / "out").mkdir()
    (tmp_path / "in" / "out" / "p.jpg").write_bytes(b"x")
    plan = plan_shards([str(tmp_path / "in")], exclude=[str(tmp_path / "in" / "out")])
    assert plan.n_files == 257 and len(plan.shards) == 2  # the default size: 256 files a shard at most
    done = {f.path for f in plan.files[:100]}
    plan = plan_shards([str(tmp_path / "in")], 100, done=done, workers=2)
    assert plan.n_files == 258 and sum(len(s.files) for s in plan.shards) == 158
    assert all(f.path not in done for s in plan.shards for f in s.files)


def test_write_text_atomic_replaces_whole_and_leaves_no_temp(tmp_path, monkeypatch):
    import os

    from faceproc.storage import write_text_atomic

    p = tmp_path / "d" / "card.json"
    write_text_atomic("one", p)
    write_text_atomic("two \u00fc", p)
    assert p.read_text(encoding="utf-8") == "two \u00fc" and os.listdir(p.parent) == ["card.json"]

    def full(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(OSError):
        write_text_atomic("three", p)
    assert p.read_text(encoding="utf-8") == "two \u00fc" and os.listdir(p.parent) == ["card.json"]


def test_read_table_reads_every_shard_and_skips_hidden_files(tmp_path):
    from faceproc.schema import FACES, IMAGES
    from faceproc.storage import Store, read_table, write_atomic

    empty = read_table(tmp_path, "faces")
    assert empty.num_rows == 0 and empty.schema.equals(FACES)
    for n in "ab":
        row = {"image_path": f"/{n}.jpg", "status": "ok", "n_faces": 0}
        write_atomic(pa.Table.from_pylist([row], schema=IMAGES), tmp_path / "images" / f"{n}.parquet")
    (tmp_path / "images" / ".c.parquet").write_bytes(b"half a file")  # a temp or hidden file: never read
    (tmp_path / "images" / "notes.txt").write_bytes(b"not a table")
    t = read_table(tmp_path, "images")
    assert t.column("image_path").to_pylist() == ["/a.jpg", "/b.jpg"] and t.schema.equals(IMAGES)
    assert read_table(Store(tmp_path), "images").num_rows == 2


def test_to_table_fallback_names_the_error_and_survives_a_path_that_is_no_string():
    from faceproc.schema import IMAGES, to_table

    rows = [{"image_path": "/a.jpg", "status": "ok", "n_faces": "three"},
            {"image_path": 123, "status": "ok", "n_faces": 1}]
    got = to_table(rows, IMAGES).to_pylist()
    assert [r["status"] for r in got] == ["failed", "failed"]
    assert got[0]["error"].startswith("row: Arrow") and "three" in got[0]["error"]
    assert got[1]["image_path"] == "123" and got[1]["image_path_bytes"] is None


def test_policy_template_is_the_arcface_template_at_scale_one():
    """The crop policy's anchor: at scale 1 and 112 px its keypoint template is ArcFace's own, and scale and
    `up` act around the crop's centre."""
    import numpy as np

    from faceproc.crop import _ARCFACE_112, CropPolicy

    np.testing.assert_allclose(CropPolicy(1.0, 112).template(), _ARCFACE_112)
    centre = np.array([0.5, 0.5]) * 128
    t1, t2 = CropPolicy(1.0, 128).template(), CropPolicy(2.0, 128).template()
    np.testing.assert_allclose(t2 - centre, 2 * (t1 - centre))
    np.testing.assert_allclose(CropPolicy(1.0, 128, up=0.1).template(), t1 - [0, 12.8])
