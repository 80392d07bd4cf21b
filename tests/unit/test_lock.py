"""The output lock (issue 21): exclusive, never taken from a live run or from another machine, taken over
only from a dead process of this machine, released only by its owner."""

import json
import logging
import os
import re
import socket
import subprocess
import sys

import pandas as pd
import psutil
import pytest

import faceproc.lock as L
from faceproc.engine import LOCK, OutputLocked, annotate
from faceproc.storage import Store

from tests.helpers import cfg_for_tests, make_tree

DEAD_PID = 2**22 + 12345  # above the default pid_max: no process has it


def dead_pid() -> int:
    assert not psutil.pid_exists(DEAD_PID)
    return DEAD_PID


def lock_of(host, pid, **more):
    return json.dumps({"host": host, "pid": pid, "started": 0, **more})


def test_lock_of_another_host_is_never_taken_over_even_when_its_pid_is_dead_here(tmp_path):
    """The holder runs on another machine (an NFS output shared by a Ray cluster): this machine cannot tell
    whether it lives, so the lock stands, whatever pid it names."""
    store = Store(tmp_path / "out")
    for pid in (dead_pid(), os.getpid(), 1):
        (tmp_path / "out").mkdir(exist_ok=True)
        (tmp_path / "out" / LOCK).write_text(lock_of("another-host.example", pid))
        with pytest.raises(OutputLocked, match=f"pid {pid} on another-host.example"):
            L.acquire_lock(store)
        assert json.loads((tmp_path / "out" / LOCK).read_text())["host"] == "another-host.example"  # untouched


def test_a_live_holder_on_this_host_keeps_its_lock(tmp_path):
    """A run of this machine that still runs (a real child process, its start time recorded as the lock does)."""
    store = Store(tmp_path / "out")
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        started = psutil.Process(child.pid).create_time()
        for extra in ({"process_start": started}, {}):  # an older lock without the start time: alive too
            (tmp_path / "out").mkdir(exist_ok=True)
            (tmp_path / "out" / LOCK).write_text(lock_of(socket.gethostname(), child.pid, **extra))
            with pytest.raises(OutputLocked, match=f"pid {child.pid} on {socket.gethostname()}.*delete"):
                L.acquire_lock(store)
            assert json.loads((tmp_path / "out" / LOCK).read_text())["pid"] == child.pid
    finally:
        child.kill()
        child.wait()


@pytest.mark.parametrize("holder", ["dead", "reused"])
def test_a_dead_holder_on_this_host_is_taken_over_with_a_warning(tmp_path, caplog, holder):
    """A dead pid, or a live pid whose start time is not the holder's (the pid was reused)."""
    store = Store(tmp_path / "out")
    (tmp_path / "out").mkdir()
    pid, extra = (dead_pid(), {}) if holder == "dead" else (os.getpid(), {"process_start": 1.0})
    (tmp_path / "out" / LOCK).write_text(lock_of(socket.gethostname(), pid, **extra))
    with caplog.at_level(logging.WARNING, logger="faceproc"):
        release = L.acquire_lock(store)
    assert "taking over the lock" in caplog.text
    mine = json.loads((tmp_path / "out" / LOCK).read_text())
    assert mine["pid"] == os.getpid() and mine["host"] == socket.gethostname() and mine["token"]
    release()
    assert not (tmp_path / "out" / LOCK).exists()


def test_lock_file_is_created_exclusively(tmp_path):
    store = Store(tmp_path / "out")
    assert store.create_exclusive(LOCK, "first")
    assert not store.create_exclusive(LOCK, "second")
    assert (tmp_path / "out" / LOCK).read_text() == "first"
    release = None
    with pytest.raises(OutputLocked, match=rf"\(pid \? on \?, since .* delete {re.escape(store.where(LOCK))}\.$"):
        release = L.acquire_lock(store)  # "first" is no lock it can read: refused, not taken over
    assert release is None and (tmp_path / "out" / LOCK).read_text() == "first"


def test_release_leaves_a_lock_that_another_run_took_over(tmp_path):
    store = Store(tmp_path / "out")
    release = L.acquire_lock(store)
    theirs = lock_of(socket.gethostname(), os.getpid(), token="someone-else")
    (tmp_path / "out" / LOCK).write_text(theirs)
    release()
    assert (tmp_path / "out" / LOCK).read_text() == theirs
    (tmp_path / "out" / LOCK).unlink()
    release = L.acquire_lock(store)
    release()
    assert not (tmp_path / "out" / LOCK).exists()


def test_pid_alive_reads_zombies_reused_pids_and_unknowns():
    me = psutil.Process(os.getpid())
    assert L._pid_alive(os.getpid()) and L._pid_alive(os.getpid(), me.create_time())
    assert not L._pid_alive(os.getpid(), me.create_time() - 5)  # a reused pid: another process
    assert not L._pid_alive(dead_pid())
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    import time

    deadline = time.time() + 30
    while psutil.Process(child.pid).status() != psutil.STATUS_ZOMBIE and time.time() < deadline:
        time.sleep(0.05)
    assert not L._pid_alive(child.pid)  # exited, not yet reaped
    child.wait()
    assert L._process_start(os.getpid()) == pytest.approx(me.create_time()) and L._process_start(dead_pid()) is None


def test_pid_alive_when_the_process_cannot_be_inspected(monkeypatch):
    """psutil refuses (AccessDenied, another user's process): the holder is taken as alive, never robbed."""

    class Denied:
        def __init__(self, pid):
            raise psutil.AccessDenied(pid)

    monkeypatch.setattr(psutil, "Process", Denied)
    assert L._pid_alive(12345)


def test_a_run_releases_its_lock_also_when_it_fails(tmp_path, fakes, monkeypatch):
    make_tree(tmp_path / "in")
    out = tmp_path / "out"
    import faceproc.engine as E

    def broken(*a, **k):
        raise RuntimeError("the report broke")

    monkeypatch.setattr("faceproc.report.build_report", broken)
    with pytest.raises(RuntimeError, match="the report broke"):
        annotate([str(tmp_path / "in")], out, cfg_for_tests(), engine="local")
    assert not (out / LOCK).exists()
    monkeypatch.undo()
    from tests.helpers import install_fakes

    install_fakes(monkeypatch.setattr)
    assert E.annotate([str(tmp_path / "in")], out, cfg_for_tests(), engine="local")["files"] == 8
    assert not (out / LOCK).exists() and len(pd.read_parquet(out / "images")) == 8


def test_the_lock_records_who_holds_it_and_since_when(tmp_path):
    """What the takeover and the refusal read back: host, pid, this process's start time, the time taken."""
    import time

    before = time.time()
    release = L.acquire_lock(Store(tmp_path / "out"))
    mine = json.loads((tmp_path / "out" / LOCK).read_text())
    release()
    assert set(mine) == {"host", "pid", "started", "process_start", "token"}
    assert (mine["host"], mine["pid"]) == (socket.gethostname(), os.getpid())
    assert mine["process_start"] == pytest.approx(psutil.Process().create_time())
    assert before <= mine["started"] <= time.time()


@pytest.mark.parametrize("started", [1_700_000_000.0, None])
def test_a_refusal_says_since_when_the_other_run_holds_the_lock(tmp_path, started):
    import time

    (tmp_path / "out").mkdir()
    lock = {"host": "another-host.example", "pid": 7}
    if started is not None:
        lock["started"] = started
    (tmp_path / "out" / LOCK).write_text(json.dumps(lock))
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started or 0))
    with pytest.raises(OutputLocked, match=f"pid 7 on another-host.example, since {since}\\)"):
        L.acquire_lock(Store(tmp_path / "out"))


def test_pid_alive_allows_under_a_second_between_start_times():
    """The recorded start time and psutil's agree to well under a second; a second or more apart is another
    process that got the same pid."""
    start = psutil.Process().create_time()
    assert L._pid_alive(os.getpid(), start - 0.5) and L._pid_alive(os.getpid(), start + 0.5)
    assert not L._pid_alive(os.getpid(), start - 1.0) and not L._pid_alive(os.getpid(), start - 1.5)


def test_a_lock_that_reappears_after_each_takeover_is_refused_after_one_retry(tmp_path):
    """A dead holder's lock is taken over once; if the exclusive create loses again (another run took the
    freed lock), the run stops with a clear error instead of looping."""

    class Racing(Store):
        creates = deletes = 0

        def create_exclusive(self, rel, text):
            Racing.creates += 1
            return False

        def read_text(self, rel):
            return lock_of(socket.gethostname(), dead_pid())

        def delete(self, rel):
            Racing.deletes += 1

    store = Racing(tmp_path / "out")
    with pytest.raises(OutputLocked, match=f"could not take the lock {re.escape(store.where(LOCK))}$"):
        L.acquire_lock(store)
    assert (Racing.creates, Racing.deletes) == (2, 2)
