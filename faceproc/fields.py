"""One sentence per output column, written into the Parquet files as field metadata (schema._described) and
listed in docs/schema.md (a test keeps the two in step). A column that appears in both tables means the same
in both. Descriptions of columns a table does not have are ignored."""

from __future__ import annotations

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
