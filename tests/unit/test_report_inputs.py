"""What a person sees about the inputs: HEIC/RAW rows, videos and other files counted (terminal, report.json,
report.html), external symlinks and unreadable folders said, and every link of report.html resolving."""

import json
import os
import re
from html.parser import HTMLParser
from urllib.parse import unquote, urlparse

import numpy as np
import pandas as pd
from click.testing import CliRunner
from PIL import Image

from tests.formats_data import make_dng, save_oriented


def face_photo(path, face=True):
    img = np.full((80, 100, 3), 100, np.uint8)
    if face:
        img[0, 0] = 255  # the stand-in detector finds a face
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix in (".heic", ".avif"):
        save_oriented(path, img, 1, quality=100)
    else:
        Image.fromarray(img).save(path)


class Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.urls = []

    def handle_starttag(self, tag, attrs):
        self.urls += [v for k, v in attrs if k in ("href", "src") and v and not v.startswith("data:")]


def test_formats_not_rows_and_links_end_to_end(tmp_path, fakes):  # noqa: ARG001
    from faceproc.cli import main

    src = tmp_path / "in"
    face_photo(src / "odd" / "a#1?.png")  # '#' and '?' in a name: its links must still resolve
    face_photo(src / "odd" / "b 50%.png")
    face_photo(src / "phone" / "IMG_0001.heic")
    face_photo(src / "phone" / "IMG_0002.jpg", face=False)
    (src / "camera").mkdir()
    make_dng(src / "camera" / "DSC_0001.dng")
    for n in ("clip.MOV", "clip2.mov", "notes.txt"):
        (src / "phone" / n).write_bytes(b"x")
    (tmp_path / "outside").mkdir()
    face_photo(tmp_path / "outside" / "private.png")
    os.symlink(tmp_path / "outside", src / "link-out")
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["annotate", str(src), "-o", str(out), "--engine", "local", "--random-init",
                                    "--previews", "5"])
    assert res.exit_code == 0, res.output
    images = pd.read_parquet(out / "images").set_index("image_path")
    names = {os.path.basename(p): s for p, s in images["status"].items()}
    assert names == {"a#1?.png": "ok", "b 50%.png": "ok", "IMG_0001.heic": "ok", "IMG_0002.jpg": "no_faces",
                     "DSC_0001.dng": "no_faces"}  # HEIC and RAW are rows; nothing outside the inputs is
    # terminal, report.json and report.html all say what is not a row
    assert "not rows: videos (not read): .mov 2" in res.output
    assert "not rows: other files (not images): .txt 1" in res.output
    assert "symlinks leading outside the inputs (not followed" in res.output and "link-out" in res.output
    rep = json.loads((out / "report.json").read_text())
    assert rep["skipped"]["videos"] == {".mov": 2} and rep["skipped"]["external_symlinks"]["count"] == 1
    page = (out / "report.html").read_text()
    assert "videos (not read): .mov 2" in page and 'id="not-rows"' in page
    # every link and image source of the page resolves to a file (previews beside it, photos by file://)
    parser = Links()
    parser.feed(page)
    assert len(parser.urls) >= 6 and any("%23" in u for u in parser.urls)
    ids = set(re.findall(r' id="([^"]+)"', page))
    for u in parser.urls:
        if u.startswith("#"):  # a section of the page itself (a folder's previews)
            assert u[1:] in ids, u
            continue
        parsed = urlparse(u)
        assert not parsed.fragment and not parsed.query, u  # an unencoded '#' or '?' would cut the path
        path = unquote(parsed.path) if parsed.scheme == "file" else str(out / unquote(parsed.path))
        assert os.path.isfile(path) or (parsed.scheme == "file" and os.path.isdir(path)), u  # folders open too
    # asked for: the link outside is followed and its photo becomes a row
    res = CliRunner().invoke(main, ["annotate", str(src), "-o", str(tmp_path / "out2"), "--engine", "local",
                                    "--random-init", "--follow-external-symlinks"])
    assert res.exit_code == 0, res.output
    rows = pd.read_parquet(tmp_path / "out2" / "images")["image_path"].map(os.path.basename).tolist()
    assert "private.png" in rows and "symlinks leading outside" not in res.output
