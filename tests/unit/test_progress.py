"""Progress per file and a complete run log (issue 23, item 5): the terminal's line moves per file, with files/s
and faces found so far, even on a one-shard run; OUT/faceproc.log of a terminal run holds the shard lines and
the closing summary. The Ray side of the line: tests/ray/test_progress_ray.py."""

import io
import logging
import re
import sys
import time

import pytest

from faceproc.engine import annotate
from faceproc.progress import ProgressLine, ShardTally, summary_lines
from tests.helpers import FakeModels, cfg_for_tests, make_tree


def counts_drawn(text: str, total: int) -> list[int]:
    return [int(m) for m in re.findall(rf"(\d+)/{total} files", text)]


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def test_the_line_adds_files_in_flight_to_committed_shards_and_shows_rate_and_faces():
    clock, out = Clock(), io.StringIO()
    line = ProgressLine(10, stream=out, clock=clock).start()
    line.shard_status("a", 1, 2)
    clock.t += 1
    line.shard_status("a", 3, 5)
    line.shard_status("b", 2, 0)  # another shard in flight at the same time (Ray)
    assert (line.files, line.faces) == (5, 5)
    line.shard_done("a", 4, 6)  # the committed counts replace what was sent
    line.shard_status("a", 3, 5)  # a late message of a committed shard changes nothing
    assert (line.files, line.faces) == (6, 6)
    clock.t += 1
    text = line.line(200)
    assert "6/10 files" in text and "6 faces" in text and "files/s" in text and "left" in text
    assert "2.5 files/s" in text  # 5 files more in the 2 s since the first file was seen
    line.close()
    assert out.getvalue().endswith("\n") and "\r" in out.getvalue()


def test_the_line_fits_the_terminal():
    line = ProgressLine(123456, stream=io.StringIO())
    line.shard_status("a", 100000, 99999)
    assert len(line.line(80)) < 80 and "[" in line.line(80)
    assert len(line.line(40)) < 40 and "[" not in line.line(40)  # the bar gives way first


def test_redraws_are_throttled_so_a_fast_run_writes_no_flood():
    clock, out = Clock(), io.StringIO()
    line = ProgressLine(1000, stream=out, clock=clock).start()
    for i in range(1000):  # 1000 files within 0.05 s
        line.shard_status("a", i + 1, 0)
        clock.t += 0.00005
    assert out.getvalue().count("\r") == 1  # the start only; the rest waits for the next redraw
    line.close()
    assert out.getvalue().count("\r") == 2 and "1000/1000 files" in out.getvalue()


def test_a_shard_tally_counts_every_file_and_sends_at_most_every_so_often():
    sent = []
    tally = ShardTally(lambda *a: sent.append(a), "s1", every=0.0)
    for faces in (2, 0, 3):
        tally(faces)
    assert sent == [("s1", 1, 2), ("s1", 2, 2), ("s1", 3, 5)]
    sent.clear()
    slow = ShardTally(lambda *a: sent.append(a), "s2", every=3600)
    for _ in range(50):
        slow(1)
    assert sent == [("s2", 1, 1)] and (slow.files, slow.faces) == (50, 50)

    def broken(*a):
        raise ConnectionError("the board is gone")

    ShardTally(broken, "s3")(1)  # progress never costs a shard


@pytest.fixture
def terminal_run(tmp_path, capsys, monkeypatch):
    """A run as on a terminal (progress=True) of 9 files in ONE shard, in this process; returns its stderr."""
    monkeypatch.setattr(ProgressLine, "MIN_INTERVAL", 0.0)  # every redraw, to see each file
    make_tree(tmp_path / "in", n=8)  # 8 photos and a broken file
    console = logging.StreamHandler(sys.stderr)  # the console log, as `faceproc` sets it up
    logging.getLogger().addHandler(console)
    try:
        rep = annotate([str(tmp_path / "in")], tmp_path / "out", cfg_for_tests(shard_size=1000, workers=1),
                       engine="local", progress=True, models=FakeModels())
    finally:
        logging.getLogger().removeHandler(console)
    assert rep["files"] == 9 and len(rep["failed_shards"]) == 0
    return capsys.readouterr().err


def test_a_one_shard_run_moves_per_file(terminal_run):
    drawn = counts_drawn(terminal_run, 9)
    assert drawn[0] == 0 and drawn[-1] == 9
    assert set(range(10)) <= set(drawn)  # every file, not 0 then 100%
    assert drawn == sorted(drawn)
    assert "files/s" in terminal_run and "4 faces" in terminal_run  # the faces so far: 4 of 8 photos have one


def test_the_log_of_a_terminal_run_holds_the_shard_lines_and_the_summary(tmp_path, terminal_run):
    log = (tmp_path / "out" / "faceproc.log").read_text()
    assert "to do in 1 shards" in log
    assert re.search(r"shard \w+ done \(9 files, 4 faces\) \| 1/1 shards", log)
    assert "summary: 9 files (4 with faces, 4 without), 4 faces, 1 file failed" in log
    assert f"summary: report: {tmp_path / 'out' / 'report.html'}" in log
    assert "to do in 1 shards" in terminal_run  # the console log before the line starts ...
    assert " done (" not in terminal_run and "summary:" not in terminal_run  # ... and none while it is drawn


def test_the_summary_says_when_work_is_unfinished():
    rep = {"files": 3, "faces": 0, "failed_files": 0, "output": "/o", "status_counts": {},
           "throughput": {"last_run_seconds": None}, "failed_shards": [{"shard": "x", "error": "boom"}]}
    assert "1 shard failed: run the same command again to finish them" in summary_lines(rep)


class _InProcessRay:
    """Just enough of `ray` to run the board actor in this process: `remote` classes and methods, get, kill."""

    def __init__(self):
        self.killed = []

    def remote(self, **options):
        def wrap(cls):
            class Handle:
                def __init__(self, obj):
                    for name in ("put", "take"):
                        setattr(self, name, type("M", (), {"remote": staticmethod(getattr(obj, name))})())

            return type("Remote", (), {"remote": staticmethod(lambda *a: Handle(cls(*a)))})

        return wrap

    def get(self, value, timeout=None):
        return value

    def kill(self, actor):
        self.killed.append(actor)


def test_ray_workers_counts_reach_the_line_through_the_board(monkeypatch):
    """executors/ray_progress.py without a cluster: a worker's tally puts to the board, the driver's thread
    takes from it into the line; stop() ends the thread and kills the board. (On Ray: tests/ray/.)"""
    import faceproc.executors.ray_progress as RP

    monkeypatch.setattr(RP, "POLL_EVERY", 0.01)
    line = ProgressLine(10, stream=io.StringIO())
    ray = _InProcessRay()
    board = RP.RayBoard(ray, line)
    assert RP.tally_for(None, "s1") is None  # no terminal, no board: the workers send nothing
    tally = RP.tally_for(board.actor, "s1")
    tally.every = 0.0
    for faces in (1, 0, 2):
        tally(faces)
    deadline = time.time() + 5
    while line.files < 3 and time.time() < deadline:
        time.sleep(0.01)
    assert (line.files, line.faces) == (3, 3)
    board.stop()
    assert not board.thread.is_alive() and ray.killed == [board.actor]
    board.stop()  # twice is harmless (the normal end, then run_ray's finally)
