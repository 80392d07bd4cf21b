"""What a run shows on a terminal: one progress line that moves per file (files done, files/s, faces found so
far, time left), and the closing summary, which also goes to OUT/faceproc.log.

Shards are the unit of commit, not of progress: a run of a few big shards would sit at 0% for minutes. So
each executor reports a shard's files as they are read (`ShardTally`; on Ray through a small actor the driver
polls, executors/ray_progress.py) and the line adds them to the committed shards. The line is drawn only on a
terminal (engine.py decides), redrawn at most ~10 times a second, and never written to a log.
"""

from __future__ import annotations

import logging
import shutil
import sys
import threading
import time
from typing import Callable

log = logging.getLogger("faceproc")


class ProgressLine:
    """`annotating [#####-----]  37/120 files  4.2 files/s  58 faces  0:20 left`, redrawn in place."""

    MIN_INTERVAL = 0.1  # seconds between redraws: a terminal needs no more, and a fast run writes no flood

    def __init__(self, total: int, stream=None, clock: Callable[[], float] = time.monotonic):
        self.total, self.stream, self.clock = total, stream or sys.stderr, clock
        self.min_interval = self.MIN_INTERVAL
        self.committed = [0, 0]  # files, faces of the shards committed in this run
        self.partial: dict[str, tuple[int, int]] = {}  # shard id -> (files, faces) read so far, not yet committed
        self.done: set[str] = set()
        self.first: tuple[float, int] | None = None  # (when, files) at the first file: the rate is measured from it
        self.last_draw = float("-inf")
        self.closed = False
        self.lock = threading.Lock()  # the Ray poller reports from its own thread

    # ------------------------------------------------------------------ what the executors report
    def shard_status(self, shard_id: str, files: int, faces: int) -> None:
        """A shard's files and faces so far (the latest count wins; a shard already committed is ignored)."""
        with self.lock:
            if shard_id not in self.done:
                self.partial[shard_id] = (files, faces)
            self._draw()

    def shard_done(self, shard_id: str, files: int, faces: int) -> None:
        with self.lock:
            self.done.add(shard_id)
            self.partial.pop(shard_id, None)
            self.committed[0] += files
            self.committed[1] += faces
            self._draw()

    @property
    def files(self) -> int:
        return self.committed[0] + sum(f for f, _ in self.partial.values())

    @property
    def faces(self) -> int:
        return self.committed[1] + sum(n for _, n in self.partial.values())

    # ------------------------------------------------------------------ drawing
    def line(self, width: int = 80) -> str:
        now, files, total = self.clock(), self.files, max(self.total, 1)
        parts = [f"{files}/{self.total} files"]
        rate = None
        if self.first is not None and now > self.first[0] and files > self.first[1]:
            rate = (files - self.first[1]) / (now - self.first[0])
            parts.append(f"{rate:.1f} files/s" if rate < 10 else f"{rate:.0f} files/s")
        parts.append(f"{self.faces} face{'' if self.faces == 1 else 's'}")
        if rate and files < self.total:
            left = int((self.total - files) / rate)
            parts.append(f"{left // 3600}:{left // 60 % 60:02}:{left % 60:02} left" if left >= 3600
                         else f"{left // 60}:{left % 60:02} left")
        info = "  ".join(parts)
        room = max(len(info), 40 + 2 * len(str(self.total)))  # the info's usual width: the bar keeps its size
        bar_w = min(20, width - 1 - room - len("annotating []  "))  # the bar gives way on a narrow terminal
        if bar_w < 5:
            return f"annotating  {info}"[: max(width - 1, 20)]
        filled = min(bar_w, bar_w * files // total)
        return f"annotating [{'#' * filled}{'-' * (bar_w - filled)}]  {info}"

    def _draw(self, force: bool = False) -> None:
        if self.first is None and self.files:
            self.first = (self.clock(), self.files)
        if self.closed or (not force and self.clock() - self.last_draw < self.min_interval):
            return
        self.last_draw = self.clock()
        self.stream.write("\r" + self.line(shutil.get_terminal_size((80, 24)).columns) + "\x1b[K")
        self.stream.flush()

    def start(self) -> "ProgressLine":
        with self.lock:
            self._draw(force=True)
        return self

    def close(self) -> None:
        """The final count stays on screen, on its own line."""
        with self.lock:
            if not self.closed:
                self._draw(force=True)
                self.stream.write("\n")
                self.stream.flush()
                self.closed = True


class ShardTally:
    """The per-file hook of one shard (pipeline.Annotator.on_file): counts its files and faces and passes the
    counts on to `send(shard_id, files, faces)`, at most every `every` seconds (a Ray call is not free)."""

    def __init__(self, send: Callable[[str, int, int], object], shard_id: str, every: float = 0.0):
        self.send, self.shard_id, self.every = send, shard_id, every
        self.files = self.faces = 0
        self.last = float("-inf")

    def __call__(self, n_faces: int) -> None:
        self.files += 1
        self.faces += n_faces
        if time.monotonic() - self.last >= self.every:
            self.last = time.monotonic()
            try:
                self.send(self.shard_id, self.files, self.faces)
            except Exception as e:  # noqa: BLE001 (progress must never cost a shard)
                log.debug("progress not sent: %s", e)


# ------------------------------------------------------------------------------ the closing summary

def _n(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def summary_lines(rep: dict) -> list[str]:
    """The run summary a person reads: counts, failures, what was not a row, the time, where the report is."""
    from .schema import READ_OK
    from .skipped import skipped_lines
    from .storage import join

    tp = rep["throughput"]
    counts = rep["status_counts"]
    bad = {k: v for k, v in sorted(counts.items()) if k not in READ_OK}
    lines = [f"{_n(rep['files'], 'file')} ({counts.get('ok', 0)} with faces, {counts.get('no_faces', 0)} without), "
             f"{_n(rep['faces'], 'face')}, {_n(rep['failed_files'], 'file')} failed"
             + (f" ({', '.join(f'{k}={v}' for k, v in bad.items())})" if bad else "")]
    lines += [f"not rows: {line}" for line in skipped_lines(rep.get("skipped"))]  # never silently
    if tp.get("last_run_seconds") is not None:
        lines.append(f"last run: {_n(tp['last_run_files'], 'file')} in {tp['last_run_seconds']:.1f} s")
    if rep.get("failed_shards"):
        lines.append(f"{_n(len(rep['failed_shards']), 'shard')} failed: run the same command again to finish them")
    lines.append(f"report: {join(rep['output'], 'report.html')}")
    return lines


def log_summary(handler: logging.Handler, rep: dict) -> None:
    """The summary into the run's log file only: the terminal gets it from the command line, on stdout."""
    for text in summary_lines(rep):
        handler.handle(log.makeRecord(log.name, logging.INFO, __file__, 0, "summary: %s", (text,), None))
