"""The report's size bound rests on the gallery's cap per (age band, gender) (issue 21): tested on photos
that exist, so every picked face really becomes a thumbnail (the 100k-photo test points at none)."""

import json
import re
from collections import Counter

import numpy as np
import pyarrow as pa
from PIL import Image

from faceproc.data.split import AGE_BANDS
from faceproc.report import GALLERY_PER_GROUP, build_report
from faceproc.schema import FACES, IMAGES
from faceproc.storage import write_atomic


def test_gallery_is_capped_per_age_band_and_gender_on_real_photos(tmp_path):
    rng = np.random.default_rng(0)
    groups = [(band, g) for band in AGE_BANDS for g in ("female", "male")]
    ages = {b: float(b.split("-")[0].rstrip("+")) + 5 for b in AGE_BANDS}
    per_group = GALLERY_PER_GROUP + 3  # every group has more faces than the cap
    faces, images = [], []
    slots = [(x, y) for y in (10, 110) for x in (10, 110, 210)]  # six 80 px faces a photo
    todo = [g for g in groups for _ in range(per_group)]
    for k in range(0, len(todo), len(slots)):
        path = tmp_path / "photos" / f"p{k:03d}.jpg"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (200, 300, 3), dtype=np.uint8)).save(path, quality=80)
        chunk = todo[k : k + len(slots)]
        for i, ((band, gender), (x, y)) in enumerate(zip(chunk, slots)):
            faces.append({"image_path": str(path), "face_index": i, "x1": x, "y1": y, "x2": x + 80, "y2": y + 80,
                          "det_score": 0.9, "landmarks": [0.0] * 10, "age": ages[band], "gender": gender,
                          "female_prob": 0.9 if gender == "female" else 0.1, "model": "m", "model_version": "v",
                          "run_id": "r"})
        images.append({"image_path": str(path), "bytes": path.stat().st_size, "width": 300, "height": 200,
                       "n_faces": len(chunk), "status": "ok", "shard": "s0", "run_id": "r"})
    out = tmp_path / "out"
    write_atomic(pa.Table.from_pylist(faces, schema=FACES), out / "faces" / "s0.parquet")
    write_atomic(pa.Table.from_pylist(images, schema=IMAGES), out / "images" / "s0.parquet")
    rep = build_report(out)
    assert len(faces) == len(groups) * per_group
    assert rep["gallery_faces"] == len(groups) * GALLERY_PER_GROUP == 128
    page = (out / "report.html").read_text()
    thumbs = re.findall(r'<figure class="t"><img src="data:image/jpeg;base64,', page)
    assert len(thumbs) == 128
    captions = Counter(re.findall(r"<figcaption>(\d+) y", page))
    assert set(captions.values()) == {2 * GALLERY_PER_GROUP}  # each age, both genders: 8 + 8
    assert len(page) < 1_000_000 and len(json.dumps(rep)) < 1_000_000
