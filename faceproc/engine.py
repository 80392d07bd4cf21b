"""Runs the pipeline over shards: on Ray (a local one or a cluster) or in-process, with exact resume.

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
from typing import Any, Callable

from .cluster import ClusterUnreachable, stop_actors  # noqa: F401 (ClusterUnreachable: for the CLI)
from .cluster import init_ray as _init_ray, release_embedded_ray as _release_embedded_ray
from .cluster import wait_embedded_ray as _wait_embedded_ray
from .config import Config
from .discover import Discovery, Shard, check_inputs, cut_shards, discover
from .plan import ModelFactory, RunPlan
from .runstate import (LOCK, MANIFEST, SHARD_DIR, STAGING, DiskFull, Interrupted, OutputLocked,  # noqa: F401
                       OutputNotWritable, RunConfigMismatch, _diff, _is_disk_full, _remove_uncommitted, acquire_lock,
                       check_output, commit_shard, committed_shards, remove_shard, shard_marker)
from .executors.local import local_workers, run_local as _run_local
from .offline import set_offline
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




# ------------------------------------------------------------------------------ one shard

def process_shard(annotator, shard: Shard, out: str | os.PathLike | Store, run_id: str) -> dict[str, Any]:
    """Annotate one shard and commit it (faceproc.runstate.commit_shard: rows first, marker last)."""
    store = out if isinstance(out, Store) else Store(out)
    return commit_shard(store, shard, annotator.annotate(shard.files, shard.shard_id, run_id))


# ------------------------------------------------------------------------------ executors



def _log_gpu_fallback(gpu_ids) -> None:
    """A worker given a GPU share on a node whose CUDA runtime is missing runs on the CPU: say so once, plainly."""
    try:
        import onnxruntime as ort

        cuda = "CUDAExecutionProvider" in ort.get_available_providers()
    except ImportError:
        cuda = False
    if not cuda:
        logging.getLogger("faceproc").warning(
            "this worker was given GPU %s but onnxruntime has no CUDA provider (install onnxruntime-gpu and CUDA): "
            "detection and age/gender run on the CPU", ",".join(str(g) for g in gpu_ids))


def _make_worker_class(ray):
    @ray.remote
    class ShardWorker:
        def __init__(self, plan: RunPlan, out: str, run_id: str):
            logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
            from .pipeline import Annotator

            self.out, self.run_id = out, run_id
            ctx = ray.get_runtime_context()
            self.node = ctx.get_node_id()
            gpus = ray.get_gpu_ids()
            if gpus:
                _log_gpu_fallback(gpus)
            self.annotator = Annotator(plan)
            self.annotator.warm_up()

        def pid(self) -> int:
            return os.getpid()

        def run(self, shard: Shard) -> dict:
            summary = process_shard(self.annotator, shard, self.out, self.run_id)
            summary["node"] = self.node  # which node ran it: recorded in the manifest
            return summary

    return ShardWorker


def _ray_workers(cfg: Config) -> int:
    """How many worker actors the cluster takes (starts or attaches to Ray)."""
    ray = _init_ray(cfg)
    cpus = float(ray.cluster_resources().get("CPU", 1))
    return cfg.run.workers or max(1, int(cpus // max(cfg.run.cpus_per_worker, 0.01)))


def _run_ray(cfg: Config, shards: list[Shard], out: Store, run_id: str, on_done: Callable, plan: RunPlan) -> list[dict]:
    """The shards on Ray actors. Stopped (Ctrl-C, SIGTERM), the actors are killed before the stop goes on, so
    no shard commits after the driver has cleaned up: the shard in flight is dropped or committed whole."""
    actors: list = []
    refs = _Sent()
    recorded: set[str] = set()

    def record(summary: dict) -> None:
        on_done(summary)
        recorded.add(summary["shard"])

    try:
        return _run_ray_actors(cfg, plan, shards, out, run_id, record, actors, refs)
    except KeyboardInterrupt:
        stop_actors(actors, refs)
        # A shard can commit and its actor die before the reply: the markers on storage say what is done.
        for sid in set(refs.ever) - recorded:
            if out.exists(shard_marker(sid)):
                on_done(json.loads(out.read_text(shard_marker(sid))))
        raise


class _Sent(dict):
    """ref -> (worker, shard, attempt) of the shards in flight, remembering every shard ever sent (`ever`)."""

    def __init__(self):
        super().__init__()
        self.ever: dict[str, Shard] = {}

    def __setitem__(self, ref, value) -> None:
        super().__setitem__(ref, value)
        self.ever[value[1].shard_id] = value[1]


def _run_ray_actors(cfg: Config, plan: RunPlan, shards: list[Shard], out: Store, run_id: str, on_done: Callable,
                    actors: list, in_flight: dict) -> list[dict]:
    ray = _init_ray(cfg)
    res = ray.cluster_resources()
    cpus, gpus = float(res.get("CPU", 1)), float(res.get("GPU", 0))
    per = max(cfg.run.cpus_per_worker, 0.01)
    n_workers = max(1, min(_ray_workers(cfg), len(shards)))
    gpu_each = cfg.run.gpus_per_worker
    if gpu_each is None:
        gpu_each = min(1.0, gpus / n_workers) if gpus else 0.0
    wplan = ray.put(plan.for_workers(per, portable=True))  # once in the object store, the models' bytes aboard
    Worker = _make_worker_class(ray)
    # Retries are the loop's, not Ray's (max_task_retries=0): a shard whose actor died goes back to the queue
    # and to another live actor at once, instead of waiting for its own actor to come back, which never
    # happens when the actor's node is gone and no other node has room for it. Dead actors restart
    # (max_restarts=-1) wherever there is room and get work again when they answer a ping.
    workers = [
        Worker.options(num_cpus=per, num_gpus=gpu_each, max_restarts=-1,
                       max_task_retries=0).remote(wplan, str(out), run_id)
        for _ in range(n_workers)
    ]
    actors.extend(workers)
    log.info("ray: %d workers x %.2g CPU, %.2g GPU each (cluster: %g CPU, %g GPU), %d shards",
             n_workers, per, gpu_each, cpus, gpus, len(shards))
    t_start = time.time()
    ray.get([w.pid.remote() for w in workers])  # models loaded: the rest is steady-state work
    log.info("workers ready in %.1f s", time.time() - t_start)
    from ray.exceptions import RayActorError

    pending = list(reversed(shards))
    # in_flight: ref -> (worker, shard, attempt), the caller's dict (a stop waits for these)
    pings: dict[Any, int] = {}
    alive = [True] * n_workers
    load = [0] * n_workers
    attempts: dict[str, int] = {}
    failed: list[dict] = []
    cap = max(1, cfg.run.max_in_flight)

    def submit(w: int, shard: Shard):
        attempts[shard.shard_id] = attempts.get(shard.shard_id, 0) + 1
        in_flight[workers[w].run.remote(shard)] = (w, shard, attempts[shard.shard_id])
        load[w] += 1

    def free_worker() -> int | None:
        live = [w for w in range(n_workers) if alive[w] and load[w] < cap]
        return min(live, key=lambda w: load[w]) if live else None

    while pending or in_flight:
        # Breadth first: every live worker gets a shard before any gets a second one.
        while pending and (w := free_worker()) is not None:
            submit(w, pending.pop())
        ready, _ = ray.wait(list(in_flight) + list(pings), num_returns=1, timeout=60)
        if not ready:
            if not any(alive):
                log.warning("no live worker: waiting for Ray to restart them (%d shards to do)", len(pending))
            continue
        for ref in ready:
            if ref in pings:  # a restarted actor answers: it takes work again
                w = pings.pop(ref)
                try:
                    ray.get(ref)
                    alive[w] = True
                    log.info("worker %d is back", w)
                except RayActorError:
                    pings[workers[w].pid.remote()] = w
                continue
            w, shard, attempt = in_flight.pop(ref)
            load[w] -= 1
            try:
                on_done(ray.get(ref))
            except Exception as e:  # the actor died (process or node lost), or the shard itself raised
                if isinstance(e, RayActorError) and alive[w]:
                    alive[w] = False
                    pings[workers[w].pid.remote()] = w
                    log.warning("worker %d died (%s); its shards go to the others", w, type(e).__name__)
                if attempt < cfg.run.max_task_retries + 1:
                    log.warning("shard %s failed (attempt %d): %s; retrying", shard.shard_id, attempt,
                                str(e).splitlines()[0][:300])
                    pending.append(shard)
                else:
                    log.error("shard %s failed for good: %s", shard.shard_id, e)
                    failed.append({"shard": shard.shard_id, "error": f"{type(e).__name__}: {e}"})
    for w in workers:
        ray.kill(w)
    _release_embedded_ray()
    return failed


# ------------------------------------------------------------------------------ driver

@_stop_on_signals(Interrupted)  # from the start: a stop before the shards begin is a clean exit 130 too
def annotate(
    inputs: list[str],
    out: str | os.PathLike,
    cfg: Config | None = None,
    engine: str = "ray",
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
    inputs; `verify`: re-hash files whose stat is unchanged (faceproc/resume.py)."""
    from .ownership import check_location, check_owned

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
        return _annotate_locked(inputs, out, cfg, engine, force, limit, progress, disc, plan, prune, verify)
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
                     plan: RunPlan, prune: bool = False, verify: bool = False) -> dict[str, Any]:
    from .resume import resume

    if limit:
        disc = _limit(disc, limit)
    model_label, fp = plan.model.label, plan.fingerprint
    # What the output already holds: kept, done again (changed files), refused or pruned (faceproc/resume.py).
    state = resume(out, disc.files, fp, force=force, prune=prune, verify=verify)
    old, done, todo_files = state.old, state.done, state.todo
    run_id = (old or {}).get("run_id") or uuid.uuid4().hex[:12]
    done_paths = {p for m in done.values() for p in m["paths"]}
    # Every worker gets work whatever the folder layout, and all finish close together (cut_shards).
    workers = (_ray_workers(cfg) if engine == "ray" else local_workers(cfg)) if todo_files else 1
    todo = cut_shards(todo_files, cfg.run.shard_size, workers)
    shards = {sid: {"dir": m.get("dir"), "files": m.get("files", len(m["paths"])), "state": "done",
                    "faces": m.get("faces")} for sid, m in done.items()}
    shards.update({sh.shard_id: {"dir": sh.directory, "files": len(sh.files), "state": "pending"} for sh in todo})
    manifest = {
        "run_id": run_id, "inputs": check_inputs(inputs), "fingerprint": fp, "config": cfg.to_dict(),
        **plan.summary, "state": "running", "started": time.time(), "engine": engine,
        "n_files": disc.n_files, "n_ignored_files": disc.n_ignored, "symlink_cycles": disc.cycles[:50],
        "skipped": disc.skipped(),  # not rows: other files by extension, unreadable folders, links (discover)
        "shards": shards, "history": (old or {}).get("history", []),
    }
    out.write_text(MANIFEST, json.dumps(manifest, indent=1))
    log.info("%d files: %d already done in %d shards, %d to do in %d shards; model %s, run %s", disc.n_files,
             len(done_paths), len(done), len(todo_files), len(todo), model_label, run_id)

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
        bar = click.progressbar(length=sum(len(s.files) for s in todo), label="annotating", file=sys.stderr)
        bar.__enter__()
    last_write = [0.0]

    committed = dict(done)  # id -> marker of every committed shard (a shard's summary is its marker)

    def on_done(summary: dict) -> None:
        committed[summary["shard"]] = summary
        manifest["shards"][summary["shard"]].update(state="done", faces=summary["faces"], seconds=summary["seconds"],
                                                    node=summary.get("node", "local"))
        done_files[0] += summary["files"]
        rate = done_files[0] / max(time.time() - t0, 1e-9)
        if bar is not None:
            bar.update(summary["files"])
        else:
            n_done = sum(1 for v in manifest["shards"].values() if v["state"] == "done")
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
                failed = _run_local(plan.for_workers(os.cpu_count() or 1), todo, out, run_id, on_done)
            elif engine == "ray":
                failed = _run_ray(cfg, todo, out, run_id, on_done, plan)
            else:
                raise ValueError(f"engine must be ray or local, got {engine!r}")
    except KeyboardInterrupt:
        n_done = sum(1 for v in manifest["shards"].values() if v["state"] == "done")
        manifest.update(state="interrupted", finished=time.time())
        _remove_uncommitted(out)
        out.write_text(MANIFEST, json.dumps(manifest, indent=1))
        raise Interrupted(f"stopped: {n_done} of {len(shards)} shards are finished and kept; run the same "
                          f"command again to finish the rest.") from None
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)
        if quiet is not None:
            quiet.restore()
    seconds = time.time() - t0
    out.delete_tree(STAGING)  # empty once every shard has committed or failed
    for f in failed:
        manifest["shards"][f["shard"]].update(state="failed", error=f["error"])
    if not failed and cfg.run.compact_below:
        _compact(out, manifest, cfg, committed)
    manifest["state"] = "complete" if not failed else "incomplete"
    manifest["finished"] = time.time()
    manifest["history"].append({"run_started": manifest["started"], "seconds": round(seconds, 2),
                                "shards_run": len(todo), "files_run": done_files[0], "engine": engine})
    out.write_text(MANIFEST, json.dumps(manifest, indent=1))

    if cfg.run.previews:  # first, so the report links and shows them
        from .preview import write_previews

        write_previews(out, cfg.run.previews, cfg.decode)
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
