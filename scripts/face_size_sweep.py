"""How age and gender estimates degrade with face size and sharpness, and where they stop being useful.

Validation faces of the SELECTION half (faceproc.data.split.validation_half; --half report only to compare: a
threshold is a choice, and one made on the report half would leave its figures no longer held out) are pasted
into small seeded photos (photo_eval.build_photos, pasted squares from 16 px: detected faces from ~13 px) and,
for sharpness, a second set whose source faces are blurred first; the real `faceproc annotate` (shipped
unfrozen model, nothing withheld) runs on both; detections are matched to the truth and scored by detected face
size (faces.face_px, what the rule looks at) and by sharpness. Three photo seeds are pooled (--seeds): one
seed's bands of ~80 faces under 32 px move by several years from seed to seed, enough to move the threshold
by a band; the JSON keeps each seed's own threshold beside the pooled one.

Where estimates stop being useful: a band is useful when its age MAE has kept at least half of what the model
gains over guessing (MAE at most halfway between the reference, faces of 64 px and more, and the MAE of always
answering the median age) and so has its gender accuracy (at least halfway between the reference and always
answering the majority gender). The threshold is the lower edge of the smallest band from which every band up
(with 20 faces or more) is useful. The rule first written here (MAE within 25% of the reference, accuracy
within 5 points) is also computed and reported ("strict"): it reacts to the noise of bands of ~110 faces
(standard error ~0.6 years) rather than to where estimates stop carrying information.

    export FACEPROC_INSIGHTFACE_ROOT=/work/shared/models/insightface
    nice python scripts/face_size_sweep.py --data /work/shared/data/utkface --work /tmp/face_size
    # -> benchmarks/results/face_size.json (about 2-3 minutes of CPU a seed; a finished seed's run is reused)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from faceproc.data.split import REPORT, SELECT  # noqa: E402
from faceproc.photo_eval import build_photos, match, validation_faces  # noqa: E402

SIZE_EDGES = (8, 12, 16, 20, 24, 32, 40, 48, 64, 96, 128, 100000)
REFERENCE_PX = 64  # faces this large and up are the reference the rule compares with
MAE_SLACK, ACC_SLACK = 1.25, 0.05  # the strict rule, reported beside the one used
HALF_NAME = {SELECT: "SELECTION", REPORT: "REPORT"}


def _annotate(photos: Path, out: Path, model: str) -> float:
    """The real CLI, in a child process, with nothing withheld (so every face gets its raw estimate). A
    finished output is reused (rescoring costs nothing)."""
    if (out / "report.json").exists():
        return sum(h.get("seconds") or 0 for h in json.loads((out / "manifest.json").read_text())["history"])
    cfg = out.parent / f"{out.name}.yaml"
    cfg.write_text("model:\n  min_face_px: 0\n  min_sharpness: 0\n")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    t0 = time.time()
    subprocess.run([sys.executable, "-c", "import sys; from faceproc.cli import main; sys.exit(main())", "annotate",
                    str(photos), "-o", str(out), "--model", model, "--engine", "local", "--config", str(cfg),
                    "--force"], check=True, env=env)
    return time.time() - t0


def _blurred(faces: list, work: Path, seed: int) -> list:
    """Copies of the faces blurred with a seeded Gaussian (sigma 0-6 px on the 200 px source)."""
    rng = np.random.default_rng(seed)
    (work / "blurred_src").mkdir(parents=True, exist_ok=True)
    out = []
    for f in faces:
        sigma = float(rng.uniform(0, 6))
        dst = work / "blurred_src" / os.path.basename(f.path)
        if not dst.exists():
            img = cv2.imread(f.path, cv2.IMREAD_COLOR)
            cv2.imwrite(str(dst), cv2.GaussianBlur(img, (0, 0), sigma) if sigma > 0.3 else img)
        out.append(dataclasses.replace(f, path=str(dst)))
    return out


def _matched(out: Path, truth: dict) -> np.ndarray:
    """(true age, true gender, age, female_prob, face_px, sharpness, pasted face side) per matched face."""
    import pandas as pd

    faces = pd.read_parquet(out / "faces")
    by_name = {Path(p).name: g for p, g in faces.groupby("image_path")}
    rows = []
    for name, tf in truth["photos"].items():
        g = by_name.get(name)
        if g is None or not tf:
            continue
        assigned, _ = match(g[["x1", "y1", "x2", "y2"]].to_numpy(np.float64), g["det_score"].to_numpy(),
                            [t["tile"] for t in tf])
        for (_, r), a in zip(g.iterrows(), assigned):
            if a >= 0:
                t = tf[a]
                rows.append((t["age"], t["gender"], r.age, r.female_prob, r.face_px, r.sharpness,
                             (t["tile"][2] - t["tile"][0]) / 2))
    return np.array(rows, np.float64).reshape(-1, 7)


def _score(a: np.ndarray) -> dict:
    n = len(a)
    if not n:
        return {"n": 0}
    err = np.abs(a[:, 2] - a[:, 0])
    ok = (a[:, 3] >= 0.5) == (a[:, 1] >= 0.5)
    return {"n": int(n), "age_mae": round(float(err.mean()), 2), "gender_acc": round(float(ok.mean()), 3)}


def _bands(a: np.ndarray, col: int, edges) -> dict:
    return {f"{lo}-{hi if hi < 100000 else ''}": _score(a[(a[:, col] >= lo) & (a[:, col] < hi)])
            for lo, hi in zip(edges[:-1], edges[1:])}


def _baseline(a: np.ndarray) -> dict:
    """What answering without looking gives: the MAE of always the median age, the majority gender's share."""
    return {"age_mae": float(np.abs(a[:, 0] - np.median(a[:, 0])).mean()),
            "gender_acc": float(max(a[:, 1].mean(), 1 - a[:, 1].mean()))}


def _useful(v: dict, ref: dict, base: dict, strict: bool = False) -> bool:
    if strict:
        return v["age_mae"] <= MAE_SLACK * ref["age_mae"] and v["gender_acc"] >= ref["gender_acc"] - ACC_SLACK
    return (v["age_mae"] <= (ref["age_mae"] + base["age_mae"]) / 2
            and v["gender_acc"] >= (ref["gender_acc"] + base["gender_acc"]) / 2)


def _threshold(bands: dict, ref: dict, base: dict, strict: bool = False, min_n: int = 20):
    """Lower edge of the smallest band from which every band up (with min_n faces) is useful."""
    useful = [(float(k.split("-")[0]), _useful(v, ref, base, strict)) for k, v in bands.items() if v["n"] >= min_n]
    edge = None
    for lo, ok in reversed(useful):
        if not ok:
            break
        edge = lo
    return edge


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="/work/shared/data/utkface")
    ap.add_argument("--work", default="/tmp/face_size_sweep")
    ap.add_argument("--model", default="unfrozen")
    ap.add_argument("--half", choices=(SELECT, REPORT), default=SELECT,
                    help="validation half the faces come from: select (thresholds are chosen here) or report")
    ap.add_argument("--photos", type=int, default=240, help="photos of the size set")
    ap.add_argument("--blur-photos", type=int, default=100, help="photos of the blurred set")
    ap.add_argument("--seeds", type=int, nargs="+", default=[3, 11, 19],
                    help="photo seeds (a blurred set uses seed + 1), pooled: each seed pastes the same faces at other "
                    "sizes, so one seed's bands under 32 px (~80 faces) move by several years between seeds")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "face_size.json"))
    args = ap.parse_args()
    work = Path(args.work)
    faces = validation_faces(args.data, half=args.half)
    if not faces:
        sys.exit(f"no validation faces of the {args.half} half under {args.data}")
    order = np.random.default_rng(1).permutation(len(faces))
    half = len(faces) * 2 // 3
    size_faces, blur_faces = [faces[i] for i in order[:half]], [faces[i] for i in order[half:]]
    t0 = time.time()
    # Small photos (0.12-0.3 MP: decoded and detected at full resolution) so the faces reach the model at their
    # own size. build_photos pastes squares of 2 x min_face px up to 2/3 of the short side; the detector's box
    # is ~0.8 of the square: squares from 16 px give faces (face_px) from ~13 px.
    sets = {"sizes": (size_faces, args.photos, 8), "blurred": (_blurred(blur_faces, work, 2), args.blur_photos, 20)}
    results, seconds, per_seed = {"sizes": [], "blurred": []}, {}, {}
    for seed in args.seeds:
        for name, (recs, n, lo) in sets.items():
            w = work / f"seed{seed}"
            truth = build_photos(recs, w / name, n_photos=n, seed=seed if name == "sizes" else seed + 1, min_face=lo,
                                 megapixels=(0.12, 0.3))
            seconds[f"{name}_seed{seed}"] = round(_annotate(w / name / "photos", w / f"out_{name}", args.model), 1)
            results[name].append((truth, _matched(w / f"out_{name}", truth)))
        a = results["sizes"][-1][1]
        per_seed[seed] = _threshold(_bands(a, 4, SIZE_EDGES), _score(a[a[:, 4] >= REFERENCE_PX]), _baseline(a))
    sizes = np.concatenate([m for _, m in results["sizes"]])
    both = np.concatenate([sizes] + [m for _, m in results["blurred"]])
    ref = _score(sizes[sizes[:, 4] >= REFERENCE_PX])
    base = _baseline(sizes)
    by_size = _bands(sizes, 4, SIZE_EDGES)
    min_px = _threshold(by_size, ref, base)
    big = both[both[:, 4] >= (min_px or 0)]
    sharp_edges = tuple(float(round(v, 1)) for v in np.quantile(big[:, 5], np.linspace(0, 1, 21))[:-1]) + (1e9,)
    by_sharp = _bands(big, 5, sharp_edges)
    sharp_ref = _score(big[big[:, 5] >= np.median(big[:, 5])])
    min_sharp = _threshold(by_sharp, sharp_ref, base)
    true_sizes = [t["tile"][2] - t["tile"][0] for truth, _ in results["sizes"] for tf in truth["photos"].values()
                  for t in tf]
    prob = sizes[sizes[:, 4] >= (min_px or 0)]
    sure = (prob[:, 3] < 0.35) | (prob[:, 3] > 0.65)
    body = {
        "what": f"{args.model} model on {HALF_NAME[args.half]}-half UTKFace validation faces pasted into 0.12-0.3 MP "
                "photos; faceproc annotate (local engine), nothing withheld; matched detections scored by detected "
                "face size (face_px) and by sharpness (faces >= the size threshold, size and blurred sets)",
        "rule": "useful: age MAE <= (reference + no-information MAE) / 2 and gender accuracy >= (reference + "
                f"majority share) / 2 (reference: faces >= {REFERENCE_PX} px; for sharpness: the sharper half of faces "
                "above the size threshold); threshold = lower edge of the smallest band from which every band up "
                "with >= 20 faces is useful",
        "strict_rule": {"rule": f"age MAE <= {MAE_SLACK} x reference and gender accuracy >= reference - {ACC_SLACK}",
                        "min_face_px": _threshold(by_size, ref, base, strict=True),
                        "min_sharpness": _threshold(by_sharp, sharp_ref, base, strict=True)},
        "half": args.half,
        "seeds": args.seeds,
        "min_face_px_by_seed": {str(k): v for k, v in per_seed.items()},  # the same rule on one seed's photos
        "faces": {f"{args.half}_half": len(faces), "size_set": len(true_sizes), "matched": int(len(sizes)),
                  "blurred_set_matched": int(sum(len(m) for _, m in results["blurred"]))},
        # detected / pasted faces by the pasted square's side (the detector's box is ~0.8 of it)
        "recall_by_pasted_square_px": {k: {"faces": int(sum(lo <= s < hi for s in true_sizes))} for k, (lo, hi) in
                                  {f"{lo}-{hi}": (lo, hi) for lo, hi in zip(SIZE_EDGES[:-1], SIZE_EDGES[1:])}.items()},
        "baseline_no_information": {"age_mae_predicting_median": round(base["age_mae"], 2),
                                    "gender_acc_majority": round(base["gender_acc"], 3)},
        "reference": ref,
        "by_face_px": by_size,
        "min_face_px": min_px,
        "by_sharpness": by_sharp,
        "min_sharpness": min_sharp,
        "gender_uncertain_0.35-0.65": {"share": round(float(1 - sure.mean()), 3),
                                       "acc_uncertain": _score(prob[~sure]).get("gender_acc"),
                                       "acc_sure": _score(prob[sure]).get("gender_acc")},
        "seconds": {**seconds, "total": round(time.time() - t0, 1)},
    }
    for k, v in body["recall_by_pasted_square_px"].items():
        lo, hi = (float(x) for x in k.split("-"))
        v["found"] = int(((2 * sizes[:, 6] >= lo) & (2 * sizes[:, 6] < hi)).sum())
        v["recall"] = round(v["found"] / v["faces"], 3) if v["faces"] else None
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(body, indent=1) + "\n")
    print(json.dumps({k: body[k] for k in ("reference", "min_face_px", "min_sharpness", "by_face_px")}, indent=1))


if __name__ == "__main__":
    main()
