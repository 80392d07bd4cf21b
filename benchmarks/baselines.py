"""What faceproc is measured against (benchmarks/annotate.py): the naive loop, and the stage-sum limit with
the check of how much of the cores' sum one-thread work really gets here (parallel scaling)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


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


def parallel_efficiency(script: str, corpus: Path, n: int = 40) -> dict:
    """How much of the cores' sum one-thread jobs really get here: the same slice alone, then one copy
    per core at once, each in a fresh interpreter (`script --part slice`). The stage-sum limit assumes 1.0."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}

    def run(copies: int) -> float:
        cmd = [sys.executable, script, "--part", "slice", "--corpus", str(corpus), "--slice", str(n)]
        procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env, stderr=subprocess.DEVNULL)
                 for _ in range(copies)]
        return max(json.loads(p.communicate()[0].strip().splitlines()[-1])["seconds"] for p in procs)

    alone, together = run(1), run(os.cpu_count() or 1)
    return {"slice_images": n, "alone_s": alone, "concurrent_s": together, "efficiency": alone / together}
