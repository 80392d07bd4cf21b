"""Detection options, chosen by recall and time (issue 12): the same decoded images through each option.

Three recall sets, each decoded exactly as the pipeline decodes (faceproc.decode.decode_file):
- group photos: the evaluate-photos set (150 seeded photos of 0.5-12 MP, 710 validation faces, truth boxes);
- 40 px faces in 12 MP photos: UTKFace crops pasted at 48 px into 4000x3000 photos (the test's case, 4 photos);
- 40 px faces in 2-3 MP photos: the same at 2048x1536 and 1600x1200 (8 photos), decoded whole;
- close-ups: UTKFace crops as files (the face fills the frame; found = a box near the centre over 60 px).
Time is detector-only, one thread, per image (decode excluded), after a warm-up image per set.

    python benchmarks/detect_options.py --data ../shared/data/utkface --photos runs/photo_eval \
        --out benchmarks/results/detect_options.json
    git worktree add /tmp/before 6b25321 && python benchmarks/detect_options.py --code /tmp/before \
        --data ../shared/data/utkface --photos runs/photo_eval --out benchmarks/results/detect_options_before.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# --code DIR: measure another checkout's detector at its own defaults (e.g. a git worktree of the commit
# before a change: `git worktree add /tmp/before 6b25321`), on the same sets.
_CODE = sys.argv[sys.argv.index("--code") + 1] if "--code" in sys.argv else None
sys.path.insert(0, _CODE or str(Path(__file__).resolve().parents[1]))

from faceproc.config import DetectorConfig, ScrfdConfig  # noqa: E402,F401
from faceproc.decode import decode_file  # noqa: E402
from faceproc.photo_eval import match  # noqa: E402

try:
    from faceproc.detectors.files import DetectorSpec  # noqa: E402
    from faceproc.detectors.registry import make_detector as _make  # noqa: E402
    from faceproc.photo_set import build_photos, validation_faces  # noqa: E402

    def make_detector(cfg):
        return _make(DetectorSpec.resolve(cfg))
except ImportError:  # --code: a checkout from before faceproc/detectors/ (issue 20)
    from faceproc.detect import make_detector  # noqa: E402
    from faceproc.photo_eval import build_photos, validation_faces  # noqa: E402
from faceproc.synth import box_inside, mosaic  # noqa: E402

OPTIONS = {} if _CODE else {
    "openvino bf16, smallest_face 40 (default)": ScrfdConfig(),
    "openvino bf16, smallest_face 32": ScrfdConfig(smallest_face=32),
    "openvino bf16, smallest_face 24": ScrfdConfig(smallest_face=24),
    "openvino bf16, every photo at its decoded resolution (smallest_face 1)": ScrfdConfig(smallest_face=1),
    "openvino bf16, main pass at 640 only (smallest_face 0)": ScrfdConfig(smallest_face=0),
    "openvino int8, smallest_face 40": ScrfdConfig(precision="int8"),
    "onnxruntime f32, smallest_face 40 (no OpenVINO)": ScrfdConfig(runtime="onnxruntime"),
}
# Before this plan (commit 6b25321, same sets, same machine): passes 160 + 640 + a full-resolution pass for
# photos over 1100 px. Kept as measured then (benchmarks/results/detect_options_before.json).


def group_set(photos_dir: Path, data: str):
    truth_path = photos_dir / "truth.json"
    if not truth_path.exists():
        build_photos(validation_faces(data), photos_dir, n_photos=150, seed=0)
    truth = json.loads(truth_path.read_text())
    items = []
    for name, faces in truth["photos"].items():
        dec = decode_file(str(photos_dir / "photos" / name))
        items.append((dec, [f["tile"] for f in faces]))
    return items


def small_faces_set(files: list[str], sizes=((4000, 3000),) * 4, seed: int = 5):
    """UTKFace crops pasted at 48 px (detected boxes ~40 px wide), 12 per photo, as JPEG files."""
    import cv2

    rng = np.random.default_rng(seed)
    items = []
    with tempfile.TemporaryDirectory() as d:
        for i, size in enumerate(sizes):
            picks = [files[j] for j in rng.choice(len(files), 12, replace=False)]
            img, placed = mosaic(picks, size, 48, rng)
            p = Path(d) / f"big{i}.jpg"
            cv2.imwrite(str(p), img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 92])
            items.append((decode_file(str(p)), [pl.box for pl in placed]))
    return items


def closeup_set(files: list[str], n: int = 200):
    return [(decode_file(f), None) for f in files[:: max(1, len(files) // n)][:n]]


def run(detector, items, kind: str) -> dict:
    detector.detect(items[0][0].rgb)  # warm-up: sessions for the first sizes
    found = total = fp = 0
    seconds = 0.0
    for dec, tiles in items:
        t = time.perf_counter()
        det = detector.detect(dec.rgb, scale=dec.scale)
        seconds += time.perf_counter() - t
        boxes = det.boxes / dec.scale
        if kind == "closeup":
            h, w = dec.height, dec.width
            total += 1
            found += any(abs((b[0] + b[2]) / 2 - w / 2) < 0.2 * w and (b[2] - b[0]) > 0.3 * w for b in boxes)
        elif kind == "small":
            total += len(tiles)
            found += sum(any(box_inside(b, t, slack=0.1) for b in boxes) for t in tiles)
        else:
            assigned, n_fp = match(boxes, det.scores, tiles)
            total += len(tiles)
            found += sum(a >= 0 for a in assigned)
            fp += n_fp
    return {"images": len(items), "faces": total, "found": int(found), "recall": found / max(total, 1),
            "false_positives": int(fp), "ms_per_image": 1000 * seconds / len(items)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=os.environ.get("FACEPROC_UTKFACE", "../shared/data/utkface"))
    ap.add_argument("--photos", default="runs/photo_eval", help="evaluate-photos work folder (built if missing)")
    ap.add_argument("--out", default="benchmarks/results/detect_options.json")
    ap.add_argument("--only", nargs="*", help="option names to run (default: all)")
    ap.add_argument("--code", help="another checkout: its detector at its own defaults, instead of the options")
    args = ap.parse_args()
    if args.code:
        OPTIONS[f"defaults of {args.code}"] = None
    files = sorted(str(p) for p in Path(args.data).glob("*.jpg"))
    sets = {"group photos": (group_set(Path(args.photos), args.data), "group"),
            "40 px faces in 12 MP": (small_faces_set(files), "small"),
            "40 px faces in 2-3 MP": (small_faces_set(files, ((2048, 1536), (1600, 1200)) * 4, seed=6), "small"),
            "close-ups": (closeup_set(files), "closeup")}
    results = {}
    for name, scrfd in OPTIONS.items():
        if args.only and name not in args.only:
            continue
        det = make_detector(DetectorConfig(threads=1) if scrfd is None else DetectorConfig(threads=1, scrfd=scrfd))
        results[name] = {s: run(det, items, kind) for s, (items, kind) in sets.items()}
        r = results[name]
        print(f"{name:<34} " + " | ".join(
            f"{s}: recall {100 * v['recall']:.1f}% ({v['found']}/{v['faces']}), {v['ms_per_image']:.0f} ms/img"
            for s, v in r.items()), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"machine": {"cpus": os.cpu_count()}, "threads": 1, "options": results},
                                         indent=1))


if __name__ == "__main__":
    main()
