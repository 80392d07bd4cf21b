"""Where inputs and outputs live: a local folder or an object store (s3://, gs://), one small interface, and
the atomic file writes every local output goes through (a temp name in the same folder, fsync, rename).

The output's commit protocol (faceproc/runstate.py) needs from a store: whole-object writes that appear
at once (a local temp file renamed; an S3 PUT), a move, a listing, sizes, deletes, and an exclusive create
for the lock (O_EXCL locally; on S3 a conditional PUT, If-None-Match: *, faceproc/objectstore.py).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import uuid
from pathlib import Path
from typing import Callable

from .objectstore import conditional_put, filesystem, is_uri

def write_file_atomic(path: str | os.PathLike, write: Callable[[Path], None]) -> None:
    """`write(tmp)` to a temp name in the same folder, fsync, then rename: a reader never sees half a file, and a
    full disk leaves no temp file behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_atomic(table, path: str | os.PathLike) -> None:
    import pyarrow.parquet as pq

    write_file_atomic(path, lambda tmp: pq.write_table(table, tmp, compression="zstd"))


def write_text_atomic(text: str, path: str | os.PathLike) -> None:
    write_file_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def join(base: str, *parts: str) -> str:
    """Join a local path or a URI with relative parts."""
    if is_uri(base):
        return "/".join([base.rstrip("/")] + [p.strip("/") for p in parts if p])
    return os.path.join(base, *parts)


def read_bytes(path: str) -> bytes:
    """A whole file, local or remote (photos for decoding; raises OSError like open())."""
    if not is_uri(path):
        with open(path, "rb") as fh:
            return fh.read()
    fs_, p = filesystem(path)
    try:
        with fs_.open_input_stream(p) as fh:
            return fh.read()
    except FileNotFoundError:
        raise
    except OSError as e:
        raise OSError(f"cannot read {path}: {e}") from None


def file_size(path: str) -> int | None:
    """Size of a file, or None when there is none (a folder counts as none)."""
    if not is_uri(path):
        try:
            st = os.stat(path)
        except OSError:
            return None
        import stat as st_mod

        return st.st_size if st_mod.S_ISREG(st.st_mode) else None
    from pyarrow import fs

    fs_, p = filesystem(path)
    info = fs_.get_file_info(p)
    return info.size if info.type == fs.FileType.File else None


class Store:
    """An output folder: a local directory or an object-store prefix. Paths given to methods are relative
    ("faces/abc.parquet"); `where(rel)` is what messages and readers use."""

    def __init__(self, location: str | os.PathLike):
        location = str(location)
        self.remote = is_uri(location)
        if self.remote:
            self.uri = location.rstrip("/")
            self.fs, self.root = filesystem(self.uri)
        else:
            self.uri = str(Path(location).absolute())
            self.fs, self.root = None, self.uri

    def __str__(self) -> str:
        return self.uri

    def __fspath__(self) -> str:  # a local store stands in for its folder
        if self.remote:
            raise TypeError(f"{self.uri} is not a local folder")
        return self.uri

    # -- paths
    def where(self, rel: str = "") -> str:
        return join(self.uri, rel) if rel else self.uri

    def _p(self, rel: str) -> str:
        return f"{self.root}/{rel}" if rel else self.root

    @property
    def local_path(self) -> Path | None:
        return None if self.remote else Path(self.uri)

    # -- reads
    def size(self, rel: str) -> int | None:
        if not self.remote:
            return file_size(self._p(rel))
        from pyarrow import fs

        info = self.fs.get_file_info(self._p(rel))
        return info.size if info.type == fs.FileType.File else None

    def exists(self, rel: str) -> bool:
        return self.size(rel) is not None

    def read_text(self, rel: str) -> str:
        if not self.remote:
            return Path(self._p(rel)).read_text(encoding="utf-8")
        with self.fs.open_input_stream(self._p(rel)) as fh:
            return fh.read().decode("utf-8")

    def list(self, rel_dir: str, suffix: str = "") -> list[str]:
        """Names (not paths) of the files directly in a folder, sorted; [] when there is none."""
        if not self.remote:
            d = Path(self._p(rel_dir))
            return sorted(p.name for p in d.iterdir() if p.is_file() and p.name.endswith(suffix)) if d.is_dir() else []
        from pyarrow import fs

        sel = fs.FileSelector(self._p(rel_dir), allow_not_found=True, recursive=False)
        return sorted(i.base_name for i in self.fs.get_file_info(sel)
                      if i.type == fs.FileType.File and i.base_name.endswith(suffix))

    # -- writes (each appears whole or not at all)
    def write_bytes(self, rel: str, data: bytes) -> None:
        if not self.remote:
            write_file_atomic(self._p(rel), lambda tmp: tmp.write_bytes(data))
            return
        with self.fs.open_output_stream(self._p(rel)) as fh:  # one PUT (or a multipart upload): atomic
            fh.write(data)

    def write_text(self, rel: str, text: str) -> None:
        self.write_bytes(rel, text.encode("utf-8"))

    def write_table(self, rel: str, table) -> None:
        import pyarrow.parquet as pq

        if not self.remote:
            write_atomic(table, self._p(rel))
            return
        buf = io.BytesIO()
        pq.write_table(table, buf, compression="zstd")
        self.write_bytes(rel, buf.getvalue())

    def read_table(self, rel: str, schema):
        """One Parquet file read with the given schema."""
        import pyarrow.parquet as pq

        return pq.read_table(self._p(rel), schema=schema, filesystem=self.fs)

    def move(self, src: str, dst: str) -> None:
        """Atomic rename locally; on object stores a server-side copy then a delete of the source."""
        if not self.remote:
            Path(self._p(dst)).parent.mkdir(parents=True, exist_ok=True)
            os.replace(self._p(src), self._p(dst))
            return
        self.fs.copy_file(self._p(src), self._p(dst))
        self.fs.delete_file(self._p(src))

    def delete(self, rel: str) -> None:
        if not self.remote:
            Path(self._p(rel)).unlink(missing_ok=True)
            return
        try:
            self.fs.delete_file(self._p(rel))
        except FileNotFoundError:
            pass

    def delete_tree(self, rel: str) -> None:
        if not self.remote:
            import shutil

            shutil.rmtree(self._p(rel), ignore_errors=True)
            return
        try:  # the objects and the empty "folder" markers pyarrow leaves behind
            self.fs.delete_dir(self._p(rel))
        except FileNotFoundError:
            pass

    def create_exclusive(self, rel: str, text: str) -> bool:
        """Create a file only if none exists (the lock): False when one does."""
        if not self.remote:
            path = Path(self._p(rel))
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)  # as the umask says, like every file
            except FileExistsError:
                return False
            with os.fdopen(fd, "w") as fh:
                fh.write(text)
            return True
        return conditional_put(self.uri, rel, text)

    def check_writable(self) -> None:
        probe = f".write-test-{uuid.uuid4().hex[:6]}"
        if not self.remote:
            Path(self.uri).mkdir(parents=True, exist_ok=True)
        self.write_text(probe, "ok")
        self.delete(probe)

    def read_json(self, rel: str, default=None):
        try:
            return json.loads(self.read_text(rel))
        except FileNotFoundError:
            return default


def read_table(out, name: str):
    """All shards of one output table (an empty table with the schema when there are none); `out` is a folder,
    an object-store URI or a Store."""
    import pyarrow as pa

    from .schema import TABLES

    store = out if isinstance(out, Store) else Store(out)
    names = [n for n in store.list(name, ".parquet") if not n.startswith(".")]
    if not names:
        return TABLES[name].empty_table()
    return pa.concat_tables([store.read_table(f"{name}/{n}", TABLES[name]) for n in names])
