"""The row contract: the one definition of the output tables and their status vocabulary (imports nothing of ours).

Output folder:
  OUT/faces/<shard>.parquet    one row per detected face
  OUT/images/<shard>.parquet   one row per input file, whatever happened to it
  OUT/manifest.json            config, model version, shard states
  OUT/report.json, report.html summary; OUT/previews/*.jpg when asked
Coordinates are original pixels of the photo as displayed (EXIF orientation applied).
"""

from __future__ import annotations

import os

import pyarrow as pa

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
        # what a rerun compares (faceproc/changes.py): the stat discovery saw, and blake2b-128 (hex) of the bytes
        # read for decoding (null when nothing was read); equal hashes are duplicate photos
        pa.field("mtime_ns", pa.int64()),
        pa.field("inode", pa.uint64()),
        pa.field("content_hash", pa.string()),
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



# One sentence per output column, written into the Parquet files as field metadata (_described) and listed in
# docs/schema.md (a test keeps the two in step). A column in both tables means the same in both; descriptions
# of columns a table does not have are ignored.
DESCRIPTIONS: dict[str, str] = {
    # both tables
    "image_path": "Absolute path (or object-store URI) of the photo; a name that is not UTF-8 shows its odd bytes as \\xNN.",
    "image_path_bytes": "The raw path bytes when the name is not valid UTF-8, else null; "
                        "faceproc.schema.source_path(image_path, image_path_bytes) opens the file.",
    "run_id": "The run that wrote the row.",
    # faces
    "face_index": "0.. in reading order within the photo (top to bottom, left to right).",
    "x1": "Left edge of the face box, original pixels of the photo as displayed (EXIF orientation applied).",
    "y1": "Top edge of the face box, original pixels as displayed.",
    "x2": "Right edge of the face box, original pixels as displayed.",
    "y2": "Bottom edge of the face box, original pixels as displayed.",
    "det_score": "Face detector (SCRFD) confidence, 0..1.",
    "landmarks": "Left eye, right eye, nose, left and right mouth corner as x,y pairs in original pixels.",
    "face_px": "Shorter side of the face box in original pixels; below model.min_face_px age and gender are withheld.",
    "sharpness": "Variance of the Laplacian of the 128x128 grey crop the age/gender model was given (low: blurred, "
                 "or enlarged from few pixels); below model.min_sharpness age and gender are withheld.",
    "age": "Estimated age in years; null when withheld (see withheld).",
    "gender": "male or female (female iff female_prob >= 0.5); null when withheld. Values with female_prob "
              "between 0.35 and 0.65 are uncertain (the report shows them as such).",
    "female_prob": "The model's probability that the face is female; null when withheld.",
    "withheld": "Why age, gender and female_prob are null: small_face (face_px < model.min_face_px) or blurry "
                "(sharpness < model.min_sharpness); null when they were estimated.",
    "model": "Age/gender model variant, e.g. unfrozen.",
    "model_version": "Version (sha-based) of the age/gender model.",
    # images
    "input_root": "The input folder (or object-store prefix) the file was found under; for a file given as an "
                  "input itself, its folder.",
    "rel_path": "Path below input_root, '/'-separated.",
    "folder": "The folder of rel_path ('' for a file at the top of input_root).",
    "bytes": "File size in bytes.",
    "mtime_ns": "Modification time seen by discovery, ns since the epoch (change detection on rerun).",
    "inode": "Inode seen by discovery (change detection on rerun).",
    "content_hash": "blake2b-128 (hex) of the bytes read for decoding; equal hashes are duplicate files.",
    "width": "Width in original pixels as displayed (EXIF orientation applied); null when unknown.",
    "height": "Height in original pixels as displayed (EXIF orientation applied); null when unknown.",
    "taken_at": "EXIF DateTimeOriginal (with SubSecTimeOriginal), the camera's wall-clock time without a time zone; "
                "null when the file has none (never the file's mtime).",
    "taken_at_offset": "EXIF OffsetTimeOriginal, the UTC offset of taken_at (e.g. +02:00), when the camera wrote one.",
    "file_mtime": "The file's last modification time (UTC), as discovery saw it; null when unknown.",
    "camera_make": "EXIF Make (camera maker), null when absent.",
    "camera_model": "EXIF Model (camera model), null when absent.",
    "n_faces": "Faces found; null when the file could not be processed (any status but ok / no_faces).",
    "status": "ok, no_faces, or why the file was not processed: empty_file, not_an_image, corrupt, unreadable, "
              "too_large, too_small, skipped_hidden, failed.",
    "error": "The reason, for every status but ok / no_faces.",
    "elapsed_ms": "Decode + detect + crop + this image's share of the batched age/gender prediction, ms.",
    "shard": "The shard (Parquet file pair) the row belongs to.",
}


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
    return pa.schema([f.with_metadata({"description": DESCRIPTIONS[f.name]}) if f.name in DESCRIPTIONS else f
                      for f in schema])


FACES = _with_pandas_types(FACES, {"face_index": "Int32"})
IMAGES = _with_pandas_types(IMAGES, {"bytes": "Int64", "mtime_ns": "Int64", "inode": "UInt64", "width": "Int32",
                                     "height": "Int32", "n_faces": "Int32"})
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
# 3: images.mtime_ns, inode, content_hash (change detection per file)
# 4: input_root, rel_path, folder, taken_at(_offset), file_mtime, camera; face_px, sharpness, withheld; n_faces
#    null on failure
SCHEMA_VERSION = 4


def shown_path(path: str) -> str:
    """A path as a UTF-8 string (a Parquet column, the report, a message): a name that is not UTF-8 (old
    FAT/Samba archives) shows its bytes as \\xNN; any other lone surrogate (only from an API caller) as \\uXXXX."""
    try:
        path.encode("utf-8")
        return path
    except UnicodeEncodeError:
        pass
    try:
        return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:
        return path.encode("utf-8", "backslashreplace").decode("utf-8")


def path_fields(path: str) -> dict:
    """image_path for display (shown_path) plus the raw bytes when the name is not UTF-8:
    `os.fsdecode(image_path_bytes)` (see `source_path`) opens the file again."""
    shown = shown_path(path)
    raw = None if shown == path else path.encode("utf-8", "surrogateescape")
    return {"image_path": shown, "image_path_bytes": raw}


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
