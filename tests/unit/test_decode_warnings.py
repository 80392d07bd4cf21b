"""The decoders' warnings (damaged EXIF, palette transparency) are silenced by filters set once, not by a
`warnings.catch_warnings()` block per decode: such blocks swap the process-wide filter list, so on the
in-process engine's threads they overlapped, printed warnings mid-decode and left an `ignore` behind."""

import threading
import warnings

import numpy as np
from PIL import Image

from faceproc.config import DecodeConfig
from faceproc.decode import decode_file


def _warning_files(d):
    pal = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).convert("P")
    pal.save(d / "pal.png", transparency=bytes([0] * 10))  # Pillow: "Palette images with Transparency ..."
    Image.fromarray(np.full((64, 64, 3), 120, np.uint8)).save(  # Pillow: "Corrupt EXIF data ..."
        d / "badexif.jpg", exif=b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\x00\x05\x01\x0f\x00\x02\xff\xff\xff\xff")
    return [str(d / "pal.png"), str(d / "badexif.jpg")]


def test_the_decoders_warnings_are_not_shown(tmp_path):
    files = _warning_files(tmp_path)
    with warnings.catch_warnings(record=True) as seen:  # the filters in force, plus a recorder
        for f in files:
            assert decode_file(f, DecodeConfig()).rgb.shape == (64, 64, 3)
    assert not seen, [str(w.message) for w in seen]


def test_decoding_on_threads_leaves_the_process_warning_filters_as_they_were(tmp_path):
    files = _warning_files(tmp_path)
    decode_file(files[0], DecodeConfig())  # decode.py imported and its filters set
    before = list(warnings.filters)
    start = threading.Barrier(3)

    def work():
        start.wait()
        for _ in range(150):
            for f in files:
                decode_file(f, DecodeConfig())

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert warnings.filters == before


def test_the_filters_come_back_when_the_filter_list_is_swapped(tmp_path):
    """pytest (and any caller's `catch_warnings`) swaps the filter list and later puts the old one back: the
    decoders' filters are set again on the list in force."""
    files = _warning_files(tmp_path)
    with warnings.catch_warnings():  # a list swapped in gets the filters at the first decode ...
        decode_file(files[1], DecodeConfig())
    with warnings.catch_warnings(record=True) as seen:  # ... and the list put back has none of them
        decode_file(files[1], DecodeConfig())
    assert not seen, [str(w.message) for w in seen]
