"""annotate(shard) = decode -> detect -> crop -> predict -> rows. Engine-agnostic: the same Annotator
runs inside a Ray actor, in a local loop, in tests and in benchmarks.

Crops from many images are queued and sent to the age/gender model in batches; a failure of one image
(any exception) becomes that image's status row and never touches the others.
"""

from __future__ import annotations

import logging
import time
import traceback
from dataclasses import dataclass, field

import numpy as np

from . import decode as D
from .changes import ContentDigest
from .crop import crop_faces
from .discover import FileEntry
from .metadata import EMPTY as NO_CAMERA, file_mtime, location_fields
from .plan import RunPlan
from .quality import face_px, sharpness, withheld
from .schema import FACES, IMAGES, path_fields, to_table
from .storage import file_size

log = logging.getLogger(__name__)

# Pending crops are flushed through the model once this many are queued (bounds memory on group photos).
FLUSH_CROPS = 1024


@dataclass
class _Pending:
    image_row: dict
    face_rows: list[dict]
    crops: np.ndarray | None
    t_image: float


@dataclass
class ShardResult:
    faces: "object"  # pyarrow.Table (FACES)
    images: "object"  # pyarrow.Table (IMAGES)
    counts: dict = field(default_factory=dict)
    seconds: float = 0.0
    stages: dict = field(default_factory=dict)  # seconds per stage (decode, detect, ...): where the time goes


class Annotator:
    """Holds the detector and the age/gender model; loaded once per worker."""

    def __init__(self, plan: RunPlan):
        self.detector = plan.models.detector(plan.detector)
        self.predictor = plan.models.predictor(plan.model)
        self.plan = plan.without_bytes()
        self.policy = plan.model.policy  # crops are cut the way the model's card says
        self.on_file = None  # progress: called with each file's face count once it is read (faceproc/progress.py)
        self._stages: dict[str, float] = {}

    def _lap(self, stage: str, t0: float) -> float:
        """Add the seconds since t0 to `stage`; returns now. Per shard, in the shard's marker (benchmarks/
        annotate.py sums them into its time breakdown): a few perf_counter calls an image, no row changes."""
        now = time.perf_counter()
        self._stages[stage] = self._stages.get(stage, 0.0) + now - t0
        return now

    def warm_up(self) -> None:
        """One small inference through each model: their first call compiles kernels for the first input
        shapes (~0.3 s), which then belongs to the worker's start, not to the first shard's photos."""
        self.detector.detect(np.zeros((480, 640, 3), np.uint8))
        size = self.plan.model.input_size
        self.predictor.predict(np.zeros((1, size, size, 3), np.uint8))

    # ------------------------------------------------------------------ one image
    def _image(self, entry: FileEntry, shard_id: str, run_id: str) -> _Pending:
        t0 = time.perf_counter()
        row = {**path_fields(entry.path), "bytes": None, "mtime_ns": entry.mtime_ns, "inode": entry.ino,
               "content_hash": None, "width": None, "height": None, "n_faces": 0,
               "status": D.OK, "error": None, "elapsed_ms": None, "shard": shard_id, "run_id": run_id}
        row["bytes"] = entry.size if entry.size is not None else file_size(entry.path)
        # no face count until the file is read (null for every failure); where it lies, its mtime (metadata.py)
        row.update(n_faces=None, file_mtime=file_mtime(entry.mtime_ns), **location_fields(entry.path, entry.root),
                   **NO_CAMERA)
        if entry.hidden:
            row.update(status=D.SKIPPED_HIDDEN, error="hidden file or folder")
            return _Pending(row, [], None, time.perf_counter() - t0)
        digest = ContentDigest()  # fed the bytes decoding reads
        t = time.perf_counter()
        try:
            dec = D.decode_file(entry.path, self.plan.decode, digest)
        except D.DecodeFailure as e:
            row.update(status=e.status, error=e.message, width=e.width, height=e.height, content_hash=digest.value())
            return _Pending(row, [], None, time.perf_counter() - t0)
        except Exception as e:  # a decoder bug must cost one row, not the shard
            row.update(status=D.CORRUPT, error=f"{type(e).__name__}: {e}", content_hash=digest.value())
            return _Pending(row, [], None, time.perf_counter() - t0)
        finally:
            self._lap("decode", t)
        row.update(width=dec.width, height=dec.height, content_hash=digest.value())
        try:
            row.update(dec.meta)  # taken_at, camera (metadata.py), from the EXIF block decode parsed
            t = time.perf_counter()
            det = self.detector.detect(dec.rgb, scale=dec.scale)  # post-processed in detectors.base.finish
            t = self._lap("detect", t)
            crops = crop_faces(dec.rgb, det.boxes, det.kps, policy=self.policy)
            self._lap("crop", t)
            inv = 1.0 / dec.scale  # decoded -> original pixels
            boxes, kps, scores = det.boxes * inv, det.kps * inv, det.scores
        except Exception as e:
            log.warning("detection failed on %s: %s", entry.path, traceback.format_exc(limit=3))
            row.update(status=D.FAILED, error=f"detection: {type(e).__name__}: {e}")
            return _Pending(row, [], None, time.perf_counter() - t0)
        m = self.plan.config.model
        faces = [
            {**path_fields(entry.path), "face_index": i, "x1": float(b[0]), "y1": float(b[1]), "x2": float(b[2]),
             "y2": float(b[3]), "det_score": float(s), "landmarks": [float(v) for v in k.reshape(-1)], "run_id": run_id,
             "face_px": float(px), "sharpness": float(sh), "withheld": withheld(px, sh, m.min_face_px, m.min_sharpness)}
            for i, (b, k, s, px, sh) in enumerate(zip(boxes, kps, scores, face_px(boxes), sharpness(crops)))
        ]
        row["n_faces"] = len(faces)
        row["status"] = D.OK if faces else D.NO_FACES
        return _Pending(row, faces, crops if len(faces) else None, time.perf_counter() - t0)

    # ------------------------------------------------------------------ batches of crops
    def _flush(self, pending: list[_Pending]) -> None:
        with_faces = [p for p in pending if p.crops is not None]
        if not with_faces:
            return
        t0 = time.perf_counter()
        try:
            out = self._predict(np.concatenate([p.crops for p in with_faces]))
            results = np.split(out, np.cumsum([len(p.crops) for p in with_faces])[:-1])
        except Exception:
            # One photo's crops (or a passing fault) must not cost the other photos of the batch their rows:
            # each is tried alone, and only a photo whose own crops fail is marked `failed`.
            log.warning("age/gender batch of %d photos failed, trying them one by one: %s", len(with_faces),
                        traceback.format_exc(limit=3))
            results = [self._predict_alone(p) for p in with_faces]
        per_face = (self._lap("agegender", t0) - t0) / sum(len(p.face_rows) for p in with_faces)
        for p, res in zip(with_faces, results):
            p.crops = None
            if isinstance(res, Exception):
                p.image_row.update(status=D.FAILED, error=f"age/gender: {type(res).__name__}: {res}", n_faces=None)
                p.face_rows.clear()
                continue
            for f, (age, prob) in zip(p.face_rows, res):
                f.update(model=self.plan.model.name, model_version=self.plan.model.version)
                if not f.get("withheld"):  # a face too small or blurred to judge keeps null age and gender
                    f.update(age=float(age), female_prob=float(prob), gender="female" if prob >= 0.5 else "male")
            p.t_image += per_face * len(p.face_rows)

    def _predict(self, crops: np.ndarray) -> np.ndarray:
        """(age, female probability) a row per crop; a model that answers for fewer or more crops raises."""
        ages, probs = self.predictor.predict(crops)
        out = np.stack([np.asarray(ages).reshape(-1), np.asarray(probs).reshape(-1)], 1)
        if len(out) != len(crops):
            raise ValueError(f"{len(crops)} face crops in, {len(out)} model answers out")
        return out

    def _predict_alone(self, p: _Pending) -> np.ndarray | Exception:
        try:
            return self._predict(p.crops)
        except Exception as e:
            log.error("age/gender failed on %s: %s: %s", p.image_row["image_path"], type(e).__name__, e)  # one line
            return e

    def annotate(self, entries: list[FileEntry], shard_id: str = "", run_id: str = "") -> ShardResult:
        t0 = time.perf_counter()
        self._stages = {}
        done: list[_Pending] = []
        queue: list[_Pending] = []
        queued = 0
        for entry in entries:
            p = self._image(entry, shard_id, run_id)
            if self.on_file is not None:
                self.on_file(len(p.face_rows))
            queue.append(p)
            queued += 0 if p.crops is None else len(p.crops)
            if queued >= FLUSH_CROPS:
                self._flush(queue)
                done += queue
                queue, queued = [], 0
        self._flush(queue)
        done += queue
        t = time.perf_counter()
        images, faces, counts = [], [], {}
        for p in done:
            p.image_row["elapsed_ms"] = p.t_image * 1000.0
            images.append(p.image_row)
            faces += p.face_rows
            counts[p.image_row["status"]] = counts.get(p.image_row["status"], 0) + 1
        # Rows in path order within a shard (faces: then face_index), whatever order the batches finished in.
        faces_t = to_table(faces, FACES).sort_by([("image_path", "ascending"), ("face_index", "ascending")])
        images_t = to_table(images, IMAGES).sort_by([("image_path", "ascending")])
        self._lap("rows", t)
        return ShardResult(faces_t, images_t, counts, time.perf_counter() - t0,
                           {k: round(v, 4) for k, v in self._stages.items()})
