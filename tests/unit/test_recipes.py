"""The README's recipes (pandas and DuckDB) run on an archive as users have one: year/event folders holding
HEIC, AVIF, RAW and JPEG photos with EXIF dates, plus a video, a text file and a broken JPEG, annotated with
stand-in models whose faces and ages are painted into the photos, so every answer is known in advance."""

import datetime as dt
import json
import os
import re

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tests.conftest import REPO
from tests.formats_data import make_dng
from tests.helpers import FakeModels, cfg_for_tests

from faceproc.detectors.base import Detections

CELL = 64  # each face of a generated photo lives in its own 64 px column


class PaintedFaces:
    """A face in every 64 px column whose top-left 8x8 block is white: the column's 48 px square, or a 16 px one
    when a second white block lies below the first (a face too small to judge)."""

    def __init__(self, *a, **k):
        pass

    def detect(self, rgb, scale=1.0):
        cols = [c for c in range(rgb.shape[1] // CELL) if rgb[2:6, c * CELL + 2:c * CELL + 6].min() > 220]
        if not cols:
            return Detections.empty()
        small = [rgb[18:22, c * CELL + 2:c * CELL + 6].min() > 220 for c in cols]
        boxes = np.array([[c * CELL + 24, 40, c * CELL + 40, 56] if s else [c * CELL + 8, 24, c * CELL + 56, 72]
                          for c, s in zip(cols, small)], np.float32)
        x, y, w = boxes[:, :1], boxes[:, 1:2], boxes[:, 2:3] - boxes[:, :1]
        kps = np.stack([np.hstack([x + w * fx, y + w * fy]) for fx, fy in
                        ((0.3, 0.35), (0.7, 0.35), (0.5, 0.55), (0.35, 0.75), (0.65, 0.75))], axis=1)
        return Detections(boxes, kps.astype(np.float32), np.full(len(cols), 0.9, np.float32))


class PaintedAges:
    """Age = half the red in the middle of the crop: a face painted with red 2 x age is that age."""

    def __init__(self, *a, **k):
        pass

    def predict(self, crops):
        mid = crops.shape[1] // 2
        red = crops[:, mid - 6:mid + 6, mid - 6:mid + 6, 0].reshape(len(crops), -1).mean(axis=1)
        return (red / 2).astype(np.float32), np.full(len(crops), 0.2, np.float32)


class RecipeModels(FakeModels):
    def __init__(self):
        super().__init__(predictor=PaintedAges)

    def detector(self, spec):
        return PaintedFaces()


def photo(ages) -> Image.Image:
    """One 64x96 column a face: a white marker block, the face painted red 2 x age (ages 0-100); a negative age
    is a small face (a second marker) of that age."""
    img = np.full((96, CELL * max(1, len(ages)), 3), 90, np.uint8)
    for c, age in enumerate(ages):
        img[0:8, c * CELL:c * CELL + 8] = 255
        img[20:76, c * CELL + 4:c * CELL + 60] = (2 * abs(age), 90, 90)
        if age < 0:
            img[16:24, c * CELL:c * CELL + 8] = 255
    return Image.fromarray(img)


def exif(taken):
    e = Image.Exif()
    e[0x010F], e[0x0110] = "Canon", "EOS 5D"
    e.get_ifd(0x8769)[0x9003] = taken
    return e.tobytes()


# rel_path: (ages of its faces, negative for a face too small to judge; EXIF DateTimeOriginal or None)
ARCHIVE = {
    "2019/Summer in Nice/IMG_0001.jpg": ([6, 9, 35, 38, 62, 41], "2019:07:14 15:03:22"),
    "2019/Summer in Nice/IMG_0002.heic": ([40], "2019:07:15 09:00:00"),
    "2020/Noël/IMG_1001.avif": ([4, 7, 30, 33, 70], "2020:12:24 19:30:00"),
    "2020/Noël/IMG_1002.jpg": ([10, 45, -3], "2020:12:25 10:00:00"),  # a 16 px child: no age, not counted
    "2021/scan.jpg": ([50], None),  # no EXIF date: its mtime (today) must not make it a photo of this year
}


def make_archive(root):
    for rel, (ages, taken) in ARCHIVE.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        kw = {"exif": exif(taken)} if taken else {}
        if p.suffix == ".heic":
            import pillow_heif

            pillow_heif.register_heif_opener()
        photo(ages).save(p, quality=95, **kw)
    make_dng(root / "2020/Noël/DSC_0001.dng")  # a RAW of a colour ramp: read, no face
    (root / "2019/Summer in Nice/clip.MOV").write_bytes(b"\0\0\0\x18ftypqt  " + b"\0" * 64)
    (root / "2019/Summer in Nice/notes.txt").write_text("Nice, July 2019\n")
    (root / "2021/broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    old = dt.datetime(2019, 7, 20, tzinfo=dt.timezone.utc).timestamp()
    os.utime(root / "2019/Summer in Nice/IMG_0001.jpg", (old, old))


def recipe_blocks() -> list[str]:
    text = (REPO / "README.md").read_text()
    section = text.split("### Recipes", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.S)


@pytest.fixture(scope="module")
def archive_out(tmp_path_factory):
    from faceproc.engine import annotate

    tmp = tmp_path_factory.mktemp("recipes")
    make_archive(tmp / "Pictures")
    cfg = cfg_for_tests()
    cfg.model.min_face_px = 24  # 48 px faces are estimated, 16 px ones withheld (flat paint: no sharpness rule)
    annotate([str(tmp / "Pictures")], tmp / "out", cfg, engine="local", models=RecipeModels())
    return tmp


def run_block(code, cwd, monkeypatch):
    monkeypatch.chdir(cwd)
    scope = {}
    exec(compile(code, "README.md", "exec"), scope)
    return scope


def test_the_archive_is_read_as_users_expect(archive_out):
    """Every photo format is a row with its faces and EXIF date; the video and the text are counted, not rows."""
    images = pd.read_parquet(archive_out / "out/images").set_index("rel_path")
    assert sorted(images.index) == sorted([*ARCHIVE, "2020/Noël/DSC_0001.dng", "2021/broken.jpg"])
    for rel, (ages, taken) in ARCHIVE.items():
        assert images.loc[rel, "status"] == "ok" and images.loc[rel, "n_faces"] == len(ages), rel
        want = pd.Timestamp(dt.datetime.strptime(taken, "%Y:%m:%d %H:%M:%S")) if taken else None
        assert (pd.isna(images.loc[rel, "taken_at"]) if want is None else images.loc[rel, "taken_at"] == want), rel
    assert images.loc["2020/Noël/DSC_0001.dng", "status"] == "no_faces"
    assert images.loc["2020/Noël/DSC_0001.dng", "n_faces"] == 0 and pd.isna(images.loc["2021/broken.jpg", "n_faces"])
    faces = pd.read_parquet(archive_out / "out/faces")
    assert len(faces) == sum(len(a) for a, _ in ARCHIVE.values())
    assert faces.withheld.value_counts().to_dict() == {"small_face": 1} and faces.age.isna().sum() == 1
    skipped = json.loads((archive_out / "out/report.json").read_text())["skipped"]
    assert skipped["videos"] == {".mov": 1} and skipped["other_files"] == {".txt": 1}


def test_readme_recipes_give_the_known_answers(archive_out, monkeypatch):
    blocks = recipe_blocks()
    assert len(blocks) == 2 and "import duckdb" in blocks[1], "README: a pandas block, then a DuckDB block"
    pandas_, sql = (run_block(b, archive_out, monkeypatch) for b in blocks)

    # children per folder: ages under 18, by event folder (2021/scan.jpg has none)
    want = {"2020/Noël": 3, "2019/Summer in Nice": 2}
    children = pandas_["children"]
    assert children.to_dict() == want and list(children.index) == list(want)
    assert dict(zip(sql["children"].folder, sql["children"].children)) == want
    assert list(sql["children"].folder) == list(want)

    # photos with at least 5 faces, most crowded first
    want = [("2019/Summer in Nice/IMG_0001.jpg", 6), ("2020/Noël/IMG_1001.avif", 5)]
    for crowded in (pandas_["crowded"], sql["crowded"]):
        assert list(zip(crowded.rel_path, crowded.n_faces)) == want

    # mean age by year taken: 2019 and 2020 only (scan.jpg has no EXIF date, the DNG no face, the 16 px child no age)
    ages = {2019: [6, 9, 35, 38, 62, 41, 40], 2020: [4, 7, 30, 33, 70, 10, 45]}
    by_year_pd, by_year_sql = pandas_["age_by_year"], sql["age_by_year"].set_index("year")
    for table in (by_year_pd, by_year_sql):
        assert sorted(int(y) for y in table.index) == [2019, 2020]
        for year, a in ages.items():
            assert int(table.loc[year, "count"]) == len(a)
            assert table.loc[year, "mean"] == pytest.approx(np.mean(a), abs=1.0)  # lossy formats move paint a little
        assert table.loc[2019, "mean"] == pytest.approx(by_year_pd.loc[2019, "mean"], abs=1e-4)
