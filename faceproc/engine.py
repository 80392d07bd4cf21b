"""The driver of a run: the plan resolved once (faceproc/plan.py), the inputs discovered, then the data path
over shards: what is left to do (faceproc/resume.py) -> shards cut for the executor -> executed (faceproc/
executors/: Ray actors or in-process) -> small shards compacted -> previews -> report. The manifest is
faceproc/record.py's, the run's log file faceproc/runlog.py's.

Exactly-once by construction: a shard's rows go to files named after the shard
(`faces/<id>.parquet`, `images/<id>.parquet`, each written atomically), and only then its marker
`_shards/<id>.json` (with a digest of the shard's file list). A rerun skips shards whose marker
matches, and redoes any other shard by overwriting the same file names, so an interruption at any
point (driver SIGKILL, worker crash, node loss) can neither lose nor duplicate a row.

Why Ray actors and not Ray Data: the unit of work, of commit and of resume is the shard. An actor pool
gives exactly that (each actor loads detector + model once; Ray restarts a dead actor and retries its
shard), while Ray Data's streaming `write_parquet` commits blocks that do not line up with shards,
which makes "skip what is finished" fragile. Back-pressure is a bounded number of shards in flight per
actor; the driver only ever holds file paths and per-shard counts, never decoded images.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import uuid
from typing import Any

from .cluster import ClusterUnreachable  # noqa: F401 (for the CLI)
from .cluster import wait_embedded_ray as _wait_embedded_ray
from .config import Config
from .discover import check_inputs, cut_shards, discover
from .executors.choice import check_engine, choose_engine, cluster_named, local_cpus
from .executors.local import local_workers, run_local as _run_local
from .executors.ray_pool import ray_workers as _ray_workers, run_ray as _run_ray
from .offline import set_offline
from .ownership import check_location, check_owned, remove_uncommitted
from .plan import ModelFactory, RunPlan
from .progress import ProgressLine, log_summary
from .record import MANIFEST, RunRecord  # noqa: F401 (MANIFEST re-exported)
from .runlog import run_log
from .runstate import (LOCK, STAGING, DiskFull, Interrupted, OutputLocked,  # noqa: F401 (re-exported)
                       OutputNotWritable, RunConfigMismatch, _is_disk_full, acquire_lock, check_output,
                       committed_shards, compact_when_due)
from .signals import stop_on_signals as _stop_on_signals
from .storage import Store

log = logging.getLogger("faceproc")


class _ConsoleAtLeast:
    """Raise the level of the console handlers (not the log file) while a progress bar is on screen."""

    def __init__(self, level: int):
        self.saved = []
        for h in logging.getLogger().handlers:
            if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler):
                self.saved.append((h, h.level))
                h.setLevel(max(h.level, level))

    def restore(self) -> None:
        for h, level in self.saved:
            h.setLevel(level)


# ------------------------------------------------------------------------------ driver

@_stop_on_signals(Interrupted)  # from the start: a stop before the shards begin is a clean exit 130 too
def annotate(
    inputs: list[str],
    out: str | os.PathLike,
    cfg: Config | None = None,
    engine: str = "auto",
    force: bool = False,
    limit: int | None = None,
    progress: bool | None = None,
    models: ModelFactory | None = None,
    plan: RunPlan | None = None,
    prune: bool = False,
    verify: bool = False,
) -> dict[str, Any]:
    """Annotate every image under `inputs` into `out`; resumable; returns the run summary. `models`: how the
    plan's specs become models (tests: stand-ins); `plan`: one resolved already (then `cfg` is its config).
    `force`: start again when the settings changed; `prune`: drop the rows of files no longer among the
    inputs; `verify`: re-hash files whose stat is unchanged (faceproc/resume.py). `engine`: auto (small runs
    in this process, the rest on Ray: executors/choice.py), ray or local."""
    t_start = time.time()  # the run's time in the summary is the wall time from here to the report
    check_engine(engine)
    check_location(inputs, out)  # -o "", an input, inside one or holding one: refused before anything is written
    out = Store(out)  # a local folder or an object-store prefix (s3://bucket/runs/r1)
    check_owned(out)  # a folder faceproc did not write, or holding files it did not write: refused
    roots = check_inputs(inputs)  # a missing input: refused before any model is looked for
    cfg = plan.config if plan else cfg or Config()
    set_offline(cfg.run.offline)  # no model download when offline (faceproc/offline.py)
    # The one resolution of the run: every model found (or fetched once) and checked, and the fingerprint of
    # the rows, before the inputs are walked and anything is written. Downstream takes the plan, not `cfg`.
    plan = plan or RunPlan.resolve(cfg, models)
    # The output folder (and anything in it) is never input, even when it lies inside an input folder.
    disc = discover(inputs, exclude=[str(out)], follow_external_symlinks=plan.run.follow_external_symlinks)
    check_output(out)
    release_lock = acquire_lock(out)
    try:
        with run_log(out) as file_log:  # the whole story of every run: OUT/faceproc.log
            try:
                rep = _run(plan, roots, out, _limit(disc, limit), engine, force, progress, prune, verify, t_start)
                log_summary(file_log, rep)  # the closing summary, in OUT/faceproc.log too
                return rep
            except OSError as e:
                if _is_disk_full(e):
                    remove_uncommitted(out)
                    raise DiskFull(f"the disk holding {out} is full ({e.strerror}). Finished shards are kept; free "
                                   f"some space and run the same command again to finish.") from None
                raise
            finally:
                _wait_embedded_ray()
    finally:
        release_lock()


def _run(plan: RunPlan, inputs: list[str], out: Store, disc, engine: str, force: bool, progress: bool | None,
         prune: bool, verify: bool, t_start: float) -> dict[str, Any]:
    """The data path of a run, once the output is locked: what is left to do (resume) -> shards cut for the
    executor that runs them -> executed and committed -> small shards compacted -> previews -> report."""
    from .resume import resume

    # What the output already holds: kept, done again (changed files), refused or pruned (faceproc/resume.py).
    state = resume(out, disc.files, plan.fingerprint, force=force, prune=prune, verify=verify)
    run_id = (state.old or {}).get("run_id") or uuid.uuid4().hex[:12]
    engine, why = choose_engine(engine, len(state.todo), local_cpus(), cluster_named(plan.config))
    # Every worker gets work whatever the folder layout, and all finish close together (cut_shards).
    workers = (_ray_workers(plan.config) if engine == "ray" else local_workers(plan.config)) if state.todo else 1
    todo = cut_shards(state.todo, plan.run.shard_size, workers)
    record = RunRecord.start(out, plan, inputs, disc, state.old, state.done, todo, run_id, engine, t_start)
    committed = dict(state.done)  # id -> marker of every committed shard (a shard's summary is its marker)
    bar = quiet = None
    t0, done_files = time.time(), [0]

    def on_done(summary: dict) -> None:
        """A shard committed: recorded, counted, and shown (the bar; the log line goes to the file alone)."""
        committed[summary["shard"]] = summary
        record.shard_done(summary)
        done_files[0] += summary["files"]
        if bar is not None:
            bar.shard_done(summary["shard"], summary["files"], summary["faces"])
        log.info("shard %s done (%d files, %d faces) | %d/%d shards, %.1f files/s", summary["shard"],
                 summary["files"], summary["faces"], record.n_done(), record.n_shards,
                 done_files[0] / max(time.time() - t0, 1e-9))

    # The shards on the chosen executor, then compaction, previews and the report. A stop at any point: the
    # uncommitted rows removed, the manifest says interrupted, and `Interrupted` says what is kept; an error:
    # the manifest says failed, and why.
    try:
        try:
            n_done = len({p for m in state.done.values() for p in m["paths"]})
            log.info("%d files: %d already done in %d shards, %d to do in %d shards; model %s, run %s; engine: %s "
                     "(%s)", disc.n_files, n_done, len(state.done), len(state.todo), len(todo), plan.model.label,
                     run_id, engine, why)
            bar, quiet = _progress_bar(progress, disc.n_files, state.todo, todo, n_done)
            per_file = {"progress": bar} if bar is not None else {}  # the executors tell the bar of every file read
            with _stop_on_signals():
                if not todo:
                    failed = []
                elif engine == "local":
                    failed = _run_local(plan, todo, out, run_id, on_done, **per_file)
                else:
                    failed = _run_ray(plan.config, todo, out, run_id, on_done, plan, **per_file)
        finally:
            if bar is not None:
                bar.close()
            if quiet is not None:
                quiet.restore()
        if not failed and plan.run.compact_below:
            after = compact_when_due(out, committed, plan.run.compact_below, plan.run.shard_size)
            record.compacted(committed, after)
            committed = after
        out.delete_tree(STAGING)  # empty once every shard (compaction's too) has committed or failed
        if plan.run.previews:  # before the run's end is recorded, so that its seconds count them
            from .preview import write_previews

            write_previews(out, plan.run.previews, plan.decode)
        # The run's seconds: wall time from the start (models, Ray, shards) to the report, previews included.
        record.finish(failed, {"run_started": t_start, "seconds": round(time.time() - t_start, 2),
                               "shards_run": len(todo), "files_run": done_files[0], "engine": engine})
        from .report import build_report

        report = build_report(out, plan.run.faces_in_report)  # links and shows the previews
    except KeyboardInterrupt:
        remove_uncommitted(out)
        record.interrupted(committed_shards(out))
        rest = "finish the rest" if record.n_done() < record.n_shards else "write the report"  # all shards done
        raise Interrupted(f"stopped: {record.n_done()} of {record.n_shards} shards are finished and kept; run the "
                          f"same command again to {rest}.") from None
    except Exception as e:  # the run ends here: the manifest says `failed` and why, not `running` or `complete`
        _record_failure(record, committed, out, e)
        raise
    report["failed_shards"] = failed
    return report


def _record_failure(record: RunRecord, committed: dict[str, dict], out: Store, e: Exception) -> None:
    """The manifest's account of a run that an error ended, from the shards the run knows to be committed: the
    markers are not read again (a failing store could make intact shards look broken, and reading them again
    removes those). A second error while writing it (the disk that is full, the store that went away) must not
    hide the first."""
    try:
        record.interrupted(committed, error=f"{type(e).__name__}: {e}".splitlines()[0])
    except Exception as second:
        log.warning("could not record the run's failure in %s: %s", out.where(MANIFEST), second)


def _progress_bar(progress: bool | None, n_files: int, todo_files: list, todo: list, n_done: int):
    """On a terminal (or asked): a progress bar over the files to do, and the console quiet below WARNING while
    it shows. Returns (bar, quiet): both None without a bar; the caller exits the bar and restores `quiet`."""
    show = sys.stderr.isatty() if progress is None else progress
    bar = None
    quiet = None
    if show and todo:
        import click

        # On a terminal: the bar, warnings and the summary; every INFO line goes to OUT/faceproc.log only,
        # so no log line is glued onto the bar.
        click.echo(f"{n_files} files, {len(todo_files)} to do in {len(todo)} shards ({n_done} already done); "
                   f"starting workers (loading the models takes a few seconds) ...", err=True)
        quiet = _ConsoleAtLeast(logging.WARNING)
        bar = ProgressLine(sum(len(s.files) for s in todo)).start()  # moves per file (faceproc/progress.py)
    return bar, quiet


def _limit(disc, limit: int | None):
    """The first `limit` files in discovery order."""
    if limit:
        disc.files = disc.files[: max(0, int(limit))]
        disc.n_files = len(disc.files)
    return disc
