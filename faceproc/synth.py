"""Synthetic multi-face photos built from face crops (e.g. UTKFace), with known face positions.

Used by the integration tests and the benchmark: no downloaded or copyrighted photo is ever committed,
and every face's true location is known, so "the box is on the face" is a checkable claim.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass
class Placed:
    path: str  # source crop
    box: tuple[float, float, float, float]  # where the crop was pasted (x1, y1, x2, y2)


def background(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """Smooth random colour field with mild noise: no face-like structure, JPEG-friendly."""
    small = rng.integers(40, 215, (max(2, h // 200), max(2, w // 200), 3), dtype=np.uint8)
    bg = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    noise = rng.normal(0, 6, (h, w, 1)).astype(np.float32)
    return np.clip(bg.astype(np.float32) + noise, 0, 255).astype(np.uint8)


def mosaic(
    crops: list[str],
    size: tuple[int, int],
    tile: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, list[Placed]]:
    """Paste crops (scaled to `tile` px) on a grid of a (w, h) canvas, with random jitter; RGB."""
    w, h = size
    img = background(h, w, rng)
    cols, rows = max(1, w // (tile * 2)), max(1, h // (tile * 2))
    cells = [(r, c) for r in range(rows) for c in range(cols)]
    order = rng.permutation(len(cells))[: len(crops)]
    placed = []
    for path, k in zip(crops, order):
        r, c = cells[k]
        face = cv2.imread(path, cv2.IMREAD_COLOR)
        if face is None:
            raise FileNotFoundError(path)
        face = cv2.resize(face[..., ::-1], (tile, tile), interpolation=cv2.INTER_AREA)
        cw, ch = w / cols, h / rows
        x = int(c * cw + rng.uniform(0, max(cw - tile, 0)))
        y = int(r * ch + rng.uniform(0, max(ch - tile, 0)))
        img[y : y + tile, x : x + tile] = face
        placed.append(Placed(path, (x, y, x + tile, y + tile)))
    return img, placed


def box_inside(det_box, true_box, slack: float = 0.15) -> bool:
    """The detected box's centre lies in the pasted crop and its size is plausible for it."""
    x1, y1, x2, y2 = det_box
    tx1, ty1, tx2, ty2 = true_box
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    s = tx2 - tx1
    return (tx1 + slack * s <= cx <= tx2 - slack * s and ty1 + slack * s <= cy <= ty2 - slack * s
            and 0.2 * s <= (x2 - x1) <= 1.3 * s)


def sample_folder(out, utkface_dir=None, n_mosaics: int = 20, seed: int = 0) -> list[str]:
    """A small folder to try `faceproc annotate` on: the group photo that ships with insightface, the
    public-domain astronaut of scikit-image (when installed), UTKFace mosaics (when a UTKFace folder is
    given) in nested folders and at sizes up to 12 MP, and a few broken files."""
    from pathlib import Path

    from PIL import Image

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    import insightface

    t1 = insightface.data.get_image("t1")[..., ::-1]
    Image.fromarray(t1).save(out / "t1.jpg", quality=92)
    written.append("t1.jpg")
    try:
        import skimage.data

        Image.fromarray(skimage.data.astronaut()).save(out / "astronaut.png")
        written.append("astronaut.png")
    except ImportError:
        pass
    if utkface_dir:
        utk = sorted(str(p) for p in Path(utkface_dir).glob("*.jpg"))
        rng = np.random.default_rng(seed)
        sizes = [((1024, 768), 150), ((1600, 1200), 120), ((4000, 3000), 60), ((800, 600), 180)]
        for i in range(n_mosaics):
            (w, h), tile = sizes[i % len(sizes)]
            k = int(rng.integers(0, 9))
            img, _ = mosaic([utk[j] for j in rng.choice(len(utk), k, replace=False)], (w, h), tile, rng)
            rel = Path(f"album{i % 3}") / ("big" if w > 2000 else "") / f"mosaic{i:03d}.jpg"
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(out / rel, quality=90)
            written.append(str(rel))
    (out / "broken").mkdir(exist_ok=True)
    (out / "broken" / "empty.jpg").write_bytes(b"")
    data = (out / "t1.jpg").read_bytes()
    (out / "broken" / "truncated.jpg").write_bytes(data[: len(data) // 3])
    (out / "broken" / "not-a-photo.png").write_text("text, not pixels\n")
    written += ["broken/empty.jpg", "broken/truncated.jpg", "broken/not-a-photo.png"]
    return written
