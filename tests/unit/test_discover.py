import os

from faceproc.discover import FileEntry, cut_shards, plan_shards


def touch(p, data=b"x"):
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)


def test_order_hidden_ignored_and_chunks(tmp_path):
    for name in ["b/2.jpg", "b/1.PNG", "a/z.webp", "a/.hidden.jpg", ".secret/x.jpg", "a/notes.txt", "c/d/e/f.tif"]:
        touch(tmp_path / name)
    for i in range(5):
        touch(tmp_path / "big" / f"{i:02d}.jpg")
    disc = plan_shards([str(tmp_path)], shard_size=2)  # shard_size below MIN_SHARD wins
    paths = [f.path for s in disc.shards for f in s.files]
    rel = [os.path.relpath(p, tmp_path) for p in paths]
    assert rel == [".secret/x.jpg", "a/.hidden.jpg", "a/z.webp", "b/1.PNG", "b/2.jpg",
                   "big/00.jpg", "big/01.jpg", "big/02.jpg", "big/03.jpg", "big/04.jpg", "c/d/e/f.tif"]
    hidden = {os.path.relpath(f.path, tmp_path) for s in disc.shards for f in s.files if f.hidden}
    assert hidden == {".secret/x.jpg", "a/.hidden.jpg"}
    assert disc.n_ignored == 1 and disc.n_files == 11
    assert [len(s.files) for s in disc.shards] == [2, 2, 2, 2, 2, 1]  # at most shard_size, across folders
    assert len({s.shard_id for s in disc.shards}) == len(disc.shards)
    # Deterministic: same plan, same ids and digests.
    again = plan_shards([str(tmp_path)], shard_size=2)
    assert [(s.shard_id, s.digest) for s in again.shards] == [(s.shard_id, s.digest) for s in disc.shards]


def test_symlink_cycle_terminates(tmp_path):
    touch(tmp_path / "a" / "1.jpg")
    os.symlink(tmp_path, tmp_path / "a" / "loop")
    disc = plan_shards([str(tmp_path)])
    assert [os.path.basename(f.path) for s in disc.shards for f in s.files] == ["1.jpg"]
    assert disc.cycles


def test_single_file_input_and_overlap(tmp_path):
    touch(tmp_path / "x.jpg")
    disc = plan_shards([str(tmp_path / "x.jpg"), str(tmp_path)])
    assert disc.n_files == 1


def test_missing_input_raises(tmp_path):
    import pytest

    with pytest.raises(FileNotFoundError, match="nope"):
        plan_shards([str(tmp_path / "nope")])


def test_one_big_folder_spreads_over_every_worker_and_small_folders_pack():
    one_folder = [FileEntry(f"/photos/dump/{i:05d}.jpg") for i in range(150)]
    shards = cut_shards(one_folder, shard_size=256, workers=2)
    sizes = [len(s.files) for s in shards]
    # every worker gets a big first shard; the shards shrink towards the end so workers finish together
    assert sizes[0] == 38 and sizes == sorted(sizes, reverse=True) and sizes[-1] <= 5 and len(shards) <= 12
    assert all(s.directory == "/photos/dump" for s in shards)
    assert [f.path for s in shards for f in s.files] == [f.path for f in one_folder]
    many = [FileEntry(f"/photos/{d:04d}/{i}.jpg") for d in range(1000) for i in range(3)]  # 1,000 folders of 3
    shards = cut_shards(many, shard_size=256, workers=1)
    assert len(shards) <= 20 and max(len(s.files) for s in shards) <= 256  # bounded file count, not 1,000 shards
    assert sorted(f.path for s in shards for f in s.files) == sorted(f.path for f in many)
    # a big run on a big cluster: the tail stops at 1/16 of a worker's share, not at hundreds of 4-file shards
    big = [FileEntry(f"/p/{i:07d}.jpg") for i in range(100_000)]
    shards = cut_shards(big, shard_size=256, workers=100)
    assert min(len(s.files) for s in shards[:-1]) >= 62 and len(shards) < 700


def test_new_files_make_only_new_work(tmp_path):
    for i in range(40):
        touch(tmp_path / "a" / f"{i:03d}.jpg")
    first = plan_shards([str(tmp_path)], shard_size=16, workers=2)
    done = {f.path for s in first.shards for f in s.files}
    touch(tmp_path / "a" / "000b.jpg")  # sorts early: under the old plan it shifted every later chunk
    second = plan_shards([str(tmp_path)], shard_size=16, workers=4, done=done)  # another worker count too
    assert [os.path.basename(f.path) for s in second.shards for f in s.files] == ["000b.jpg"]
    assert second.n_files == 41


# ---------------------------------------------------------------------------- one row per file, safe walk
from faceproc.discover import discover  # noqa: E402


def rel(disc, root):
    return [os.path.relpath(f.path, root) for f in disc.files]


def three_photos(root):
    for n in ("1.jpg", "2.jpg", "3.jpg"):
        touch(root / "photos" / n)
    return root / "photos"


def test_a_symlinked_folder_given_as_a_second_input_gives_one_row_per_file(tmp_path):
    photos = three_photos(tmp_path)
    os.symlink(photos, tmp_path / "alias")
    for inputs in ([photos, tmp_path / "alias"], [tmp_path / "alias", photos]):  # whichever comes first
        disc = discover([str(p) for p in inputs])
        assert rel(disc, tmp_path) == ["photos/1.jpg", "photos/2.jpg", "photos/3.jpg"]  # the real path, once
    assert disc.cycles  # the alias folder was reached and not walked again


def test_symlinks_and_hard_links_inside_the_tree_give_one_row_under_the_real_path(tmp_path):
    photos = three_photos(tmp_path)
    os.symlink(photos, tmp_path / "a-link")  # sorts before "photos": walked after it all the same
    os.symlink(photos / "1.jpg", tmp_path / "0-best.jpg")
    os.link(photos / "2.jpg", tmp_path / "hard.jpg")
    disc = discover([str(tmp_path)])
    assert rel(disc, tmp_path) == ["hard.jpg", "photos/1.jpg", "photos/3.jpg"]
    assert len(disc.duplicates) == 2 and disc.skipped()["duplicate_paths"]["count"] == 2
    f = disc.files[1]
    st = os.stat(f.path)  # the entry carries the walk's own stat
    assert (f.size, f.mtime_ns, f.dev, f.ino) == (st.st_size, st.st_mtime_ns, st.st_dev, st.st_ino)


def test_symlinks_leading_outside_the_inputs_are_counted_not_followed(tmp_path):
    three_photos(tmp_path / "in")
    touch(tmp_path / "elsewhere" / "private.jpg")
    os.symlink(tmp_path / "elsewhere", tmp_path / "in" / "photos" / "other")
    os.symlink(tmp_path / "elsewhere" / "private.jpg", tmp_path / "in" / "p.jpg")
    os.symlink("/etc", tmp_path / "in" / "etc")
    disc = discover([str(tmp_path / "in")])
    assert rel(disc, tmp_path / "in") == ["photos/1.jpg", "photos/2.jpg", "photos/3.jpg"]
    assert sorted(os.path.basename(p) for p in disc.external) == ["etc", "other", "p.jpg"]
    assert disc.skipped()["external_symlinks"]["count"] == 3
    followed = discover([str(tmp_path / "in")], follow_external_symlinks=True)
    # followed: the photo outside is a row, once (two links lead to it; the first in walk order is kept)
    got = [p for p in rel(followed, tmp_path / "in") if not p.startswith("etc/")]  # /etc's own images, if any
    assert got == ["p.jpg", "photos/1.jpg", "photos/2.jpg", "photos/3.jpg"]
    assert not followed.external and [os.path.basename(p) for p, _ in followed.duplicates] == ["private.jpg"]
    # a link to another input is inside the inputs: followed, and its files counted once
    both = discover([str(tmp_path / "in"), str(tmp_path / "elsewhere")])
    assert rel(both, tmp_path).count("elsewhere/private.jpg") == 1 and not [p for p in both.external if "other" in p]


def test_eleven_hundred_nested_folders(tmp_path):
    d = tmp_path
    for _ in range(1100):  # os.makedirs itself recurses once per level
        d = d / "d"
        d.mkdir()
    touch(d / "deep.jpg")
    touch(tmp_path / "top.jpg")
    try:
        disc = discover([str(tmp_path)])
        assert [os.path.basename(f.path) for f in disc.files] == ["top.jpg", "deep.jpg"]
    finally:  # bottom up, without recursion (shutil.rmtree, as pytest's cleanup, recurses per level)
        os.remove(d / "deep.jpg")
        while d != tmp_path:
            d.rmdir()
            d = d.parent


def test_other_files_are_counted_by_extension_videos_named(tmp_path):
    three_photos(tmp_path)
    for n in ("a.MOV", "b.mov", "c.mp4", "notes.txt", "README", "x.heic", "y.CR2", "z.avif"):
        touch(tmp_path / "mixed" / n)
    disc = discover([str(tmp_path)])
    assert {os.path.basename(f.path) for f in disc.files} >= {"x.heic", "y.CR2", "z.avif"}
    sk = disc.skipped()
    assert sk["videos"] == {".mov": 2, ".mp4": 1} and sk["other_files"] == {"(no extension)": 1, ".txt": 1}
    assert disc.n_ignored == 5


# Run by a user who cannot read this Python's site-packages: discovery needs only the standard library.
WALK_AS_NOBODY = """
import json, sys
from faceproc.discover import discover
d = discover([sys.argv[1]])
print(json.dumps({"files": [f.path for f in d.files], "unreadable": d.unreadable}))
"""


def test_an_unreadable_folder_is_counted_with_the_reason(tmp_path_factory):
    """The suite runs as root, who reads every folder: the walk runs as `nobody` (setpriv) in a child."""
    import json
    import shutil
    import subprocess
    import sys
    import tempfile
    import warnings

    import pytest

    root = tempfile.mkdtemp(prefix="faceproc-perm-")
    try:
        os.chmod(root, 0o755)
        for n in ("open/1.jpg", "locked/2.jpg", "locked/sub/3.jpg"):
            touch(tmp := __import__("pathlib").Path(root) / n)
            tmp.chmod(0o644)
        for d in ("open",):
            os.chmod(os.path.join(root, d), 0o755)
        os.chmod(os.path.join(root, "locked"), 0o000)
        repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        if os.geteuid() == 0:
            if not shutil.which("setpriv"):
                warnings.warn("PERMISSION TEST SKIPPED: running as root and no setpriv to drop to nobody")
                pytest.skip("root without setpriv: cannot walk as a normal user")
            cmd = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", sys.executable, "-c", WALK_AS_NOBODY, root]
        else:
            cmd = [sys.executable, "-c", WALK_AS_NOBODY, root]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": repo})
        if r.returncode != 0 and os.geteuid() == 0 and "faceproc" not in r.stderr:
            warnings.warn(f"PERMISSION TEST SKIPPED: cannot run python as nobody: {r.stderr[-300:]}")
            pytest.skip(f"cannot run python as nobody: {r.stderr[-200:]}")
        assert r.returncode == 0, r.stderr
        out = json.loads(r.stdout)
        assert [os.path.relpath(p, root) for p in out["files"]] == ["open/1.jpg"]
        assert [(os.path.relpath(p, root), why) for p, why in out["unreadable"]] == [
            ("locked", "PermissionError: Permission denied")]
    finally:
        os.chmod(os.path.join(root, "locked"), 0o755)
        shutil.rmtree(root, ignore_errors=True)


def test_what_was_skipped_has_the_shape_the_manifest_and_report_read():
    from faceproc.discover import SAMPLE, Discovery

    d = Discovery(shards=[], skipped_ext={".mp4": 2, ".txt": 1, "": 1}, unreadable=[("/a/locked", "Permission denied")],
                  external=[f"/a/link{i}" for i in range(SAMPLE + 1)], duplicates=[("/a/copy.jpg", "/a/1.jpg")])
    assert d.skipped() == {
        "videos": {".mp4": 2}, "other_files": {"(no extension)": 1, ".txt": 1},
        "unreadable_folders": {"count": 1, "sample": [{"path": "/a/locked", "reason": "Permission denied"}]},
        "external_symlinks": {"count": SAMPLE + 1, "sample": [f"/a/link{i}" for i in range(SAMPLE)]},
        "duplicate_paths": {"count": 1, "sample": [{"path": "/a/copy.jpg", "same_as": "/a/1.jpg"}]}}
    assert d.n_ignored == 4


def test_shards_of_object_store_files_name_their_common_prefix():
    files = [FileEntry(f"s3://b/in/{d}/{i}.jpg") for d in ("x", "y/z") for i in range(2)]
    assert [s.directory for s in cut_shards(files, 10)] == ["s3://b/in"]
    assert [s.directory for s in cut_shards(files[:2], 10)] == [s.directory for s in cut_shards(files[:1], 10)] == [
        "s3://b/in/x"]


def test_cut_defaults_and_the_smallest_shard_size(tmp_path):
    """One worker unless told (equal shards of at most shard_size); a shard_size of 1 (or less) is one file
    per shard; plan_shards passes both on, and follows links outside the inputs only when asked."""
    files = [FileEntry(f"/p/{i:02d}.jpg") for i in range(40)]
    assert [len(s.files) for s in cut_shards(files, 40)] == [40] and len(cut_shards(files, 40, 2)) > 1
    assert [len(s.files) for s in cut_shards(files, 1)] == [len(s.files) for s in cut_shards(files, 0)] == [1] * 40
    for i in range(40):
        touch(tmp_path / "in" / f"{i:02d}.jpg")
    touch(tmp_path / "elsewhere" / "private.jpg")
    os.symlink(tmp_path / "elsewhere" / "private.jpg", tmp_path / "in" / "p.jpg")
    assert [len(s.files) for s in plan_shards([str(tmp_path / "in")], shard_size=1).shards] == [1] * 40
    assert len(plan_shards([str(tmp_path / "in")], 40, workers=2).shards) > 1
    plain = plan_shards([str(tmp_path / "in")], 40)
    assert len(plain.shards) == 1 and len(plain.files) == 40 and len(plain.external) == 1
    assert len(plan_shards([str(tmp_path / "in")], follow_external_symlinks=True).files) == 41


def test_inputs_are_checked_and_normalised(tmp_path, monkeypatch):
    import pytest

    from faceproc.discover import check_inputs

    (tmp_path / "in").mkdir()
    monkeypatch.chdir(tmp_path)
    assert check_inputs(["in", "s3://b/inX/"]) == [str(tmp_path / "in"), "s3://b/inX"]
    with pytest.raises(FileNotFoundError, match="^input not found: no1, no2$"):
        check_inputs(["no1", "in", "no2"])
    assert discover(["in"]).shards == []
