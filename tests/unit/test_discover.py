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
