"""schema.py: the row contract, with no import of ours (storage imports it, not the other way round)."""

import ast
import os
from pathlib import Path

import faceproc.schema as schema
from faceproc.schema import FACES, FAILED, IMAGES, path_fields, source_path, to_table


def test_schema_imports_nothing_of_faceproc():
    tree = ast.parse(Path(schema.__file__).read_text())
    ours = [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and (n.level or (n.module or "").startswith("faceproc"))]
    assert not ours


def test_a_row_that_cannot_be_written_costs_only_itself():
    rows = [{"image_path": "a.jpg", "status": "ok", "n_faces": 1},
            {"image_path": "b.jpg", "status": "ok", "n_faces": "many", "shard": "s"}]
    t = to_table(rows, IMAGES)
    got = {r["image_path"]: r for r in t.to_pylist()}
    assert got["a.jpg"]["status"] == "ok" and got["b.jpg"]["status"] == FAILED and "row:" in got["b.jpg"]["error"]
    assert to_table([{"image_path": "a.jpg", "face_index": "x"}], FACES).num_rows == 0  # faces: no status to carry it


def test_non_utf8_paths_round_trip():
    raw = os.fsdecode(b"/photos/caf\xe9.jpg")
    fields = path_fields(raw)
    assert fields["image_path"] == "/photos/caf\\xe9.jpg" and fields["image_path_bytes"] == b"/photos/caf\xe9.jpg"
    assert source_path(**fields) == raw and path_fields("/a/b.jpg") == {"image_path": "/a/b.jpg", "image_path_bytes": None}


def test_fields_carry_their_description_into_the_files():
    """Called here, not only at import (mutmut's mutants are chosen after the import): each described field gets
    its DESCRIPTIONS entry as "description" metadata; other fields are left as they are."""
    import pyarrow as pa

    got = schema._described(pa.schema([pa.field("age", pa.float32()), pa.field("not_described", pa.int8())]))
    assert got.field("age").metadata == {b"description": schema.DESCRIPTIONS["age"].encode()}
    assert got.field("not_described").metadata is None
    assert FACES.field("age").metadata[b"description"] == schema.DESCRIPTIONS["age"].encode()
