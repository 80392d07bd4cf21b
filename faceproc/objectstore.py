"""Object stores (s3://, gs://) through pyarrow's filesystems, and S3's conditional PUT for the output lock.

Credentials come the usual way for each store (for S3: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, ~/.aws, an
instance or pod role); an S3-compatible store (MinIO, Ceph, moto) is reached through AWS_ENDPOINT_URL_S3 or
AWS_ENDPOINT_URL, the AWS SDKs' own variables, which pyarrow does not read by itself.
"""

from __future__ import annotations

import os
from functools import lru_cache
from urllib.parse import urlparse

REMOTE_SCHEMES = ("s3", "gs", "gcs")


def is_uri(path) -> bool:
    """An object-store location (s3://bucket/key ...); everything else is a local path."""
    return isinstance(path, str) and urlparse(path).scheme in REMOTE_SCHEMES


def _endpoint() -> str | None:
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None


@lru_cache(maxsize=8)
def _s3(endpoint: str | None, region: str | None):
    from pyarrow import fs

    # allow_delayed_open: an object smaller than one part goes up in a single PUT (fewer requests, and the
    # S3-compatible stores that mishandle small multipart uploads accept it).
    kwargs = {"allow_delayed_open": True}
    if endpoint:
        u = urlparse(endpoint if "://" in endpoint else f"https://{endpoint}")
        kwargs.update(endpoint_override=u.netloc, scheme=u.scheme or "https")
    if region:
        kwargs["region"] = region
    return fs.S3FileSystem(**kwargs)


def filesystem(uri: str):
    """(pyarrow filesystem, path inside it) for an object-store URI."""
    u = urlparse(uri)
    path = (u.netloc + u.path).rstrip("/")
    if u.scheme == "s3":
        return _s3(_endpoint(), os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")), path
    from pyarrow import fs

    return fs.FileSystem.from_uri(uri)[0], path



def list_objects(uri: str) -> list[tuple[str, int, int | None]]:
    """(uri, size, mtime in ns) of every object under a prefix, sorted: discovery on object stores (the
    mtime: change detection on reruns, faceproc/changes.py)."""
    from pyarrow import fs

    fs_, p = filesystem(uri)
    info = fs_.get_file_info(p)
    if info.type == fs.FileType.NotFound:
        raise FileNotFoundError(f"input {uri} does not exist (no object under this prefix)")
    scheme = urlparse(uri).scheme
    if info.type == fs.FileType.File:
        return [(uri, info.size, info.mtime_ns)]
    out = []
    for i in fs_.get_file_info(fs.FileSelector(p, recursive=True)):
        if i.type == fs.FileType.File:
            out.append((f"{scheme}://{i.path}", i.size, i.mtime_ns))
    return sorted(out)


def conditional_put(uri: str, rel: str, text: str) -> bool:
    """S3's If-None-Match: * (AWS since 2024, MinIO, moto): exactly one of two runs creates the lock."""
    u = urlparse(uri)
    if u.scheme != "s3":
        raise NotImplementedError(f"an exclusive lock on {u.scheme}:// is not implemented; use s3:// or a local output")
    try:
        import boto3
        from botocore.exceptions import ClientError
    except ImportError:
        raise RuntimeError("an s3:// output needs boto3 for its lock (a conditional PUT): pip install boto3") from None
    endpoint = _endpoint()
    client = boto3.client("s3", endpoint_url=endpoint) if endpoint else boto3.client("s3")
    key = "/".join(p for p in (u.path.strip("/"), rel) if p)
    try:
        client.put_object(Bucket=u.netloc, Key=key, Body=text.encode("utf-8"), IfNoneMatch="*")
        return True
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") in ("PreconditionFailed", "ConditionalRequestConflict", "412"):
            return False
        raise
