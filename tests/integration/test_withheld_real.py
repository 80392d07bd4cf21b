"""The real detector and the shipped model on a photo with one large face and several tiny ones: the large one
gets an age and gender, the tiny ones (under model.min_face_px) are rows without them, with the reason."""

import cv2
import numpy as np
import pandas as pd
from click.testing import CliRunner

from faceproc.cli import main
from faceproc.config import Config
from tests.conftest import requires_shared

pytestmark = requires_shared


def test_tiny_faces_are_rows_without_age_or_gender(tmp_path, utk_files):
    rng = np.random.default_rng(5)
    img = np.full((480, 640, 3), 120, np.uint8)
    picks = rng.choice(len(utk_files), 6, replace=False)
    big = cv2.imread(utk_files[picks[0]])
    img[40:240, 40:240] = big  # a 200 px square: a face box of ~160 px
    for k, j in enumerate(picks[1:]):  # 20 px squares: face boxes of 15-18 px, under the 20 px default
        x = 300 + 60 * k
        img[300:320, x:x + 20] = cv2.resize(cv2.imread(utk_files[j]), (20, 20), interpolation=cv2.INTER_AREA)
    (tmp_path / "in").mkdir()
    cv2.imwrite(str(tmp_path / "in" / "group.png"), img)
    res = CliRunner().invoke(main, ["annotate", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--engine", "local",
                                    "--model", "unfrozen"])
    assert res.exit_code == 0, res.output
    faces = pd.read_parquet(tmp_path / "out" / "faces")
    min_px = Config().model.min_face_px
    large = faces[faces["face_px"] >= min_px]
    small = faces[faces["face_px"] < min_px]
    assert len(large) == 1 and pd.isna(large["withheld"].iloc[0]) and 0 <= large["age"].iloc[0] <= 100
    assert large["sharpness"].iloc[0] > Config().model.min_sharpness and large["gender"].iloc[0] in ("male", "female")
    assert len(small) >= 3  # most of the tiny faces are found ...
    assert (small["withheld"] == "small_face").all()  # ... and none gets an age or a gender
    assert small["age"].isna().all() and small["gender"].isna().all() and small["female_prob"].isna().all()
