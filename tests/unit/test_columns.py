"""The columns an archivist asks for (issue 23.3): where a file lies under its input, when it was taken (EXIF,
never the mtime under that name), file mtime, camera, size as displayed, n_faces null for failures, rows in
path order, and Parquet files that describe their own fields (docs/schema.md lists the same)."""

import datetime as dt
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from PIL import Image

from faceproc.schema import DESCRIPTIONS
from faceproc.metadata import camera_fields, location_fields, parse_offset, parse_taken
from faceproc.schema import FACES, IMAGES

from tests.helpers import cfg_for_tests

REPO = Path(__file__).resolve().parents[2]


def _exif(taken=None, offset=None, subsec=None, make=None, model=None, orientation=None, modified=None, gps=False):
    exif = Image.Exif()
    for tag, v in ((0x010F, make), (0x0110, model), (0x0112, orientation), (0x0132, modified)):
        if v is not None:
            exif[tag] = v
    sub = exif.get_ifd(0x8769)
    for tag, v in ((0x9003, taken), (0x9011, offset), (0x9291, subsec)):
        if v is not None:
            sub[tag] = v
    if gps:  # a location in the file: it must never reach a row
        g = exif.get_ifd(0x8825)
        g[1], g[2], g[3], g[4] = "N", (48.0, 51.0, 29.0), "E", (2.0, 17.0, 40.0)
    return exif


def _photo(path, w=100, h=80, face=True, **exif):
    img = np.full((h, w, 3), 100, np.uint8)
    if face:
        img[:8, :8] = 255  # the stand-in detector finds a face (a block: JPEG keeps it white)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path, exif=_exif(**exif)) if exif else Image.fromarray(img).save(path)


def test_images_rows_carry_location_date_camera_and_displayed_size(tmp_path, fakes):  # noqa: ARG001
    from faceproc.engine import annotate

    a, b = tmp_path / "Pictures", tmp_path / "scans"
    # stored 100x80 with orientation 6: displayed 80x100
    _photo(a / "2019" / "summer" / "IMG_0001.jpg", taken="2019:07:14 15:03:22", offset="+02:00", subsec="25",
           make="Canon\x00", model=" EOS 5D ", orientation=6, gps=True)
    _photo(a / "2019" / "edited.jpg", modified="2021:01:01 10:00:00")  # only DateTime (last edit): no taken_at
    _photo(a / "2020" / "broken-date.jpg", taken="0000:00:00 00:00:00", offset="+2")  # a camera without a clock
    _photo(a / "top.png", face=False)
    (a / "2020" / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    _photo(b / "single.jpg")
    mtime = dt.datetime(2020, 5, 6, 7, 8, 9, tzinfo=dt.timezone.utc).timestamp()
    os.utime(a / "2019" / "edited.jpg", (mtime, mtime))
    out = tmp_path / "out"
    annotate([str(a), str(b / "single.jpg")], out, cfg_for_tests(), engine="local")
    images = pd.read_parquet(out / "images").set_index("rel_path")
    assert sorted(images.index) == ["2019/edited.jpg", "2019/summer/IMG_0001.jpg", "2020/broken-date.jpg",
                                    "2020/broken.jpg", "single.jpg", "top.png"]
    r = images.loc["2019/summer/IMG_0001.jpg"]
    assert r.input_root == str(a) and r.folder == "2019/summer"
    assert r.image_path == os.path.join(r.input_root, "2019/summer/IMG_0001.jpg")
    assert r.taken_at == pd.Timestamp("2019-07-14 15:03:22.250") and r.taken_at_offset == "+02:00"
    assert (r.camera_make, r.camera_model) == ("Canon", "EOS 5D")
    assert (r.width, r.height) == (80, 100)  # as displayed
    e = images.loc["2019/edited.jpg"]
    assert pd.isna(e.taken_at) and pd.isna(e.taken_at_offset)  # never the edit date nor the mtime
    assert e.file_mtime == pd.Timestamp("2020-05-06 07:08:09", tz="UTC") and e.folder == "2019"
    assert pd.isna(images.loc["2020/broken-date.jpg", "taken_at"])
    assert images.loc["top.png", "folder"] == "" and images.loc["single.jpg", "input_root"] == str(b)
    # n_faces: a count for every file that was read, null for one that failed
    assert images.loc["top.png", "n_faces"] == 0 and images.loc["top.png", "status"] == "no_faces"
    assert images.loc["2020/broken.jpg", "status"] != "ok" and pd.isna(images.loc["2020/broken.jpg", "n_faces"])
    assert images["n_faces"].dtype == "Int32"
    # no location of any kind is stored
    assert not [c for c in images.columns if re.search(r"gps|lat|lon|location", c, re.I)]
    assert set(camera_fields(Image.open(a / "2019" / "summer" / "IMG_0001.jpg"))) == {
        "taken_at", "taken_at_offset", "camera_make", "camera_model"}


def test_rows_are_in_path_order_within_each_file(tmp_path, fakes):  # noqa: ARG001
    from faceproc.engine import annotate

    src = tmp_path / "in"
    for name in ("b/2.jpg", "a/9.jpg", "c.jpg", "a/10.jpg", "B/1.jpg", "a/1.jpg"):
        _photo(src / name)
    out = tmp_path / "out"
    annotate([str(src)], out, cfg_for_tests(shard_size=4), engine="local")
    files = sorted((out / "images").glob("*.parquet"))
    assert len(files) >= 2
    for f in files:
        paths = pq.read_table(f).column("image_path").to_pylist()
        assert paths == sorted(paths)
    for f in sorted((out / "faces").glob("*.parquet")):
        t = pq.read_table(f).to_pandas()
        assert list(zip(t.image_path, t.face_index)) == sorted(zip(t.image_path, t.face_index))
    # the global order, as docs/schema.md shows it
    images = pd.read_parquet(out / "images").sort_values("image_path", ignore_index=True)
    assert images.image_path.is_monotonic_increasing and len(images) == 6


def test_parquet_files_describe_every_field_and_docs_list_them(tmp_path, fakes):  # noqa: ARG001
    from faceproc.engine import annotate

    for schema in (FACES, IMAGES):
        for f in schema:
            assert f.metadata and f.metadata[b"description"].decode() == DESCRIPTIONS[f.name], f.name
    _photo(tmp_path / "in" / "x.jpg")
    annotate([str(tmp_path / "in")], tmp_path / "out", cfg_for_tests(), engine="local")
    for table in ("faces", "images"):
        (f,) = (tmp_path / "out" / table).glob("*.parquet")
        written = pq.read_schema(f)
        assert all(written.field(n).metadata[b"description"] for n in written.names)
    doc = (REPO / "docs" / "schema.md").read_text()
    listed = set(re.findall(r"^\| `([a-z_0-9]+)` \|", doc, re.M))
    assert set(FACES.names) | set(IMAGES.names) <= listed


def test_docs_schema_examples_run(tmp_path, fakes, monkeypatch):  # noqa: ARG001
    """The pandas snippets of docs/schema.md (global order, year folders, withheld faces) run on a real output."""
    from faceproc.engine import annotate

    _photo(tmp_path / "in" / "2019" / "a.jpg", taken="2019:01:02 03:04:05")
    _photo(tmp_path / "in" / "2020" / "b.jpg")
    annotate([str(tmp_path / "in")], tmp_path / "out", cfg_for_tests(), engine="local")
    monkeypatch.chdir(tmp_path)
    blocks = re.findall(r"```python\n(.*?)```", (REPO / "docs" / "schema.md").read_text(), re.S)
    assert blocks
    for code in blocks:
        exec(compile(code, "docs/schema.md", "exec"), {})


@pytest.mark.parametrize("value,subsec,want", [
    ("2019:07:14 15:03:22", None, dt.datetime(2019, 7, 14, 15, 3, 22)),
    ("2019:07:14 15:03:22\x00", "5", dt.datetime(2019, 7, 14, 15, 3, 22, 500000)),
    (b"2019:07:14 15:03:22", "123456789", dt.datetime(2019, 7, 14, 15, 3, 22, 123456)),
    ("0000:00:00 00:00:00", None, None), ("    :  :     :  :  ", None, None), ("", None, None), (None, None, None),
    ("2019-07-14", None, None), (1234, None, None),
])
def test_taken_at_parsing(value, subsec, want):
    assert parse_taken(value, subsec) == want


def test_offset_parsing():
    assert parse_offset("+02:00") == "+02:00" and parse_offset("-09:30\x00") == "-09:30"
    assert parse_offset("+2") is None and parse_offset("+25:00") is None and parse_offset(None) is None


def test_location_fields():
    assert location_fields("/a/b/c/x.jpg", "/a/b") == {"input_root": "/a/b", "rel_path": "c/x.jpg", "folder": "c"}
    assert location_fields("/a/b/x.jpg", "/a/b/") == {"input_root": "/a/b", "rel_path": "x.jpg", "folder": ""}
    assert location_fields("/a/bc/x.jpg", "/a/b")["input_root"] == "/a/bc"  # a file given itself, not /a/b
    assert location_fields("/a/x.jpg", "/a/x.jpg") == {"input_root": "/a", "rel_path": "x.jpg", "folder": ""}
    assert location_fields("/x.jpg", "/") == {"input_root": "/", "rel_path": "x.jpg", "folder": ""}
    assert location_fields("s3://bk/arch/2019/x.jpg", "s3://bk/arch") == {
        "input_root": "s3://bk/arch", "rel_path": "2019/x.jpg", "folder": "2019"}
    odd = os.fsdecode(b"/a/caf\xe9/x.jpg")  # not UTF-8: shown as \xNN, as image_path is
    assert location_fields(odd, "/a")["folder"] == "caf\\xe9"
    assert location_fields("/a/x.jpg", "") == {"input_root": None, "rel_path": None, "folder": None}
