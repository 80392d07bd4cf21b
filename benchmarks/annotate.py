"""Annotate benchmark: naive loop vs. stage-sum limit vs. faceproc, on one fixed, seeded corpus.

    python benchmarks/annotate.py                      # speed: ~200 images, a few minutes
    python benchmarks/annotate.py --memory 1000 5000   # peak memory growth from 1,000 to 5,000 images

Corpus: mosaics of UTKFace faces (../shared/data/utkface) on textured backgrounds, 0-12 faces per image,
photo sizes from VGA to 12 MP, JPEG; built once per (seed, n) under benchmarks/corpus/.
Writes benchmarks/results/<mode>.json and prints the same.

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
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = Path(os.environ.get("FACEPROC_SHARED", REPO.parent / "shared"))
os.environ.setdefault("FACEPROC_INSIGHTFACE_ROOT", str(SHARED / "models" / "insightface"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

SIZES = [((640, 480), 0.3), ((1280, 960), 0.3), ((2048, 1536), 0.25), ((4000, 3000), 0.15)]


# ------------------------------------------------------------------------------------ corpus

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


def corpus_files(root: Path) -> list[str]:
    from faceproc.discover import IMAGE_EXTENSIONS

    return sorted(str(p) for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)


# ------------------------------------------------------------------------------------ helpers

class PeakRSS:
    """Samples the RSS of this process and of every descendant (Ray workers included)."""

    def __init__(self, interval=0.2):
        import psutil

        self.p = psutil.Process()
        self.interval = interval
        self.driver = 0
        self.workers = 0
        self.total = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        import psutil

        while not self._stop.is_set():
            try:
                d = self.p.memory_info().rss
                kids = 0
                wmax = 0
                for c in self.p.children(recursive=True):
                    try:
                        r = c.memory_info().rss
                    except psutil.Error:
                        continue
                    kids += r
                    if "ShardWorker" in " ".join(c.cmdline() or []) or "ShardWorker" in c.name():
                        wmax = max(wmax, r)
                self.driver = max(self.driver, d)
                self.workers = max(self.workers, wmax)
                self.total = max(self.total, d + kids)
            except psutil.Error:
                pass
            self._stop.wait(self.interval)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *a):
        self._stop.set()
        self._t.join()

    def as_dict(self):
        mb = 1 / 2**20
        return {"driver_mb": round(self.driver * mb, 1), "worker_max_mb": round(self.workers * mb, 1),
                "all_processes_mb": round(self.total * mb, 1)}


def model_config():
    from faceproc.agegender.spec import resolve_weights_dir
    from faceproc.config import ModelConfig

    cfg = ModelConfig()
    if not (resolve_weights_dir(cfg) / "unfrozen.keras").exists():
        cfg.random_init = True  # same compute as the trained model
    return cfg


# ------------------------------------------------------------------------------------ runs

def run_naive(files: list[str]) -> dict:
    import cv2
    from insightface.app import FaceAnalysis

    from faceproc.agegender.architecture import preprocess
    from faceproc.agegender.runtime import AgeGenderPredictor
    from faceproc.agegender.spec import ModelSpec
    from faceproc.crop import crop_face

    app = FaceAnalysis(name="buffalo_m", root=os.environ["FACEPROC_INSIGHTFACE_ROOT"], allowed_modules=["detection"],
                       providers=["CPUExecutionProvider"])
    app.prepare(ctx_id=-1)  # insightface 2.1 default: passes at 128 and 640
    cfg = model_config()
    cfg.runtime = "keras"  # the naive loop is a Keras model called with predict() per face
    predictor = AgeGenderPredictor(ModelSpec.resolve(cfg))
    model, policy = predictor.model, predictor.policy  # crops cut the way the model's card says
    t0 = time.perf_counter()
    n_faces = 0
    for f in files:
        bgr = cv2.imread(f)
        faces = app.get(bgr)
        rgb = bgr[..., ::-1]
        for face in faces:
            crop = crop_face(rgb, face.bbox, face.kps, policy=policy)
            model.predict(preprocess(crop[None]), verbose=0)
            n_faces += 1
    s = time.perf_counter() - t0
    return {"seconds": s, "images": len(files), "faces": n_faces, "images_per_s": len(files) / s, "faces_per_s": n_faces / s}


def run_stages(files: list[str], batch_sizes=(16, 32, 64, 128)) -> dict:
    from faceproc.config import Config
    from faceproc.crop import crop_faces
    from faceproc.decode import DecodeFailure, decode_file
    from faceproc.agegender.runtime import AgeGenderPredictor
    from faceproc.agegender.spec import ModelSpec
    from faceproc.detectors.files import DetectorSpec
    from faceproc.detectors.registry import make_detector

    cfg = Config()
    # Each pipeline worker runs its stages on one core (one onnxruntime / TensorFlow thread); measure the
    # stages the same way, then divide by the cores. Measuring with all threads and dividing again
    # would count the cores twice.
    cfg.detector.threads = 1
    t = time.perf_counter()
    decoded = []
    for f in files:
        try:
            decoded.append(decode_file(f, cfg.decode))
        except DecodeFailure:
            pass
    t_decode = time.perf_counter() - t
    det = make_detector(DetectorSpec.resolve(cfg.detector))
    t = time.perf_counter()
    dets = [det.detect(d.rgb, scale=d.scale) for d in decoded]
    t_detect = time.perf_counter() - t
    policy = ModelSpec.resolve(model_config()).policy  # the card's policy
    t = time.perf_counter()
    crops = [crop_faces(im.rgb, d.boxes, d.kps, policy=policy) for im, d in zip(decoded, dets)]
    t_crop = time.perf_counter() - t
    crops = np.concatenate(crops) if crops else np.zeros((0, 128, 128, 3), np.uint8)
    best = None
    per_bs = {}
    for bs in batch_sizes:
        mc = model_config()
        mc.batch_size = bs
        mc.threads = 1
        pred = AgeGenderPredictor(ModelSpec.resolve(mc))
        pred.predict(crops[:bs])  # trace
        t = time.perf_counter()
        pred.predict(crops)
        per_bs[bs] = time.perf_counter() - t
        best = bs if best is None or per_bs[bs] < per_bs[best] else best
    stage = {"decode": t_decode, "detect": t_detect, "crop": t_crop, "predict": per_bs[best]}
    return {"stage_seconds": stage, "predict_seconds_by_batch": per_bs, "best_batch": best,
            "faces": int(len(crops)), "sum_seconds": sum(stage.values())}


def run_faceproc(corpus: Path, out: Path, engine: str = "ray", batch_size: int | None = None, workers: int = 0) -> dict:
    from faceproc.config import Config
    from faceproc.engine import annotate

    cfg = Config()
    cfg.model = model_config()
    if batch_size:
        cfg.model.batch_size = batch_size
    cfg.run.workers = workers
    shutil.rmtree(out, ignore_errors=True)
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        rep = annotate([str(corpus)], out, cfg, engine=engine, progress=False)
        s = time.perf_counter() - t0
    return {"seconds": s, "images": rep["files"], "faces": rep["faces"], "images_per_s": rep["files"] / s,
            "faces_per_s": rep["faces"] / s, "memory": mem.as_dict(), "engine": engine, "workers": workers,
            "steady_state": steady_state(out / "faceproc.log", rep["files"])}


def steady_state(log: Path, files: int) -> dict | None:
    """From the run's log: start-up (until the workers are ready) and the images/s from then to the last shard."""
    import datetime as dt
    import re

    stamp = lambda line: dt.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()  # noqa: E731
    lines = log.read_text().splitlines() if log.exists() else []
    start = next((stamp(x) for x in lines if "starting an embedded Ray" in x or "attaching to the Ray" in x), None)
    ready = next((stamp(x) for x in lines if "workers ready" in x), None)
    done = [stamp(x) for x in lines if re.search(r"shard \w+ done", x)]
    if ready is None or not done:
        return None
    return {"startup_s": round(ready - start, 2) if start else None, "work_s": round(done[-1] - ready, 2),
            "images_per_s": files / max(done[-1] - ready, 1e-9)}


def run_job_script(corpus: Path, out: Path) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, str(REPO / "jobs" / "annotate.py"), "--input", str(corpus), "--output", str(out)]
    if model_config().random_init:
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


def run_detect_slice(files: list[str]) -> dict:
    """Single-threaded decode + detect over files (for the parallel-scaling measurement)."""
    from faceproc.config import Config
    from faceproc.decode import decode_file
    from faceproc.detectors.files import DetectorSpec
    from faceproc.detectors.registry import make_detector

    cfg = Config()
    cfg.detector.threads = 1
    det = make_detector(DetectorSpec.resolve(cfg.detector))
    t = time.perf_counter()
    for f in files:
        dec = decode_file(f, cfg.decode)
        det.detect(dec.rgb, scale=dec.scale)
    return {"seconds": time.perf_counter() - t}


def parallel_efficiency(corpus: Path, n: int = 40) -> dict:
    """How much of the cores' sum one-thread jobs really get here: the same slice alone, then one copy
    per core at once. The stage-sum limit assumes 1.0."""
    cores = os.cpu_count() or 1
    args = ["--corpus", str(corpus), "--slice", str(n)]
    alone = _part("slice", args)["seconds"]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    procs = [subprocess.Popen([sys.executable, __file__, "--part", "slice"] + args, stdout=subprocess.PIPE, text=True, env=env,
                              stderr=subprocess.DEVNULL) for _ in range(cores)]
    together = max(json.loads(p.communicate()[0].strip().splitlines()[-1])["seconds"] for p in procs)
    return {"slice_images": n, "alone_s": alone, "concurrent_s": together, "efficiency": alone / together}


def run_part(name: str, corpus: Path, workers: int, n_slice: int = 40) -> dict:
    if name == "slice":
        return run_detect_slice(corpus_files(corpus)[:n_slice])
    if name == "naive":
        return run_naive(corpus_files(corpus))
    if name == "limit":
        st = run_stages(corpus_files(corpus))
        st["cores_used"] = os.cpu_count() or 1
        st["images_per_s"] = len(corpus_files(corpus)) / (st["sum_seconds"] / st["cores_used"])
        return st
    if name == "faceproc":
        with tempfile.TemporaryDirectory(prefix="faceproc-bench-") as d:
            return run_faceproc(corpus, Path(d) / "out", workers=workers)
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
    ap.add_argument("--corpus-dir", default=str(REPO / "benchmarks" / "corpus"))
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    ap.add_argument("--part", help=argparse.SUPPRESS)
    ap.add_argument("--corpus", help=argparse.SUPPRESS)
    ap.add_argument("--slice", type=int, default=40, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.part:
        print(json.dumps(run_part(a.part, Path(a.corpus), a.workers, a.slice)))
        return 0
    cores = os.cpu_count() or 1
    results: dict = {"machine": {"cpus": cores, "python": sys.version.split()[0]},
                     "model_random_init": model_config().random_init}
    common = ["--workers", str(a.workers)]
    if a.memory:
        small, large = a.memory
        sizes = [((640, 480), 0.7), ((1024, 768), 0.3)]  # many files fast: memory, not pixels, is measured
        for n in (small, large):
            corpus = build_corpus(n, a.seed, Path(a.corpus_dir), sizes)
            results[f"faceproc_{n}"] = _part("faceproc", ["--corpus", str(corpus)] + common)
            print(json.dumps({n: results[f"faceproc_{n}"]}), flush=True)
        m0, m1 = results[f"faceproc_{small}"]["memory"], results[f"faceproc_{large}"]["memory"]
        results["growth"] = {k: (m1[k] / m0[k] - 1) if m0[k] else None for k in m0}
        name = "memory"
    else:
        corpus = build_corpus(a.n, a.seed, Path(a.corpus_dir))
        files = corpus_files(corpus)
        results["corpus"] = {"dir": str(corpus), "images": len(files), "megapixels": round(sum(_mp(f) for f in files), 1)}
        parts = [p for p in ("naive", "limit", "faceproc", "job") if p not in a.skip]
        for p in parts:
            results["faceproc_job_script" if p == "job" else p] = r = _part(p, ["--corpus", str(corpus)] + common)
            print(p, json.dumps(r), flush=True)
        results["corpus"]["layout"] = f"{len({os.path.dirname(f) for f in files})} folders of up to 100 photos"
        if "flat" not in a.skip:  # the same photos in one folder
            results["faceproc_flat"] = r = _part("faceproc", ["--corpus", str(flat_view(corpus))] + common)
            print("faceproc, one flat folder", json.dumps(r), flush=True)
        if a.photos:  # naive loop and faceproc on a folder of real-layout photos, same run
            pf = corpus_files(Path(a.photos))
            results["photos_corpus"] = {"dir": a.photos, "images": len(pf), "megapixels": round(sum(_mp(f) for f in pf), 1),
                                        "layout": f"{len({os.path.dirname(f) for f in pf})} folder(s)"}
            for p in [x for x in ("naive", "limit", "faceproc") if x not in a.skip]:
                results[f"{p}_photos"] = r = _part(p, ["--corpus", a.photos] + common)
                print(f"{p}, photos corpus", json.dumps(r), flush=True)
        if "limit" in results:
            results["parallel_scaling"] = pe = parallel_efficiency(corpus)
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


def _mp(path: str) -> float:
    from PIL import Image

    with Image.open(path) as im:
        return im.size[0] * im.size[1] / 1e6


if __name__ == "__main__":
    sys.exit(main())
