"""Change detection per input file: what a committed shard recorded about each of its files, compared with
the files as they are now, so that a rerun redoes exactly the files that changed.

A shard's marker keeps, aligned with its `paths`, `stats` ([size, mtime in ns, inode], from discovery's
stat) and `hashes` (blake2b-128 of the bytes read for decoding: the `images` table's `content_hash`). A
file is unchanged when its stat is the recorded one: an edit in place moves its mtime whatever its size,
and a file replaced by another one (mv, a restore from a backup) has another inode. Only a copy that
keeps both size and mtime over the old file (`cp -p`, `rsync -t --inplace`) needs the bytes read again:
`--verify` re-hashes every file whose stat is unchanged. Reading the markers and a stat per file is the
whole cost of a rerun over an unchanged archive (benchmarks/rerun_stat.py).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

HASH_NAME = "blake2b-128"  # what `content_hash` holds (hex)


class ContentDigest:
    """The content hash of the bytes decoding reads (faceproc.decode.decode_file feeds it); None when
    nothing was read (a hidden file, an unreadable one)."""

    def __init__(self):
        self._h = hashlib.blake2b(digest_size=16)
        self.fed = False

    def update(self, data: bytes) -> None:
        self._h.update(data)
        self.fed = True

    def value(self) -> str | None:
        return self._h.hexdigest() if self.fed else None


def hash_file(path: str) -> str | None:
    """The content hash of a file as it is now (for --verify); None when it cannot be read."""
    from .storage import is_uri, read_bytes

    d = ContentDigest()
    try:
        if is_uri(path):
            d.update(read_bytes(path))
        else:
            with open(path, "rb") as fh:
                d.update(b"")  # an empty file has a hash too
                while chunk := fh.read(1 << 20):
                    d.update(chunk)
    except OSError:
        return None
    return d.value()


def stat_key(entry) -> list:
    """What a rerun compares: [size, mtime_ns, inode] of a discovered file (None where the store has none)."""
    return [entry.size, entry.mtime_ns, entry.ino]


def shard_records(files, images) -> dict[str, list]:
    """The per-file records of a shard's marker: each file's stat and the content hash its row holds."""
    from .schema import source_path

    cols = images.select(["image_path", "image_path_bytes", "content_hash"]).to_pydict()
    by_path = {source_path(p, b): h for p, b, h in zip(cols["image_path"], cols["image_path_bytes"],
                                                       cols["content_hash"])}
    return {"stats": [stat_key(f) for f in files], "hashes": [by_path.get(f.path) for f in files]}


def records(meta: dict) -> dict[str, tuple]:
    """path -> (stat, hash) as a marker recorded them ((None, None) for a marker without records)."""
    paths = meta.get("paths") or []
    stats = meta.get("stats") or [None] * len(paths)
    hashes = meta.get("hashes") or [None] * len(paths)
    if len(stats) != len(paths) or len(hashes) != len(paths):  # not ours to trust: every file counts as changed
        stats, hashes = [None] * len(paths), [None] * len(paths)
    return {p: (s, h) for p, s, h in zip(paths, stats, hashes)}


def pack(paths: list[str], recs: dict[str, tuple]) -> dict[str, list]:
    """The `stats` and `hashes` lists of a marker for `paths`, from records() of the shards they come from."""
    return {"stats": [recs[p][0] for p in paths], "hashes": [recs[p][1] for p in paths]}


@dataclass
class Changes:
    changed: dict[str, list[str]] = field(default_factory=dict)  # shard id -> its files changed since done
    missing: dict[str, list[str]] = field(default_factory=dict)  # shard id -> its files no longer among the inputs
    renamed: dict[str, str] = field(default_factory=dict)  # a missing path -> the same file's new path
    kept: int = 0  # files done and unchanged

    def changed_paths(self) -> list[str]:
        return sorted(p for ps in self.changed.values() for p in ps)

    def missing_paths(self) -> list[str]:
        return sorted(p for ps in self.missing.values() for p in ps)


def compare(done: dict[str, dict], files: list, verify: bool = False, threads: int = 8) -> Changes:
    """Each committed shard's files against the discovered `files`: changed (another stat, or with `verify`
    other bytes), missing (deleted, renamed, left out), and for missing ones the new path of the same file
    (same inode, size and mtime: a rename or a moved folder)."""
    current = {f.path: f for f in files}
    ch = Changes()
    to_hash: list[tuple[str, str, str | None]] = []  # (shard, path, recorded hash)
    for sid, meta in done.items():
        for path, (stat, digest) in records(meta).items():
            entry = current.get(path)
            if entry is None:
                ch.missing.setdefault(sid, []).append(path)
            elif stat is None or list(stat) != stat_key(entry) or entry.size is None:
                ch.changed.setdefault(sid, []).append(path)
            elif verify and not entry.hidden:
                to_hash.append((sid, path, digest))
            else:
                ch.kept += 1
    if to_hash:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max(1, threads)) as pool:  # I/O bound; hashlib lets go of the GIL
            now = list(pool.map(hash_file, (p for _, p, _ in to_hash)))
        for (sid, path, digest), h in zip(to_hash, now):
            if h != digest:
                ch.changed.setdefault(sid, []).append(path)
            else:
                ch.kept += 1
    if ch.missing:
        done_paths = {p for m in done.values() for p in m.get("paths") or []}
        new = {tuple(stat_key(f)): f.path for f in files if f.path not in done_paths and f.ino is not None}
        for sid, paths in ch.missing.items():
            recs = records(done[sid])
            for p in paths:
                stat = recs[p][0]
                if stat is not None and stat[2] is not None and tuple(stat) in new:
                    ch.renamed[p] = new[tuple(stat)]
    return ch
