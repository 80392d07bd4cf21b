"""Compaction's rules at their edges, and the settings diff a refusal shows (survivors of the mutation runs,
docs/mutation.md): which shards are small, how they are grouped, that rows keep their order, on a local
folder and on S3, what the merged shard's marker records."""

import pyarrow as pa
import pytest

import faceproc.resume as resume
import faceproc.runstate as R
from faceproc.discover import FileEntry, Shard, shard_id
from faceproc.pipeline import ShardResult
from faceproc.schema import FACES, IMAGES
from faceproc.storage import Store, read_table


def commit(store, paths, faces_per_photo=2):
    """A committed shard of these photos, each with `faces_per_photo` faces written in reverse face order."""
    files = [FileEntry(p) for p in paths]
    images = [{"image_path": p, "status": "ok", "n_faces": faces_per_photo, "shard": "x", "run_id": "r"} for p in paths]
    faces = [{"image_path": p, "face_index": i, "age": float(i), "run_id": "r"}
             for p in reversed(paths) for i in reversed(range(faces_per_photo))]
    res = ShardResult(pa.Table.from_pylist(faces, schema=FACES), pa.Table.from_pylist(images, schema=IMAGES),
                      {"ok": len(paths)}, 0.5)
    sid = shard_id(paths)
    return R.commit_shard(store, Shard(sid, "/a", files), res)


def sizes(done):
    return sorted(len(m["paths"]) for m in done.values())


def test_only_shards_under_the_small_size_are_merged(tmp_path):
    store = Store(tmp_path / "out")
    done = {m["shard"]: m for m in (commit(store, [f"/a/{k}{i}.jpg" for i in range(n)])
                                   for k, n in zip("abcd", (3, 3, 4, 4)))}
    after = R.compact_shards(store, done, small=4, target=100)
    assert sizes(after) == [4, 4, 6]  # the two 3-file shards merged; exactly `small` is not small
    merged = [m for m in after.values() if m.get("replaces")][0]
    assert sorted(merged["replaces"]) == sorted(m["shard"] for m in done.values() if len(m["paths"]) == 3)
    assert merged["counts"] == {"ok": 6} and merged["faces"] == 12 and merged["seconds"] == 1.0
    assert merged["shard"] == shard_id(sorted(merged["paths"])) and merged["files"] == 6 and merged["dir"] == "/a"
    assert set(R.committed_shards(store)) == set(after)


def test_groups_fill_up_to_the_target_exactly_and_a_lone_shard_stays(tmp_path):
    store = Store(tmp_path / "out")
    done = {m["shard"]: m for m in (commit(store, [f"/a/{k}{i}.jpg" for i in range(2)], 1) for k in "abcde")}
    after = R.compact_shards(store, done, small=64, target=4)
    assert sizes(after) == [2, 4, 4]  # a+b (2+2 = the target), c+d, e alone (a group of one is no merge)
    done = {m["shard"]: m for m in (commit(store, [f"/b/{k}{i}.jpg" for i in range(2)], 1) for k in "ab")}
    assert sizes(R.compact_shards(store, done, small=64, target=4)) == [4]  # a group of exactly two merges
    done = {m["shard"]: m for m in (commit(store, [f"/c/{k}{i}.jpg" for i in range(3)], 1) for k in "ab")}
    assert sizes(R.compact_shards(store, done, small=64, target=5)) == [3, 3]  # 3 + 3 > 5: apart


@pytest.mark.parametrize("where", ["local", "s3"])
def test_merged_rows_are_sorted_by_photo_then_face(tmp_path, where, request):
    if where == "s3":
        request.getfixturevalue("s3_server")
        store = Store(f"s3://faceproc/runs/compact-{tmp_path.name}")
    else:
        store = Store(tmp_path / "out")
    done = {m["shard"]: m for m in (commit(store, [f"/a/{k}{i}.jpg" for i in range(2)], 3) for k in "ba")}
    after = R.compact_shards(store, done, small=64, target=256)
    assert len(after) == 1
    faces = read_table(store, "faces").to_pandas()
    assert list(zip(faces["image_path"], faces["face_index"])) == [
        (f"/a/{k}{i}.jpg", j) for k in "ab" for i in range(2) for j in range(3)]
    assert read_table(store, "images").column("image_path").to_pylist() == [f"/a/{k}{i}.jpg" for k in "ab" for i in range(2)]


def test_settings_diff_names_every_changed_key_at_any_depth():
    old = {"detector": {"threshold": 0.5, "scrfd": {"sizes": [640]}}, "model": "a", "gone": 1}
    new = {"detector": {"threshold": 0.7, "scrfd": {"sizes": [640]}}, "model": {"variant": "b"}, "added": 2}
    assert resume._diff(old, new) == ["added: None -> 2", "detector.threshold: 0.5 -> 0.7", "gone: 1 -> None",
                                 "model: 'a' -> {'variant': 'b'}"]
    assert resume._diff(new, new) == []


def test_merged_marker_records_sizes_dir_and_seconds_and_order_by_first_path(tmp_path):
    """The merged marker is checked like any other (its tables' sizes: a truncated one is redone), names the
    folder its shards share, sums their seconds (0 for markers without), and shards are grouped in path order
    whatever the order of `done`."""
    store = Store(tmp_path / "out")
    ms = [commit(store, [f"/a/{k}/{i}.jpg" for i in range(2)], 1) for k in "cab"]
    for m, k in zip(ms, "cab"):
        m["dir"] = f"/a/{k}"
    done = {m["shard"]: m for m in ms}  # c, a, b: not in path order
    after = R.compact_shards(store, done, small=64, target=4)
    merged = [m for m in after.values() if m.get("replaces")][0]
    assert sorted(merged["replaces"]) == sorted(m["shard"] for m in ms[1:])  # a + b, c alone
    assert merged["dir"] == "/a/" and merged["seconds"] == 1.0
    assert merged["sizes"] == {n: store.size(f"{n}/{merged['shard']}.parquet") for n in ("faces", "images")}
    done = {m["shard"]: m for m in (commit(store, [f"/b/{k}{i}.jpg" for i in range(2)], 1) for k in "ab")}
    for m in done.values():
        m.pop("seconds")
        m["dir"] = None
    merged = list(R.compact_shards(store, done, small=64, target=4).values())[0]
    assert (merged["seconds"], merged["dir"]) == (0, "")


def test_a_marker_without_paths_does_not_stop_compaction(tmp_path):
    store = Store(tmp_path / "out")
    done = {m["shard"]: m for m in (commit(store, [f"/a/{k}{i}.jpg" for i in range(2)], 1) for k in "ab")}
    empty = commit(store, [], 1)  # no code makes one; a marker that lists no photo must still not break it
    done[empty["shard"]] = empty
    assert sizes(R.compact_shards(store, done, small=64, target=8)) == [4]
