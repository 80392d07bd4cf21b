"""Input folders (and object-store prefixes: walk_objects) -> every image file under them, each once, and a
count of everything else.

The walk is iterative (an explicit stack: 1,100 nested folders are no problem) and sorted at every level:
a folder's files, then its subfolders. One row per file: files are told apart by (device, inode), so a
file reached by two paths (a symlinked folder given as a second input, a symlink inside the tree, a hard
link) is listed once, under the path that goes through no symlink when there is one. Symlinked folders
are walked after every real folder for that reason. Symlinks whose target lies outside the inputs are not
followed (`follow_external`: they are), and are counted. Folders that cannot be listed are counted with
the reason. Files without an image extension are counted by extension. Each file is stat'ed once (its
size, mtime, device and inode come from that stat), non-image files not at all.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from .formats import IMAGE_EXTENSIONS
from .objectstore import list_objects
from .storage import is_uri


@dataclass(frozen=True)
class FileEntry:
    path: str
    hidden: bool = False
    size: int | None = None  # from the walk's stat, or an object-store listing (saves a request per photo)
    # From the walk's own stat (an object store: its listing's mtime, no device or inode; None when unknown,
    # e.g. a file that could not be stat'ed): what a rerun compares (faceproc/changes.py).
    mtime_ns: int | None = None
    dev: int | None = None
    ino: int | None = None
    root: str = ""  # the input (folder, file or prefix) it was found under: the images table's input_root


def extension(name: str) -> str:
    """Lower-case extension with its dot; "" for none (how skipped files are counted)."""
    return os.path.splitext(name)[1].lower()


def is_image_name(name: str) -> bool:
    return extension(name) in IMAGE_EXTENSIONS


def _reason(e: OSError) -> str:
    return f"{type(e).__name__}: {e.strerror or e}"


def _inside(real: str, roots: list[str]) -> bool:
    return any(real == r or real.startswith(r.rstrip(os.sep) + os.sep) for r in roots)


def _key(i: int, parts: tuple, name: str) -> tuple:
    """Sort key of a file: input order, then folders in name order, a folder's own files before its
    subfolders (the order a sorted recursive walk gives)."""
    return (i, *((1, p) for p in parts), (0, name))


def walk_local(roots: list[str], disc, exclude=(), follow_external: bool = False) -> list[FileEntry]:
    """Every image file under `roots` (absolute paths of local folders or files), sorted, each file once.
    Fills `disc` (a discover.Discovery) with what was not listed: skipped extensions, unreadable folders,
    symlinks leading outside the inputs, duplicate paths, folders reached twice, excluded folders."""
    inside = [os.path.realpath(r) for r in roots]
    skip = set()
    for e in exclude:
        try:
            st = os.stat(e)
            skip.add((st.st_dev, st.st_ino))
        except OSError:
            pass
    seen_dirs: set[tuple[int, int]] = set()
    found: list[tuple[bool, tuple, FileEntry]] = []  # (through a symlink, sort key, entry)
    stack: list[tuple] = []  # (input index, path parts below the input, path, hidden, through a symlink)
    later: list[tuple] = []  # symlinked folders: walked after every real folder

    def add_file(i, parts, name, path, hidden, via, st):
        if st is None:  # could not be stat'ed (a dangling link, no permission): a row says why
            found.append((via, _key(i, parts, name), FileEntry(path, hidden, root=roots[i])))
        else:
            found.append((via, _key(i, parts, name),
                          FileEntry(path, hidden, st.st_size, st.st_mtime_ns, st.st_dev, st.st_ino, roots[i])))

    for i, root in enumerate(roots):
        try:
            st = os.stat(root)
        except OSError as e:
            disc.unreadable.append((root, _reason(e)))
            continue
        if os.path.isdir(root):
            (later if os.path.islink(root) else stack).append((i, (), root, False, os.path.islink(root)))
        elif is_image_name(root):
            name = os.path.basename(root)
            add_file(i, (), name, root, name.startswith("."), os.path.islink(root), st)
        else:
            disc.skipped_ext[extension(root)] = disc.skipped_ext.get(extension(root), 0) + 1

    while stack or later:
        if not stack:  # real folders done: now the symlinked ones (mostly folders already walked)
            stack, later = sorted(later, reverse=True), []
        i, parts, d, hidden, via = stack.pop()
        try:
            st = os.stat(d)
        except OSError as e:
            disc.unreadable.append((d, _reason(e)))
            continue
        key = (st.st_dev, st.st_ino)
        if key in skip:
            disc.excluded.append(d)
            continue
        if key in seen_dirs:
            disc.cycles.append(d)
            continue
        seen_dirs.add(key)
        try:
            with os.scandir(d) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as e:
            disc.unreadable.append((d, _reason(e)))
            continue
        subdirs = []
        for e in entries:
            link = e.is_symlink()
            if link and not follow_external and not _inside(os.path.realpath(e.path), inside):
                disc.external.append(e.path)
                continue
            try:
                is_dir = e.is_dir()  # d_type: no system call, except for a symlink
            except OSError:
                is_dir = False
            dot = hidden or e.name.startswith(".")
            if is_dir:
                (later if link else subdirs).append((i, parts + (e.name,), e.path, dot, via or link))
            elif is_image_name(e.name):
                try:
                    fst = e.stat()  # the one stat of a file (follows a symlink)
                except OSError:
                    fst = None
                add_file(i, parts, e.name, e.path, dot, via or link, fst)
            else:
                ext = extension(e.name)
                disc.skipped_ext[ext] = disc.skipped_ext.get(ext, 0) + 1
        stack.extend(reversed(subdirs))
    return _once(found, disc)


def _once(found: list[tuple[bool, tuple, FileEntry]], disc) -> list[FileEntry]:
    """One entry per file (device, inode): a path without a symlink first, then the first in walk order;
    the other paths are counted as duplicates. Output in walk order."""
    keep: dict = {}
    for via, key, f in sorted(found, key=lambda t: (t[0], t[1])):
        ident = (f.dev, f.ino) if f.ino else f.path
        if ident in keep:
            disc.duplicates.append((f.path, keep[ident][1].path))
        else:
            keep[ident] = (key, f)
    return [f for _, f in sorted(keep.values(), key=lambda t: t[0])]


def walk_objects(uri: str, disc, exclude: list[str] | tuple = ()):
    """The walk of an object-store prefix (s3://bucket/archive): (folder, files) per key prefix, sorted;
    "folders" are the key prefixes up to the last slash. A prefix in `exclude` (the run's output) is skipped.
    Fills `disc` (a discover.Discovery) with the extensions skipped."""
    skip = tuple(e.rstrip("/") + "/" for e in exclude if is_uri(e))
    by_dir: dict[str, list[FileEntry]] = {}
    for path, size, mtime_ns in list_objects(uri):
        if skip and path.startswith(skip):
            continue
        d, name = path.rsplit("/", 1)
        if not is_image_name(name):
            disc.skipped_ext[extension(name)] = disc.skipped_ext.get(extension(name), 0) + 1
            continue
        rel = path[len(uri.rstrip("/")) + 1:] if path != uri else name
        hidden = any(part.startswith(".") for part in rel.split("/"))
        by_dir.setdefault(d, []).append(FileEntry(path, hidden, size, mtime_ns=mtime_ns, root=uri))
    for d in sorted(by_dir):
        yield d, by_dir[d]
