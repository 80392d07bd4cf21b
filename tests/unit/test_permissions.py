"""Permission denied, for real (issue 21): root reads and writes anything, so when the suite runs as root
these runs happen in a child process without root's file powers (setpriv drops CAP_DAC_OVERRIDE and
CAP_DAC_READ_SEARCH: still uid 0, so it reaches this Python, but mode bits now bind it); without setpriv
they skip, with the reason in the summary."""

import os
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tests.conftest import REPO

DROP = "-dac_override,-dac_read_search"
CLI_CHILD = r"""
import sys
from tests.helpers import install_fakes
install_fakes()
from faceproc.cli import main
main(sys.argv[1:], prog_name="faceproc")
"""


@pytest.fixture
def unprivileged(tmp_path) -> list[str]:
    """The command prefix that runs a child bound by file modes ([] when the suite is not root)."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if not setpriv:
        pytest.skip("PERMISSION TESTS SKIPPED: running as root and setpriv (util-linux) is not installed")
    prefix = [setpriv, f"--bounding-set={DROP}", f"--inh-caps={DROP}"]
    probe = tmp_path / "probe"
    probe.write_text("x")
    probe.chmod(0)
    r = subprocess.run([*prefix, sys.executable, "-c", f"open({str(probe)!r})"], capture_output=True, text=True)
    probe.unlink()
    if "PermissionError" not in r.stderr:
        pytest.skip(f"PERMISSION TESTS SKIPPED: running as root and setpriv could not drop the file capabilities "
                    f"({r.returncode}: {r.stderr.strip()[-300:]})")
    return prefix


def run_cli(prefix, *args):
    return subprocess.run([*prefix, sys.executable, "-c", CLI_CHILD, "annotate", *map(str, args), "--engine", "local",
                           "--random-init"], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                          capture_output=True, text=True, timeout=300)


def test_unreadable_photo_is_a_row_and_an_unwritable_output_is_refused(tmp_path, unprivileged):
    prefix, workdir = unprivileged, tmp_path
    src = workdir / "in"
    src.mkdir()
    for name in ("a.png", "locked.png"):
        img = np.full((80, 100, 3), 100, np.uint8)
        img[0, 0] = 255
        Image.fromarray(img).save(src / name)
    os.chmod(src / "locked.png", 0)
    r = run_cli(prefix, src, "-o", workdir / "out")
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]
    images = pd.read_parquet(workdir / "out" / "images")
    got = dict(zip(images["image_path"].str.rsplit("/", n=1).str[-1], zip(images["status"], images["error"])))
    assert got["a.png"][0] == "ok"
    assert got["locked.png"][0] == "unreadable" and "Permission denied" in got["locked.png"][1]
    assert "1 file failed (unreadable=1)" in r.stdout
    # an output folder this user may not write: refused before anything is written (exit 1)
    closed = workdir / "closed"
    closed.mkdir()
    os.chmod(closed, 0o555)
    r = run_cli(prefix, src, "-o", closed / "out")
    assert r.returncode == 1 and "not writable" in r.stderr + r.stdout, r.stderr[-2000:]
    assert not (closed / "out").exists()
    os.chmod(closed, 0o755)
