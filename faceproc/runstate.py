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
import time
import uuid
from typing import Any, Callable

from .config import Config
from .schema import SCHEMA_VERSION
from .storage import Store

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


def check_output(store: Store) -> None:
    try:
        store.check_writable()
    except OSError as e:
        raise OutputNotWritable(f"output folder {store} is not writable: {getattr(e, 'strerror', None) or e}") from None


def shard_marker(shard_id: str) -> str:
    return f"{SHARD_DIR}/{shard_id}.json"


def _data(name: str, shard_id: str) -> str:
    return f"{name}/{shard_id}.parquet"


def commit_shard(store: Store, shard, res) -> dict[str, Any]:
    """Write a shard's tables and commit it: staged rows moved in first, marker last."""
    # Both tables are written to a staging folder first (where a full disk or a crash leaves nothing a
    # reader of faces/ or images/ sees), then moved in (a rename; on S3 a copy), then the marker commits.
    try:
        sizes = _put_tables(store, shard.shard_id, {"faces": res.faces, "images": res.images})
        _tables_in_place(store, shard.shard_id)
        summary = {"shard": shard.shard_id, "digest": shard.digest, "files": len(shard.files), "sizes": sizes,
                   "dir": shard.directory, "paths": [f.path for f in shard.files],
                   "faces": res.faces.num_rows, "counts": res.counts, "seconds": round(res.seconds, 3),
                   "pid": os.getpid(), "finished": time.time()}
        store.write_text(shard_marker(shard.shard_id), json.dumps(summary))
    except BaseException:
        for name in ("faces", "images"):  # nothing of an uncommitted shard stays visible
            store.delete(_staged(name, shard.shard_id))
            if not store.exists(shard_marker(shard.shard_id)):
                store.delete(_data(name, shard.shard_id))
        raise
    return summary


def _tables_in_place(store: Store, shard_id: str) -> None:
    """The moment between a shard's rows moved in and its marker: does nothing. Tests make it raise or kill the
    process (tests/unit/test_commit_crash.py), to show that a crash here neither loses nor duplicates a row."""


def _staged(name: str, shard_id: str) -> str:
    return f"{STAGING}/{shard_id}.{name}.parquet"


def _put_tables(store: Store, shard_id: str, tables: dict) -> dict[str, int]:
    """Both tables written to the staging folder, then moved in; their sizes (for the marker) returned. The
    caller commits with the marker."""
    sizes = {}
    for name, table in tables.items():
        store.write_table(_staged(name, shard_id), table)
        sizes[name] = store.size(_staged(name, shard_id))
    for name in tables:
        store.move(_staged(name, shard_id), _data(name, shard_id))
    return sizes


def _files_intact(store: Store, shard_id: str, meta: dict) -> bool:
    for name in ("faces", "images"):
        size = store.size(_data(name, shard_id))
        if size is None:
            return False
        want = (meta.get("sizes") or {}).get(name)
        if want is not None and size != want:  # truncated or replaced since commit
            log.warning("shard %s: %s is %d bytes, %d at commit; its photos are done again", shard_id,
                        store.where(_data(name, shard_id)), size, want)
            return False
    return True


def remove_shard(store: Store, shard_id: str) -> None:
    """Marker first: from then on the shard is uncommitted, whatever happens to its files."""
    store.delete(shard_marker(shard_id))
    for name in ("faces", "images"):
        store.delete(_data(name, shard_id))


def committed_shards(store: Store) -> dict[str, dict]:
    """shard id -> marker of every committed shard whose files are intact. A broken one (unreadable marker,
    no file list, a missing or truncated file) is removed with its rows, so its photos are done again."""
    found = {}
    for name in store.list(SHARD_DIR, ".json"):
        if name.startswith("."):
            continue
        sid = name[: -len(".json")]
        try:
            meta = json.loads(store.read_text(shard_marker(sid)))
        except (OSError, ValueError):
            meta = None
        if isinstance(meta, dict) and isinstance(meta.get("paths"), list) and _files_intact(store, sid, meta):
            found[sid] = meta
        else:
            log.warning("shard %s is not intact: removed, its photos will be done again", sid)
            remove_shard(store, sid)
    # A compaction that committed its merged shard but stopped before removing the shards it replaces.
    for meta in list(found.values()):
        for old in meta.get("replaces") or []:
            if old in found and old != meta["shard"]:
                log.info("removing shard %s, replaced by %s (an interrupted compaction)", old, meta["shard"])
                remove_shard(store, old)
                del found[old]
    return found


def compact_shards(store: Store, done: dict[str, dict], small: int = 64, target: int = 256) -> dict[str, dict]:
    """Merge committed shards of fewer than `small` files (nightly runs of a few new photos each) into shards of
    up to `target` files, so the output does not grow into thousands of tiny files. The merged shard is
    committed like any other (staged, moved in, marker last, listing the shards it `replaces`), then the old
    ones are removed; an interruption in between is finished by the next `committed_shards`. Returns the
    updated id -> marker map."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from .discover import shard_id
    from .schema import TABLES

    smalls = sorted((m for m in done.values() if len(m["paths"]) < small), key=lambda m: m["paths"][0] if m["paths"] else "")
    groups, cur, n = [], [], 0
    for m in smalls:
        if cur and n + len(m["paths"]) > target:
            groups.append(cur)
            cur, n = [], 0
        cur.append(m)
        n += len(m["paths"])
    groups.append(cur)
    done = dict(done)
    for group in (g for g in groups if len(g) >= 2):
        paths = sorted(p for m in group for p in m["paths"])
        sid = shard_id(paths)
        tables = {}
        for name in ("faces", "images"):
            parts = [pq.read_table(f"{store.root}/{_data(name, m['shard'])}", schema=TABLES[name], filesystem=store.fs)
                     for m in group]
            t = pa.concat_tables(parts)
            key = ["image_path", "face_index"] if name == "faces" else ["image_path"]
            tables[name] = t.sort_by([(k, "ascending") for k in key])
        sizes = _put_tables(store, sid, tables)
        dirs = sorted({m.get("dir") or "" for m in group})
        counts: dict[str, int] = {}
        for m in group:
            for k, v in (m.get("counts") or {}).items():
                counts[k] = counts.get(k, 0) + v
        marker = {"shard": sid, "digest": sid, "files": len(paths), "sizes": sizes,
                  "dir": dirs[0] if len(dirs) == 1 else os.path.commonprefix(dirs), "paths": paths,
                  "faces": tables["faces"].num_rows, "counts": counts,
                  "seconds": round(sum(m.get("seconds", 0) for m in group), 3), "pid": os.getpid(),
                  "finished": time.time(), "replaces": [m["shard"] for m in group]}
        store.write_text(shard_marker(sid), json.dumps(marker))
        for m in group:
            remove_shard(store, m["shard"])
            del done[m["shard"]]
        done[sid] = marker
        log.info("compacted %d small shards (%d files) into %s", len(group), len(paths), sid)
    return done


def _remove_uncommitted(store: Store) -> None:
    """Rows of shards without a marker (a run killed between move and commit) and staged leftovers."""
    store.delete_tree(STAGING)
    markers = set(store.list(SHARD_DIR, ".json"))
    for name in ("faces", "images"):
        for f in store.list(name, ".parquet"):
            if f"{f[: -len('.parquet')]}.json" not in markers:
                store.delete(f"{name}/{f}")
    for sub in ("faces", "images", SHARD_DIR, ""):
        for tmp in store.list(sub, ".tmp"):
            if tmp.startswith("."):
                store.delete(f"{sub}/{tmp}" if sub else tmp)
