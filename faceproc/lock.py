"""The output folder's lock: one run at a time writes into an output folder, also across the nodes of a
cluster (O_EXCL on a shared disk, a conditional PUT on S3); a lock left by a dead process of the same
machine is taken over."""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from typing import Callable

from .storage import Store

log = logging.getLogger("faceproc")

LOCK = ".faceproc.lock"


class OutputLocked(RuntimeError):
    """Another run is writing into the same output folder."""


def _process_start(pid: int) -> float | None:
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def _pid_alive(pid: int, started: float | None = None) -> bool:
    """The lock holder still runs: it exists, is not a zombie (a SIGKILLed driver its parent has not reaped
    yet), and is the same process (its start time matches: pids are reused)."""
    import psutil

    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return started is None or abs(proc.create_time() - started) < 1.0
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:
        return True


def acquire_lock(store: Store) -> Callable[[], None]:
    """Create OUT/.faceproc.lock exclusively (O_EXCL, which also holds on NFS v3+ shared by the nodes of a Ray
    job; a conditional PUT on S3). A lock left by a dead process of this host is taken over; any other lock
    refuses the run. Returns the release function."""
    import socket

    me = {"host": socket.gethostname(), "pid": os.getpid(), "started": time.time(),
          "process_start": _process_start(os.getpid()), "token": uuid.uuid4().hex}
    for _ in range(2):
        if store.create_exclusive(LOCK, json.dumps(me)):
            return lambda: _release_lock(store, me["token"])
        try:
            other = json.loads(store.read_text(LOCK) or "{}")
        except (OSError, ValueError):
            other = {}
        if (other.get("host") == me["host"] and isinstance(other.get("pid"), int)
                and not _pid_alive(other["pid"], other.get("process_start"))):
            log.warning("taking over the lock of a run that died (pid %s)", other["pid"])
            store.delete(LOCK)
            continue
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(other.get("started", 0)))
        raise OutputLocked(
            f"another faceproc run (pid {other.get('pid', '?')} on {other.get('host', '?')}, since {since}) is "
            f"writing to {store}. Wait for it to finish; if it is gone, delete {store.where(LOCK)}.") from None
    raise OutputLocked(f"could not take the lock {store.where(LOCK)}")


def _release_lock(store: Store, token: str) -> None:
    """Only our own lock: a lock another run took over (after ours was judged dead) stays."""
    try:
        if json.loads(store.read_text(LOCK)).get("token") not in (token, None):
            return
    except (OSError, ValueError):
        pass
    store.delete(LOCK)
