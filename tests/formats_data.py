"""Test files made on the spot: HEIC and AVIF (pillow-heif, Pillow), DNG RAW files (tifffile; LibRaw reads
them), multi-frame files and PNG decompression bombs."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image


def marked(h=100, w=200):
    """A display image with a white block near the top right: where it lands shows the orientation."""
    disp = np.zeros((h, w, 3), np.uint8)
    disp[10:30, w - 50:w - 10] = 255
    return disp


def stored_for(disp: np.ndarray, orientation: int) -> np.ndarray:
    """What a camera stores for a display image under an EXIF orientation (6: rotated 90 clockwise to show)."""
    k = {1: 0, 6: 1, 8: -1, 3: 2}[orientation]
    return np.ascontiguousarray(np.rot90(disp, k=k))


def save_oriented(path, disp: np.ndarray, orientation: int, **kw) -> None:
    """Pillow (HEIC through pillow-heif, AVIF through Pillow's plugin) with an EXIF orientation; pillow-heif
    and Pillow's AVIF writer turn it into the container's rotation (irot), which readers apply."""
    import pillow_heif

    pillow_heif.register_heif_opener()
    exif = Image.Exif()
    exif[0x0112] = orientation
    im = Image.fromarray(stored_for(disp, orientation))
    im.info["exif"] = exif.tobytes()
    im.save(path, exif=exif.tobytes(), **kw)


def save_frames(path, values=(10, 200), size=64, **kw) -> None:
    """A multi-frame file whose frames are flat grey at `values` (GIF, TIFF, HEIC, AVIF)."""
    import pillow_heif

    pillow_heif.register_heif_opener()
    ims = [Image.fromarray(np.full((size, size, 3), v, np.uint8)) for v in values]
    ims[0].save(path, save_all=True, append_images=ims[1:], **kw)


def make_dng(path, h=240, w=320, orientation=1, preview=None, jpeg_preview=False) -> None:
    """A DNG LibRaw reads: a 12-bit RGGB mosaic of a left-to-right ramp (red rises to the right), optionally
    with a preview (an RGB array; as JPEG when jpeg_preview) in IFD0 and the raw in a SubIFD, as cameras write."""
    import tifffile

    x = np.mgrid[:h, :w][1]
    cfa = (x * 4000 // w).astype(np.uint16)
    cfa[0::2, 1::2] = 1000  # greens flat
    cfa[1::2, 0::2] = 1000
    cfa[1::2, 1::2] = 4000 - cfa[1::2, 1::2]  # blue falls to the right
    dng = [(50706, "B", 4, (1, 4, 0, 0)), (50707, "B", 4, (1, 1, 0, 0)), (50708, "s", 0, "faceproc test"),
           (50717, "I", 1, 4095), (50721, "2i", 9, (1, 1, 0, 1, 0, 1, 0, 1, 1, 1, 0, 1, 0, 1, 0, 1, 1, 1)),
           (50728, "2I", 3, (1, 1, 1, 1, 1, 1)), (274, "H", 1, orientation)]
    cfa_tags = [(33421, "H", 2, (2, 2)), (33422, "B", 4, (0, 1, 1, 2))]
    with tifffile.TiffWriter(path) as t:
        if preview is None:
            t.write(cfa, photometric=32803, extratags=dng + cfa_tags, subfiletype=0)
            return
        codecs = tifffile.TIFF.COMPRESSORS._codecs
        if jpeg_preview:  # the strip is already JPEG: hand its bytes to tifffile as the "compressed" strip
            buf = io.BytesIO()
            Image.fromarray(preview).save(buf, "JPEG", quality=92)
            codecs[7] = lambda data, *a, **k: buf.getvalue()
        try:
            t.write(preview, photometric="ycbcr" if jpeg_preview else "rgb", subsampling=(1, 1) if jpeg_preview else None,
                    compression=7 if jpeg_preview else None, subfiletype=1, subifds=1, extratags=dng,
                    rowsperstrip=preview.shape[0])
        finally:
            codecs.pop(7, None)
        t.write(cfa, photometric=32803, extratags=cfa_tags, subfiletype=0)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bomb(path, w: int, h: int, channels: int = 3) -> None:
    """A valid all-black PNG declaring w x h, made in milliseconds: one deflate block per row, each ending
    in a full flush, so every row compresses to the same bytes (30000x30000 RGB: 3.2 MB on disk, 2.7 GB
    decoded)."""
    row = b"\0" * (1 + w * channels)
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = c.compress(row) + c.flush(zlib.Z_FULL_FLUSH)
    tail = c.flush(zlib.Z_FINISH)
    adler = (((len(row) * h) % 65521) << 16) | 1  # Adler-32 of all-zero data
    idat = b"\x78\xda" + block * h + tail + struct.pack(">I", adler)
    ihdr = struct.pack(">IIBBBBB", w, h, 8, {1: 0, 3: 2}[channels], 0, 0, 0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b""))
