"""A model file as the plan knows it: where the driver found it, its checksum, and (for workers on other
nodes, issue 22) its bytes, so a worker loads exactly the file the driver checked without the driver's
filesystem. Libraries that insist on a path get a private temp copy, gone once the model is loaded."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import shutil
import tempfile
import weakref
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterator

from .storage import file_sha256


@dataclass(frozen=True)
class ModelFile:
    path: str  # absolute, on the driver's machine
    sha256: str
    data: bytes | None = None  # the file itself, when the plan travels to other nodes

    @classmethod
    def at(cls, path: str | os.PathLike) -> "ModelFile":
        path = Path(path).expanduser().absolute()
        return cls(str(path), file_sha256(path))

    @property
    def name(self) -> str:
        return os.path.basename(self.path)

    def with_bytes(self, aboard: bool = True) -> "ModelFile":
        """The same file with its bytes aboard (read now, checked against the checksum taken at resolve), or
        without them (a worker that has loaded its models)."""
        if not aboard:
            return replace(self, data=None)
        if self.data is not None:
            return self
        data = Path(self.path).read_bytes()
        self.check(data)
        return replace(self, data=data)

    def check(self, data: bytes | None = None) -> None:
        """The file (or `data`, its bytes) is the one the plan hashed, or ValueError says what happened."""
        got = hashlib.sha256(data).hexdigest() if data is not None else file_sha256(self.path)
        if got == self.sha256:
            return
        if self.data is not None:
            raise ValueError(f"the bytes of {self.name} arrived damaged (sha256 differs from the driver's)")
        raise ValueError(f"{self.path} changed after the run was planned (sha256 differs); start the run again")

    def __repr__(self) -> str:  # never a few MB of bytes in a log line
        return f"ModelFile({self.path!r}, sha256={self.sha256[:12]}, bytes={'aboard' if self.data else 'no'})"


def materialise(*files: ModelFile) -> tuple[list[str], Callable[[], None]]:
    """Paths a library can open on this node, in the order given, and what removes them: the driver's files as
    they are (checked against the checksums the plan took: a worker that starts later, or a Ray actor restarted
    hours into a run, must not load weights replaced since), or, when the files carry their bytes, private copies
    in one temp folder (under their own names, so an OpenVINO .xml finds its .bin), checked the same way."""
    if not any(f.data is not None for f in files):
        for f in files:  # weights retrained or shipped over since the plan would be rows under the old label
            f.check()
        return [f.path for f in files], lambda: None
    folder = tempfile.mkdtemp(prefix="faceproc-model-")
    try:
        paths = []
        for f in files:
            data = f.data if f.data is not None else Path(f.path).read_bytes()
            f.check(data)
            p = os.path.join(folder, f.name)
            with open(p, "wb") as fh:
                fh.write(data)
            paths.append(p)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return paths, functools.partial(shutil.rmtree, folder, ignore_errors=True)


@contextlib.contextmanager
def local_paths(*files: ModelFile) -> Iterator[list[str]]:
    """materialise() for a library that reads the files once, while it loads: the copies go when the block ends."""
    paths, remove = materialise(*files)
    try:
        yield paths
    finally:
        remove()


def lasting_paths(owner: object, *files: ModelFile) -> list[str]:
    """materialise() for a library that opens the files again later (SCRFD makes a session per input size): the
    copies go when `owner` is collected or the process ends."""
    paths, remove = materialise(*files)
    weakref.finalize(owner, remove)
    return paths
