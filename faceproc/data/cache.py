"""Crop cache: the project's own decode -> detect -> crop run once over every training image.

Training crops are therefore exactly inference crops. Crops are stored as JPEG (quality 95) in one
Parquet file with the labels (~5.3 KB a face: UTKFace's 21k faces take 111 MB); a second run with the
same inputs and detector settings reuses it. `pack_cache` re-encodes a cache as WebP (~1.5 KB a face)
with its split manifest beside it: a self-contained training set for a GPU machine that has neither
the raw images nor the detector (`faceproc train --cache packed.parquet` needs no --data; data/recut.py). When a training
image holds several faces, the most central of the large ones is the labelled face; images where no
face is found are recorded (status `no_face`) and left out of training and evaluation.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import time
from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..config import Config, DecodeConfig, DetectorConfig, row_settings
from ..crop import LEGACY_POLICY, crop_face
from ..decode import DecodeFailure, decode_file
from ..detectors.files import DetectorSpec
from ..schema import NO_FACES
from ..storage import write_text_atomic
from .records import FaceRecord

log = logging.getLogger(__name__)

# The cache stores crops cut under one fixed policy (plus the keypoints, so `load_crops` cuts any other
# without detecting again): changing the default policy must not invalidate 25 minutes of detection.
STORED_POLICY = LEGACY_POLICY

CACHE_SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("path", pa.string()),
        ("source", pa.string()),
        ("age", pa.float32()),
        ("gender", pa.int8()),
        ("age_conf", pa.float32()),
        ("gender_conf", pa.float32()),
        ("status", pa.string()),  # ok | no_face | <decode status>
        ("det_score", pa.float32()),
        ("n_faces", pa.int16()),
        ("crop_jpeg", pa.binary()),  # encoded crop: JPEG, or WebP in a packed cache (cv2 decodes both)
        # The labelled face's detection in source pixels: lets another crop policy be cut without detecting again.
        ("box", pa.list_(pa.float32(), 4)),
        ("kps", pa.list_(pa.float32(), 10)),
        ("width", pa.int32()),
        ("height", pa.int32()),
    ]
)


def pick_face(boxes: np.ndarray, scores: np.ndarray, width: int, height: int) -> int:
    """Index of the labelled face: large and central wins (a training crop shows one person)."""
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    cx = (boxes[:, 0] + boxes[:, 2]) / 2 - width / 2
    cy = (boxes[:, 1] + boxes[:, 3]) / 2 - height / 2
    return int(np.argmax(area - 2.0 * (cx**2 + cy**2) + 1e-3 * scores))


def cache_fingerprint(records: list[FaceRecord], spec: DetectorSpec, dec_cfg: DecodeConfig) -> str:
    """Keyed by what changes the crops only: the detector's and the decoder's row-changing settings (not its
    threads, not where its file lies) and the detector file's checksum, the stored policy and the labels."""
    rows = row_settings(Config(decode=dec_cfg, detector=spec.settings))
    head = {"policy": STORED_POLICY.name, "det": rows["detector"], "dec": rows["decode"],
            "det_sha256": spec.file.sha256 if spec.file else None}
    return _digest(head, records)


def _legacy_fingerprint(records: list[FaceRecord], det_cfg: DetectorConfig, dec_cfg: DecodeConfig) -> str:
    """The key of caches built before cache_fingerprint (it held every detector setting): recognised once."""
    det = {k: v for k, v in det_cfg.__dict__.items() if not (k == "kind" and v == "scrfd")}  # caches before kinds
    return _digest({"policy": STORED_POLICY.name, "det": det, "dec": dec_cfg.__dict__}, records)


def _digest(head: dict, records: list[FaceRecord]) -> str:
    h = hashlib.sha256()
    h.update(json.dumps(head, sort_keys=True, default=str).encode())
    for r in sorted(records, key=lambda r: r.key):
        h.update(f"{r.key}|{r.age}|{r.gender}\n".encode())
    return h.hexdigest()[:16]


def build_cache(
    records: list[FaceRecord],
    out_path: str | os.PathLike,
    det_cfg: DetectorConfig | None = None,
    dec_cfg: DecodeConfig | None = None,
    progress_every: int = 1000,
) -> dict:
    """Write the cache (or reuse a matching one). Returns its summary (counts, failures)."""
    det_cfg = det_cfg or DetectorConfig()
    dec_cfg = dec_cfg or DecodeConfig()
    out_path = Path(out_path)
    meta_path = out_path.with_suffix(".json")
    spec = DetectorSpec.resolve(det_cfg)
    fp = cache_fingerprint(records, spec, dec_cfg)
    if out_path.exists() and meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if meta.get("fingerprint") in (fp, _legacy_fingerprint(records, det_cfg, dec_cfg)):
            log.info("reusing crop cache %s", out_path)
            if meta["fingerprint"] != fp:  # an older key: the same crops, recorded under today's key
                meta["fingerprint"] = fp
                write_text_atomic(json.dumps(meta, indent=1), meta_path)
            return meta
    from ..detectors.registry import make_detector

    detector = make_detector(spec)
    cols: dict[str, list] = {name: [] for name in CACHE_SCHEMA.names}
    counts: dict[str, int] = {}
    t0 = time.time()
    for i, r in enumerate(records):
        status, score, n, jpeg, box, kps, wh = "ok", float("nan"), 0, None, None, None, (None, None)
        try:
            dec = decode_file(r.path, dec_cfg)
            det = detector.detect(dec.rgb)
            n = len(det)
            wh = (int(dec.rgb.shape[1]), int(dec.rgb.shape[0]))
            if n == 0:
                status = NO_FACES
            else:
                j = pick_face(det.boxes, det.scores, dec.rgb.shape[1], dec.rgb.shape[0])
                crop = crop_face(dec.rgb, det.boxes[j], det.kps[j], policy=STORED_POLICY)
                ok, buf = cv2.imencode(".jpg", crop[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
                jpeg, score = buf.tobytes(), float(det.scores[j])
                box, kps = [float(v) for v in det.boxes[j][:4]], [float(v) for v in np.asarray(det.kps[j]).reshape(-1)]
        except DecodeFailure as e:
            status = e.status
        counts[status] = counts.get(status, 0) + 1
        for name, value in zip(
            CACHE_SCHEMA.names,
            (r.key, r.path, r.source, r.age, r.gender, r.age_conf, r.gender_conf, status, score, n, jpeg, box, kps, *wh),
        ):
            cols[name].append(value)
        if progress_every and (i + 1) % progress_every == 0:
            rate = (i + 1) / (time.time() - t0)
            log.info("crop cache: %d/%d images, %.1f img/s, %s", i + 1, len(records), rate, counts)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.name + ".tmp")
    pq.write_table(pa.table(cols, schema=CACHE_SCHEMA), tmp)
    os.replace(tmp, out_path)
    failed = [k for k, s in zip(cols["key"], cols["status"]) if s != "ok"]
    meta = {
        "fingerprint": fp,
        "crop_policy": STORED_POLICY.name,
        "images": len(records),
        "counts": counts,
        "found_fraction": counts.get("ok", 0) / max(len(records), 1),
        "failed_keys": failed,
        "handling": "images without a detected face are excluded from training and evaluation",
        "seconds": round(time.time() - t0, 1),
        "detector": {**dataclasses.asdict(det_cfg), "file": spec.label, "sha256": spec.file.sha256},
    }
    write_text_atomic(json.dumps(meta, indent=1), meta_path)
    return meta


def load_cache(path: str | os.PathLike, keys: set[str] | None = None) -> dict[str, np.ndarray]:
    """Decoded crops (N,128,128,3 uint8, RGB) and labels of the usable rows."""
    t = pq.read_table(path)
    df = t.to_pandas()
    df = df[df["status"] == "ok"]
    if keys is not None:
        df = df[df["key"].isin(keys)]
    crops = np.stack([cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_COLOR)[..., ::-1] for b in df["crop_jpeg"]]) if len(df) else np.zeros((0, 128, 128, 3), np.uint8)
    return {
        "key": df["key"].to_numpy(),
        "crops": np.ascontiguousarray(crops),
        "age": df["age"].to_numpy(np.float32),
        "gender": df["gender"].to_numpy(np.float32),
    }


def cache_records(path: str | os.PathLike) -> list[FaceRecord]:
    """The labelled records a cache was built from (for training where the raw images are absent)."""
    df = pq.read_table(path, columns=["path", "source", "age", "gender", "age_conf", "gender_conf"]).to_pandas()
    return [
        FaceRecord(path=p, age=float(a), gender=int(g), source=s, age_conf=float(ac), gender_conf=float(gc))
        for p, s, a, g, ac, gc in zip(df["path"], df["source"], df["age"], df["gender"], df["age_conf"], df["gender_conf"])
    ]


def stored_policy(path: str | os.PathLike) -> str:
    """The policy a cache's stored crops were cut under (its meta; caches from before policies changed: the
    legacy one)."""
    meta_path = Path(path).with_suffix(".json")
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    return meta.get("crop_policy") or LEGACY_POLICY.name
