"""OUT/faceproc.log: the whole story of every run into an output folder (INFO and up), whatever the console
shows. For an object-store output it is kept in a local file while the run goes on (appended to the earlier
runs' log) and uploaded at the end, even when the run fails."""

from __future__ import annotations

import contextlib
import logging
import tempfile
from pathlib import Path

from .storage import Store

log = logging.getLogger("faceproc")
NAME = "faceproc.log"


@contextlib.contextmanager
def run_log(out: Store):
    """Every log record of the run (INFO and up) also goes to OUT/faceproc.log while the block runs."""
    path = out.local_path / NAME if not out.remote else Path(tempfile.mkstemp(suffix=".log")[1])
    if out.remote:
        path.write_text(_read_or_empty(out, NAME), encoding="utf-8")
    handler = logging.FileHandler(path, encoding="utf-8", errors="backslashreplace")  # a non-UTF-8 name in a line
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.INFO)
    root = logging.getLogger()
    root.addHandler(handler)
    old_level = root.level
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)
    try:
        yield handler  # for lines meant for the file only (the closing summary)
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        handler.close()
        if out.remote:
            try:
                out.write_bytes(NAME, path.read_bytes())
            except OSError as e:
                log.warning("could not upload the run log to %s: %s", out.where(NAME), e)
            path.unlink(missing_ok=True)


def _read_or_empty(store: Store, rel: str) -> str:
    try:
        return store.read_text(rel)
    except (OSError, ValueError):
        return ""
