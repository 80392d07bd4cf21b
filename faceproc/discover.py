"""Input folders -> a deterministic list of image files; the files still to do -> shards.

Order is sorted by path at every level. Symlinked folders are followed once (a cycle is cut at the
first repeat). Files with an image extension under a hidden name (or hidden folder) are kept as entries
flagged `hidden`, so they get a `skipped_hidden` row instead of vanishing; files without an image
extension are counted, not listed.

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

from .storage import is_uri, list_objects

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif"})


@dataclass(frozen=True)
class FileEntry:
    path: str
    hidden: bool = False
    size: int | None = None  # known from an object-store listing (saves a request per photo)
    # From the walk's stat (an object store: its listing's mtime): what a rerun compares (faceproc/changes.py).
    mtime_ns: int | None = None
    dev: int | None = None
    ino: int | None = None


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
    n_ignored: int = 0  # files without an image extension
    cycles: list[str] = field(default_factory=list)
    excluded: list[str] = field(default_factory=list)  # output folders found inside the inputs
    files: list[FileEntry] = field(default_factory=list)  # every discovered file, sorted, each once


def _is_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def walk_images(root: str, disc: Discovery, exclude: list[str] | tuple = ()):
    """Yield (directory, [FileEntry...]) per folder in sorted order; counts ignored files and symlink
    cycles into `disc`. Folders in `exclude` (a run's own output) are not entered."""
    seen: set[tuple[int, int]] = set()
    skip = set()
    for e in exclude:
        try:
            st = os.stat(e)
            skip.add((st.st_dev, st.st_ino))
        except OSError:
            pass

    def visit(d: str, hidden: bool):
        try:
            st = os.stat(d)
        except OSError:
            return
        if (st.st_dev, st.st_ino) in skip:
            disc.excluded.append(d)
            return
        key = (st.st_dev, st.st_ino)
        if key in seen:
            disc.cycles.append(d)
            return
        seen.add(key)
        try:
            with os.scandir(d) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError:
            return
        files, subdirs = [], []
        for e in entries:
            try:
                is_dir = e.is_dir(follow_symlinks=True)
            except OSError:
                is_dir = False
            if is_dir:
                subdirs.append(e)
            elif _is_image_name(e.name):
                files.append(_entry(os.path.join(d, e.name), hidden or e.name.startswith("."), e))
            else:
                disc.n_ignored += 1
        if files:
            yield d, files
        for e in subdirs:
            yield from visit(os.path.join(d, e.name), hidden or e.name.startswith("."))

    root = os.path.abspath(root)
    if os.path.isfile(root):
        if _is_image_name(root):
            yield os.path.dirname(root), [_entry(root, os.path.basename(root).startswith("."))]
        else:
            disc.n_ignored += 1
    else:
        yield from visit(root, False)


def _entry(path: str, hidden: bool, dirent=None) -> FileEntry:
    """A local file with its stat (following links, as decoding does); a file that cannot be stat'ed gets
    none and its row says why."""
    try:
        st = dirent.stat() if dirent is not None else os.stat(path)
    except OSError:
        return FileEntry(path, hidden)
    return FileEntry(path, hidden, st.st_size, st.st_mtime_ns, st.st_dev, st.st_ino)


def walk_objects(uri: str, disc: Discovery, exclude: list[str] | tuple = ()):
    """walk_images for an object-store prefix (s3://bucket/archive): (folder, files) per key prefix, sorted;
    "folders" are the key prefixes up to the last slash. A prefix in `exclude` (the run's output) is skipped."""
    skip = tuple(e.rstrip("/") + "/" for e in exclude if is_uri(e))
    by_dir: dict[str, list[FileEntry]] = {}
    for path, size, mtime_ns in list_objects(uri):
        if skip and path.startswith(skip):
            continue
        d, name = path.rsplit("/", 1)
        if not _is_image_name(name):
            disc.n_ignored += 1
            continue
        rel = path[len(uri.rstrip("/")) + 1:] if path != uri else name
        hidden = any(part.startswith(".") for part in rel.split("/"))
        by_dir.setdefault(d, []).append(FileEntry(path, hidden, size, mtime_ns))
    for d in sorted(by_dir):
        yield d, by_dir[d]


def check_inputs(inputs: list[str]) -> list[str]:
    missing = [p for p in inputs if not is_uri(p) and not os.path.exists(p)]
    if missing:
        raise FileNotFoundError(f"input not found: {', '.join(missing)}")
    return [p.rstrip("/") if is_uri(p) else os.path.abspath(p) for p in inputs]


def discover(inputs: list[str], exclude: list[str] | tuple = ()) -> Discovery:
    """Every image file under the inputs (local folders or object-store prefixes), sorted, each once
    (overlapping inputs), without shards."""
    disc = Discovery(shards=[])
    seen: set[str] = set()
    for root in check_inputs(inputs):
        walk = walk_objects if is_uri(root) else walk_images
        for _d, files in walk(root, disc, exclude):
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
                done: set[str] | frozenset = frozenset(), workers: int = 1) -> Discovery:
    """Discover the inputs and cut the files not in `done` (already committed) into shards."""
    disc = discover(inputs, exclude)
    disc.shards = cut_shards([f for f in disc.files if f.path not in done], max(1, int(shard_size)), workers)
    return disc
