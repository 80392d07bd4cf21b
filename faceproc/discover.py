"""Input folders -> a deterministic list of image files, cut into shards.

Order is sorted by path at every level, so the same archive always gives the same shards. Symlinked
folders are followed once (a cycle is cut at the first repeat). Files with an image extension under a
hidden name (or hidden folder) are kept as entries flagged `hidden`, so they get a `skipped_hidden`
row instead of vanishing; files without an image extension are counted, not listed.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif"})


@dataclass(frozen=True)
class FileEntry:
    path: str
    hidden: bool = False


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
    shards: list[Shard]
    n_files: int = 0
    n_ignored: int = 0  # files without an image extension
    cycles: list[str] = field(default_factory=list)
    excluded: list[str] = field(default_factory=list)  # output folders found inside the inputs


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
                files.append(FileEntry(os.path.join(d, e.name), hidden or e.name.startswith(".")))
            else:
                disc.n_ignored += 1
        if files:
            yield d, files
        for e in subdirs:
            yield from visit(os.path.join(d, e.name), hidden or e.name.startswith("."))

    root = os.path.abspath(root)
    if os.path.isfile(root):
        if _is_image_name(root):
            yield os.path.dirname(root), [FileEntry(root, os.path.basename(root).startswith("."))]
        else:
            disc.n_ignored += 1
    else:
        yield from visit(root, False)


def check_inputs(inputs: list[str]) -> list[str]:
    missing = [p for p in inputs if not os.path.exists(p)]
    if missing:
        raise FileNotFoundError(f"input not found: {', '.join(missing)}")
    return [os.path.abspath(p) for p in inputs]


def plan_shards(inputs: list[str], shard_size: int = 256, exclude: list[str] | tuple = ()) -> Discovery:
    """Shards by directory; a directory with more than shard_size images is split into chunks."""
    shard_size = max(1, int(shard_size))
    disc = Discovery(shards=[])
    seen_files: set[str] = set()
    for root in check_inputs(inputs):
        for d, files in walk_images(root, disc, exclude):
            files = [f for f in files if f.path not in seen_files]  # overlapping inputs
            seen_files.update(f.path for f in files)
            dir_hash = hashlib.sha1(d.encode("utf-8", "surrogateescape")).hexdigest()[:12]
            for i in range(0, len(files), shard_size):
                disc.shards.append(Shard(f"{dir_hash}-{i // shard_size:05d}", d, files[i : i + shard_size]))
                disc.n_files += len(files[i : i + shard_size])
    return disc
