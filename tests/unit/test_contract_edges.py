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
