"""`faceproc annotate`'s exit codes through the real command line (issue 21; the table in README "Exit
status"): 0 done, 1 refused, 2 shards unfinished (failed for good, or the disk full), 130 interrupted.
The stand-in models (tests.helpers) keep the runs fast; the codes are the CLI's own, not a test script's."""

import errno
import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
from click.testing import CliRunner

import faceproc.runstate as R
from faceproc.cli import main

from tests.conftest import REPO
from tests.helpers import fail_first_commit, make_tree


def cli(*args):
    return CliRunner().invoke(main, ["annotate", *map(str, args), "--engine", "local", "--random-init"])


def test_a_finished_run_exits_0_and_files_with_a_bad_status_do_not_change_that(tmp_path, fakes):
    make_tree(tmp_path / "in")
    r = cli(tmp_path / "in", "-o", tmp_path / "out")
    assert r.exit_code == 0, r.output
    assert "8 files" in r.output and "1 file failed (not_an_image=1)" in r.output


def test_a_shard_that_fails_for_good_exits_2_and_a_rerun_finishes_it(tmp_path, fakes, monkeypatch):
    make_tree(tmp_path / "in")
    out = tmp_path / "out"
    failed = fail_first_commit(monkeypatch, OSError(errno.EIO, "Input/output error"))
    r = cli(tmp_path / "in", "-o", out, "--shard-size", "3")
    assert r.exit_code == 2, r.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["state"] == "incomplete"
    assert manifest["shards"][failed[0]]["state"] == "failed" and "Input/output error" in manifest["shards"][failed[0]]["error"]
    kept = pd.read_parquet(out / "images")
    assert 0 < len(kept) == 8 - manifest["shards"][failed[0]]["files"]  # the other shards are kept
    monkeypatch.setattr(R, "_tables_in_place", lambda store, shard_id: None)
    r = cli(tmp_path / "in", "-o", out, "--shard-size", "3")
    assert r.exit_code == 0, r.output
    images = pd.read_parquet(out / "images")
    assert len(images) == 8 and images["image_path"].is_unique


def test_every_shard_failing_exits_2(tmp_path, fakes, monkeypatch):
    make_tree(tmp_path / "in")

    def fail(store, shard_id):
        raise RuntimeError("nothing commits")

    monkeypatch.setattr(R, "_tables_in_place", fail)
    r = cli(tmp_path / "in", "-o", tmp_path / "out", "--shard-size", "2")
    assert r.exit_code == 2, r.output
    shards = json.loads((tmp_path / "out" / "manifest.json").read_text())["shards"]
    assert len(shards) >= 3 and {s["state"] for s in shards.values()} == {"failed"}
    assert not list((tmp_path / "out" / "images").glob("*.parquet"))


def test_a_full_disk_exits_2_with_the_way_out(tmp_path, fakes, monkeypatch):
    import pyarrow.parquet as pq

    make_tree(tmp_path / "in")
    real = pq.write_table
    calls = [0]

    def filling_up(table, where, **kw):
        calls[0] += 1
        if calls[0] > 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(table, where, **kw)

    monkeypatch.setattr(pq, "write_table", filling_up)
    r = cli(tmp_path / "in", "-o", tmp_path / "out", "--shard-size", "2")
    assert r.exit_code == 2, r.output
    assert "full" in r.output and "run the same command again" in r.output and "Traceback" not in r.output


def test_a_refused_run_exits_1(tmp_path, fakes):
    make_tree(tmp_path / "in")
    out = tmp_path / "out"
    out.mkdir()
    (out / R.LOCK).write_text(json.dumps({"host": "another-host.example", "pid": 2**22 + 12345, "started": 0}))
    r = cli(tmp_path / "in", "-o", out)
    assert r.exit_code == 1 and "another faceproc run" in r.output


def test_a_file_the_system_refuses_to_write_exits_1_in_one_line(tmp_path, fakes, monkeypatch):
    """An immutable manifest.json (chattr +i), say: one line saying which file and why, no traceback."""
    import faceproc.record as record

    def refused(self):
        raise PermissionError(1, "Operation not permitted", str(tmp_path / "out" / "manifest.json"))

    monkeypatch.setattr(record.RunRecord, "write", refused)
    make_tree(tmp_path / "in")
    r = cli(tmp_path / "in", "-o", tmp_path / "out")
    assert r.exit_code == 1, r.output
    assert "Operation not permitted" in r.output and "manifest.json" in r.output and "Traceback" not in r.output


# The real command line in a child process, with the stand-in models and a slow model, so a signal lands
# in the middle of the run (after the first shard is committed).
CLI_CHILD = r"""
import sys
from tests.helpers import install_fakes
install_fakes()
from faceproc.cli import main
main(sys.argv[1:], prog_name="faceproc")
"""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_run_exits_130_and_a_rerun_finishes(tmp_path, sig):
    make_tree(tmp_path / "in", n=11)
    out = tmp_path / "out"
    args = ["annotate", str(tmp_path / "in"), "-o", str(out), "--engine", "local", "--random-init",
            "--shard-size", "1"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "FACEPROC_FAKE_DELAY": "0.3"}
    # SIGINT back to its default in the child: a test runner started in the background (`cmd &`) ignores it,
    # and a Python started with SIGINT ignored keeps ignoring it (no KeyboardInterrupt at all).
    p = subprocess.Popen([sys.executable, "-c", CLI_CHILD, *args], cwd=REPO, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while not list((out / "_shards").glob("*.json")) if (out / "_shards").exists() else True:
        assert p.poll() is None and time.time() < deadline, p.communicate()[1][-3000:]
        time.sleep(0.05)
    p.send_signal(sig)
    stdout, stderr = p.communicate(timeout=120)
    assert p.returncode == 130, stdout + stderr[-3000:]
    assert "run the same command again" in stderr
    assert json.loads((out / "manifest.json").read_text())["state"] == "interrupted"
    committed = {m.stem for m in (out / "_shards").glob("*.json")}
    assert 0 < len(committed) < 12 and {m.stem for m in (out / "images").glob("*.parquet")} == committed
    r = subprocess.run([sys.executable, "-c", CLI_CHILD, *args], cwd=REPO, env={**env, "FACEPROC_FAKE_DELAY": "0"},
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    images = pd.read_parquet(out / "images")
    assert len(images) == 12 and images["image_path"].is_unique
