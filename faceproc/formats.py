"""Which files are photos, and the decoders beyond Pillow's own: HEIC/HEIF (pillow-heif), AVIF (Pillow's
plugin) and camera RAW (rawpy/LibRaw). docs/formats.md is the user-facing list and rules.

RAW: the embedded JPEG preview when it is big enough for detection (its long side at least 0.9 x the size
detection looks at: min(decode.max_side, the sensor's long side)), else a half-size demosaic. Both are
turned upright by the file's own orientation. The pixel limit is checked on the sensor size LibRaw reads
from the header, before the preview or the raw data is touched.
"""

from __future__ import annotations

import io
import warnings

RAW_EXTENSIONS = frozenset({".cr2", ".cr3", ".nef", ".nrw", ".arw", ".dng", ".raf", ".orf", ".rw2", ".pef", ".srw"})
HEIF_EXTENSIONS = frozenset({".heic", ".heif", ".hif"})
PILLOW_EXTENSIONS = frozenset({".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif",
                               ".avif"})
IMAGE_EXTENSIONS = PILLOW_EXTENSIONS | HEIF_EXTENSIONS | RAW_EXTENSIONS
# Counted and named as videos in the summary (never decoded).
VIDEO_EXTENSIONS = frozenset({".mov", ".mp4", ".m4v", ".avi", ".mkv", ".mts", ".m2ts", ".3gp", ".wmv", ".webm",
                              ".mpg", ".mpeg", ".flv", ".vob", ".mod", ".tod"})

_QUIETED: list = []  # the warning filter list that holds the decoders' filters (a list swapped in is filtered again)


def quiet_decoders() -> None:
    """The decoders warn about every damaged EXIF tag or odd palette; a file's trouble is its row's status, not
    console noise. Filters, not a `warnings.catch_warnings()` block per decode: such a block swaps the process-wide
    filter list, and on the in-process engine's threads overlapping blocks printed warnings mid-decode and left
    an `ignore everything` behind. Set again only when someone swapped the list (pytest does, per test)."""
    if _QUIETED and _QUIETED[0] is warnings.filters:
        return
    # after the filters already there, so that a caller's own (`-W error`, say) still wins; faceproc's decoding
    # modules too (numpy's warnings while converting pixels, Pillow's deprecations, are attributed to them)
    for module in (r"PIL(\.|$)", r"rawpy(\.|$)", r"pillow_heif(\.|$)", r"faceproc\.(decode|metadata)$"):
        warnings.filterwarnings("ignore", module=module, append=True)
    _QUIETED[:] = [warnings.filters]


_heif: str | None = None  # None: not tried yet; "" ready; else why HEIF cannot be read


def enable_heif() -> str:
    """Register pillow-heif's opener with Pillow once; "" when HEIF files can be opened, else the reason."""
    global _heif
    if _heif is None:
        try:
            import pillow_heif

            pillow_heif.register_heif_opener()  # libheif applies the container's rotation and resets EXIF's
            _heif = ""
        except Exception as e:  # noqa: BLE001 - a missing or broken package costs HEIF files, not the run
            _heif = f"HEIC/HEIF needs pillow-heif ({type(e).__name__}: {e})"
    return _heif


def avif_missing() -> str:
    """"" when this Pillow decodes AVIF (Pillow >= 11.3 wheels do), else the reason."""
    from PIL import features

    return "" if features.check("avif") else "this Pillow has no AVIF support (pillow >= 11.3 has)"


# LibRaw's flip -> the EXIF orientation that shows the picture upright.
_FLIP_TO_EXIF = {0: 1, 3: 3, 5: 8, 6: 6}


def open_raw(source):
    """A rawpy.RawPy on a path or a file object: the header only (no raw data unpacked yet)."""
    import rawpy

    return rawpy.imread(source)


def raw_header(raw) -> tuple[int, int, int, int, int]:
    """(stored pixels, display width, display height, short side, EXIF-style orientation) from the header."""
    s = raw.sizes
    orientation = _FLIP_TO_EXIF.get(int(s.flip), 1)
    w, h = int(s.width), int(s.height)
    disp = (h, w) if orientation in (6, 8) else (w, h)
    return int(s.raw_width) * int(s.raw_height), disp[0], disp[1], min(w, h), orientation


def raw_pixels(raw, want_long: int, thumb_decoder):
    """RGB uint8 in display orientation and how it was read ("preview" or "half-size demosaic").
    `thumb_decoder(jpeg_bytes, orientation)` decodes the embedded JPEG (the caller's Pillow path, so the
    preview gets the same pixel checks and draft-mode scaling as any JPEG)."""
    import numpy as np  # here, not at the top: discovery imports this module and needs only the standard library
    import rawpy

    _, w, h, _, orientation = raw_header(raw)
    need = 0.9 * min(want_long, max(w, h))
    try:
        thumb = raw.extract_thumb()
    except (rawpy.LibRawNoThumbnailError, rawpy.LibRawUnsupportedThumbnailError, rawpy.LibRawError):
        thumb = None
    if thumb is not None:
        if thumb.format == rawpy.ThumbFormat.JPEG:
            from PIL import Image

            try:
                size = Image.open(io.BytesIO(thumb.data)).size
            except Exception:  # noqa: BLE001 - a damaged preview: fall back to the raw data
                size = (0, 0)
            if max(size) >= need:
                return thumb_decoder(thumb.data, orientation), "preview"
        elif thumb.format == rawpy.ThumbFormat.BITMAP and max(thumb.data.shape[:2]) >= need:
            rgb = np.asarray(thumb.data)[..., :3].astype(np.uint8, copy=False)
            return upright(rgb, orientation), "preview"
    # LibRaw applies the flip itself; 8 bits, camera white balance, half size (no interpolation cost).
    rgb = raw.postprocess(half_size=True, use_camera_wb=True, output_bps=8)
    return rgb, "half-size demosaic"


def upright(a, orientation: int | None):
    """The array shown upright for an EXIF orientation (PIL's exif_transpose, on arrays); others unchanged."""
    import numpy as np  # here: discovery imports this module and needs only the standard library

    ops = {2: lambda: a[:, ::-1], 3: lambda: a[::-1, ::-1], 4: lambda: a[::-1], 5: lambda: a.transpose(1, 0, 2),
           6: lambda: np.rot90(a, -1), 7: lambda: np.rot90(a, 2).transpose(1, 0, 2), 8: lambda: np.rot90(a, 1)}
    return ops[orientation]() if orientation in ops else a
