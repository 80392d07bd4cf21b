"""Bytes on disk -> RGB uint8 as the photo is displayed, or a typed failure (status + message).

EXIF orientation is applied so boxes land on faces as people see the photo. Big JPEGs are decoded with
DCT scaling (far cheaper than a full decode) and anything still larger than `max_side` is resized;
`scale` maps decoded pixels back to original pixels. Every format's size is checked from its header
before a pixel is decoded and before EXIF is read (a PNG's EXIF may sit after its pixels, and reading it
decodes them all): more than `max_pixels` is `too_large`; a short side under `min_side`, at the
resolution detection looks at (the long side at most `max_side`), is `too_small` (a 20000x20 panorama
is 2048x2 there: no face fits). Multi-frame files: the first frame (HEIF: the primary image). HEIC/HEIF,
AVIF and RAW: formats.py; the rules for users: docs/formats.md.
"""

from __future__ import annotations

import io
import os
import stat
from dataclasses import dataclass, field

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from . import formats as F
from . import metadata as M
from .config import DecodeConfig
from .storage import is_uri, read_bytes
from .walk import extension

Image.MAX_IMAGE_PIXELS = None  # we apply our own limit, with a status instead of an exception

# Image statuses of the `images` table (see schema.py).
from .schema import (CORRUPT, EMPTY, FAILED, NO_FACES, NOT_AN_IMAGE, OK, SKIPPED_HIDDEN,  # noqa: F401,E402
                     STATUSES, TOO_LARGE, TOO_SMALL, UNREADABLE)

_ROTATES = {5, 6, 7, 8}  # EXIF orientations that swap width and height
_IN_MEMORY = 64 << 20  # files up to this size are read whole (one read; OpenCV decodes from memory)


@dataclass
class Decoded:
    rgb: np.ndarray  # (h, w, 3) uint8, display orientation, possibly reduced
    width: int  # original width in display orientation
    height: int
    scale: float  # decoded pixels per original pixel (<= 1)
    orientation: int = 1
    # taken_at, taken_at_offset, camera_make, camera_model from the EXIF Pillow parsed (metadata.py)
    meta: dict = field(default_factory=dict)


@dataclass
class DecodeFailure(Exception):
    status: str
    message: str
    width: int | None = None
    height: int | None = None

    def __str__(self) -> str:
        return f"{self.status}: {self.message}"


def _to_rgb(im: Image.Image) -> Image.Image | np.ndarray:
    mode = im.mode
    if mode == "RGB":
        return im
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
        if mode == "F" and arr.max(initial=0) <= 1.0:
            top = 1.0
        g = np.clip(arr * (255.0 / top), 0, 255).astype(np.uint8)
        return np.repeat(g[..., None], 3, axis=2)
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(bg, rgba).convert("RGB")
    return im.convert("RGB")  # L, 1, P, CMYK, YCbCr, LAB, HSV, RGBX ...


def _fast(data: bytes, im: Image.Image) -> np.ndarray | None:
    """OpenCV's WebP decoder for 8-bit RGB WebP: the same pixels, 1.25x faster than Pillow's here (for JPEG,
    both with DCT scaling, and PNG it gains nothing). None when the file is not that case or OpenCV
    cannot read it: Pillow then decodes it, or names the damage."""
    if im.format != "WEBP" or im.mode != "RGB":
        return None
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if bgr is None or bgr.ndim != 3 or bgr.shape[2] != 3:
        return None
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def decode_file(path: str, cfg: DecodeConfig | None = None, digest=None) -> Decoded:
    """Raise DecodeFailure with a status from decode.STATUSES on any problem. `digest` (a hashlib-like
    object) is fed the file's bytes as they are read: the row's content hash costs no second read."""
    cfg = cfg or DecodeConfig()
    raw = extension(path) in F.RAW_EXTENSIONS
    if is_uri(path):  # an object in a store: fetched whole (a photo is a few MB), then decoded the same way
        try:
            data = read_bytes(path)
        except OSError as e:
            raise DecodeFailure(UNREADABLE, f"{type(e).__name__}: {e}") from None
        if digest is not None:
            digest.update(data)
        return _decode(io.BytesIO(data), len(data), cfg, raw)
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):  # a FIFO or device would block or stream forever
            raise DecodeFailure(UNREADABLE, "not a regular file")
        if st.st_size > _IN_MEMORY:  # Pillow (and LibRaw) stream it from the file (hashed in a pass of its own)
            if digest is not None:
                with open(path, "rb") as fh:
                    while chunk := fh.read(1 << 20):
                        digest.update(chunk)
            return _decode(open(path, "rb"), st.st_size, cfg, raw)
        with open(path, "rb") as fh:
            data = fh.read()
        if digest is not None:
            digest.update(data)
    except OSError as e:
        raise DecodeFailure(UNREADABLE, f"{type(e).__name__}: {e.strerror or e}") from None
    return _decode(io.BytesIO(data), len(data), cfg, raw)


def check_shape(w: int, h: int, cfg: DecodeConfig, pixels: int | None = None, disp=None) -> None:
    """The header checks, before any pixel or EXIF block is read: the pixel limit (decompression bombs), a
    short side too small for a face, at the resolution detection looks at (odd shapes)."""
    disp = disp or (w, h)
    pixels = w * h if pixels is None else pixels
    if pixels > cfg.max_pixels:
        raise DecodeFailure(TOO_LARGE, f"{w}x{h} = {pixels} px exceeds limit {cfg.max_pixels}", *disp)
    if min(w, h) < cfg.min_side:
        raise DecodeFailure(TOO_SMALL, f"{w}x{h} is below {cfg.min_side} px", *disp)
    short = min(w, h) * min(1.0, cfg.max_side / max(w, h))
    if short < cfg.min_side:
        raise DecodeFailure(TOO_SMALL, f"{w}x{h} (aspect ratio {max(w, h) / min(w, h):.0f}:1): at the detection "
                            f"resolution (long side {cfg.max_side} px) the short side is {short:.0f} px, below "
                            f"{cfg.min_side} px", *disp)


def _orientation(im: Image.Image) -> int:
    try:
        o = int(im.getexif().get(0x0112, 1) or 1)
    except Exception:  # a broken EXIF block must not lose the photo
        return 1
    return o if 1 <= o <= 8 else 1


def _header_orientation(im: Image.Image) -> int:
    """The orientation when it costs no decode (for a refused file's display size): a PNG's EXIF after its
    pixels is not read."""
    if im.format == "PNG" and "exif" not in im.info:
        return 1
    return _orientation(im)


def _decode(fh, size: int, cfg: DecodeConfig, raw: bool = False) -> Decoded:
    F.quiet_decoders()
    with fh:
        if size == 0:
            raise DecodeFailure(EMPTY, "zero-byte file")
        if raw:
            rgb, disp_w, disp_h, orientation, meta = _raw(fh, cfg)
        else:
            rgb, disp_w, disp_h, orientation, meta = _pillow(fh, cfg)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise DecodeFailure(CORRUPT, f"unexpected pixel layout {rgb.shape}", disp_w, disp_h)
    rgb = np.ascontiguousarray(rgb)
    h, w = rgb.shape[:2]
    if max(h, w) > cfg.max_side:
        f = cfg.max_side / max(h, w)
        # Down to half size bilinear samples every pixel's 2x2 neighbourhood at most, 5x cheaper than
        # INTER_AREA (which costs a quarter of all decoding time on the photos corpus); further down, INTER_AREA.
        rgb = cv2.resize(rgb, (max(1, round(w * f)), max(1, round(h * f))),
                         interpolation=cv2.INTER_LINEAR if f >= 0.5 else cv2.INTER_AREA)
    return Decoded(rgb=rgb, width=disp_w, height=disp_h, scale=rgb.shape[1] / disp_w, orientation=orientation,
                   meta=meta)


def _pillow(fh, cfg: DecodeConfig, orientation: int | None = None):
    """(rgb in display orientation, display width, display height, orientation, camera fields) through Pillow
    (plus pillow-heif). `orientation` given: use it instead of the file's EXIF (a RAW file's preview)."""
    heif = F.enable_heif()
    try:
        im = Image.open(fh)
    except UnidentifiedImageError:
        fh.seek(0)
        brand = fh.read(12)[4:12]  # an ISO-BMFF file names its format here: say why it cannot be read
        why = (F.avif_missing() if brand in (b"ftypavif", b"ftypavis")
               else heif if brand in (b"ftypheic", b"ftypheix", b"ftypmif1", b"ftyphevc", b"ftypmsf1") else "")
        if why:
            raise DecodeFailure(FAILED, why) from None
        raise DecodeFailure(NOT_AN_IMAGE, "not a recognised image format") from None
    except (OSError, ValueError, RuntimeError) as e:  # pillow-heif raises ValueError/RuntimeError on damage
        raise DecodeFailure(CORRUPT, f"cannot parse header: {e}") from None
    w0, h0 = im.size
    try:
        check_shape(w0, h0, cfg)
    except DecodeFailure as e:  # the display size, where the orientation is known without decoding
        o = orientation or _header_orientation(im)
        e.width, e.height = (h0, w0) if o in _ROTATES else (w0, h0)
        raise
    orientation = orientation or _orientation(im)
    meta = M.camera_fields(im)  # the EXIF block the orientation came from: no second read
    disp_w, disp_h = (h0, w0) if orientation in _ROTATES else (w0, h0)
    rgb = None
    if isinstance(fh, io.BytesIO):
        try:
            rgb = _fast(fh.getvalue(), im)
        except Exception:  # the fast path must never lose a photo Pillow can read
            rgb = None
    if rgb is None:
        try:
            if im.format == "JPEG" and max(w0, h0) > cfg.max_side:
                # DCT scaling only halves; accept down to 0.9 x max_side so a 4000 px photo decodes
                # at 1/2 (2000 px) instead of in full and then resized.
                f = 0.9 * cfg.max_side / max(w0, h0)
                im.draft(im.mode if im.mode in ("RGB", "L") else None, (int(w0 * f) + 1, int(h0 * f) + 1))
            im.load()
            rgb = np.asarray(_to_rgb(im))
        except (OSError, ValueError, SyntaxError, RuntimeError, Image.DecompressionBombError, EOFError) as e:
            raise DecodeFailure(CORRUPT, f"{type(e).__name__}: {e}", disp_w, disp_h) from None
    rgb = F.upright(rgb, orientation)
    return rgb, disp_w, disp_h, orientation, meta


def _raw(fh, cfg: DecodeConfig):
    """A camera RAW file through LibRaw: header checks on the sensor size, then the preview or a
    half-size demosaic (formats.raw_pixels)."""
    try:
        import rawpy
    except ImportError as e:
        raise DecodeFailure(FAILED, f"RAW files need rawpy ({e})") from None
    try:
        raw = F.open_raw(fh)
    except rawpy.LibRawFileUnsupportedError:
        raise DecodeFailure(NOT_AN_IMAGE, "not a RAW file LibRaw can read") from None
    except (rawpy.LibRawError, OSError, ValueError) as e:
        raise DecodeFailure(CORRUPT, f"cannot parse RAW header: {type(e).__name__}: {e}") from None
    with raw:
        pixels, disp_w, disp_h, _, orientation = F.raw_header(raw)
        check_shape(disp_w, disp_h, cfg, pixels, (disp_w, disp_h))

        meta = dict(M.EMPTY)  # a RAW file's camera fields: those of its embedded preview, when it has EXIF

        def preview(data: bytes, o: int):
            rgb, *_, meta_ = _pillow(io.BytesIO(data), DecodeConfig(**{**cfg.__dict__, "min_side": 1}), o)
            meta.update(meta_)
            return rgb

        try:
            rgb, _how = F.raw_pixels(raw, cfg.max_side, preview)
        except DecodeFailure as e:
            raise DecodeFailure(CORRUPT, f"RAW preview: {e}", disp_w, disp_h) from None
        except (rawpy.LibRawError, OSError, ValueError, MemoryError) as e:
            raise DecodeFailure(CORRUPT, f"RAW data: {type(e).__name__}: {e}", disp_w, disp_h) from None
    if meta["camera_make"] is None and meta["taken_at"] is None:  # no preview EXIF: the file's own TIFF tags
        fh.seek(0)
        meta = M.tiff_fields(fh.read(1 << 20))
    return rgb, disp_w, disp_h, orientation, meta
