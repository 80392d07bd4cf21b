"""Run state: everything an output folder knows about its runs, apart from who executes the shards.

An output folder's lock (faceproc/lock.py; what a rerun keeps is faceproc/resume.py's) and the shard commit
protocol: a shard's id is recorded first (`_shards/<id>.open`, so faceproc knows every
file it may remove), its two tables are staged, renamed into `faces/` and `images/`, and only then committed
by the marker `_shards/<id>.json` (its file list, each file's size, mtime, inode and content hash, each
table's size). A rerun skips exactly the shards whose marker and files agree; rows of uncommitted shards are
removed at start (ownership.remove_uncommitted: it knows faceproc's own file names). Committed shards are
rewritten only as a whole new shard (`recut_shard`, `compact_shards`). The executors (faceproc/executors/)
only call `commit_shard`.
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any

from .lock import LOCK, OutputLocked, acquire_lock  # noqa: F401  (re-exported)
from .storage import Store

log = logging.getLogger("faceproc")

SHARD_DIR = "_shards"
STAGING = "_staging"


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


def check_output(store: Store) -> None:
    try:
        store.check_writable()
    except OSError as e:
        raise OutputNotWritable(f"output folder {store} is not writable: {getattr(e, 'strerror', None) or e}") from None


def shard_marker(shard_id: str) -> str:
    return f"{SHARD_DIR}/{shard_id}.json"


def shard_intent(shard_id: str) -> str:
    """Written before any file of the shard exists: faceproc's record that `faces/<id>.parquet` and
    `images/<id>.parquet` are its own, until the marker takes over (faceproc/ownership.py)."""
    return f"{SHARD_DIR}/{shard_id}.open"


def _data(name: str, shard_id: str) -> str:
    return f"{name}/{shard_id}.parquet"


def commit_shard(store: Store, shard, res) -> dict[str, Any]:
    """Write a shard's tables and commit it: staged rows moved in first, marker last."""
    from .changes import shard_records

    # Both tables are written to a staging folder first (where a full disk or a crash leaves nothing a
    # reader of faces/ or images/ sees), then moved in (a rename; on S3 a copy), then the marker commits.
    t0 = time.perf_counter()
    try:
        sizes = _put_tables(store, shard.shard_id, {"faces": res.faces, "images": res.images})
        _tables_in_place(store, shard.shard_id)
        summary = {"shard": shard.shard_id, "digest": shard.digest, "files": len(shard.files), "sizes": sizes,
                   "dir": shard.directory, "paths": [f.path for f in shard.files],
                   **shard_records(shard.files, res.images),
                   "faces": res.faces.num_rows, "counts": res.counts, "seconds": round(res.seconds, 3),
                   # seconds per stage (pipeline.py) and for writing the tables: the benchmark's time breakdown
                   "stages": {**getattr(res, "stages", {}), "commit": round(time.perf_counter() - t0, 4)},
                   "pid": os.getpid(), "finished": time.time()}
        _commit(store, shard.shard_id, summary)
    except BaseException:
        for name in ("faces", "images"):  # nothing of an uncommitted shard stays visible
            store.delete(_staged(name, shard.shard_id))
            if not store.exists(shard_marker(shard.shard_id)):
                store.delete(_data(name, shard.shard_id))
        if not store.exists(shard_marker(shard.shard_id)):
            store.delete(shard_intent(shard.shard_id))
        raise
    return summary


def _tables_in_place(store: Store, shard_id: str) -> None:
    """The moment between a shard's rows moved in and its marker: does nothing. Tests make it raise or kill the
    process (tests/unit/test_commit_crash.py), to show that a crash here neither loses nor duplicates a row."""


def _staged(name: str, shard_id: str) -> str:
    return f"{STAGING}/{shard_id}.{name}.parquet"


def _put_tables(store: Store, shard_id: str, tables: dict) -> dict[str, int]:
    """The shard's id recorded (its intent), both tables written to the staging folder, then moved in; their
    sizes (for the marker) returned. The caller commits with the marker (`_commit`)."""
    store.write_text(shard_intent(shard_id), json.dumps({"shard": shard_id, "tables": sorted(tables)}))
    sizes = {}
    for name, table in tables.items():
        store.write_table(_staged(name, shard_id), table)
        sizes[name] = store.size(_staged(name, shard_id))
    for name in tables:
        store.move(_staged(name, shard_id), _data(name, shard_id))
    return sizes


def _commit(store: Store, shard_id: str, marker: dict) -> None:
    store.write_text(shard_marker(shard_id), json.dumps(marker))
    store.delete(shard_intent(shard_id))  # the marker records the shard from now on


def _read(store: Store, name: str, shard_id: str):
    from .schema import TABLES

    return store.read_table(_data(name, shard_id), TABLES[name])


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
    store.delete(shard_intent(shard_id))


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
    # A compaction or a re-cut that committed its new shard but stopped before removing the shards it replaces.
    for meta in list(found.values()):
        for old in meta.get("replaces") or []:
            if old in found and old != meta["shard"]:
                log.info("removing shard %s, replaced by %s (an interrupted compaction or re-cut)", old, meta["shard"])
                remove_shard(store, old)
                del found[old]
    return found


def _marker(sid: str, paths: list[str], tables: dict, sizes: dict, olds: list[dict]) -> dict[str, Any]:
    """The marker of a shard made from the committed rows of the shards `olds` (their markers): a compaction's
    merge, or a re-cut (one old shard). It keeps the records of its `paths` and `replaces` the old shards."""
    from .changes import pack, records

    recs = {}
    for m in olds:
        recs.update(records(m))
    statuses = tables["images"].column("status").to_pylist()
    counts = {s: statuses.count(s) for s in sorted(set(statuses))}
    dirs = sorted({m.get("dir") or "" for m in olds})
    return {"shard": sid, "digest": sid, "files": len(paths), "sizes": sizes,
            "dir": dirs[0] if len(dirs) == 1 else os.path.commonprefix(dirs), "paths": paths, **pack(paths, recs),
            "faces": tables["faces"].num_rows, "counts": counts,
            "seconds": round(sum(m.get("seconds", 0) for m in olds), 3), "pid": os.getpid(),
            "finished": time.time(), "replaces": [m["shard"] for m in olds]}


def recut_shard(store: Store, meta: dict, drop: set[str]) -> dict[str, Any] | None:
    """A committed shard without the rows of the files in `drop` (changed since they were done, or pruned).
    The kept rows are committed as a new shard that `replaces` the old one (recorded, staged, moved in,
    marker last, then the old one removed; an interruption in between is finished by the next
    `committed_shards`), so a changed file's stale rows are superseded, never shown twice and never lost
    before the file is done again. Returns the new marker, or None when no file of the shard is kept."""
    import pyarrow as pa

    from .discover import shard_id
    from .schema import source_path

    old = meta["shard"]
    paths = [p for p in meta["paths"] if p not in drop]
    if not paths:
        remove_shard(store, old)
        return None
    tables = {}
    for name in ("faces", "images"):
        t = _read(store, name, old)
        cols = t.select(["image_path", "image_path_bytes"]).to_pydict()
        keep = [source_path(p, b) not in drop for p, b in zip(cols["image_path"], cols["image_path_bytes"])]
        tables[name] = t.filter(pa.array(keep, pa.bool_()))
    sid = shard_id(paths)
    sizes = _put_tables(store, sid, tables)
    marker = _marker(sid, paths, tables, sizes, [meta])
    _commit(store, sid, marker)
    remove_shard(store, old)
    return marker


def compact_shards(store: Store, done: dict[str, dict], small: int = 64, target: int = 256) -> dict[str, dict]:
    """Merge committed shards of fewer than `small` files (nightly runs of a few new photos each) into shards of
    up to `target` files, so the output does not grow into thousands of tiny files. The merged shard is
    committed like any other (recorded, staged, moved in, marker last, listing the shards it `replaces`), then
    the old ones are removed; an interruption in between is finished by the next `committed_shards`. Returns
    the updated id -> marker map."""
    import pyarrow as pa

    from .discover import shard_id

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
            t = pa.concat_tables([_read(store, name, m["shard"]) for m in group])
            key = ["image_path", "face_index"] if name == "faces" else ["image_path"]
            tables[name] = t.sort_by([(k, "ascending") for k in key])
        sizes = _put_tables(store, sid, tables)
        marker = _marker(sid, paths, tables, sizes, group)
        _commit(store, sid, marker)
        for m in group:
            remove_shard(store, m["shard"])
            del done[m["shard"]]
        done[sid] = marker
        log.info("compacted %d small shards (%d files) into %s", len(group), len(paths), sid)
    return done


COMPACT_AFTER = 8  # small shards that make a compaction due


def compact_when_due(store: Store, done: dict[str, dict], small: int, target: int) -> dict[str, dict]:
    """Nightly runs leave a small shard each: once COMPACT_AFTER of them (under `small` files) have
    accumulated, merge them (compact_shards); until then `done` as it is. `done`: the committed shards'
    markers as the run knows them (read at its start, plus its own commits)."""
    if sum(len(m["paths"]) < small for m in done.values()) < COMPACT_AFTER:
        return done
    return compact_shards(store, done, small=small, target=target)
