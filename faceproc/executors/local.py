"""The in-process executor (`--engine local`): the shards of the plan on worker threads of this process.

One thread per CPU share (`local_workers`, as many workers as Ray would start here), each with its own
detector and model on one inference thread: decoding and both runtimes release the GIL, so the threads use
the cores as Ray's actors would, without starting Ray (~7 s on 2 CPUs: docs/performance.md). The plan is
cut as for Ray, so progress is kept in the same small shards: a stop (Ctrl-C, SIGTERM: faceproc/signals.py)
lets every thread drop its shard in flight at the next file (commit_shard removes its files), committed
shards stay, and the same command again finishes the rest.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Callable

from .choice import local_cpus

log = logging.getLogger("faceproc")


class _WarmUps:
    """The first warm-up of a run goes alone, the others then at once. OpenVINO's Python binding initialises a
    function-local static on its first numpy input, and inside it pybind11 takes the GIL to import numpy's API;
    a second thread that holds the GIL and reaches the same static waits for it for ever (both threads of a
    `faceproc annotate` were seen stuck so in their warm-up; scripts/first_call_race.py). Once one worker has
    made the calls its shards make, the statics exist, and a machine with many cores need not warm up its
    workers one by one."""

    def __init__(self):
        self.lock, self.done = threading.Lock(), threading.Event()

    def __call__(self, annotator) -> None:
        if not self.done.is_set():
            with self.lock:
                if not self.done.is_set():
                    annotator.warm_up()
                    self.done.set()
                    return
        annotator.warm_up()


STOP_WAIT = 10.0  # seconds a stopping run waits for a worker still inside one file (a huge file's hash)


class _Stop:
    """The run's stop, and who is committing. A worker about to commit a shard either sees the stop (and drops
    the shard) or is counted as committing, and a stopping run waits for that commit to end: no commit runs
    behind the back of the stop's clean-up (faceproc/ownership.remove_uncommitted), however long it takes."""

    def __init__(self):
        self.event, self.lock, self.committing = threading.Event(), threading.Lock(), set()

    def set(self) -> None:
        with self.lock:
            self.event.set()

    def is_set(self) -> bool:
        return self.event.is_set()

    def may_commit(self) -> None:
        with self.lock:
            if self.event.is_set():
                raise _Stopped()
            self.committing.add(threading.current_thread().name)

    def committed(self) -> None:
        with self.lock:
            self.committing.discard(threading.current_thread().name)

    def join(self, threads: list[threading.Thread]) -> None:
        """Wait for the workers, at most STOP_WAIT seconds for one inside a single long file (hashing a 64 GB
        file takes minutes: a Ctrl-C must not wait for it), without limit for one committing. A worker left
        behind drops its shard at its next check (it never commits once the run is stopping) and dies with
        the process."""
        deadline = time.monotonic() + STOP_WAIT
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        with self.lock:
            committing = [t for t in threads if t.is_alive() and t.name in self.committing]
        for t in committing:
            t.join()
        busy = [t.name for t in threads if t.is_alive()]
        if busy:
            log.warning("%s still busy after %.0f s (one long file, or loading models): left behind, its shard "
                        "is not committed", ", ".join(busy), STOP_WAIT)


class _Stopped(Exception):
    """Raised inside a worker thread's shard at the next file once the run is stopping."""


def local_workers(cfg) -> int:
    """Workers the shard plan is cut for: run.workers, else one per CPU share of this machine, as Ray would."""
    return cfg.run.workers or max(1, int(local_cpus() // max(cfg.run.cpus_per_worker, 0.01)))


def run_local(plan, shards: list, out, run_id: str, on_done: Callable, progress=None) -> list[dict]:
    """Annotate and commit every shard on `local_workers` threads; `on_done(summary)` runs in the calling
    thread for each committed shard. A failed shard is reported and the rest goes on; a full disk stops all.
    `plan`: the driver's RunPlan (each thread takes its CPU share of it: RunPlan.for_workers); `progress`: a
    ProgressLine told of every file as it is read (faceproc/progress.py), or None."""
    cpus = local_cpus()
    # a Keras model: one worker with all the threads (two Keras copies load slower than they then gain:
    # 18.4 s against 12.6 s for 16 photos, measured on 2 CPUs)
    want = local_workers(plan.config) if plan.models.threads_pay(plan.model) else 1
    n = max(1, min(want, len(shards)))
    todo: queue.Queue = queue.Queue()
    for shard in shards:
        todo.put(shard)
    results: queue.Queue = queue.Queue()
    stop = _Stop()
    worker_plan = plan.for_workers(max(1, cpus // n))
    warm_up = _WarmUps()
    threads = [threading.Thread(target=_worker, args=(worker_plan, warm_up, todo, results, stop, out, run_id, progress),
                                name=f"faceproc-worker-{i}", daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    failed, fatal, running, ready, t0 = [], None, n, 0, time.time()
    try:
        while running:
            kind, shard_id, value = results.get()  # interruptible: a stop signal raises here
            if kind == "exit":
                running -= 1
            elif kind == "ready":
                ready += 1
                if ready == n:  # the benchmark's steady state counts from here (benchmarks/breakdown.py)
                    log.info("workers ready in %.1f s (%d threads)", time.time() - t0, n)
            elif kind == "done":
                on_done(value)
            elif kind == "fatal":  # every later shard would fail the same way: stop and say so
                fatal = fatal or value
                stop.set()
            else:
                log.error("shard %s failed: %s", shard_id, value)
                failed.append({"shard": shard_id, "error": f"{type(value).__name__}: {value}"})
    finally:
        stop.set()  # on a stop: each thread drops its shard at the next file; then none commits behind our back
        stop.join(threads)
    if fatal is not None:
        raise fatal
    return failed


def _worker(plan, warm_up: _WarmUps, todo: queue.Queue, results: queue.Queue, stop: _Stop, out, run_id: str,
            progress) -> None:
    """One thread: load the models, then take shards until none is left or the run stops."""
    from ..pipeline import Annotator
    from ..progress import ShardTally
    from ..runstate import _is_disk_full
    from . import process_shard

    try:
        try:  # the models load on every thread at once, then warm up (_WarmUps); one that cannot load stops the run
            annotator = Annotator(plan)
            warm_up(annotator)
        except Exception as e:
            results.put(("fatal", None, e))
            return
        results.put(("ready", None, None))
        while not stop.is_set():
            try:
                shard = todo.get_nowait()
            except queue.Empty:
                break
            try:
                tally = ShardTally(progress.shard_status, shard.shard_id) if progress is not None else None
                annotator.on_file = _StopCheck(stop, tally)
                try:
                    summary = process_shard(annotator, shard, out, run_id, stop.may_commit)
                finally:
                    stop.committed()
                # which worker (the threads share a pid): benchmarks/breakdown.py counts the workers by it
                results.put(("done", shard.shard_id, {**summary, "worker": threading.current_thread().name}))
            except _Stopped:
                break
            except Exception as e:  # a shard-level failure is reported, the rest goes on
                results.put(("fatal" if _is_disk_full(e) else "failed", shard.shard_id, e))
    finally:
        results.put(("exit", None, None))


class _StopCheck:
    """The per-file hook: raises `_Stopped` once the run is stopping (the shard is then dropped: commit_shard),
    else tells the progress line."""

    def __init__(self, stop: _Stop, tally):
        self.stop, self.tally = stop, tally

    def __call__(self, n_faces: int) -> None:
        if self.stop.is_set():
            raise _Stopped()
        if self.tally is not None:
            self.tally(n_faces)
