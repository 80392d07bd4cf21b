"""Inputs (local folders, files, object-store prefixes) -> a deterministic list of image files, each once;
the files still to do -> shards.

The walks are in walk.py (local: iterative, one row per file by device and inode, symlinks leading outside the
inputs not followed unless asked, unreadable folders counted). Files with an image extension under a
hidden name (or hidden folder) are kept as entries flagged `hidden`, so they get a `skipped_hidden` row
instead of vanishing; every other file is counted by extension (videos named as such), never listed.

Shards are cut from the files that no committed shard holds yet, in sorted order across folders, into
`parts` nearly equal pieces of at most `shard_size` files, and named by a hash of their file list. So
one big folder spreads over every worker, a thousand small folders do not make a thousand tiny files,
adding N photos to a processed archive makes about N photos of work, and the worker count can change
between runs without redoing anything (committed shards are never re-cut).
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass, field

from .storage import is_uri

from .formats import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS  # noqa: F401 (re-exported)
from .walk import FileEntry, walk_local, walk_objects

SAMPLE = 50  # paths listed per kind of skipped thing in the manifest and the report (the counts are whole)


@dataclass
class Shard:
    shard_id: str
    directory: str
    files: list[FileEntry]

    @property
    def digest(self) -> str:
        """Changes when the shard's file list changes, so a stale finished shard is redone."""
        h = hashlib.sha256()
        for f in self.files:
            h.update(f.path.encode("utf-8", "surrogateescape") + b"\0")
        return h.hexdigest()[:16]


@dataclass
class Discovery:
    shards: list[Shard]  # the work still to do (see plan_shards)
    n_files: int = 0  # every discovered file
    cycles: list[str] = field(default_factory=list)  # folders reached again through a symlink (walked once)
    excluded: list[str] = field(default_factory=list)  # output folders found inside the inputs
    files: list[FileEntry] = field(default_factory=list)  # every discovered file, sorted, each once
    # What is not a row, counted so that nothing under the inputs vanishes without a word:
    skipped_ext: dict[str, int] = field(default_factory=dict)  # files without an image extension, by extension
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (folder, reason) that could not be listed
    external: list[str] = field(default_factory=list)  # symlinks leading outside the inputs, not followed
    duplicates: list[tuple[str, str]] = field(default_factory=list)  # (second path, path listed) of one file

    @property
    def n_ignored(self) -> int:
        """Files without an image extension (the manifest's n_ignored_files)."""
        return sum(self.skipped_ext.values())

    def skipped(self) -> dict:
        """What the walk did not make rows of, for the manifest, report.json, report.html and the summary:
        counts in full, paths as a sample of SAMPLE."""
        videos = {k: v for k, v in sorted(self.skipped_ext.items()) if k in VIDEO_EXTENSIONS}
        other = {k or "(no extension)": v for k, v in sorted(self.skipped_ext.items()) if k not in VIDEO_EXTENSIONS}
        return {
            "videos": videos, "other_files": other,
            "unreadable_folders": {"count": len(self.unreadable),
                                   "sample": [{"path": p, "reason": r} for p, r in self.unreadable[:SAMPLE]]},
            "external_symlinks": {"count": len(self.external), "sample": self.external[:SAMPLE]},
            "duplicate_paths": {"count": len(self.duplicates),
                                "sample": [{"path": p, "same_as": q} for p, q in self.duplicates[:SAMPLE]]},
        }


def check_inputs(inputs: list[str]) -> list[str]:
    missing = [p for p in inputs if not is_uri(p) and not os.path.exists(p)]
    if missing:
        raise FileNotFoundError(f"input not found: {', '.join(missing)}")
    return [p.rstrip("/") if is_uri(p) else os.path.abspath(p) for p in inputs]


def discover(inputs: list[str], exclude: list[str] | tuple = (), follow_external_symlinks: bool = False) -> Discovery:
    """Every image file under the inputs (local folders or object-store prefixes), sorted, each once
    (overlapping inputs, symlinks, hard links), without shards. Local inputs come first, in the order given."""
    disc = Discovery(shards=[])
    roots = check_inputs(inputs)
    disc.files = walk_local([r for r in roots if not is_uri(r)], disc, exclude, follow_external_symlinks)
    seen = {f.path for f in disc.files}
    for root in (r for r in roots if is_uri(r)):
        for _d, files in walk_objects(root, disc, exclude):
            for f in files:
                if f.path not in seen:
                    seen.add(f.path)
                    disc.files.append(f)
    disc.n_files = len(disc.files)
    return disc


# A shard is never cut smaller than this, except the whole work when it is smaller: below it a shard costs
# more in per-shard overhead (a Parquet file pair, a marker, a task) than it gains in balance.
MIN_SHARD = 4


def cut_shards(files: list[FileEntry], shard_size: int = 256, workers: int = 1) -> list[Shard]:
    """Consecutive files (sorted order, across folders) in shards of at most `shard_size` files that, for
    several workers, shrink towards the end (guided self-scheduling: each takes 1/(2 x workers) of what is
    left). Handed out one at a time, the large first shards keep the file count low and the small last ones
    let every worker finish within a few photos of the others, whatever the folder layout. Each is named by
    a hash of its file list."""
    n, cap, workers = len(files), max(1, int(shard_size)), max(1, int(workers))
    # The smallest shard: a few photos, or for big runs 1/16 of a worker's share (a short tail either way,
    # without hundreds of tiny shards).
    floor = max(MIN_SHARD, math.ceil(n / (16 * workers)))
    even = math.ceil(n / max(1, math.ceil(n / cap)))  # one worker: equal shards of at most shard_size
    shards = []
    i = 0
    while i < n:
        rest = n - i
        size = even if workers == 1 else min(cap, max(floor, math.ceil(rest / (2 * workers))))
        chunk = files[i : i + size]
        i += len(chunk)
        dirs = {f.path.rsplit("/", 1)[0] if is_uri(f.path) else os.path.dirname(f.path) for f in chunk}
        directory = dirs.pop() if len(dirs) == 1 else _common_dir(sorted(dirs))
        shards.append(Shard(shard_id(f.path for f in chunk), directory, chunk))
    return shards


def shard_id(paths) -> str:
    """A shard's name: a hash of its file list (new shards and the merged shards of a compaction alike)."""
    h = hashlib.sha1()
    for p in paths:
        h.update(p.encode("utf-8", "surrogateescape") + b"\0")
    return h.hexdigest()[:16]


def _common_dir(dirs: list[str]) -> str:
    if any(is_uri(d) for d in dirs):
        parts = [d.split("/") for d in dirs]
        common = []
        for level in zip(*parts):
            if len(set(level)) != 1:
                break
            common.append(level[0])
        return "/".join(common)
    return os.path.commonpath(dirs)


def plan_shards(inputs: list[str], shard_size: int = 256, exclude: list[str] | tuple = (),
                done: set[str] | frozenset = frozenset(), workers: int = 1,
                follow_external_symlinks: bool = False) -> Discovery:
    """Discover the inputs and cut the files not in `done` (already committed) into shards."""
    disc = discover(inputs, exclude, follow_external_symlinks)
    disc.shards = cut_shards([f for f in disc.files if f.path not in done], max(1, int(shard_size)), workers)
    return disc
