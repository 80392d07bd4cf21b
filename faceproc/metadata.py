"""What an archivist files a photo by, besides its pixels: where it lies under its input folder, when the camera
says it was taken, when the file was last changed, and which camera took it.

The camera fields come from the EXIF block Pillow has already parsed for the orientation (decode.py hands
over its open image), so no file is read twice. Only IFD0 (make, model) and the Exif sub-IFD (the date the
photo was taken) are read: never the GPS sub-IFD, so no location can end up in a row.
"""

from __future__ import annotations

import datetime as dt
import os
import re

from .formats import quiet_decoders
from .schema import shown_path

_MAKE, _MODEL, _EXIF_IFD = 0x010F, 0x0110, 0x8769
_TAKEN, _OFFSET, _SUBSEC = 0x9003, 0x9011, 0x9291  # DateTimeOriginal, OffsetTimeOriginal, SubSecTimeOriginal
_OFFSET_RE = re.compile(r"^[+-](?:0\d|1[0-4]):[0-5]\d$")

EMPTY = {"taken_at": None, "taken_at_offset": None, "camera_make": None, "camera_model": None}


def _text(v) -> str | None:
    """An EXIF ASCII value as clean text: NULs and padding gone, None when empty or not text."""
    if isinstance(v, bytes):
        v = v.decode("utf-8", "replace")
    if not isinstance(v, str):
        return None
    v = v.replace("\x00", " ").strip()
    return v[:200] or None


def parse_taken(value, subsec=None) -> dt.datetime | None:
    """EXIF "YYYY:MM:DD HH:MM:SS" (+ SubSecTimeOriginal digits) -> a naive datetime, the camera's wall-clock
    time; None for a blank, zeroed or malformed value (cameras without a set clock write "0000:00:00 ...")."""
    s = _text(value)
    if not s:
        return None
    try:
        t = dt.datetime.strptime(s[:19], "%Y:%m:%d %H:%M:%S")
    except ValueError:
        return None
    digits = "".join(c for c in (_text(subsec) or "") if c.isdigit())[:6]
    return t.replace(microsecond=int(digits.ljust(6, "0"))) if digits else t


def parse_offset(value) -> str | None:
    """EXIF OffsetTimeOriginal ("+02:00") when well-formed, else None."""
    s = _text(value)
    return s if s and _OFFSET_RE.match(s) else None


def camera_fields(im) -> dict:
    """taken_at (naive: the camera's clock), taken_at_offset (its UTC offset when the camera wrote one), camera
    make and model, from a Pillow image's EXIF; every field None when absent or unreadable. Never the
    file's mtime under taken_at: a copied or edited file has a new mtime, not a new date of capture."""
    try:
        exif = im.getexif()  # parsed once by Pillow and cached on the image (decode read it for the orientation)
    except Exception:  # a broken EXIF block must not lose the photo
        return dict(EMPTY)
    return exif_fields(exif)


def tiff_fields(head: bytes) -> dict:
    """The same fields from a TIFF-based RAW file's own IFD0 and Exif sub-IFD (DNG, NEF, CR2, ARW, PEF...), given
    its first bytes: its embedded preview is often too small to be read, or has no EXIF of its own. A RAW that
    is not TIFF-structured (CR3, RAF, ORF, RW2) gives all None."""
    from PIL import Image

    if head[:4] not in (b"II*\x00", b"MM\x00*"):
        return dict(EMPTY)
    exif = Image.Exif()
    quiet_decoders()  # Pillow warns on every damaged tag: the fields it could read are enough
    try:
        exif.load(head)
    except Exception:  # a damaged header costs the camera fields, not the photo
        return dict(EMPTY)
    return exif_fields(exif)


def exif_fields(exif) -> dict:
    """camera_fields on a parsed Pillow Exif (IFD0 and the Exif sub-IFD only)."""
    if not exif:
        return dict(EMPTY)
    out = dict(EMPTY, camera_make=_text(exif.get(_MAKE)), camera_model=_text(exif.get(_MODEL)))
    try:
        sub = exif.get_ifd(_EXIF_IFD)
    except Exception:  # a damaged sub-IFD: keep what IFD0 gave
        return out
    taken = parse_taken(sub.get(_TAKEN), sub.get(_SUBSEC))
    if taken is not None:
        out.update(taken_at=taken, taken_at_offset=parse_offset(sub.get(_OFFSET)))
    return out


def file_mtime(mtime_ns: int | None) -> dt.datetime | None:
    """The walk's mtime as a UTC timestamp (None when unknown: 0 or missing)."""
    if not mtime_ns:
        return None
    return dt.datetime.fromtimestamp(mtime_ns / 1e9, tz=dt.timezone.utc)


def location_fields(path: str, root: str | None) -> dict:
    """input_root (the input folder the file was found under; for a file given itself, its folder),
    rel_path (below input_root, '/'-separated) and folder (rel_path's folder, '' at the top): what "per year
    folder" needs without parsing absolute paths. No root known: all three None."""
    if not root:
        return {"input_root": None, "rel_path": None, "folder": None}
    uri = "://" in root
    sep = "/" if uri else os.sep
    base = root.rstrip(sep) or sep  # "/" stays "/"
    if path == root or not path.startswith(base.rstrip(sep) + sep):  # a file given as an input itself
        base = path.rsplit("/", 1)[0] if uri else os.path.dirname(path)
    rel = path[len(base.rstrip(sep)) + 1:]
    if not uri and os.sep != "/":
        rel = rel.replace(os.sep, "/")
    folder = rel.rsplit("/", 1)[0] if "/" in rel else ""
    return {"input_root": shown_path(base), "rel_path": shown_path(rel), "folder": shown_path(folder)}
