"""report.html for a person (issue 23.6): a header in words, captions that agree with their bands, uncertain
genders and withheld faces shown as such, folder rows and the no-face list as links, previews captioned
with their relative path, larger thumbnails in a grid, and the size bound on the worst case."""

import base64
import json
import re
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pyarrow as pa
from PIL import Image

from faceproc.data.split import AGE_BANDS
from faceproc.gallery import GALLERY_PER_GROUP, THUMB, THUMB_BYTES, WITHHELD
from faceproc.report import MAX_ERRORS_HTML, MAX_FOLDERS, MAX_NO_FACE_LIST, build_report
from faceproc.schema import FACES, IMAGES
from faceproc.storage import write_atomic

from tests.helpers import annotated_sample


def _write(out, faces, images):
    faces = [{k: f.get(k) for k in FACES.names} for f in faces]
    images = [{k: r.get(k) for k in IMAGES.names} for r in images]
    write_atomic(pa.Table.from_pylist(faces, schema=FACES), out / "faces" / "s0.parquet")
    write_atomic(pa.Table.from_pylist(images, schema=IMAGES), out / "images" / "s0.parquet")


def _face(path, i, age, prob, x=10, y=10, side=80, withheld=None):
    est = withheld is None
    return {"image_path": str(path), "face_index": i, "x1": x, "y1": y, "x2": x + side, "y2": y + side,
            "det_score": 0.9, "landmarks": [0.0] * 10, "age": age if est else None,
            "gender": ("female" if prob >= 0.5 else "male") if est else None, "female_prob": prob if est else None,
            "face_px": side, "sharpness": 50.0, "withheld": withheld, "model": "m", "model_version": "v", "run_id": "r"}


def _image(path, root, n_faces, status="ok", error=None):
    rel = str(Path(path).relative_to(root))
    return {"image_path": str(path), "input_root": str(root), "rel_path": rel,
            "folder": rel.rsplit("/", 1)[0] if "/" in rel else "", "bytes": 1, "width": 300, "height": 200,
            "n_faces": n_faces, "status": status, "error": error, "shard": "s0", "run_id": "r"}


def _noise_photo(path, rng):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (200, 300, 3), dtype=np.uint8)).save(path, quality=95)


def _visible(page):
    return page.split('<details id="technical">')[0]


def test_header_says_inputs_date_and_model_in_words(tmp_path, fakes):  # noqa: ARG001
    out = annotated_sample(tmp_path)
    page = (out / "report.html").read_text()
    summary = re.search(r'<p class="lead" id="summary">(.*?)</p>', page, re.S).group(1)
    assert str(tmp_path / "in") in summary and re.search(r"analysed on \d{4}-\d{2}-\d{2} \d{2}:\d{2}", summary)
    assert "13 files, 6 faces" in summary and "1 files could not be read" in summary
    model = re.search(r'<p class="lead" id="model">(.*?)</p>', page, re.S).group(1)
    assert "Faces were found by InsightFace's SCRFD face detector" in model
    assert "estimated by faceproc's “unfrozen” model" in model and "random weights" in model
    visible = _visible(page)  # jargon only in the closed technical section
    rep = json.loads((out / "report.json").read_text())
    assert rep["run_id"] not in visible and "shard" not in visible.lower() and "@random-init" not in visible
    assert rep["run_id"] in page and "shards" in page


def test_captions_agree_with_bands_and_mark_uncertain_and_withheld_faces(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "photos"
    ages = [(29.6, 0.9), (29.4, 0.9), (9.5, 0.1), (9.49, 0.1), (69.7, 0.48), (70.2, 0.55), (39.5, 0.2), (19.51, 0.64)]
    faces, images = [], []
    for k, (age, prob) in enumerate(ages):
        p = root / f"p{k}.jpg"
        _noise_photo(p, rng)
        faces.append(_face(p, 0, age, prob))
        images.append(_image(p, root, 1))
    p = root / "tiny.jpg"
    _noise_photo(p, rng)
    faces.append(_face(p, 0, 40.0, 0.9, side=16, withheld="small_face"))
    images.append(_image(p, root, 1))
    _write(tmp_path / "out", faces, images)
    build_report(tmp_path / "out")
    page = (tmp_path / "out" / "report.html").read_text()
    gallery = page.split('id="gallery"')[1].split('id="folders"')[0]
    seen = []
    for band, body in re.findall(r"<h3>(.*?)</h3><div class=\"grid\">(.*?)</div>", gallery, re.S):
        for cap in re.findall(r"<figcaption>(.*?)</figcaption>", body):
            seen.append(cap)
            if band.startswith(WITHHELD):
                assert cap == "too small"
                continue
            age = int(cap.split(" y")[0])
            lo = int(band.split("-")[0].split("+")[0])
            assert lo <= age <= (lo + 9 if "+" not in band.split(" ")[0] else 200), (band, cap)
    assert sorted(seen) == sorted(["30 y &middot; F", "29 y &middot; F", "10 y &middot; M", "9 y &middot; M",
                                   "70 y &middot; ?", "70 y &middot; ?", "40 y &middot; M", "20 y &middot; ?",
                                   "too small"])
    summary = re.search(r'id="summary">(.*?)</p>', page, re.S).group(1)
    assert "1 of them too small or blurred to estimate" in summary and "3 with an uncertain gender" in summary


def test_folder_rows_link_to_folders_and_previews_and_previews_carry_their_path(tmp_path, fakes):  # noqa: ARG001
    from faceproc.engine import annotate
    from faceproc.preview import preview_name

    from tests.helpers import cfg_for_tests, make_tree

    make_tree(tmp_path / "in" / "2019", n=6)
    make_tree(tmp_path / "in" / "2020", n=6)
    cfg = cfg_for_tests()
    cfg.run.previews = 4
    out = tmp_path / "out"
    annotate([str(tmp_path / "in")], out, cfg, engine="local")
    page = (out / "report.html").read_text()
    rep = json.loads((out / "report.json").read_text())
    table = page.split('id="folder-table"')[1].split("</table>")[0]
    rows = re.findall(r"<tr><td>(.*?)</tr>", table, re.S)
    assert len(rows) == len(rep["folders"]) == 6
    ids = set(re.findall(r' id="([^"]+)"', page))
    linked = 0
    for row, folder in zip(rows, rep["folders"]):
        assert f'<a href="{Path(folder["folder"]).as_uri()}"' in row and f'>{folder["rel"]}</a>' in row
        assert folder["rel"] in ("2019/d0", "2019/d1", "2019/d2", "2020/d0", "2020/d1", "2020/d2")
        for anchor in re.findall(r'href="#([^"]+)"', row):
            assert anchor in ids
            section = page.split(f'id="{anchor}"')[1].split("<h3")[0]
            assert all(f"previews/{n}" in section for n in folder["previews"])
            linked += 1
    assert linked == len({p["folder"] for p in rep["previews"]}) >= 2
    previews = re.findall(r'<figure class="pv">.*?<figcaption>(.*?)</figcaption>', page, re.S)
    assert len(previews) == 4
    for cap, p in zip(previews, rep["previews"]):
        assert f">{p['rel']}</a>" in cap and p["rel"].count("/") == 2  # e.g. 2019/d0/0.png
        assert p["name"] == preview_name(p["path"]) and p["name"].startswith(p["rel"].rsplit("/", 1)[0].replace("/", "_"))
    # the no-face photos are links to the photos, shown by their relative path
    nf = page.split('id="no-faces"')[1].split("</ul>")[0]
    items = re.findall(r'<li><a href="(file://[^"]+)">([^<]+)</a></li>', nf)
    assert len(items) == rep["no_face_photos"]["count"] == 6 and all(r.startswith("20") for _, r in items)


def test_thumbnails_are_larger_in_a_grid_and_the_worst_case_stays_under_1_mb(tmp_path):
    """Every gallery group full of thumbnails of noise (the worst JPEG case) plus every other list at its cap,
    with long paths: the page stays under 1 MB; thumbnails are THUMB px, within THUMB_BYTES."""
    rng = np.random.default_rng(1)
    root = tmp_path / ("archive-" + "x" * 60)
    faces, images = [], []
    groups = [(b, g) for b in AGE_BANDS for g in ("female", "male")] + [(WITHHELD, None)]
    slots = [(x, y) for y in (10, 110) for x in (10, 110, 210)]
    todo = [grp for grp in groups for _ in range(GALLERY_PER_GROUP + 1)]
    for k in range(0, len(todo), len(slots)):
        p = root / "gallery" / f"p{k:03d}.jpg"
        _noise_photo(p, rng)
        for i, ((band, gender), (x, y)) in enumerate(zip(todo[k: k + len(slots)], slots)):
            age = float(band.split("-")[0].rstrip("+")) + 5 if band != WITHHELD else 0.0
            faces.append(_face(p, i, age, 0.9 if gender == "female" else 0.1, x, y,
                               withheld="blurry" if band == WITHHELD else None))
        images.append(_image(p, root, len(slots)))
    for i in range(MAX_FOLDERS + 100):  # more folders than the cap, failed files and no-face photos in each
        folder = root / f"{2000 + i % 25}" / f"event-{i:04d}-{'y' * 40}"
        images.append(_image(folder / f"IMG_{i:05d}.jpg", root, None, "corrupt", "cannot parse header: " + "z" * 80))
        images.append(_image(folder / f"IMG_{i:05d}b.jpg", root, 0, "no_faces"))
    out = tmp_path / "out"
    _write(out, faces, images)
    rep = build_report(out)
    page = (out / "report.html").read_text()
    assert rep["gallery_faces"] == len(groups) * GALLERY_PER_GROUP == 136
    thumbs = re.findall(r'<figure class="t"><img src="data:image/jpeg;base64,([^"]+)"', page)
    assert len(thumbs) == 136
    sides = set()
    for t in thumbs:
        raw = base64.b64decode(t)
        assert len(raw) <= THUMB_BYTES
        sides.add(cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR).shape[0])
    assert max(sides) <= THUMB
    assert "grid-template-columns:repeat(auto-fill,minmax(120px,1fr))" in page and f"width:{THUMB}px" in page
    assert len(re.findall(r"<tr><td>.*?</tr>", page.split('id="folder-table"')[1].split("</table>")[0])) == MAX_FOLDERS
    assert page.count("cannot parse header") == MAX_ERRORS_HTML
    assert len(re.findall(r"<li>", page.split('id="no-faces"')[1].split("</ul>")[0])) == MAX_NO_FACE_LIST
    assert len(page.encode()) < 1_000_000, len(page.encode())
    assert (out / "report.json").stat().st_size < 1_000_000


def test_a_real_face_thumbnail_keeps_its_full_size(tmp_path):
    from faceproc.gallery import encode_thumb

    face = cv2.GaussianBlur(np.random.default_rng(0).integers(0, 255, (200, 200, 3), dtype=np.uint8), (0, 0), 4)
    raw = encode_thumb(face)
    assert cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR).shape[:2] == (THUMB, THUMB)
    noise = np.random.default_rng(0).integers(0, 255, (200, 200, 3), dtype=np.uint8)
    assert len(encode_thumb(noise)) <= THUMB_BYTES


def test_faces_per_image_counts_only_files_that_were_read(tmp_path, fakes):  # noqa: ARG001
    out = annotated_sample(tmp_path)
    rep = json.loads((out / "report.json").read_text())
    images = pd.read_parquet(out / "images")
    assert sum(rep["faces_per_image"].values()) == images["status"].isin(["ok", "no_faces"]).sum() == 12
    assert images.loc[images["status"] == "not_an_image", "n_faces"].isna().all()


def test_preview_labels_show_uncertain_and_withheld_faces():
    from faceproc.preview import draw

    rgb = np.full((400, 600, 3), 30, np.uint8)
    rows = pd.DataFrame([
        {"x1": 20, "y1": 100, "x2": 140, "y2": 220, "gender": "male", "female_prob": 0.48, "age": 47.0, "withheld": None},
        {"x1": 300, "y1": 100, "x2": 420, "y2": 220, "gender": None, "female_prob": None, "age": None,
         "withheld": "small_face"},
    ]).assign(landmarks=[[0.0] * 10] * 2)
    img = draw(rgb, rows, 1.0)
    assert img.shape == (400, 600, 3)
    purple, grey = np.array([160, 60, 160]), np.array([128, 128, 128])
    assert (np.abs(img[100, 60:100].astype(int) - purple).sum(axis=1) < 10).all()  # the uncertain face's box
    box = img[100:102, 300:420]
    assert (np.abs(box.astype(int) - grey).sum(axis=2) < 10).all()  # no estimate: grey, not a gender colour


def test_the_header_says_what_the_estimates_are_and_links_the_limitations():
    from faceproc.report_page import _header

    html = _header({"inputs": ["/a"], "files": 1, "faces": 1, "failed_files": 0, "finished": 0})
    assert 'id="limits"' in html and "docs/limitations.md" in html and "apparent ages" in html
    assert "binary label" in html and "children" in html
