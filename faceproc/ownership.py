"""Ownership of the output folder: faceproc writes, overwrites and removes only files it wrote itself.

Checked before anything is written (`check_location`, then `check_owned`), each refusal one line
(`OutputRefused`, exit status 1):
- `-o ""`, `-o` equal to an input, inside an input, or holding an input;
- a folder that is not empty and holds no faceproc manifest (someone's photos, someone else's
  `manifest.json`);
- a faceproc output that holds entries faceproc did not write (a user's `images/hero.jpg`, a folder or a
  link of theirs), whatever --force says.
What faceproc knows as its own: its fixed files at the top (manifest.json, faceproc.log, report.json,
report.html, the lock, its temp files), the Parquet files of shards it recorded (`_shards/<id>.json`
markers and `_shards/<id>.open` intents, written before the shard's files; the manifest's shard list),
its markers, staged files and previews (named `<stem>-<8 hex>.jpg`). `discard` (--force) removes exactly
those files, file by file, then the folders that are left empty; it never removes a folder tree.
"""

from __future__ import annotations

import json
import os
import re

from .lock import LOCK
from .record import MANIFEST
from .runstate import SHARD_DIR, STAGING
from .schema import shown_path
from .storage import Store, is_uri

TOP_FILES = frozenset({MANIFEST, "faceproc.log", "report.json", "report.html", LOCK})
TABLE_DIRS = ("faces", "images")
DIRS = frozenset({*TABLE_DIRS, SHARD_DIR, STAGING, "previews"})
_SID = r"[0-9a-f]{16}"
_TEMP = re.compile(r"^\..+\.[0-9a-f]{8}\.tmp$")  # the atomic writers' temp names (storage, schema)
_PROBE = re.compile(r"^\.write-test-[0-9a-f]{6}$")  # Store.check_writable
_TABLE = re.compile(rf"^({_SID})\.parquet$")
_STAGED = re.compile(rf"^{_SID}\.(faces|images)\.parquet$")
_SHARD_RECORD = re.compile(rf"^({_SID})\.(json|open)$")
_PREVIEW = re.compile(r"^.{0,150}-[0-9a-f]{8}\.jpg$", re.S)  # faceproc.preview.preview_name
SHOW = 20  # entries named in a message
# What a file browser leaves in a folder it has shown (Finder, Explorer, KDE): not a user's data and not
# faceproc's to remove, so tolerated and left alone; in faces/ and images/ only hidden ones, since readers
# of those folders (pandas, pyarrow) skip names that start with a dot and would fail on Thumbs.db.
_LITTER = frozenset({".DS_Store", "Thumbs.db", "desktop.ini", ".directory"})


class OutputRefused(RuntimeError):
    """The output folder is not faceproc's to write: refused before anything is written."""


def is_temp(name: str) -> bool:
    return bool(_TEMP.match(name) or _PROBE.match(name))


def is_staged(name: str) -> bool:
    return bool(_STAGED.match(name))


def is_litter(name: str, hidden_only: bool = False) -> bool:
    return (name in _LITTER and (name.startswith(".") or not hidden_only)) or name.startswith("._")


def shard_file_id(name: str) -> str | None:
    """The shard id of a table file name (`<id>.parquet`), else None."""
    m = _TABLE.match(name)
    return m.group(1) if m else None


# ------------------------------------------------------------------------------ where the output may be

def _chain(path: str) -> set[tuple[int, int]]:
    """(device, inode) of a path and of every existing folder above it (a bind mount or a case-insensitive
    disk that names one folder two ways is still the same folder)."""
    ids, p = set(), os.path.realpath(path)
    while True:
        try:
            st = os.stat(p)
            ids.add((st.st_dev, st.st_ino))
        except OSError:
            pass
        parent = os.path.dirname(p)
        if parent == p:
            return ids
        p = parent


def _ident(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
        return st.st_dev, st.st_ino
    except OSError:
        return None


def check_location(inputs: list[str], out) -> None:
    """-o "", -o an input, -o inside an input, or an input inside -o: refused (one line each)."""
    out = os.fsdecode(os.fspath(out)) if not isinstance(out, str) else out
    if not out.strip():
        raise OutputRefused("the output folder is empty (-o \"\"): name a folder for faceproc's output")
    full = out if is_uri(out) else os.path.abspath(out)
    if shown_path(full) != full:  # Parquet and the report name their files in UTF-8: every shard would fail
        raise OutputRefused(f"the output folder {shown_path(full)} has a name that is not UTF-8: choose an -o "
                            f"whose path is (the photos' own names may be anything)")
    for i in inputs:
        if is_uri(out) or is_uri(i):
            if not (is_uri(out) and is_uri(i)):
                continue
            o, s = out.rstrip("/") + "/", i.rstrip("/") + "/"
            equal, out_in, in_out = o == s, o.startswith(s), s.startswith(o)
        else:
            o, s = os.path.realpath(out), os.path.realpath(i)
            oid, sid = _ident(o), _ident(s)
            equal = o == s or (oid is not None and oid == sid)
            out_in = (sid is not None and sid in _chain(o)) or o.startswith(s.rstrip(os.sep) + os.sep)
            in_out = (oid is not None and oid in _chain(s)) or s.startswith(o.rstrip(os.sep) + os.sep)
        where = f"{i.rstrip('/')}-faceproc"
        if equal:
            raise OutputRefused(f"the output folder {out} is the input {i}: faceproc never writes among the photos; "
                                f"choose another -o (e.g. {where})")
        if out_in:
            raise OutputRefused(f"the output folder {out} lies inside the input {i}: faceproc never writes among the "
                                f"photos; choose an -o outside it (e.g. {where})")
        if in_out:
            raise OutputRefused(f"the input {i} lies inside the output folder {out}: an output folder holds only "
                                f"faceproc's files; choose an -o outside the input")


# ------------------------------------------------------------------------------ what the output holds

def _entries(store: Store, rel: str = "") -> list[tuple[str, str]]:
    """(name, kind) directly in a folder of the store, kind file | dir | other (a link, a device); [] when
    there is none."""
    if not store.remote:
        try:
            with os.scandir(os.path.join(store.uri, rel)) as it:
                return sorted((e.name, "other" if e.is_symlink() else "dir" if e.is_dir() else
                               "file" if e.is_file() else "other") for e in it)
        except (FileNotFoundError, NotADirectoryError):
            return []
    from pyarrow import fs

    sel = fs.FileSelector(f"{store.root}/{rel}" if rel else store.root, allow_not_found=True, recursive=False)
    try:
        infos = store.fs.get_file_info(sel)
    except OSError:  # no such bucket: the writability check says so
        return []
    kinds = {fs.FileType.File: "file", fs.FileType.Directory: "dir"}
    return sorted((i.base_name, kinds.get(i.type, "other")) for i in infos)


def _read_manifest(store: Store) -> tuple[str, dict | None]:
    """("none" | "faceproc" | "foreign" | "unreadable", the manifest when faceproc's)."""
    try:
        m = json.loads(store.read_text(MANIFEST))
    except FileNotFoundError:
        return "none", None
    except (OSError, ValueError):
        return "unreadable", None
    ours = isinstance(m, dict) and isinstance(m.get("fingerprint"), dict) and "run_id" in m and "shards" in m
    return ("faceproc", m) if ours else ("foreign", None)


def scan(store: Store) -> dict:
    """What the output folder holds: `unknown` entries (relative paths; a folder with a trailing /), the
    shard ids faceproc `recorded`, the manifest's state, and whether faceproc's own run state is there."""
    top = _entries(store)
    state, manifest = _read_manifest(store) if any(n == MANIFEST for n, _ in top) else ("none", None)
    listing = {d: _entries(store, d) for d, kind in top if d in DIRS and kind == "dir"}
    recorded = {m.group(1) for n, k in listing.get(SHARD_DIR, []) if k == "file" and (m := _SHARD_RECORD.match(n))}
    if manifest:
        recorded |= {s for s in (manifest.get("shards") or {}) if re.fullmatch(_SID, s)}
    unknown = []
    for name, kind in top:
        if (kind == "dir" and name in DIRS) or (kind == "file" and is_litter(name)):
            continue
        if kind != "file" or not (name in TOP_FILES or is_temp(name)):
            unknown.append(name + ("/" if kind == "dir" else ""))
    rules = {SHARD_DIR: lambda n: _SHARD_RECORD.match(n), STAGING: is_staged, "previews": _PREVIEW.match,
             **{t: lambda n: shard_file_id(n) in recorded for t in TABLE_DIRS}}
    for d, entries in listing.items():
        for name, kind in entries:
            if kind == "file" and is_litter(name, hidden_only=d in TABLE_DIRS):
                continue
            if kind != "file" or not (rules[d](name) or is_temp(name)):
                unknown.append(f"{d}/{name}" + ("/" if kind == "dir" else ""))
    # What a folder without a manifest may hold and still be taken for a new output: a log, a lock and temp
    # files of a first run that stopped before its manifest, and folders of faceproc's names with nothing in them.
    def bare(d):
        return all(k == "file" and is_litter(n) for n, k in listing.get(d, []))

    beyond = [n + ("/" if k == "dir" else "") for n, k in top
              if not (n in ("faceproc.log", LOCK) or is_temp(n) or (k == "file" and is_litter(n))
                      or (k == "dir" and n in DIRS and bare(n)))]
    return {"unknown": sorted(unknown), "recorded": recorded, "manifest": state, "has_state": bool(recorded),
            "empty": all(k == "file" and is_litter(n) for n, k in top), "beyond_fresh": beyond}


def _named(paths: list[str]) -> str:
    more = len(paths) - SHOW
    return ", ".join(paths[:SHOW]) + (f" and {more} more" if more > 0 else "")


def check_owned(store: Store) -> dict:
    """Refuse an output folder that faceproc did not write, or that holds files it did not write (before
    anything is written; --force does not change this). Returns the scan."""
    s = scan(store)
    if s["empty"]:
        return s
    if s["manifest"] == "foreign" or (s["manifest"] == "unreadable" and not s["has_state"]):
        raise OutputRefused(f"{store} is not a faceproc output folder: its {MANIFEST} is not faceproc's. faceproc "
                            f"writes only into a new or empty folder or one of its own outputs; choose another -o")
    if s["manifest"] == "none" and (s["unknown"] or (s["beyond_fresh"] and not s["has_state"])):
        what = _named(s["unknown"] or s["beyond_fresh"])
        raise OutputRefused(f"{store} is not empty and is not a faceproc output folder (no {MANIFEST}; it holds "
                            f"{what}): choose a new or empty folder for -o")
    if s["unknown"]:
        raise OutputRefused(f"{store} holds {len(s['unknown'])} entries faceproc did not write ({_named(s['unknown'])}): "
                            f"faceproc never writes among, nor removes, files it did not write; move them out of "
                            f"the output folder or choose another -o")
    return s


def discard(store: Store) -> int:
    """--force: every file faceproc recorded goes, markers first (no shard stays committed with its rows half
    gone), then its folders when they are left empty. Nothing faceproc did not write is touched (check_owned
    refused those). Returns the number of files removed."""
    s = scan(store)
    n = 0

    def rm(rel):
        nonlocal n
        store.delete(rel)
        n += 1

    for name, kind in _entries(store, SHARD_DIR):
        if kind == "file" and name.endswith(".json") and _SHARD_RECORD.match(name):
            rm(f"{SHARD_DIR}/{name}")
    for d in TABLE_DIRS:
        for name, kind in _entries(store, d):
            if kind == "file" and shard_file_id(name) in s["recorded"]:
                rm(f"{d}/{name}")
    for d, ok in ((SHARD_DIR, _SHARD_RECORD.match), (STAGING, is_staged), ("previews", _PREVIEW.match)):
        for name, kind in _entries(store, d):
            if kind == "file" and (ok(name) or is_temp(name)):
                rm(f"{d}/{name}")
    for d in DIRS:
        remove_if_empty(store, d)
    return n


def remove_uncommitted(store: Store) -> None:
    """Rows of shards without a marker (a run killed between move and commit), staged leftovers, intents and
    temp files: what a run removes at its start, and when it stops or the disk is full. Only names faceproc
    gives its own files are touched."""
    for f in store.list(STAGING):
        if is_staged(f) or is_temp(f):
            store.delete(f"{STAGING}/{f}")
    remove_if_empty(store, STAGING)
    markers = {f[: -len(".json")] for f in store.list(SHARD_DIR, ".json")}
    for name in TABLE_DIRS:
        for f in store.list(name, ".parquet"):
            sid = shard_file_id(f)
            if sid and sid not in markers:
                store.delete(f"{name}/{f}")
    for f in store.list(SHARD_DIR, ".open"):  # its files are gone (above) or committed: the intent has done its job
        store.delete(f"{SHARD_DIR}/{f}")
    for sub in (*TABLE_DIRS, SHARD_DIR, ""):  # temp files and write probes (a run killed in check_writable)
        for tmp in store.list(sub):
            if is_temp(tmp):
                store.delete(f"{sub}/{tmp}" if sub else tmp)


def remove_if_empty(store: Store, rel: str) -> None:
    """A folder of faceproc's that holds nothing any more (a folder with anything in it stays)."""
    if store.remote:
        try:
            if not _entries(store, rel):
                store.delete_tree(rel)  # the empty "folder" marker an object store may keep
        except OSError:
            pass
        return
    try:
        os.rmdir(os.path.join(store.uri, rel))
    except OSError:
        pass
