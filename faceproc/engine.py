"""Runs the pipeline over shards: on Ray (a local one or a cluster) or in-process, with exact resume.
The driver is here; the executors are in faceproc/executors/ (local.py, ray_pool.py).

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

import json
import logging
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from .cluster import ClusterUnreachable  # noqa: F401 (for the CLI)
from .cluster import wait_embedded_ray as _wait_embedded_ray
from .config import Config
from .discover import Discovery, check_inputs, cut_shards, discover
from .executors.choice import check_engine, choose_engine, cluster_named, local_cpus
from .executors.local import local_workers, run_local as _run_local
from .executors.ray_pool import ray_workers as _ray_workers, run_ray as _run_ray
from .offline import set_offline
from .plan import ModelFactory, RunPlan
from .progress import ProgressLine, log_summary
from .runstate import (LOCK, MANIFEST, STAGING, DiskFull, Interrupted, OutputLocked,  # noqa: F401 (re-exported)
                       OutputNotWritable, RunConfigMismatch, _is_disk_full, _remove_uncommitted, acquire_lock,
                       check_output)
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
    from .ownership import check_location, check_owned

    t_start = time.time()  # the run's time in the summary is the wall time from here to the report
    check_engine(engine)
    cfg = plan.config if plan else cfg or Config()
    check_location(inputs, out)  # -o "", an input, inside one or holding one: refused before anything is written
    out = Store(out)  # a local folder or an object-store prefix (s3://bucket/runs/r1)
    check_owned(out)  # a folder faceproc did not write, or holding files it did not write: refused
    # The output folder (and anything in it) is never input, even when it lies inside an input folder.
    disc = discover(inputs, exclude=[str(out)],  # raises on a missing input, before any work
                    follow_external_symlinks=cfg.run.follow_external_symlinks)
    set_offline(cfg.run.offline)  # no model download when offline (faceproc/offline.py)
    plan = plan or RunPlan.resolve(cfg, models)  # every model found (or fetched once) before anything is written
    check_output(out)
    release_lock = acquire_lock(out)
    # The whole story of every run: OUT/faceproc.log (for an object store, kept locally, uploaded at the end).
    log_path = out.local_path / "faceproc.log" if not out.remote else Path(tempfile.mkstemp(suffix=".log")[1])
    if out.remote:
        log_path.write_text(_read_or_empty(out, "faceproc.log"), encoding="utf-8")
    file_log = logging.FileHandler(log_path, encoding="utf-8")
    file_log.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    file_log.setLevel(logging.INFO)
    root = logging.getLogger()
    root.addHandler(file_log)
    old_level = root.level
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)
    try:
        rep = _annotate_locked(inputs, out, cfg, engine, force, limit, progress, disc, plan, prune, verify, t_start)
        log_summary(file_log, rep)  # the closing summary, in OUT/faceproc.log too
        return rep
    except OSError as e:
        if _is_disk_full(e):
            _remove_uncommitted(out)
            raise DiskFull(f"the disk holding {out} is full ({e.strerror}). Finished shards are kept; free some space "
                           f"and run the same command again to finish.") from None
        raise
    finally:
        _wait_embedded_ray()
        root.removeHandler(file_log)
        root.setLevel(old_level)
        file_log.close()
        if out.remote:
            try:
                out.write_bytes("faceproc.log", log_path.read_bytes())
            except OSError as e:
                log.warning("could not upload the run log to %s: %s", out.where("faceproc.log"), e)
            log_path.unlink(missing_ok=True)
        release_lock()


def _annotate_locked(inputs, out: Store, cfg: Config, engine: str, force: bool, limit, progress, disc,
                     plan: RunPlan, prune: bool = False, verify: bool = False, t_start: float | None = None
                     ) -> dict[str, Any]:
    from .resume import resume

    if limit:
        disc = _limit(disc, limit)
    model_label, fp = plan.model.label, plan.fingerprint
    # What the output already holds: kept, done again (changed files), refused or pruned (faceproc/resume.py).
    state = resume(out, disc.files, fp, force=force, prune=prune, verify=verify)
    old, done, todo_files = state.old, state.done, state.todo
    run_id = (old or {}).get("run_id") or uuid.uuid4().hex[:12]
    done_paths = {p for m in done.values() for p in m["paths"]}
    engine, why = choose_engine(engine, len(todo_files), local_cpus(), cluster_named(cfg))
    # Every worker gets work whatever the folder layout, and all finish close together (cut_shards).
    workers = (_ray_workers(cfg) if engine == "ray" else local_workers(cfg)) if todo_files else 1
    todo = cut_shards(todo_files, cfg.run.shard_size, workers)
    shards = {sid: {"dir": m.get("dir"), "files": m.get("files", len(m["paths"])), "state": "done",
                    "faces": m.get("faces")} for sid, m in done.items()}
    shards.update({sh.shard_id: {"dir": sh.directory, "files": len(sh.files), "state": "pending"} for sh in todo})
    manifest = {
        "run_id": run_id, "inputs": check_inputs(inputs), "fingerprint": fp, "config": cfg.to_dict(),
        **plan.summary, "state": "running", "started": t_start or time.time(), "engine": engine,
        "n_files": disc.n_files, "n_ignored_files": disc.n_ignored, "symlink_cycles": disc.cycles[:50],
        "skipped": disc.skipped(),  # not rows: other files by extension, unreadable folders, links (discover)
        "shards": shards, "history": (old or {}).get("history", []),
    }
    out.write_text(MANIFEST, json.dumps(manifest, indent=1))
    log.info("%d files: %d already done in %d shards, %d to do in %d shards; model %s, run %s; engine: %s (%s)",
             disc.n_files, len(done_paths), len(done), len(todo_files), len(todo), model_label, run_id, engine, why)

    t0 = time.time()
    done_files = [0]
    show = sys.stderr.isatty() if progress is None else progress
    bar = None
    quiet = None
    if show and todo:
        import click

        # On a terminal: the bar, warnings and the summary; every INFO line goes to OUT/faceproc.log only,
        # so no log line is glued onto the bar.
        click.echo(f"{disc.n_files} files, {len(todo_files)} to do in {len(todo)} shards ({len(done_paths)} already done); "
                   f"starting workers (loading the models takes a few seconds) ...", err=True)
        quiet = _ConsoleAtLeast(logging.WARNING)
        bar = ProgressLine(sum(len(s.files) for s in todo)).start()  # moves per file (faceproc/progress.py)
    last_write = [0.0]
    per_file = {"progress": bar} if bar is not None else {}  # the executors tell the bar of every file read

    committed = dict(done)  # id -> marker of every committed shard (a shard's summary is its marker)

    def on_done(summary: dict) -> None:
        committed[summary["shard"]] = summary
        manifest["shards"][summary["shard"]].update(state="done", faces=summary["faces"], seconds=summary["seconds"],
                                                    node=summary.get("node", "local"))
        done_files[0] += summary["files"]
        rate = done_files[0] / max(time.time() - t0, 1e-9)
        if bar is not None:
            bar.shard_done(summary["shard"], summary["files"], summary["faces"])
        n_done = sum(1 for v in manifest["shards"].values() if v["state"] == "done")
        # with the bar on screen the console shows warnings only: this line goes to OUT/faceproc.log alone
        log.info("shard %s done (%d files, %d faces) | %d/%d shards, %.1f files/s", summary["shard"],
                 summary["files"], summary["faces"], n_done, len(shards), rate)
        if time.time() - last_write[0] > 5:
            out.write_text(MANIFEST, json.dumps(manifest, indent=1))
            last_write[0] = time.time()

    try:
        with _stop_on_signals():
            if not todo:
                failed = []
            elif engine == "local":
                failed = _run_local(plan.for_workers(os.cpu_count() or 1), todo, out, run_id, on_done, **per_file)
            elif engine == "ray":
                failed = _run_ray(cfg, todo, out, run_id, on_done, plan, **per_file)
    except KeyboardInterrupt:
        n_done = sum(1 for v in manifest["shards"].values() if v["state"] == "done")
        manifest.update(state="interrupted", finished=time.time())
        _remove_uncommitted(out)
        out.write_text(MANIFEST, json.dumps(manifest, indent=1))
        raise Interrupted(f"stopped: {n_done} of {len(shards)} shards are finished and kept; run the same "
                          f"command again to finish the rest.") from None
    finally:
        if bar is not None:
            bar.close()
        if quiet is not None:
            quiet.restore()
    out.delete_tree(STAGING)  # empty once every shard has committed or failed
    for f in failed:
        manifest["shards"][f["shard"]].update(state="failed", error=f["error"])
    if not failed and cfg.run.compact_below:
        _compact(out, manifest, cfg, committed)
    manifest["state"] = "complete" if not failed else "incomplete"
    manifest["finished"] = time.time()
    # The run's seconds: wall time from the start (models, Ray, shards) to the report, previews included.
    run = {"run_started": manifest["started"], "seconds": round(time.time() - (t_start or t0), 2),
           "shards_run": len(todo), "files_run": done_files[0], "engine": engine}
    manifest["history"].append(run)
    out.write_text(MANIFEST, json.dumps(manifest, indent=1))

    if cfg.run.previews:  # first, so the report links and shows them
        from .preview import write_previews

        write_previews(out, cfg.run.previews, cfg.decode)
        run["seconds"] = round(time.time() - (t_start or t0), 2)
        out.write_text(MANIFEST, json.dumps(manifest, indent=1))
    from .report import build_report

    report = build_report(out, cfg.run.faces_in_report)
    report["failed_shards"] = failed
    return report


COMPACT_AFTER = 8  # small shards that trigger a compaction


def _compact(out: Store, manifest: dict, cfg: Config, done: dict[str, dict]) -> None:
    """Nightly runs leave a small shard each: once enough have accumulated, merge them (runstate.compact_shards).
    `done`: the committed shards' markers, as this run knows them (read at its start, plus its own commits)."""
    from .runstate import compact_shards

    if sum(len(m["paths"]) < cfg.run.compact_below for m in done.values()) < COMPACT_AFTER:
        return
    after = compact_shards(out, done, small=cfg.run.compact_below, target=cfg.run.shard_size)
    for sid in set(done) - set(after):
        manifest["shards"].pop(sid, None)
    for sid in set(after) - set(done):
        m = after[sid]
        manifest["shards"][sid] = {"dir": m["dir"], "files": m["files"], "state": "done", "faces": m["faces"],
                                   "compacted_from": m["replaces"]}


def _read_or_empty(store: Store, rel: str) -> str:
    try:
        return store.read_text(rel)
    except (OSError, ValueError):
        return ""


def _limit(disc: Discovery, limit: int) -> Discovery:
    """The first `limit` files in discovery order."""
    disc.files = disc.files[: max(0, int(limit))]
    disc.n_files = len(disc.files)
    return disc
