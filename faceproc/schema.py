"""The row contract: the one definition of the output tables, and the atomic Parquet writer.

Output folder:
  OUT/faces/<shard>.parquet    one row per detected face
  OUT/images/<shard>.parquet   one row per input file, whatever happened to it
  OUT/manifest.json            config, model version, shard states
  OUT/report.json, report.html summary; OUT/previews/*.jpg when asked
Coordinates are original pixels of the photo as displayed (EXIF orientation applied).
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

FACES = pa.schema(
    [
        pa.field("image_path", pa.string(), nullable=False),
        # raw bytes of the path when it is not valid UTF-8 (image_path then shows them as \xNN escapes)
        pa.field("image_path_bytes", pa.binary()),
        pa.field("face_index", pa.int32(), nullable=False),  # 0.. in reading order (top-left first)
        pa.field("x1", pa.float32()),
        pa.field("y1", pa.float32()),
        pa.field("x2", pa.float32()),
        pa.field("y2", pa.float32()),
        pa.field("det_score", pa.float32()),
        # left eye, right eye, nose, left mouth, right mouth as x0,y0,x1,y1,...,x4,y4
        pa.field("landmarks", pa.list_(pa.float32(), 10)),
        # what the estimates can be trusted on (quality.py): the box's shorter side in original pixels, and the
        # variance of the Laplacian of the 128 px grey crop the model was given
        pa.field("face_px", pa.float32()),
        pa.field("sharpness", pa.float32()),
        pa.field("age", pa.float32()),  # years
        pa.field("gender", pa.dictionary(pa.int8(), pa.string())),  # "male" | "female" (a pandas categorical)
        pa.field("female_prob", pa.float32()),  # P(female); gender == "female" iff >= 0.5
        # why age, gender and female_prob are null: "small_face" | "blurry" (quality.py); null when estimated
        pa.field("withheld", pa.dictionary(pa.int8(), pa.string())),
        pa.field("model", pa.string()),  # variant, e.g. "unfrozen"
        pa.field("model_version", pa.string()),
        pa.field("run_id", pa.string()),
    ]
)

IMAGES = pa.schema(
    [
        pa.field("image_path", pa.string(), nullable=False),
        pa.field("image_path_bytes", pa.binary()),  # see FACES
        # where the file lies under the input it was found in (metadata.location_fields)
        pa.field("input_root", pa.string()),
        pa.field("rel_path", pa.string()),
        pa.field("folder", pa.string()),
        pa.field("bytes", pa.int64()),
        pa.field("width", pa.int32()),  # original pixels, display orientation; null when unknown
        pa.field("height", pa.int32()),
        # from the EXIF block (metadata.camera_fields; never GPS) and the walk's stat
        pa.field("taken_at", pa.timestamp("us")),  # DateTimeOriginal, the camera's wall clock; null without one
        pa.field("taken_at_offset", pa.string()),  # its OffsetTimeOriginal ("+02:00") when the camera wrote one
        pa.field("file_mtime", pa.timestamp("us", tz="UTC")),
        pa.field("camera_make", pa.string()),
        pa.field("camera_model", pa.string()),
        pa.field("n_faces", pa.int32()),
        pa.field("status", pa.dictionary(pa.int8(), pa.string()), nullable=False),  # STATUSES below (categorical)
        pa.field("error", pa.string()),  # why, for every status other than ok / no_faces
        pa.field("elapsed_ms", pa.float32()),  # decode + detect + crop + this image's share of predict
        pa.field("shard", pa.string()),
        pa.field("run_id", pa.string()),
    ]
)



def _with_pandas_types(schema: pa.Schema, ints: dict[str, str]) -> pa.Schema:
    """Pandas metadata so `pd.read_parquet` gives nullable integers (Int32, not float64 when a value is
    missing) and categoricals for the dictionary columns."""
    schema = _described(schema)
    df = schema.empty_table().to_pandas()  # dictionary columns come back as categoricals
    for name, dtype in ints.items():
        df[name] = df[name].astype(dtype)
    meta = pa.Schema.from_pandas(df, preserve_index=False).metadata
    return schema.with_metadata(meta)


def _described(schema: pa.Schema) -> pa.Schema:
    """Each field with its DESCRIPTIONS entry as field metadata ("description"), so the Parquet files explain
    themselves: `pq.read_schema(f).field("age").metadata[b"description"]`."""
    from .fields import DESCRIPTIONS

    return pa.schema([f.with_metadata({"description": DESCRIPTIONS[f.name]}) if f.name in DESCRIPTIONS else f
                      for f in schema])


FACES = _with_pandas_types(FACES, {"face_index": "Int32"})
IMAGES = _with_pandas_types(IMAGES, {"bytes": "Int64", "width": "Int32", "height": "Int32", "n_faces": "Int32"})
TABLES = {"faces": FACES, "images": IMAGES}

# The one status vocabulary of `images.status` (decode, pipeline, report, previews and the crop cache use it).
OK = "ok"
NO_FACES = "no_faces"
EMPTY = "empty_file"
UNREADABLE = "unreadable"
NOT_AN_IMAGE = "not_an_image"
CORRUPT = "corrupt"
TOO_LARGE = "too_large"
TOO_SMALL = "too_small"
SKIPPED_HIDDEN = "skipped_hidden"
FAILED = "failed"  # an unexpected error in detection or prediction; the message says which
STATUSES = (OK, NO_FACES, EMPTY, UNREADABLE, NOT_AN_IMAGE, CORRUPT, TOO_LARGE, TOO_SMALL, SKIPPED_HIDDEN, FAILED)
READ_OK = (OK, NO_FACES)  # the file was read; every other status is a failure with a reason


# Bumped whenever a column is added, removed or changes meaning; recorded in the manifest, so a rerun into
# an output folder written under another version is refused instead of mixing shards of both.
SCHEMA_VERSION = 3  # 3: input_root, rel_path, folder, taken_at(_offset), file_mtime, camera; face_px, sharpness, withheld; n_faces null on failure


def path_fields(path: str) -> dict:
    """image_path for display plus the raw bytes when the name is not UTF-8 (old FAT/Samba archives):
    `os.fsdecode(image_path_bytes)` (see `source_path`) opens the file again."""
    try:
        path.encode("utf-8")
        return {"image_path": path, "image_path_bytes": None}
    except UnicodeEncodeError:
        raw = path.encode("utf-8", "surrogateescape")
        return {"image_path": raw.decode("utf-8", "backslashreplace"), "image_path_bytes": raw}


def source_path(image_path: str, image_path_bytes: bytes | None = None) -> str:
    """The path to open for a row (its raw bytes when the name is not UTF-8)."""
    return os.fsdecode(image_path_bytes) if image_path_bytes else image_path


def to_table(rows: list[dict], schema: pa.Schema) -> pa.Table:
    """Rows -> table; a row that cannot be converted costs only itself (an images row becomes `failed`)."""
    try:
        return pa.Table.from_pylist(rows, schema=schema)
    except Exception:  # find the bad rows; the rest must survive
        pass
    good = []
    for r in rows:
        try:
            pa.Table.from_pylist([r], schema=schema)
            good.append(r)
        except Exception as e:
            import logging

            logging.getLogger(__name__).error("row of %r could not be written: %s", r.get("image_path"), e)
            if "status" in schema.names:
                p = r.get("image_path")
                fixed = path_fields(p) if isinstance(p, str) else {"image_path": repr(p), "image_path_bytes": None}
                good.append({**fixed, "status": FAILED, "error": f"row: {type(e).__name__}: {e}",
                             "shard": r.get("shard"), "run_id": r.get("run_id")})
    return pa.Table.from_pylist(good, schema=schema)


def write_atomic(table: pa.Table, path: str | os.PathLike) -> None:
    """Write to a temp name in the same folder, fsync, then rename: a reader never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        pq.write_table(table, tmp, compression="zstd")
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text_atomic(text: str, path: str | os.PathLike) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        if tmp.exists():  # a full disk must not leave a 0-byte temp file behind
            tmp.unlink()


def read_table(out, name: str) -> pa.Table:
    """All shards of one table (an empty table with the schema when there are none); `out` is a folder,
    an object-store URI or a faceproc.storage.Store."""
    from .storage import Store

    store = out if isinstance(out, Store) else Store(out)
    names = store.list(name, ".parquet")
    names = [n for n in names if not n.startswith(".")]
    if not names:
        return TABLES[name].empty_table()
    return pa.concat_tables([pq.read_table(f"{store.root}/{name}/{n}", schema=TABLES[name], filesystem=store.fs)
                             for n in names])
