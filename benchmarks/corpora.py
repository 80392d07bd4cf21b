"""The benchmark's photos (benchmarks/annotate.py): seeded mosaics of UTKFace faces, the same photos as one
flat folder, and many copies of a few photos for the memory check. Built once per (seed, n) under
benchmarks/corpus/."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FACEPROC_SHARED", REPO.parent / "shared"))
SIZES = [((640, 480), 0.3), ((1280, 960), 0.3), ((2048, 1536), 0.25), ((4000, 3000), 0.15)]


def build_corpus(n: int, seed: int, root: Path, sizes=SIZES) -> Path:
    from PIL import Image

    from faceproc.synth import mosaic

    out = root / f"seed{seed}-n{n}-{'x'.join(str(s[0][0]) for s in sizes)}"
    if out.exists() and len(list(out.rglob("*.jpg"))) == n:
        return out
    shutil.rmtree(out, ignore_errors=True)
    utk = sorted(str(p) for p in (SHARED / "data" / "utkface").glob("*.jpg"))
    rng = np.random.default_rng(seed)
    probs = np.array([p for _, p in sizes])
    for i in range(n):
        (w, h) = sizes[rng.choice(len(sizes), p=probs / probs.sum())][0]
        k = int(rng.integers(0, 13))
        tile = int(rng.uniform(0.06, 0.18) * min(w, h))
        tile = min(tile, min(w, h) // max(2, int(np.ceil(np.sqrt(max(k, 1))))) // 2 * 2)
        picks = [utk[j] for j in rng.choice(len(utk), k, replace=False)]
        img, _ = mosaic(picks, (w, h), max(tile, 40), rng)
        d = out / f"d{i // 100:03d}"
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(d / f"{i:05d}.jpg", quality=88)
    return out


def flat_view(corpus: Path) -> Path:
    """The same photos as one big folder (hard links: discovery does not follow symlinks that lead outside
    its inputs, issue 19): a camera dump or a scan folder, the layout that used to leave all but one worker idle."""
    flat = corpus.parent / (corpus.name + "-flat")
    files = corpus_files(corpus)
    if not flat.exists() or any(p.is_symlink() for p in flat.iterdir()) or len(list(flat.glob("*.jpg"))) != len(files):
        shutil.rmtree(flat, ignore_errors=True)
        flat.mkdir(parents=True)
        for f in files:
            os.link(f, flat / Path(f).name)
    return flat


def copies(n: int, seed: int, root: Path, base: int = 16) -> Path:
    """n photos in one flat folder for the memory check: copies of `base` small mosaics (640x480 and
    1024x768) under n names. Copies, not hard links: discovery counts a file once by device and inode, so n
    links of a few photos would be a few rows. ~100 KB a photo: 5,000 take ~500 MB and seconds to make."""
    src = corpus_files(build_corpus(base, seed, root, [((640, 480), 0.7), ((1024, 768), 0.3)]))
    out = root / f"copies-seed{seed}-n{n}"
    if out.exists() and len(list(out.glob("*.jpg"))) == n:
        return out
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    for i in range(n):
        shutil.copyfile(src[i % len(src)], out / f"{i:05d}.jpg")
    return out


def corpus_files(root: Path) -> list[str]:
    from faceproc.discover import IMAGE_EXTENSIONS

    return sorted(str(p) for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
