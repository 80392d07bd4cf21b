"""Build the mixed test folder: real photos shipped in packages, UTKFace mosaics, and every kind of
bad file the pipeline must turn into a status row."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from faceproc.synth import mosaic


def real_photos():
    import insightface
    import skimage.data

    t1 = insightface.data.get_image("t1")[..., ::-1].copy()  # BGR -> RGB
    return {"t1": t1, "astronaut": skimage.data.astronaut()}


def build_folder(root: Path, utk: list[str], rng: np.random.Generator) -> dict:
    """Returns {relative path: expected status} plus known face boxes for the mosaics."""
    root.mkdir(parents=True, exist_ok=True)
    expect, truth = {}, {}
    photos = real_photos()
    Image.fromarray(photos["t1"]).save(root / "t1.jpg", quality=92)
    Image.fromarray(photos["astronaut"]).save(root / "astronaut.png")
    expect.update({"t1.jpg": "ok", "astronaut.png": "ok"})
    (root / "mosaics" / "deeper").mkdir(parents=True)
    picks = list(rng.choice(len(utk), 40, replace=False))
    k = 0
    for i, (n, size, tile) in enumerate([(3, (1024, 768), 160), (5, (1280, 960), 140), (2, (800, 600), 200)]):
        img, placed = mosaic([utk[j] for j in picks[k : k + n]], size, tile, rng)
        k += n
        rel = f"mosaics/{'deeper/' if i == 2 else ''}m{i}.jpg"
        Image.fromarray(img).save(root / rel, quality=92)
        expect[rel] = "ok"
        truth[rel] = [p.box for p in placed]
    face, placed = mosaic([utk[picks[k]]], (480, 360), 200, rng)
    fbox = placed[0].box
    # Colour modes, each holding one known face.
    Image.fromarray(face).convert("L").save(root / "gray.jpg")
    Image.fromarray(np.dstack([face, np.full(face.shape[:2], 200, np.uint8)]), "RGBA").save(root / "alpha.png")
    Image.fromarray(face).convert("CMYK").save(root / "cmyk.jpg", quality=92)
    Image.fromarray((face[..., 1].astype(np.uint16) * 257)).save(root / "sixteen.png")
    Image.fromarray(face).save(root / "fötografía_日本.jpg", quality=92)
    for rel in ("gray.jpg", "alpha.png", "cmyk.jpg", "sixteen.png", "fötografía_日本.jpg"):
        expect[rel] = "ok"
        truth[rel] = [fbox]
    # EXIF-rotated: the stored pixels are rotated; displayed (after orientation) they equal `face`.
    for orientation, k_rot in ((6, 1), (8, -1)):
        exif = Image.Exif()
        exif[0x0112] = orientation
        rel = f"exif{orientation}.jpg"
        Image.fromarray(np.ascontiguousarray(np.rot90(face, k=k_rot))).save(root / rel, exif=exif, quality=92)
        expect[rel] = "ok"
        truth[rel] = [fbox]
    # Bad files.
    (root / "empty.jpg").write_bytes(b"")
    expect["empty.jpg"] = "empty_file"
    data = (root / "t1.jpg").read_bytes()
    (root / "truncated.jpg").write_bytes(data[: len(data) // 3])
    expect["truncated.jpg"] = "corrupt"
    (root / "random.jpg").write_bytes(rng.bytes(4096))
    expect["random.jpg"] = "not_an_image"
    (root / "text.png").write_text("this is a text file\n")
    expect["text.png"] = "not_an_image"
    Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(root / "one_pixel.png")
    expect["one_pixel.png"] = "too_small"
    Image.fromarray(np.full((1700, 2000, 3), 128, np.uint8)).save(root / "huge.jpg", quality=50)
    expect["huge.jpg"] = "too_large"  # with decode.max_pixels = 3_000_000 in the test config
    Image.fromarray(face).save(root / "locked.jpg")
    os.chmod(root / "locked.jpg", 0)
    expect["locked.jpg"] = "unreadable" if os.geteuid() != 0 else "ok"  # root reads any file
    if os.geteuid() == 0:
        truth["locked.jpg"] = [fbox]
    os.symlink(root / "does-not-exist.jpg", root / "dangling.jpg")
    expect["dangling.jpg"] = "unreadable"
    Image.fromarray(face).save(root / ".hidden.jpg")
    expect[".hidden.jpg"] = "skipped_hidden"
    Image.fromarray(np.full((300, 400, 3), 90, np.uint8)).save(root / "blank.png")
    expect["blank.png"] = "no_faces"
    (root / "notes.txt").write_text("not an image extension: ignored, counted")
    return {"expect": expect, "truth": truth}
