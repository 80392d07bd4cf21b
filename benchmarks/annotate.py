"""Annotate benchmark: naive loop vs. stage-sum limit vs. faceproc, on one fixed, seeded corpus.

    python benchmarks/annotate.py                      # speed: ~200 images, a few minutes
    python benchmarks/annotate.py --memory 1000 5000   # peak memory growth from 1,000 to 5,000 images

Corpus: mosaics of UTKFace faces (../shared/data/utkface) on textured backgrounds, 0-12 faces per image,
photo sizes from VGA to 12 MP, JPEG; built once per (seed, n) under benchmarks/corpus/ (corpora.py).
The memory check runs on copies of 16 small mosaics in one folder (memory.py: peak RSS of the process tree).
Writes benchmarks/results/<mode>.json and prints the same; each faceproc run also says where its time went
(breakdown.py: start-up, discovery, decode, detection, age/gender, commit, report).

naive    : cv2.imread -> insightface FaceAnalysis.get() (its default 128+640 passes) -> the Keras model
           called with predict() on one face at a time.
limit    : each stage alone on the same corpus (decode; detection on decoded images; cropping;
           age/gender on pre-made crops at the best batch size), summed, divided by the cores the
           pipeline uses. A pipeline that overlaps stages perfectly on those cores reaches it.
faceproc : `faceproc annotate` through the engine on a local Ray, and `jobs/annotate.py` as a process.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import baselines
import breakdown
import memory

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from corpora import REPO, SHARED, build_corpus, copies, corpus_files, flat_view  # noqa: E402 (benchmarks/)

os.environ.setdefault("FACEPROC_INSIGHTFACE_ROOT", str(SHARED / "models" / "insightface"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# ------------------------------------------------------------------------------------ runs

def run_faceproc(corpus: Path, out: Path, engine: str = "ray", batch_size: int | None = None, workers: int = 0) -> dict:
    from faceproc.config import Config
    from faceproc.engine import annotate

    cfg = Config()
    cfg.model = baselines.model_config()
    if batch_size:
        cfg.model.batch_size = batch_size
    cfg.run.workers = workers
    shutil.rmtree(out, ignore_errors=True)
    with memory.PeakRSS() as mem, breakdown.Breakdown() as times:
        t0 = time.perf_counter()
        rep = annotate([str(corpus)], out, cfg, engine=engine, progress=False)
        s = time.perf_counter() - t0
    return {"seconds": s, "images": rep["files"], "faces": rep["faces"], "images_per_s": rep["files"] / s,
            "faces_per_s": rep["faces"] / s, "memory": mem.as_dict(), "engine": engine, "workers": workers,
            "steady_state": breakdown.steady_state(out / "faceproc.log", rep["files"]), "breakdown": times.result()}


def run_job_script(corpus: Path, out: Path) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, str(REPO / "jobs" / "annotate.py"), "--input", str(corpus), "--output", str(out)]
    if baselines.model_config().random_init:
        cmd.append("--random-init")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, capture_output=True)
    s = time.perf_counter() - t0
    import pandas as pd

    n = len(pd.read_parquet(out / "images"))
    nf = len(pd.read_parquet(out / "faces"))
    return {"seconds": s, "images": n, "faces": nf, "images_per_s": n / s, "faces_per_s": nf / s}


def _part(name: str, args: list[str]) -> dict:
    """Run one measurement in a fresh interpreter: no TensorFlow or thread settings leak between parts,
    and the memory figures are the part's own."""
    cmd = [sys.executable, __file__, "--part", name] + args
    res = subprocess.run(cmd, capture_output=True, text=True, env={k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"})
    if res.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def run_part(name: str, corpus: Path, workers: int, n_slice: int = 40, engine: str = "ray") -> dict:
    if name == "slice":
        return baselines.run_detect_slice(corpus_files(corpus)[:n_slice])
    if name == "naive":
        return baselines.run_naive(corpus_files(corpus))
    if name == "limit":
        st = baselines.run_stages(corpus_files(corpus))
        st["cores_used"] = os.cpu_count() or 1
        st["images_per_s"] = len(corpus_files(corpus)) / (st["sum_seconds"] / st["cores_used"])
        return st
    if name == "faceproc":
        with tempfile.TemporaryDirectory(prefix="faceproc-bench-") as d:
            return run_faceproc(corpus, Path(d) / "out", engine=engine, workers=workers)
    if name == "job":
        with tempfile.TemporaryDirectory(prefix="faceproc-bench-") as d:
            return run_job_script(corpus, Path(d) / "out")
    raise ValueError(name)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=200, help="images in the speed corpus")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--memory", type=int, nargs=2, metavar=("SMALL", "LARGE"), help="memory-growth mode")
    ap.add_argument("--skip", nargs="*", default=[], choices=["naive", "limit", "job", "flat"])
    ap.add_argument("--photos", help="a third corpus measured in the same run, as it lies (e.g. runs/photo_eval/photos: "
                                     "the evaluate-photos set, 150 photos of 0.5-12 MP in one folder, JPEG/PNG/WebP)")
    ap.add_argument("--workers", type=int, default=0, help="Ray workers for faceproc (0 = one per CPU)")
    ap.add_argument("--engine", default="ray", choices=["ray", "local", "auto"], help="faceproc's engine (default: ray)")
    ap.add_argument("--corpus-dir", default=str(REPO / "benchmarks" / "corpus"))
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    ap.add_argument("--part", help=argparse.SUPPRESS)
    ap.add_argument("--corpus", help=argparse.SUPPRESS)
    ap.add_argument("--slice", type=int, default=40, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.part:
        print(json.dumps(run_part(a.part, Path(a.corpus), a.workers, a.slice, a.engine)))
        return 0
    cores = os.cpu_count() or 1
    results: dict = {"machine": {"cpus": cores, "python": sys.version.split()[0]},
                     "model_random_init": baselines.model_config().random_init}
    common = ["--workers", str(a.workers), "--engine", a.engine]
    if a.memory:
        small, large = a.memory
        for n in (small, large):  # copies of 16 small photos: memory, not pixels, is measured
            corpus = copies(n, a.seed, Path(a.corpus_dir))
            results[f"faceproc_{n}"] = r = _part("faceproc", ["--corpus", str(corpus)] + common)
            print(memory.describe(n, r), flush=True)
            print(breakdown.describe(r["breakdown"], f"{n} images"), flush=True)
        results["growth"] = memory.growth(results[f"faceproc_{small}"], results[f"faceproc_{large}"])
        print(memory.describe_growth(small, large, results["growth"]), flush=True)
        name = "memory"
    else:
        corpus = build_corpus(a.n, a.seed, Path(a.corpus_dir))
        files = corpus_files(corpus)
        results["corpus"] = {"dir": str(corpus), "images": len(files), "megapixels": round(sum(_mp(f) for f in files), 1)}
        parts = [p for p in ("naive", "limit", "faceproc", "job") if p not in a.skip]
        for p in parts:
            results["faceproc_job_script" if p == "job" else p] = r = _part(p, ["--corpus", str(corpus)] + common)
            _show(p, r)
        results["corpus"]["layout"] = f"{len({os.path.dirname(f) for f in files})} folders of up to 100 photos"
        if "flat" not in a.skip:  # the same photos in one folder
            results["faceproc_flat"] = r = _part("faceproc", ["--corpus", str(flat_view(corpus))] + common)
            _show("faceproc, one flat folder", r)
        if a.photos:  # naive loop and faceproc on a folder of real-layout photos, same run
            pf = corpus_files(Path(a.photos))
            results["photos_corpus"] = {"dir": a.photos, "images": len(pf), "megapixels": round(sum(_mp(f) for f in pf), 1),
                                        "layout": f"{len({os.path.dirname(f) for f in pf})} folder(s)"}
            for p in [x for x in ("naive", "limit", "faceproc") if x not in a.skip]:
                results[f"{p}_photos"] = r = _part(p, ["--corpus", a.photos] + common)
                _show(f"{p}, photos corpus", r)
        if "limit" in results:
            results["parallel_scaling"] = pe = baselines.parallel_efficiency(__file__, corpus)
            print("parallel scaling", json.dumps(pe), flush=True)
        fp = results["faceproc"]["images_per_s"]
        results["ratios"] = {
            "faceproc_over_naive": fp / results["naive"]["images_per_s"] if "naive" in results else None,
            "faceproc_flat_over_naive": (results["faceproc_flat"]["images_per_s"] / results["naive"]["images_per_s"]
                                         if "naive" in results and "faceproc_flat" in results else None),
            "faceproc_over_limit": fp / results["limit"]["images_per_s"] if "limit" in results else None,
            "steady_state_over_limit": ((results["faceproc"].get("steady_state") or {}).get("images_per_s", 0)
                                        / results["limit"]["images_per_s"] if "limit" in results else None),
            "faceproc_photos_over_naive": (results["faceproc_photos"]["images_per_s"] / results["naive_photos"]["images_per_s"]
                                           if "faceproc_photos" in results and "naive_photos" in results else None),
            "steady_state_photos_over_limit": ((results["faceproc_photos"].get("steady_state") or {}).get("images_per_s", 0)
                                               / results["limit_photos"]["images_per_s"]
                                               if "faceproc_photos" in results and "limit_photos" in results else None),
            # the limit scaled by what concurrent one-thread work really gets from these cores
            "faceproc_over_limit_x_scaling": (fp / (results["limit"]["images_per_s"] * results["parallel_scaling"]["efficiency"])
                                              if "limit" in results else None),
        }
        name = "speed"
    Path(a.out).mkdir(parents=True, exist_ok=True)
    (Path(a.out) / f"{name}.json").write_text(json.dumps(results, indent=1))
    print(json.dumps(results.get("ratios") or results.get("growth"), indent=1))
    return 0


def _show(label: str, r: dict) -> None:
    print(label, json.dumps({k: v for k, v in r.items() if k != "breakdown"}), flush=True)
    if "breakdown" in r:
        print(breakdown.describe(r["breakdown"], label), flush=True)


def _mp(path: str) -> float:
    from PIL import Image

    with Image.open(path) as im:
        return im.size[0] * im.size[1] / 1e6


if __name__ == "__main__":
    sys.exit(main())
