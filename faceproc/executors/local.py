"""The in-process executor (`--engine local`): the shards of the plan, one after another, in this process.

The plan is cut as for the Ray engine on this machine (`local_workers`: as many workers as Ray would start
here), so progress is kept in the same small shards: a stop (Ctrl-C, SIGTERM: faceproc/signals.py) loses
at most the shard in flight, and the same command again finishes the rest.
"""

from __future__ import annotations

import logging
import os
from typing import Callable

log = logging.getLogger("faceproc")


def local_workers(cfg) -> int:
    """Workers the shard plan is cut for: run.workers, else one per CPU share of this machine, as Ray would."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return cfg.run.workers or max(1, int(cpus // max(cfg.run.cpus_per_worker, 0.01)))


def run_local(plan, shards: list, out, run_id: str, on_done: Callable, progress=None) -> list[dict]:
    """Annotate and commit each shard in turn; a failed shard is reported and the rest goes on. A stop
    signal propagates from inside a shard: its files are removed by commit_shard, committed shards stay.
    `plan`: the RunPlan for this process's workers (RunPlan.for_workers); `progress`: a ProgressLine told of
    every file as it is read (faceproc/progress.py), or None."""
    from . import process_shard
    from ..pipeline import Annotator
    from ..progress import ShardTally
    from ..runstate import _is_disk_full

    annotator = Annotator(plan)
    failed = []
    for shard in shards:
        if progress is not None:
            annotator.on_file = ShardTally(progress.shard_status, shard.shard_id)
        try:
            on_done(process_shard(annotator, shard, out, run_id))
        except Exception as e:  # a shard-level failure is reported, the rest goes on
            if _is_disk_full(e):
                raise  # every later shard would fail the same way: stop and say so
            log.error("shard %s failed: %s", shard.shard_id, e)
            failed.append({"shard": shard.shard_id, "error": f"{type(e).__name__}: {e}"})
    return failed
