"""Faces and places in the outputs (issue 25, item 4).

- `--no-faces-in-report` leaves every face out of report.html (no gallery thumbnail, no preview) and the
  run's choice holds when `faceproc report` rebuilds it; previews cannot be asked for with it.
- No location reaches any output: decoding reads one EXIF tag (orientation); a photo carrying GPS EXIF
  leaves no trace of it in the Parquet tables, the report, the previews or the log.
- Output files get the permissions of the user's umask (022, 077, and 002, which a writer with a fixed
  0644 or 0600 mode would miss).

In-process with the stand-in detector and model (tests.helpers) and the real command line (click).
"""

import base64
import io
import json
import os
import re
import stat

import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from PIL import Image

from faceproc.cli import main
from faceproc.engine import annotate
from tests.helpers import cfg_for_tests, make_tree

THUMB = re.compile(r'src="data:image/jpeg;base64,([A-Za-z0-9+/=]+)"')


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_no_faces_in_report_leaves_out_gallery_and_previews_and_the_rebuild_keeps_it(tmp_path, fakes):
    make_tree(tmp_path / "in", 12)
    out = tmp_path / "out"
    res = run("annotate", tmp_path / "in", "-o", out, "--engine", "local", "--random-init", "--no-faces-in-report")
    assert res.exit_code == 0, res.output
    html = (out / "report.html").read_text()
    assert not THUMB.search(html) and "previews/" not in html and "no-faces-in-report" in html
    assert json.loads((out / "report.json").read_text())["faces_in_report"] is False
    assert not (out / "previews").exists()
    res = run("report", out)  # a rebuild keeps the run's choice
    assert res.exit_code == 0 and not THUMB.search((out / "report.html").read_text())
    res = run("report", out, "--faces-in-report")  # ... unless told otherwise: then faces are there
    assert res.exit_code == 0 and len(THUMB.findall((out / "report.html").read_text())) >= 3
    res = run("report", out, "--no-faces-in-report", "--previews", "2")
    assert res.exit_code == 64 and "cannot go with --no-faces-in-report" in res.output
    res = run("annotate", tmp_path / "in", "-o", tmp_path / "o2", "--engine", "local", "--random-init",
              "--no-faces-in-report", "--previews", "2")
    assert res.exit_code == 1 and "previews show faces" in res.output and not (tmp_path / "o2").exists()


def test_previews_are_shown_by_default(tmp_path, fakes):
    """The same run without the option: gallery and previews are in the report (so the test above can fail)."""
    make_tree(tmp_path / "in", 12)
    res = run("annotate", tmp_path / "in", "-o", tmp_path / "out", "--engine", "local", "--random-init",
              "--previews", "2")
    assert res.exit_code == 0, res.output
    html = (tmp_path / "out" / "report.html").read_text()
    assert THUMB.search(html) and "previews/" in html


# ------------------------------------------------------------------------------ no location in any output

MARK = "FACEPROC-GPS-MARK"
LAT, LON = (12.0, 34.0, 56.78), (98.0, 7.0, 6.54)  # 12.582439 N, 98.118483 E


def _photo_with_gps(path):
    img = np.full((200, 300, 3), 120, np.uint8)
    img[0, 0] = 255  # the stand-in detector finds a face here
    exif = Image.Exif()
    exif[0x0112] = 1  # orientation: the one tag faceproc reads
    exif[0x010E] = f"{MARK} description"  # ImageDescription
    gps = exif.get_ifd(0x8825)
    gps.update({1: "N", 2: LAT, 3: "E", 4: LON, 18: MARK, 27: b"ASCII\0\0\0" + MARK.encode()})
    Image.fromarray(img).save(path, "JPEG", exif=exif.tobytes(), quality=90)
    assert Image.open(path).getexif().get_ifd(0x8825).get(18) == MARK  # the GPS block really is in the file


def _texts(path):
    """Everything a file holds that could carry a location: raw bytes; for Parquet, every value and the
    key-value metadata (compressed on disk); for JPEGs, their EXIF."""
    data = path.read_bytes()
    yield data.decode("latin-1")
    if path.suffix == ".parquet":
        t = pq.read_table(path)
        yield repr(t.to_pylist()) + repr(t.schema.metadata)
    if path.suffix == ".jpg":
        yield repr(dict(Image.open(path).getexif().get_ifd(0x8825)))
    if path.suffix == ".html":
        for b64 in THUMB.findall(data.decode()):
            im = Image.open(io.BytesIO(base64.b64decode(b64)))
            assert not im.getexif().get_ifd(0x8825)
            yield im.info.get("exif", b"").decode("latin-1")


def test_gps_exif_never_reaches_any_output_file(tmp_path, fakes):
    folder = tmp_path / "in"
    make_tree(folder, 4)
    _photo_with_gps(folder / "holiday.jpg")
    out = tmp_path / "out"
    cfg = cfg_for_tests(previews=3)
    annotate([str(folder)], out, cfg, engine="local")
    files = [p for p in out.rglob("*") if p.is_file()]
    assert {"report.html", "report.json", "manifest.json", "faceproc.log"} <= {p.name for p in files}
    assert any(p.parent.name == "previews" for p in files)
    import pandas as pd

    images = pd.read_parquet(out / "images")
    assert images.loc[images.image_path.str.endswith("holiday.jpg"), "status"].item() == "ok"  # it was read
    for p in files:
        for text in _texts(p):
            assert MARK not in text, p
            assert "12.5824" not in text and "98.1184" not in text, p  # the coordinates as decimals


# ------------------------------------------------------------------------------ file permissions

@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_output_files_follow_the_umask(tmp_path, fakes, umask):
    make_tree(tmp_path / "in", 6)
    out = tmp_path / "out"
    old = os.umask(umask)
    try:
        annotate([str(tmp_path / "in")], out, cfg_for_tests(previews=2, shard_size=2), engine="local")
    finally:
        os.umask(old)
    modes = {p.relative_to(out).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in out.rglob("*")}
    files = {k: v for k, v in modes.items() if (out / k).is_file()}
    assert any(k.startswith("faces/") for k in files) and any(k.startswith("previews/") for k in files)
    assert {k: v for k, v in files.items() if v != 0o666 & ~umask} == {}
    assert {k: v for k, v in modes.items() if (out / k).is_dir() and v != 0o777 & ~umask} == {}
