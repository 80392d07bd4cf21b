"""`faceproc annotate` with the real detector and shipped model over a real camera RAW file
(tests/data/raw/colorchart.dng, see the README there): a read row with the camera and the displayed size, and
no face found on a colour chart."""

import shutil
from pathlib import Path

import pandas as pd
from click.testing import CliRunner

from faceproc.cli import main
from tests.conftest import requires_shared

pytestmark = requires_shared

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "raw" / "colorchart.dng"


def test_annotate_reads_a_camera_raw_file(tmp_path):
    (tmp_path / "in" / "2016 chart").mkdir(parents=True)
    shutil.copy(SAMPLE, tmp_path / "in" / "2016 chart" / "IMG_0001.DNG")
    res = CliRunner().invoke(main, ["annotate", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--engine", "local",
                                    "--model", "unfrozen"])
    assert res.exit_code == 0, res.output
    assert "0 files failed" in res.output
    r = pd.read_parquet(tmp_path / "out" / "images").iloc[0]
    assert (r.status, r.n_faces, r.width, r.height) == ("no_faces", 0, 1734, 1156)
    assert (r.folder, r.camera_make, r.camera_model) == ("2016 chart", "Canon", "Canon EOS Kiss X4")
    assert pd.isna(r.taken_at) and pd.isna(r.error)
