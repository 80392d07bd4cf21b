"""The report an archivist opens: gallery, folders, previews, photos without faces; bounded size."""

import json
import re

import pandas as pd

from faceproc.engine import annotate

from tests.helpers import annotated_sample, cfg_for_tests


def test_report_shows_faces_folders_previews_and_photos_without_faces(tmp_path, fakes):  # noqa: F811
    out = annotated_sample(tmp_path)
    page = (out / "report.html").read_text()
    rep = json.loads((out / "report.json").read_text())
    faces = pd.read_parquet(out / "faces")
    # gallery: one thumbnail per face here (fewer faces than the per-group cap), each a link
    assert rep["gallery_faces"] == len(faces) == 6
    assert len(re.findall(r'<figure class="t"><img src="data:image/jpeg;base64,', page)) == 6
    assert 'href="previews/' in page  # thumbnails of previewed photos link to their preview
    # folders: files, faces, failed, no faces, mean age per folder
    folders = {f["folder"].rsplit("/", 1)[-1]: f for f in rep["folders"]}
    assert folders["d0"] == {**folders["d0"], "files": 5, "failed": 1}
    assert sum(f["files"] for f in rep["folders"]) == 13 and 'id="folder-table"' in page
    # previews linked and shown; photos without faces listed with their count
    assert len(re.findall(r'<img class="p" src="previews/', page)) == 2
    assert rep["no_face_photos"]["count"] == 6 and len(rep["no_face_photos"]["sample"]) == 6
    # totals over every run, also after a resume that had nothing left to do
    annotate([str(tmp_path / "in")], out, cfg_for_tests(), engine="local", models=fakes)
    tp = json.loads((out / "report.json").read_text())["throughput"]
    assert tp["all_runs"] == 2 and tp["all_runs_files"] == 13 and tp["all_runs_files_per_s"] > 0
    assert "no network" not in page and "http://" not in page and "https://" not in page  # self-contained


def test_preview_scales_marks_to_faces_keeps_labels_inside_and_enlarges_small_faces():
    import numpy as np

    from faceproc.preview import STRIP_TILE, draw

    def faces(rows):
        return pd.DataFrame([{"x1": x1, "y1": y1, "x2": x2, "y2": y2, "gender": g, "age": 30.0,
                              "landmarks": [x1 + (x2 - x1) * t for t in (0.3, 0.7, 0.5, 0.35, 0.65)] * 2}
                             for x1, y1, x2, y2, g in rows])

    # a 4000x3000 photo previewed at 1280x960 (scale 0.32): a 40 px face becomes ~13 px
    rgb = np.full((960, 1280, 3), 128, np.uint8)
    small = faces([(100, 0, 140, 40, "female"), (2000, 1500, 2040, 1540, "male")])
    img = draw(rgb, small, 0.32)
    assert img.shape[0] == 960 + STRIP_TILE and img.shape[1] == 1280  # one strip row of enlarged crops
    # the face at the top edge: its label is drawn inside the image, below the box (not cut off above it)
    assert (img[:960][14:40, 32:60] != 128).any()
    big = faces([(400, 400, 1400, 1400, "male")])
    img2 = draw(rgb, big, 0.32)
    assert img2.shape == (960, 1280, 3)  # a big face needs no strip
    box_px = (img2[:960] != 128).any(axis=2)
    assert box_px[128:448, 128].sum() > 200  # the box side is drawn at the face's scale


def test_report_size_is_bounded_on_a_100k_photo_output(tmp_path):
    """100,000 photos in 2,000 folders, 20% failed, 30% without faces, 150,000 faces: every list in the page
    is capped, so the page stays under 1 MB (the gallery adds at most 8 x 16 thumbnails of ~4 KB each)."""
    import numpy as np
    import pyarrow as pa

    from faceproc.report import build_report
    from faceproc.schema import FACES, IMAGES
    from faceproc.storage import write_atomic

    rng = np.random.default_rng(0)
    n = 100_000
    paths = [f"/archive/f{i % 2000:04d}/img{i:06d}.jpg" for i in range(n)]
    status = rng.choice(["ok", "no_faces", "corrupt"], n, p=[0.5, 0.3, 0.2])
    nf = np.where(status == "ok", rng.integers(1, 6, n), 0)
    images = {"image_path": paths, "image_path_bytes": [None] * n, "bytes": rng.integers(1e5, 1e7, n).tolist(),
                  "mtime_ns": [0] * n, "inode": list(range(n)), "content_hash": [None] * n,
              "width": [4000] * n, "height": [3000] * n, "n_faces": nf.tolist(), "status": status.tolist(),
              "error": [("cannot parse header: " + "x" * 80) if s == "corrupt" else None for s in status],
              "elapsed_ms": [100.0] * n, "shard": ["s0"] * n, "run_id": ["r"] * n}
    images.update(input_root=["/archive"] * n, rel_path=[p[len("/archive/"):] for p in paths],
                  folder=[p.split("/")[2] for p in paths])
    images.update({k: [None] * n for k in IMAGES.names if k not in images})  # the columns this test ignores
    write_atomic(pa.Table.from_pydict(images, schema=IMAGES), tmp_path / "images" / "s0.parquet")
    fp = np.repeat(np.arange(n), nf)
    m = len(fp)
    x1 = rng.uniform(0, 3000, m).astype(np.float32)
    faces = {"image_path": [paths[i] for i in fp], "image_path_bytes": [None] * m,
             "face_index": np.concatenate([np.arange(k) for k in nf if k]).tolist(),
             "x1": x1, "y1": x1 / 2, "x2": x1 + 100, "y2": x1 / 2 + 100, "det_score": np.full(m, 0.9, np.float32),
             "landmarks": [[0.0] * 10] * m, "age": rng.uniform(1, 90, m).astype(np.float32),
             "female_prob": rng.uniform(0, 1, m).astype(np.float32),
             "gender": np.where(rng.random(m) < 0.5, "female", "male").tolist(), "model": ["unfrozen"] * m,
             "model_version": ["v"] * m, "run_id": ["r"] * m}
    faces.update({k: [None] * m for k in FACES.names if k not in faces})
    write_atomic(pa.Table.from_pydict(faces, schema=FACES), tmp_path / "faces" / "s0.parquet")
    rep = build_report(tmp_path)
    size = (tmp_path / "report.html").stat().st_size
    assert rep["files"] == n and m > 100_000
    assert size < 1_000_000, size
    assert (tmp_path / "report.json").stat().st_size < 1_000_000
