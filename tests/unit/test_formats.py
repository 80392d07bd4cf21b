"""HEIC/HEIF, AVIF and RAW decode upright; multi-frame files give their first frame; every format's size is
checked from the header before pixels or EXIF are read (bombs, odd shapes)."""

import os
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from faceproc import decode as D
from faceproc.config import DecodeConfig
from tests.formats_data import make_dng, marked, png_bomb, save_frames, save_oriented

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def block_at_top_right(rgb, w=200, h=100):
    ys, xs = np.nonzero(rgb[..., 0] > 128)
    return rgb.shape[:2] == (h, w) and 6 <= ys.min() and ys.max() <= 34 and w - 54 <= xs.min() and xs.max() <= w - 6


@pytest.mark.parametrize("ext", ["heic", "avif"])
@pytest.mark.parametrize("orientation", [1, 6, 8, 3])
def test_heic_and_avif_decode_upright(tmp_path, ext, orientation):
    p = tmp_path / f"o{orientation}.{ext}"
    save_oriented(p, marked(), orientation, quality=95)
    d = D.decode_file(str(p))
    assert (d.width, d.height, d.scale) == (200, 100, 1.0)
    assert block_at_top_right(d.rgb), (ext, orientation)


def test_heic_named_jpg_is_still_read(tmp_path):
    """Phones' exports sometimes keep HEIF bytes under a .jpg name: Pillow identifies the content."""
    save_oriented(tmp_path / "x.heic", marked(), 1)
    os.rename(tmp_path / "x.heic", tmp_path / "x.jpg")
    assert block_at_top_right(D.decode_file(str(tmp_path / "x.jpg")).rgb)


@pytest.mark.parametrize("ext,kw", [("gif", {}), ("tiff", {}), ("heic", {}), ("avif", {}), ("webp", {"lossless": True})])
def test_multi_frame_files_give_the_first_frame(tmp_path, ext, kw):
    p = tmp_path / f"frames.{ext}"
    save_frames(p, values=(10, 200), **kw)
    assert getattr(Image.open(p), "n_frames", 1) == 2  # really two frames
    rgb = D.decode_file(str(p)).rgb
    assert abs(int(rgb.mean()) - 10) <= 3, (ext, rgb.mean())


@pytest.mark.parametrize("orientation,flip_shape", [(1, (120, 160)), (6, (160, 120)), (8, (160, 120)), (3, (120, 160))])
def test_raw_without_preview_is_demosaiced_at_half_size_upright(tmp_path, orientation, flip_shape):
    import rawpy

    p = tmp_path / "x.dng"
    make_dng(p, orientation=orientation)
    assert rawpy.imread(str(p)).sizes.raw_width == 320  # LibRaw reads the generated DNG
    d = D.decode_file(str(p))
    assert d.rgb.shape[:2] == flip_shape and (d.width, d.height) == (flip_shape[1] * 2, flip_shape[0] * 2)
    assert d.scale == pytest.approx(0.5)
    red = d.rgb[..., 0].astype(int)
    # the ramp rises left to right in the stored picture: after turning upright, it rises where that side went
    rises = {1: red[:, -5:].mean() - red[:, :5].mean(), 3: red[:, :5].mean() - red[:, -5:].mean(),
             6: red[-5:].mean() - red[:5].mean(), 8: red[:5].mean() - red[-5:].mean()}[orientation]
    assert rises > 100, (orientation, rises)


@pytest.mark.parametrize("jpeg", [True, False])
def test_raw_uses_a_big_enough_preview_upright(tmp_path, jpeg):
    prev = np.zeros((240, 320, 3), np.uint8)
    prev[:40, 240:] = 255  # a mark at the stored top right
    p = tmp_path / "x.dng"
    make_dng(p, orientation=6, preview=prev, jpeg_preview=jpeg)
    d = D.decode_file(str(p))
    # the preview (not the ramp) is what was decoded, turned 90 degrees clockwise: the mark is bottom right
    assert d.rgb.shape[:2] == (320, 240) and (d.width, d.height) == (240, 320)
    ys, xs = np.nonzero(d.rgb[..., 0] > 200)
    assert ys.min() >= 230 and xs.min() >= 190, (ys.min(), xs.min())


def test_raw_preview_too_small_falls_back_to_the_raw_data(tmp_path):
    p = tmp_path / "x.dng"
    make_dng(p, preview=np.full((60, 80, 3), 255, np.uint8))  # a quarter of the sensor: too small
    d = D.decode_file(str(p))
    assert d.rgb.shape[:2] == (120, 160) and d.rgb[..., 0].mean() < 200  # the ramp, not the white preview


def test_damaged_and_fake_raw_files_get_statuses(tmp_path):
    (tmp_path / "fake.nef").write_bytes(b"not a raw file at all" * 100)
    make_dng(tmp_path / "ok.dng")
    data = (tmp_path / "ok.dng").read_bytes()
    (tmp_path / "cut.dng").write_bytes(data[:400])
    assert pytest.raises(D.DecodeFailure, D.decode_file, str(tmp_path / "fake.nef")).value.status == D.NOT_AN_IMAGE
    assert pytest.raises(D.DecodeFailure, D.decode_file, str(tmp_path / "cut.dng")).value.status in (D.CORRUPT, D.NOT_AN_IMAGE)


def _spy_decodes(monkeypatch):
    """Record every pixel decode (`load` of Pillow's and its plugins' image classes) and EXIF read."""
    from PIL import ImageFile

    from faceproc import formats as F

    F.enable_heif()  # its plugin class is in the registry
    calls = []
    classes = {ImageFile.ImageFile, Image.Image} | {f for f, _ in Image.OPEN.values() if isinstance(f, type)}
    for cls in classes:
        for name in ("load", "getexif"):
            if name in cls.__dict__:
                orig = cls.__dict__[name]
                monkeypatch.setattr(cls, name, lambda self, *a, _o=orig, _n=name, **k: calls.append(_n) or _o(self, *a, **k))
    return calls


@pytest.mark.parametrize("ext", ["png", "jpg", "webp", "tiff", "gif", "bmp", "heic", "avif", "dng"])
def test_pixel_limit_is_checked_from_the_header_for_every_format(tmp_path, ext, monkeypatch):
    p = tmp_path / f"x.{ext}"
    if ext == "dng":
        make_dng(p, h=240, w=320)
    else:
        save_oriented(p, marked(240, 320), 1) if ext in ("heic", "avif") else Image.fromarray(marked(240, 320)).save(p)
    from faceproc import formats as F

    calls = _spy_decodes(monkeypatch)
    real_pixels = F.raw_pixels
    monkeypatch.setattr(F, "raw_pixels", lambda *a, **k: calls.append("raw_pixels") or real_pixels(*a, **k))
    with pytest.raises(D.DecodeFailure) as e:
        D.decode_file(str(p), DecodeConfig(max_pixels=320 * 240 - 1))
    assert e.value.status == D.TOO_LARGE and (e.value.width, e.value.height) == (320, 240)
    assert not [c for c in calls if c != "getexif"], calls  # no pixel was decoded
    D.decode_file(str(p), DecodeConfig(max_pixels=320 * 240))  # at the limit: read
    assert calls


def test_png_bomb_is_refused_before_exif_or_pixels(tmp_path, monkeypatch):
    """Reading a PNG's EXIF decodes it whole when the EXIF could follow the pixels: the limit comes first."""
    png_bomb(tmp_path / "bomb.png", 12000, 12000, 1)  # 144 MP of zeros, 0.2 MB on disk
    calls = _spy_decodes(monkeypatch)
    t = time.perf_counter()
    with pytest.raises(D.DecodeFailure) as e:
        D.decode_file(str(tmp_path / "bomb.png"))
    assert e.value.status == D.TOO_LARGE and (e.value.width, e.value.height) == (12000, 12000)
    assert calls == [] and time.perf_counter() - t < 1.0


@pytest.mark.slow
def test_a_30000_px_png_bomb_costs_no_memory(tmp_path):
    """The issue's case in a fresh process: a 3 MB PNG declaring 30000x30000 (2.7 GB decoded). Before: 3.6 GB
    peak and 18 s; now refused from the header, the process grows by less than 60 MB over its imports."""
    png_bomb(tmp_path / "bomb.png", 30000, 30000, 3)
    code = ("import resource,sys,time;from faceproc.decode import decode_file,DecodeFailure;"
            "b=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss;t=time.perf_counter()\n"
            "try: decode_file(sys.argv[1]); print('decoded')\n"
            "except DecodeFailure as e: print(e.status)\n"
            "print(time.perf_counter()-t, (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss-b)/1024)")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "bomb.png")], capture_output=True, text=True,
                         timeout=120, env={**os.environ, "PYTHONPATH": REPO}).stdout.split()
    assert out[0] == "too_large" and float(out[1]) < 2.0 and float(out[2]) < 60, out


@pytest.mark.parametrize("w,h,ok", [(20000, 20, False), (20, 20000, False), (4000, 30, False), (2048, 16, True),
                                    (4096, 32, True), (8000, 200, True)])
def test_extreme_aspect_ratios_get_a_status_from_the_header(tmp_path, w, h, ok, monkeypatch):
    """A panorama whose short side is under min_side at the detection resolution (long side max_side) is
    too_small with the reason, from the header; up to that, it is decoded (the detector's passes run on it:
    tests/integration/test_odd_shapes.py)."""
    p = tmp_path / "pano.png"
    Image.fromarray(np.full((h, w, 3), 90, np.uint8)).save(p)
    if ok:
        d = D.decode_file(str(p))
        assert min(d.rgb.shape[:2]) >= 16 and max(d.rgb.shape[:2]) <= 2048
        return
    calls = _spy_decodes(monkeypatch)
    with pytest.raises(D.DecodeFailure) as e:
        D.decode_file(str(p))
    assert e.value.status == D.TOO_SMALL and "aspect ratio" in e.value.message and not calls


def test_heic_and_avif_decode_in_a_fresh_process(tmp_path):
    """Workers import nothing but faceproc: decode itself makes HEIF readable (the helpers here register
    pillow-heif in this process, which would hide a missing registration)."""
    for ext in ("heic", "avif"):
        save_oriented(tmp_path / f"x.{ext}", marked(), 6)
    code = ("import sys;from faceproc.decode import decode_file\n"
            "for p in sys.argv[1:]: d = decode_file(p); print(d.width, d.height)")
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "x.heic"), str(tmp_path / "x.avif")],
                       capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": REPO})
    assert r.stdout.split() == ["200", "100", "200", "100"], r.stderr[-500:]
