"""Run state: everything an output folder knows about its runs, apart from who executes the shards.

The output folder's identity (the settings that change rows, `result_fingerprint`), its lock, and the
shard commit protocol: a shard's two tables are staged, renamed into `faces/` and `images/`, and only
then committed by the marker `_shards/<id>.json` (digest of its file list, size of each file). A rerun
skips exactly the shards whose marker and files agree; rows of uncommitted shards are removed at start.
The executors (faceproc/engine.py: Ray actors or an in-process loop) only call `commit_shard`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

from .config import Config
from .schema import SCHEMA_VERSION, write_atomic, write_text_atomic

log = logging.getLogger("faceproc")

MANIFEST = "manifest.json"
SHARD_DIR = "_shards"
STAGING = "_staging"
LOCK = ".faceproc.lock"


class RunConfigMismatch(RuntimeError):
    pass


class OutputNotWritable(RuntimeError):
    pass


class Interrupted(RuntimeError):
    """SIGINT or SIGTERM: finished shards are kept, the shard in progress is dropped cleanly."""


class DiskFull(RuntimeError):
    """The output storage is full: finished shards are kept, a rerun after freeing space finishes the rest."""


def _is_disk_full(e: BaseException) -> bool:
    import errno

    return isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT)


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


def acquire_lock(out: Path) -> Path:
    """Create OUT/.faceproc.lock exclusively (O_EXCL also holds on NFS v3+ shared by the nodes of a Ray job).
    A lock left by a dead process of this host is taken over; any other lock refuses the run."""
    import socket

    path = out / LOCK
    me = {"host": socket.gethostname(), "pid": os.getpid(), "started": time.time(),
          "process_start": _process_start(os.getpid())}
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                other = json.loads(path.read_text() or "{}")
            except (OSError, ValueError):
                other = {}
            if (other.get("host") == me["host"] and isinstance(other.get("pid"), int)
                    and not _pid_alive(other["pid"], other.get("process_start"))):
                log.warning("taking over the lock of a run that died (pid %s)", other["pid"])
                path.unlink(missing_ok=True)
                continue
            since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(other.get("started", 0)))
            raise OutputLocked(
                f"another faceproc run (pid {other.get('pid', '?')} on {other.get('host', '?')}, since {since}) is "
                f"writing to {out}. Wait for it to finish; if it is gone, delete {path}.") from None
        with os.fdopen(fd, "w") as fh:
            fh.write(json.dumps(me))
        return path
    raise OutputLocked(f"could not take the lock {path}")


def describe_model(cfg: Config) -> str:
    """variant@version without loading TensorFlow (reads the model card / hashes the file)."""
    from .model import DEFAULT_VARIANT, VARIANTS, model_version, read_card
    from .predict import resolve_model_path

    if cfg.model.random_init:
        return f"{cfg.model.variant if cfg.model.variant in VARIANTS else DEFAULT_VARIANT}@random-init"
    path = resolve_model_path(cfg.model)
    card = read_card(path)
    return f"{card.get('variant') or path.stem}@{model_version(path, card)}"


def result_fingerprint(cfg: Config, model_label: str) -> dict[str, Any]:
    """The settings that change the rows (config fields not marked SAME_ROWS), the model's identity and the
    row contract's version."""
    from .config import row_settings

    rows = row_settings(cfg)
    det_file = cfg.detector.active.model_file  # resolved by preflight: which model file, whatever pointed at it
    try:
        det_label = f"{os.path.basename(det_file)}:{os.path.getsize(det_file)}" if det_file else None
    except OSError:
        det_label = os.path.basename(det_file)
    return {"decode": rows["decode"], "detector": rows["detector"], "detector_file": det_label, "model": rows["model"],
            "model_label": model_label, "schema_version": SCHEMA_VERSION}


def _diff(a: dict, b: dict, prefix: str = "") -> list[str]:
    out = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += _diff(va, vb, f"{prefix}{k}.")
        elif va != vb:
            out.append(f"{prefix}{k}: {va!r} -> {vb!r}")
    return out


def check_output(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{uuid.uuid4().hex[:6]}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise OutputNotWritable(f"output folder {out} is not writable: {e.strerror or e}") from None


def shard_marker(out: Path, shard_id: str) -> Path:
    return out / SHARD_DIR / f"{shard_id}.json"


def commit_shard(out: Path, shard, res) -> dict[str, Any]:
    """Write a shard's tables and commit it: staged rows renamed in first, marker last."""
    # Both tables are written to a staging folder first (where a full disk or a crash leaves nothing a
    # reader of faces/ or images/ sees), then renamed in, then the marker commits the shard.
    staged, sizes = {}, {}
    try:
        for name, table in (("faces", res.faces), ("images", res.images)):
            path = out / STAGING / f"{shard.shard_id}.{name}.parquet"
            write_atomic(table, path)
            staged[name] = path
            sizes[name] = path.stat().st_size
        for name, path in staged.items():
            (out / name).mkdir(parents=True, exist_ok=True)
            os.replace(path, out / name / f"{shard.shard_id}.parquet")
        summary = {"shard": shard.shard_id, "digest": shard.digest, "files": len(shard.files), "sizes": sizes,
                   "dir": shard.directory, "paths": [f.path for f in shard.files],
                   "faces": res.faces.num_rows, "counts": res.counts, "seconds": round(res.seconds, 3),
                   "pid": os.getpid(), "finished": time.time()}
        write_text_atomic(json.dumps(summary), shard_marker(out, shard.shard_id))
    except BaseException:
        for name in ("faces", "images"):  # nothing of an uncommitted shard stays visible
            (out / STAGING / f"{shard.shard_id}.{name}.parquet").unlink(missing_ok=True)
            if not shard_marker(out, shard.shard_id).exists():
                (out / name / f"{shard.shard_id}.parquet").unlink(missing_ok=True)
        raise
    return summary


def _files_intact(out: Path, shard_id: str, meta: dict) -> bool:
    for name in ("faces", "images"):
        path = out / name / f"{shard_id}.parquet"
        try:
            size = path.stat().st_size
        except OSError:
            return False
        want = (meta.get("sizes") or {}).get(name)
        if want is not None and size != want:  # truncated or replaced since commit
            log.warning("shard %s: %s is %d bytes, %d at commit; its photos are done again", shard_id, path, size, want)
            return False
    return True


def remove_shard(out: Path, shard_id: str) -> None:
    """Marker first: from then on the shard is uncommitted, whatever happens to its files."""
    shard_marker(out, shard_id).unlink(missing_ok=True)
    for name in ("faces", "images"):
        (out / name / f"{shard_id}.parquet").unlink(missing_ok=True)


def committed_shards(out: Path) -> dict[str, dict]:
    """shard id -> marker of every committed shard whose files are intact. A broken one (unreadable marker,
    no file list, a missing or truncated file) is removed with its rows, so its photos are done again."""
    folder = out / SHARD_DIR
    found = {}
    for m in sorted(folder.glob("*.json")) if folder.exists() else []:
        if m.name.startswith("."):
            continue
        sid = m.name[: -len(".json")]
        try:
            meta = json.loads(m.read_text())
        except (OSError, ValueError):
            meta = None
        if isinstance(meta, dict) and isinstance(meta.get("paths"), list) and _files_intact(out, sid, meta):
            found[sid] = meta
        else:
            log.warning("shard %s is not intact: removed, its photos will be done again", sid)
            remove_shard(out, sid)
    return found


def _remove_uncommitted(out: Path) -> None:
    """Rows of shards without a marker (a run killed between rename and commit) and staged leftovers."""
    shutil.rmtree(out / STAGING, ignore_errors=True)
    for name in ("faces", "images"):
        folder = out / name
        for f in folder.glob("*.parquet") if folder.exists() else []:
            if not shard_marker(out, f.name[: -len(".parquet")]).exists():
                f.unlink(missing_ok=True)
    for sub in ("faces", "images", SHARD_DIR, ""):
        for tmp in (out / sub).glob(".*.tmp") if (out / sub).exists() else []:
            tmp.unlink(missing_ok=True)
