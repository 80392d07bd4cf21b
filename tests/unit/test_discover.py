import os

from faceproc.discover import plan_shards


def touch(p, data=b"x"):
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)


def test_order_hidden_ignored_and_chunks(tmp_path):
    for name in ["b/2.jpg", "b/1.PNG", "a/z.webp", "a/.hidden.jpg", ".secret/x.jpg", "a/notes.txt", "c/d/e/f.tif"]:
        touch(tmp_path / name)
    for i in range(5):
        touch(tmp_path / "big" / f"{i:02d}.jpg")
    disc = plan_shards([str(tmp_path)], shard_size=2)
    paths = [f.path for s in disc.shards for f in s.files]
    rel = [os.path.relpath(p, tmp_path) for p in paths]
    assert rel == [".secret/x.jpg", "a/.hidden.jpg", "a/z.webp", "b/1.PNG", "b/2.jpg",
                   "big/00.jpg", "big/01.jpg", "big/02.jpg", "big/03.jpg", "big/04.jpg", "c/d/e/f.tif"]
    hidden = {os.path.relpath(f.path, tmp_path) for s in disc.shards for f in s.files if f.hidden}
    assert hidden == {".secret/x.jpg", "a/.hidden.jpg"}
    assert disc.n_ignored == 1 and disc.n_files == 11
    big = [s for s in disc.shards if s.directory.endswith("big")]
    assert [len(s.files) for s in big] == [2, 2, 1]
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
