"""A real camera RAW file (tests/data/raw/colorchart.dng: a Canon EOS Kiss X4 DNG, MIT, see the README
beside it) through faceproc's real decode path. The rules themselves (preview or demosaic, each orientation,
damaged files) are tested on generated DNGs in test_formats.py; this file checks that a camera's own file
follows them."""

import hashlib
import shutil
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from faceproc import decode as D
from faceproc.metadata import tiff_fields
from tests.helpers import cfg_for_tests

RAW = Path(__file__).resolve().parents[1] / "data" / "raw"
SAMPLE = RAW / "colorchart.dng"
CAMERA = {"taken_at": None, "taken_at_offset": None, "camera_make": "Canon", "camera_model": "Canon EOS Kiss X4"}


def with_orientation(data: bytes, orientation: int) -> bytes:
    """The file with IFD0's Orientation tag (a SHORT, stored in the entry) set to `orientation`."""
    b = bytearray(data)
    assert b[:4] == b"II*\x00"
    ifd = struct.unpack_from("<I", b, 4)[0]
    for i in range(struct.unpack_from("<H", b, ifd)[0]):
        entry = ifd + 2 + 12 * i
        if struct.unpack_from("<H", b, entry)[0] == 0x0112:
            struct.pack_into("<H", b, entry + 8, orientation)
            return bytes(b)
    raise AssertionError("no Orientation tag in IFD0")


def test_the_sample_is_the_file_its_licence_note_describes():
    note = (RAW / "README.md").read_text()
    assert hashlib.sha256(SAMPLE.read_bytes()).hexdigest() in note
    assert "MIT" in note and "Permission is hereby granted" in note and "syoyo/tinydng" in note


def test_a_camera_dng_without_preview_is_demosaiced_at_half_size_upright():
    d = D.decode_file(str(SAMPLE))
    assert (d.width, d.height, d.orientation) == (1734, 1156, 1)  # the sensor's shown area, as displayed
    assert d.rgb.shape == (578, 867, 3) and d.scale == pytest.approx(0.5)
    assert 40 < d.rgb.mean() < 160 and d.rgb.std() > 30  # a photo: neither flat, nor black, nor clipped
    up = d.rgb.astype(float)
    # upright: the lit table fills the bottom rows, the window light the right side
    assert up[-50:].mean() > up[:50].mean() + 15 and up[:, -50:].mean() > up[:, :50].mean() + 30
    assert d.meta == CAMERA  # from the file's own IFD0 (no preview to take EXIF from); its date tags are empty


@pytest.mark.parametrize("orientation,k,size", [(6, -1, (1156, 1734)), (8, 1, (1156, 1734)), (3, 2, (1734, 1156))])
def test_the_files_orientation_tag_is_honoured(tmp_path, orientation, k, size):
    """The same camera data with another Orientation in IFD0 comes out turned by exactly that much."""
    p = tmp_path / "turned.dng"
    p.write_bytes(with_orientation(SAMPLE.read_bytes(), orientation))
    d = D.decode_file(str(p))
    assert (d.width, d.height, d.orientation) == (*size, orientation)
    np.testing.assert_array_equal(d.rgb, np.rot90(D.decode_file(str(SAMPLE)).rgb, k))


def test_camera_fields_come_from_a_raw_files_own_tiff_tags_and_never_from_a_damaged_one():
    head = SAMPLE.read_bytes()[: 1 << 20]
    assert tiff_fields(head) == CAMERA
    assert tiff_fields(b"FUJIFILMCCD-RAW " + head[16:]) == dict(CAMERA, camera_make=None, camera_model=None)
    assert tiff_fields(head[:40])["camera_make"] is None  # cut inside IFD0: no crash, nothing invented


def tiff_header(make: str, model: str, taken: str) -> bytes:
    """A big-endian TIFF header as a NEF starts: IFD0 (Make, Model, Exif IFD pointer), then an Exif IFD with
    DateTimeOriginal, then the strings."""
    strings = [v.encode() + b"\0" for v in (make, model, taken)]
    exif_ifd = 8 + 2 + 3 * 12 + 4
    at = [exif_ifd + 2 + 12 + 4]
    for v in strings[:-1]:
        at.append(at[-1] + len(v))
    entry = lambda tag, kind, n, value: struct.pack(">HHII", tag, kind, n, value)  # noqa: E731
    return (b"MM\0*" + struct.pack(">IH", 8, 3) + entry(0x010F, 2, len(strings[0]), at[0])
            + entry(0x0110, 2, len(strings[1]), at[1]) + entry(0x8769, 4, 1, exif_ifd) + struct.pack(">I", 0)
            + struct.pack(">H", 1) + entry(0x9003, 2, len(strings[2]), at[2]) + struct.pack(">I", 0)
            + b"".join(strings))


def test_a_raw_files_own_date_taken_and_camera_are_read():
    import datetime as dt

    head = tiff_header("NIKON CORPORATION", "NIKON D2H", "2004:05:06 07:08:09")
    assert tiff_fields(head) == {"taken_at": dt.datetime(2004, 5, 6, 7, 8, 9), "taken_at_offset": None,
                                 "camera_make": "NIKON CORPORATION", "camera_model": "NIKON D2H"}


def test_a_camera_raw_file_gets_a_read_row_with_its_camera_and_size(tmp_path, fakes):  # noqa: ARG001
    from faceproc.engine import annotate

    (tmp_path / "in" / "2016").mkdir(parents=True)
    shutil.copy(SAMPLE, tmp_path / "in" / "2016" / "colorchart.dng")
    annotate([str(tmp_path / "in")], tmp_path / "out", cfg_for_tests(), engine="local")
    r = pd.read_parquet(tmp_path / "out" / "images").iloc[0]
    assert r.status == "no_faces" and r.n_faces == 0 and pd.isna(r.error)  # read: a colour chart has no face
    assert (r.width, r.height) == (1734, 1156) and (r.rel_path, r.folder) == ("2016/colorchart.dng", "2016")
    assert (r.camera_make, r.camera_model) == ("Canon", "Canon EOS Kiss X4") and pd.isna(r.taken_at)
