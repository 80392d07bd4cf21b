"""The command line's own code (survivors of the first mutation run, docs/mutation.md): the exit code of
every way out of `_Group.main`, the summary lines, the log setup."""

import logging
import sys

import click
import pytest

import faceproc.engine
from faceproc.cli import EXIT_USAGE, _print_summary, _setup_logging, main


def exit_code(args, capsys):
    with pytest.raises(SystemExit) as e:
        main.main(args, prog_name="faceproc")  # positional, as jobs/annotate.py calls it
    out = capsys.readouterr()
    return e.value.code, out.out, out.err


def test_every_way_out_of_the_command_line_has_its_code(tmp_path, capsys, monkeypatch):
    code, out, _ = exit_code(["--help"], capsys)
    assert code == 0 and "Find every face" in out
    code, _, err = exit_code(["annotate"], capsys)
    assert code == EXIT_USAGE == 64 and "Missing option '-o'" in err
    code, _, err = exit_code(["report", str(tmp_path / "nowhere")], capsys)
    assert code == 1 and "Error: " in err and "does not exist" in err

    def abort(*a, **k):
        raise click.Abort()

    monkeypatch.setattr(faceproc.engine, "annotate", abort)
    (tmp_path / "in").mkdir()
    code, _, err = exit_code(["annotate", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--random-init"], capsys)
    assert code == 130 and err == "Aborted.\n"


def test_summary_lines(capsys):
    rep = {"files": 10, "faces": 7, "failed_files": 3, "output": "/o",
           "status_counts": {"ok": 5, "no_faces": 2, "corrupt": 2, "unreadable": 1},
           "throughput": {"last_run_seconds": 2.25, "last_run_files": 4}}
    _print_summary(rep)
    assert capsys.readouterr().out.splitlines() == [
        "10 files (5 with faces, 2 without), 7 faces, 3 files failed (corrupt=2, unreadable=1)",
        "last run: 4 files in 2.2 s", "report: /o/report.html"]
    _print_summary({**rep, "failed_files": 0, "status_counts": {}, "throughput": {"last_run_seconds": None}})
    assert capsys.readouterr().out.splitlines() == ["10 files (0 with faces, 0 without), 7 faces, 0 files failed",
                                                    "report: /o/report.html"]


@pytest.mark.parametrize("verbose, level", [(True, logging.DEBUG), (False, logging.INFO)])
def test_log_setup(verbose, level):
    root = logging.getLogger()
    saved, saved_level = root.handlers[:], root.level
    root.handlers.clear()
    try:
        _setup_logging(verbose)
        [h] = root.handlers
        assert root.level == level and h.stream is sys.stderr
        assert h.formatter._fmt == "%(asctime)s %(levelname)s %(name)s: %(message)s"
    finally:
        root.handlers[:] = saved
        root.setLevel(saved_level)
