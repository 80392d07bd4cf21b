"""The resume policy: what a rerun into an existing output keeps, does again, refuses, or (asked to) drops.

- Other row-changing settings, or an unreadable manifest: refused; --force removes what faceproc recorded
  (faceproc/ownership.py: never a file it did not write) and starts again.
- Files changed since they were done (another size, mtime or inode; with --verify other bytes): their rows
  are cut out of their shards (runstate.recut_shard) and the files done again, so a rerun's rows equal a
  fresh run's over the inputs as they are now.
- Files no longer among the inputs (deleted, renamed, moved, left out, past --limit): refused, naming
  them (a rename is named with its new path); --prune drops their rows. Without --prune nothing is ever
  dropped: an archive on a drive that is not mounted is not pruned by accident.
- Rows of shards that never committed: removed.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from .changes import Changes, compare
from .ownership import SHOW, discard, remove_uncommitted
from .record import MANIFEST
from .runstate import RunConfigMismatch, committed_shards, recut_shard
from .storage import Store

log = logging.getLogger("faceproc")


@dataclass
class Resume:
    old: dict | None  # the previous run's manifest (None: a new output, or one started again with --force)
    done: dict  # shard id -> marker of every committed shard kept
    todo: list  # the FileEntry objects to do (new, changed, or in shards that never committed)
    changes: Changes


def _diff(a: dict, b: dict, prefix: str = "") -> list[str]:
    """Every setting that differs between two fingerprints, as dotted keys: what a refusal names."""
    out = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += _diff(va, vb, f"{prefix}{k}.")
        elif va != vb:
            out.append(f"{prefix}{k}: {va!r} -> {vb!r}")
    return out


def _read_manifest(out: Store, force: bool) -> dict | None:
    try:
        return json.loads(out.read_text(MANIFEST)) if out.exists(MANIFEST) else None
    except (OSError, ValueError) as e:
        if not force:
            raise RunConfigMismatch(f"{out.where(MANIFEST)} is unreadable ({e}): the run it describes cannot be "
                                    f"resumed. Use a new output folder, or --force to discard the old rows and start "
                                    f"again.") from None
        return {"fingerprint": None}


def _shown(paths: list[str], renamed: dict[str, str]) -> str:
    named = [f"{p} (now {renamed[p]})" if p in renamed else p for p in paths[:SHOW]]
    return ", ".join(named) + (f" and {len(paths) - SHOW} more" if len(paths) > SHOW else "")


def resume(out: Store, files: list, fp: dict, force: bool = False, prune: bool = False,
           verify: bool = False) -> Resume:
    """Bring the output folder to the state a rerun starts from, and say what is left to do."""
    old = _read_manifest(out, force)
    if old and old.get("fingerprint") != fp:
        if not force:
            diff = "; ".join(_diff(old.get("fingerprint") or {}, fp))
            raise RunConfigMismatch(
                f"{out} holds a run with different settings ({diff}). Use a new output folder, or --force "
                f"to discard the old rows and start again.")
        n = discard(out)
        log.info("--force: removed the %d files of the earlier run (settings changed); starting again", n)
        old = None
    done = committed_shards(out)
    ch = compare(done, files, verify=verify)
    missing = ch.missing_paths()
    if missing and not prune:
        raise RunConfigMismatch(
            f"{out} holds finished rows of {len(missing)} file(s) that these inputs do not cover (deleted, renamed "
            f"or left out of the inputs or --limit): {_shown(missing, ch.renamed)}. Nothing was changed: rerun with "
            f"the same inputs to keep their rows, or add --prune to drop them.")
    for sid in sorted(set(ch.changed) | set(ch.missing)):  # superseded rows go, the rest of the shard stays
        marker = recut_shard(out, done.pop(sid), set(ch.changed.get(sid, [])) | set(ch.missing.get(sid, [])))
        if marker is not None:
            done[marker["shard"]] = marker
    changed = ch.changed_paths()
    if changed or missing:  # their previews show rows that are gone (the report draws the current ones again)
        from .preview import preview_name

        for p in changed + missing:
            out.delete(f"previews/{preview_name(p)}")
    if changed:
        log.info("%d file(s) changed since they were done, done again: %s", len(changed), _shown(changed, {}))
    if missing:
        log.info("--prune: dropped the rows of %d file(s) no longer among the inputs: %s", len(missing),
                 _shown(missing, ch.renamed))
    remove_uncommitted(out)
    done_paths = {p for m in done.values() for p in m["paths"]}
    todo = [f for f in files if f.path not in done_paths]
    if old is not None or done or changed or missing:  # a new output has nothing to say here (stderr stays quiet)
        log.info("kept the rows of %d unchanged file(s); %d changed, %d pruned, %d new or unfinished", ch.kept,
                 len(changed), len(missing), len(todo) - len(changed))
    return Resume(old, done, todo, ch)
