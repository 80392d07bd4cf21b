"""Old FAT/Samba archives have folder names that are not UTF-8. Photos inside such folders were rows already;
a non-UTF-8 INPUT folder named on the command line broke the report after every shard had committed (exit 1,
each rerun the same), and a non-UTF-8 OUTPUT folder failed every shard inside Parquet."""

import json
import os

import pandas as pd
from click.testing import CliRunner

from faceproc.cli import main
from faceproc.engine import annotate
from tests.helpers import FakeModels, cfg_for_tests, make_tree


def test_an_input_folder_whose_name_is_not_utf8_gets_rows_and_a_report(tmp_path):
    raw = os.fsencode(tmp_path) + b"/archiv\xff"
    os.mkdir(raw)
    make_tree(tmp_path / os.fsdecode(b"archiv\xff"), n=5)
    out = tmp_path / "out"
    rep = annotate([os.fsdecode(raw)], out, cfg_for_tests(workers=1, previews=2), engine="local",
                   models=FakeModels())
    assert not rep["failed_shards"] and rep["inputs"] == [str(tmp_path) + "/archiv\\xff"]
    assert json.loads((out / "manifest.json").read_text())["state"] == "complete"
    assert "archiv\\xff" in (out / "report.html").read_text(encoding="utf-8")
    images = pd.read_parquet(out / "images")
    assert len(images) == 6 and images["image_path_bytes"].notna().all()  # each opens again by its bytes
    (out / "faceproc.log").read_bytes().decode("utf-8")  # the run's log stays UTF-8


def test_an_output_folder_whose_name_is_not_utf8_is_refused_in_one_line_before_anything_is_written(tmp_path,
                                                                                                  fakes):
    make_tree(tmp_path / "in", n=3)
    out = os.fsdecode(os.fsencode(tmp_path) + b"/out\xfe")
    r = CliRunner().invoke(main, ["annotate", str(tmp_path / "in"), "-o", out, "--engine", "local", "--random-init"])
    assert r.exit_code == 1, r.output
    assert "out\\xfe has a name that is not UTF-8" in r.output and "Traceback" not in r.output
    assert not os.path.exists(os.fsencode(tmp_path) + b"/out\xfe")


def test_a_non_utf8_output_given_as_bytes_is_refused_the_same_way(tmp_path):
    import pytest

    from faceproc.ownership import OutputRefused, check_location

    with pytest.raises(OutputRefused, match=r"out\\xfe has a name that is not UTF-8"):
        check_location([str(tmp_path / "in")], os.fsencode(tmp_path) + b"/out\xfe")
