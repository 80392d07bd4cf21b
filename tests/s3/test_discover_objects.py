"""Discovery on an object store (survivors of the first mutation run, docs/mutation.md): hidden keys,
ignored names, the run's own output prefix left out (and only it), sizes from the listing, one object."""

from faceproc.discover import discover
from faceproc.storage import read_bytes
from tests.s3.test_object_storage import s3_client


def put(keys):
    c = s3_client()
    for k in keys:
        c.put_object(Bucket="faceproc", Key=k, Body=b"x" * len(k))


def test_object_store_discovery(s3_server):
    put(["arch/b/3.JPG", "arch/a/1.jpg", "arch/a/.hidden.jpg", "arch/.dot/2.png", "arch/a/notes.txt",
         "arch/out/x.jpg", "arch/outside.jpg", "arch-other/4.jpg"])
    disc = discover(["s3://faceproc/arch"], exclude=["s3://faceproc/arch/out"])
    got = [(f.path[len("s3://faceproc/arch/"):], f.hidden, f.size) for f in disc.files]
    assert got == [("outside.jpg", False, len("arch/outside.jpg")), (".dot/2.png", True, 15),
                   ("a/.hidden.jpg", True, 18), ("a/1.jpg", False, 12), ("b/3.JPG", False, 12)]
    assert disc.n_files == 5 and disc.n_ignored == 1
    one = discover(["s3://faceproc/arch/a/1.jpg"])
    assert [(f.path, f.hidden) for f in one.files] == [("s3://faceproc/arch/a/1.jpg", False)]
    assert len(discover(["s3://faceproc/arch"]).files) == 6  # nothing excluded without an exclude
    assert read_bytes("s3://faceproc/arch/a/1.jpg") == b"x" * 12


def test_object_listing_details(s3_server):
    """The output prefix given with a trailing slash (and a name ending in X), ignored names counted per
    extension, the listing's mtime kept (change detection), a hidden object given as the input itself, and
    an input prefix ending in a dot."""
    put(["det/in/a.jpg", "det/in/n1.txt", "det/in/n2.txt", "det/in/outX/x.jpg", "det/.h.jpg", "det/dot./b.jpg"])
    disc = discover(["s3://faceproc/det/in"], exclude=["s3://faceproc/det/in/outX/"])
    assert [f.path for f in disc.files] == ["s3://faceproc/det/in/a.jpg"] and disc.skipped_ext == {".txt": 2}
    assert isinstance(disc.files[0].mtime_ns, int) and disc.files[0].mtime_ns > 0 and not disc.unreadable
    both = discover(["s3://faceproc/det/in", "s3://faceproc/det/in/outX"])  # overlapping prefixes: each object once
    assert [f.path for f in both.files] == ["s3://faceproc/det/in/a.jpg", "s3://faceproc/det/in/outX/x.jpg"]
    assert [f.hidden for f in discover(["s3://faceproc/det/.h.jpg"]).files] == [True]
    assert [f.hidden for f in discover(["s3://faceproc/det/dot."]).files] == [False]
