"""Crop cache: the project's own decode -> detect -> crop run once over every training image.

Training crops are therefore exactly inference crops. Crops are stored as JPEG (quality 95) in one
Parquet file with the labels (~5.3 KB a face: UTKFace's 21k faces take 111 MB); a second run with the
same inputs and detector settings reuses it. `pack_cache` re-encodes a cache as WebP (~1.5 KB a face)
with its split manifest beside it: a self-contained training set for a GPU machine that has neither
the raw images nor the detector (`faceproc train --cache packed.parquet` needs no --data). When a training
image holds several faces, the most central of the large ones is the labelled face; images where no
face is found are recorded (status `no_face`) and left out of training and evaluation.
"""

from __future__ import annotations

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

from ..config import DecodeConfig, DetectorConfig
from ..crop import LEGACY_POLICY, crop_face, crop_face_filled
from ..decode import DecodeFailure, decode_file
from ..schema import NO_FACES, write_text_atomic
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


def cache_fingerprint(records: list[FaceRecord], det_cfg: DetectorConfig, dec_cfg: DecodeConfig) -> str:
    h = hashlib.sha256()
    det = {k: v for k, v in det_cfg.__dict__.items() if not (k == "kind" and v == "scrfd")}  # caches before kinds
    h.update(json.dumps({"policy": STORED_POLICY.name, "det": det, "dec": dec_cfg.__dict__}, sort_keys=True, default=str).encode())
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
    fp = cache_fingerprint(records, det_cfg, dec_cfg)
    if out_path.exists() and meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if meta.get("fingerprint") == fp:
            log.info("reusing crop cache %s", out_path)
            return meta
    from ..detect import make_detector

    detector = make_detector(det_cfg)
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
        "detector": det_cfg.__dict__,
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


def pack_cache(src: str | os.PathLike, dst: str | os.PathLike, quality: int = 80, policy=None,
               fill: str | None = None, split_manifest: str | os.PathLike | None = None) -> dict:
    """Re-encode a crop cache's usable crops as WebP and copy its metadata and split manifests beside it.

    With a policy, the crops are first cut again under it from the stored keypoints (training rows with
    `fill`, validation rows with the repeated border, as evaluation cuts them), so a machine without the
    images trains under that policy. WebP at quality 80 keeps ~38.6 dB PSNR on these crops (JPEG 75:
    39.6 dB at 1.8x the size), so the 21k UTKFace crops travel in ~31 MB. Evaluation for reported metrics
    stays on the original cache."""
    src, dst = Path(src), Path(dst)
    t = pq.read_table(src)
    df = t.to_pandas()
    df = df[df["status"] == "ok"].reset_index(drop=True)
    recut = None
    if policy is not None:
        from .split import read_manifest

        manifests = [Path(split_manifest)] if split_manifest else sorted(src.parent.glob(src.stem + ".split-*.json"))
        if fill and not manifests:
            raise ValueError(f"no split manifest beside {src}: needed to fill training crops from training images only")
        groups = read_manifest(manifests[0])[0] if manifests else {}
        train_keys = {k for k in df["key"] if groups.get(k, "train") == "train"}
        parts = [load_crops(src, policy, fill, keys=train_keys, groups=groups),
                 load_crops(src, policy, None, keys=set(df["key"]) - train_keys)]
        recut = {k: c for part in parts for k, c in zip(part["key"], part["crops"])}
    packed = []
    for key, b in zip(df["key"], df["crop_jpeg"]):
        img = cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_COLOR) if recut is None else recut[key][..., ::-1]
        ok, buf = cv2.imencode(".webp", img, [cv2.IMWRITE_WEBP_QUALITY, int(quality)])
        if not ok:
            raise RuntimeError("WebP encoding failed (OpenCV built without WebP?)")
        packed.append(buf.tobytes())
    df["crop_jpeg"] = packed
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".tmp")
    schema = pa.schema([f for f in CACHE_SCHEMA if f.name in df.columns])  # caches from before keypoints were kept
    pq.write_table(pa.Table.from_pandas(df, schema=schema, preserve_index=False), tmp)
    os.replace(tmp, dst)
    src_meta = src.with_suffix(".json")
    meta = json.loads(src_meta.read_text()) if src_meta.exists() else {}
    meta.update(packed_from=src.name, encoding=f"webp q{int(quality)}", packed_rows=len(df))
    if policy is not None:
        meta.update(crop_policy=policy.name, crop_fill=fill)
    write_text_atomic(json.dumps(meta, indent=1), dst.with_suffix(".json"))
    for manifest in src.parent.glob(src.stem + ".split-*.json"):
        suffix = manifest.name[len(src.stem):]
        write_text_atomic(manifest.read_text(), dst.with_name(dst.stem + suffix))
    return {"rows": len(df), "bytes": dst.stat().st_size, "path": str(dst)}


# ------------------------------------------------------------------------- crops under any policy

def _fill_patch(src: np.ndarray, rng: np.random.Generator, size: int) -> np.ndarray:
    """A size x size patch of real content: a random square of another image (hair, skin, clothes,
    background, parts of other faces), rescaled and possibly mirrored."""
    h, w = src.shape[:2]
    side = int(rng.uniform(0.35, 1.0) * min(h, w))
    y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    patch = cv2.resize(src[y : y + side, x : x + side], (size, size), interpolation=cv2.INTER_AREA)
    return patch[:, ::-1] if rng.random() < 0.5 else patch


def _smooth_field(rng: np.random.Generator, size: int) -> np.ndarray:
    small = rng.integers(20, 235, (int(rng.integers(2, 6)), int(rng.integers(2, 6)), 3), dtype=np.uint8)
    field = cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC).astype(np.float32)
    return np.clip(field + rng.normal(0, rng.uniform(2, 12), (size, size, 1)), 0, 255).astype(np.uint8)


def stored_policy(path: str | os.PathLike) -> str:
    """The policy a cache's stored crops were cut under (its meta; caches from before policies changed: the
    legacy one)."""
    meta_path = Path(path).with_suffix(".json")
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    return meta.get("crop_policy") or LEGACY_POLICY.name


def load_crops(path: str | os.PathLike, policy=None, fill: str | None = None, keys: set[str] | None = None,
               seed: int = 0, groups: dict[str, str] | None = None, progress_every: int = 5000) -> dict[str, np.ndarray]:
    """Crops of the usable rows cut under `policy` from the stored keypoints (no detection again).

    fill=None repeats the border outside the source, as annotate does on a bare crop. fill="real" shows
    a patch of another image of the same group there (groups: key -> split name, so training crops are
    filled only from training images), or now and then a smooth colour field: a face in a photo has
    real surroundings. Without a policy, or with the cache's own policy and no fill, the stored crops
    are returned (a packed cache has no source images)."""
    if policy is None or (policy.name == stored_policy(path) and fill is None):
        return load_cache(path, keys)
    t = pq.read_table(path)
    if "kps" not in t.column_names:
        raise ValueError(f"{path} stores no keypoints (made before crop policies could change): rebuild it to cut "
                         f"{policy.name} crops")
    df = t.drop_columns(["crop_jpeg"]).to_pandas()
    df = df[df["status"] == "ok"]
    if keys is not None:
        df = df[df["key"].isin(keys)]
    df = df.reset_index(drop=True)
    if fill not in (None, "real"):
        raise ValueError(f"unknown fill {fill!r} (none or real)")
    images = []
    for p in df["path"]:
        img = cv2.imread(p, cv2.IMREAD_COLOR)
        if img is None:
            raise FileNotFoundError(f"training image missing (needed to cut {policy.name} crops): {p}")
        images.append(img[..., ::-1])
    n = len(df)
    crops = np.empty((n, policy.size, policy.size, 3), np.uint8)
    group = np.array([(groups or {}).get(k, "") for k in df["key"]])
    pools = {g: np.flatnonzero(group == g) for g in np.unique(group)}
    rng = np.random.default_rng([seed, 7])
    for i in range(n):
        kps = np.asarray(df["kps"].iloc[i], np.float64)
        if fill is None:
            crops[i] = crop_face(images[i], None, kps, policy=policy)
            continue
        pool = pools[group[i]]
        if rng.random() < 0.2 or len(pool) < 2:
            patch = _smooth_field(rng, policy.size)
        else:
            j = i
            while j == i:
                j = int(pool[rng.integers(0, len(pool))])
            patch = _fill_patch(images[j], rng, policy.size)
        crops[i] = crop_face_filled(images[i], kps, patch, policy=policy)
        if progress_every and (i + 1) % progress_every == 0:
            log.info("cut %d/%d %s crops (fill %s)", i + 1, n, policy.name, fill)
    return {
        "key": df["key"].to_numpy(),
        "crops": crops,
        "age": df["age"].to_numpy(np.float32),
        "gender": df["gender"].to_numpy(np.float32),
    }
