"""Change detection per file (issue 19): a rerun redoes exactly the files that changed, its rows equal a
fresh run's, deleted and renamed files are named and kept unless --prune, and a re-cut stays exactly-once
when it is cut short."""

import hashlib
import json
import os

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image

from faceproc.engine import RunConfigMismatch, annotate
from tests.helpers import cfg_for_tests, make_tree, quality_off_config


def rows(out, table):
    """A table's rows, without what differs between two runs of the same files (run, timing, shard plan)."""
    d = pd.read_parquet(out / table).drop(columns=["run_id", "elapsed_ms", "shard"], errors="ignore")
    for c in d.columns:  # categories follow first appearance, which differs with the shard plan
        if isinstance(d[c].dtype, pd.CategoricalDtype):
            d[c] = d[c].astype(str)
    key = ["image_path", "face_index"] if "face_index" in d else ["image_path"]
    return d.sort_values(key).reset_index(drop=True)


def assert_equals_fresh(tmp_path, inputs, out, name="fresh"):
    fresh = tmp_path / name
    annotate(inputs, fresh, cfg_for_tests(), engine="local")
    for t in ("images", "faces"):
        pd.testing.assert_frame_equal(rows(out, t), rows(fresh, t))


def files_run(out):
    return json.loads((out / "manifest.json").read_text())["history"][-1]["files_run"]


def bmp(path, face=True, shade=100):
    """An uncompressed picture: the same size in bytes whatever its pixels (same-size edits)."""
    img = np.full((80, 100, 3), shade, np.uint8)
    if face:
        img[0, 0] = 255
    Image.fromarray(img).save(path, format="BMP")


def test_rows_record_stat_and_content_hash(tmp_path, fakes):
    make_tree(tmp_path / "in")
    (tmp_path / "in" / "d2" / "copy.png").write_bytes((tmp_path / "in" / "d0" / "0.png").read_bytes())
    annotate([str(tmp_path / "in")], tmp_path / "out", cfg_for_tests(), engine="local")
    images = pd.read_parquet(tmp_path / "out" / "images").set_index("image_path")
    for path, r in images.iterrows():
        st = os.stat(path)
        assert (r.bytes, r.mtime_ns, r.inode) == (st.st_size, st.st_mtime_ns, st.st_ino)
        with open(path, "rb") as fh:
            assert r.content_hash == hashlib.blake2b(fh.read(), digest_size=16).hexdigest()
    # the hash finds duplicate photos
    h = {os.path.basename(p): v for p, v in images.content_hash.items()}
    assert h["copy.png"] == h["0.png"] != h["1.png"] and images.content_hash.notna().all()
    marker = json.loads(next((tmp_path / "out" / "_shards").glob("*.json")).read_text())
    assert len(marker["stats"]) == len(marker["hashes"]) == len(marker["paths"])


def test_photo_replaced_by_another_picture_is_redone(tmp_path, fakes):
    """The issue's case: the rerun said "0 files" and kept the old row (old byte count, old faces)."""
    from faceproc.cli import main

    from faceproc.preview import preview_name

    make_tree(tmp_path / "in")
    out = tmp_path / "out"
    args = ["annotate", str(tmp_path / "in"), "-o", str(out), "--engine", "local", "--random-init", "--previews", "8",
            "--config", quality_off_config(tmp_path)]
    assert CliRunner().invoke(main, args).exit_code == 0
    victim = tmp_path / "in" / "d0" / "0.png"  # a face, in a shard with other files
    assert (out / "previews" / preview_name(str(victim))).exists()
    img = np.full((120, 90, 3), 30, np.uint8)  # another picture: no face, another size
    Image.fromarray(img).save(victim)
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    assert "last run: 1 file in" in r.output  # exactly the changed file
    images = pd.read_parquet(out / "images").set_index("image_path")
    assert images.loc[str(victim), "bytes"] == victim.stat().st_size
    assert images.loc[str(victim), "status"] == "no_faces" and images.loc[str(victim), "width"] == 90
    faces = pd.read_parquet(out / "faces")
    assert str(victim) not in set(faces.image_path)  # the old face is superseded, not kept beside the new row
    assert images.index.is_unique and len(images) == 8
    assert not (out / "previews" / preview_name(str(victim))).exists()  # no old boxes drawn on the new picture
    assert_equals_fresh(tmp_path, [str(tmp_path / "in")], out)


def test_same_size_edit_is_redone_and_a_copy_keeping_mtime_needs_verify(tmp_path, fakes):
    d = tmp_path / "in"
    d.mkdir()
    for i in range(6):
        bmp(d / f"{i}.bmp", face=i % 2 == 0)
    out = tmp_path / "out"
    cfg = cfg_for_tests(shard_size=3)
    annotate([str(d)], out, cfg, engine="local")
    size = (d / "1.bmp").stat().st_size
    # an edit in place: the same byte count, a new mtime
    bmp(d / "1.bmp", face=True)
    st = (d / "1.bmp").stat()
    os.utime(d / "1.bmp", ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert (d / "1.bmp").stat().st_size == size
    annotate([str(d)], out, cfg, engine="local")
    assert files_run(out) == 1
    assert_equals_fresh(tmp_path, [str(d)], out, "fresh1")
    # a copy over the old file that keeps size and mtime (cp -p): only the bytes tell
    st = (d / "2.bmp").stat()
    bmp(d / "2.bmp", face=False, shade=140)
    os.utime(d / "2.bmp", ns=(st.st_atime_ns, st.st_mtime_ns))
    annotate([str(d)], out, cfg, engine="local")
    assert files_run(out) == 0  # the stat is unchanged: without --verify the old row stays (documented)
    annotate([str(d)], out, cfg, engine="local", verify=True)
    assert files_run(out) == 1
    assert_equals_fresh(tmp_path, [str(d)], out, "fresh2")
    # another file moved over it (a restore, `mv`), with the same size and mtime: another inode
    st = (d / "3.bmp").stat()
    bmp(tmp_path / "other.bmp", face=True, shade=60)
    os.utime(tmp_path / "other.bmp", ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(tmp_path / "other.bmp", d / "3.bmp")
    annotate([str(d)], out, cfg, engine="local")
    assert files_run(out) == 1
    assert_equals_fresh(tmp_path, [str(d)], out, "fresh3")


def test_compacted_shards_keep_their_files_records(tmp_path, fakes):
    """Small shards merged at the end of a run (runstate.compact_shards) carry each file's record along: the
    rerun redoes nothing, and an edit afterwards redoes that one file."""
    make_tree(tmp_path / "in", n=20)
    out = tmp_path / "out"
    annotate([str(tmp_path / "in")], out, cfg_for_tests(shard_size=2), engine="local")  # 11 small shards
    cfg = cfg_for_tests()
    annotate([str(tmp_path / "in")], out, cfg, engine="local")  # nothing to do; merged at its end
    assert files_run(out) == 0 and len(list((out / "_shards").glob("*.json"))) == 1
    annotate([str(tmp_path / "in")], out, cfg, engine="local")
    assert files_run(out) == 0
    (tmp_path / "in" / "d0" / "broken.jpg").write_bytes(b"still not a photo")
    annotate([str(tmp_path / "in")], out, cfg, engine="local")
    assert files_run(out) == 1
    assert_equals_fresh(tmp_path, [str(tmp_path / "in")], out)


def test_deleted_and_renamed_files_are_named_and_kept_without_prune(tmp_path, fakes):
    from faceproc.cli import main

    make_tree(tmp_path / "in", n=9)
    out = tmp_path / "out"
    args = ["annotate", str(tmp_path / "in"), "-o", str(out), "--engine", "local", "--random-init",
            "--config", quality_off_config(tmp_path)]
    assert CliRunner().invoke(main, args).exit_code == 0
    tables = {p: p.read_bytes() for p in out.rglob("*.parquet")}
    (tmp_path / "in" / "d1" / "1.png").unlink()  # a photo deleted
    (tmp_path / "in" / "d2").rename(tmp_path / "in" / "renamed")  # a folder renamed
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 1, r.output
    msg = r.output.strip().splitlines()[-1]
    assert "4 file(s) that these inputs do not cover" in msg and "Nothing was changed" in msg and "--prune" in msg
    assert str(tmp_path / "in" / "d1" / "1.png") in msg
    assert f"{tmp_path / 'in' / 'd2' / '2.png'} (now {tmp_path / 'in' / 'renamed' / '2.png'})" in msg
    assert {p: p.read_bytes() for p in out.rglob("*.parquet")} == tables  # nothing dropped, nothing rewritten
    r = CliRunner().invoke(main, args + ["--force"])  # --force is about settings: it prunes nothing
    assert r.exit_code == 1 and {p: p.read_bytes() for p in out.rglob("*.parquet")} == tables
    r = CliRunner().invoke(main, args + ["--prune"])
    assert r.exit_code == 0, r.output
    assert files_run(out) == 3  # the renamed folder's files, under their new names
    assert_equals_fresh(tmp_path, [str(tmp_path / "in")], out)


def test_message_names_the_first_twenty_and_counts_the_rest(tmp_path, fakes):
    d = tmp_path / "in"
    d.mkdir()
    for i in range(30):
        bmp(d / f"{i:02d}.bmp")
    annotate([str(d)], tmp_path / "out", cfg_for_tests(), engine="local")
    for i in range(25):
        (d / f"{i:02d}.bmp").unlink()
    with pytest.raises(RunConfigMismatch) as e:
        annotate([str(d)], tmp_path / "out", cfg_for_tests(), engine="local")
    msg = str(e.value)
    assert "25 file(s)" in msg and "and 5 more" in msg and "\n" not in msg
    assert sum(f"{i:02d}.bmp" in msg for i in range(25)) == 20


def test_rerun_after_edits_equals_a_fresh_run(tmp_path, fakes):
    """Replaced, edited in place, deleted, renamed and new files at once: the rerun (with --prune) redoes
    exactly those, and its rows equal a fresh run's over the inputs as they are now, row for row."""
    make_tree(tmp_path / "in", n=12)
    d = tmp_path / "in"
    out = tmp_path / "out"
    cfg = cfg_for_tests(shard_size=3)
    annotate([str(d)], out, cfg, engine="local")
    Image.fromarray(np.full((60, 60, 3), 255, np.uint8)).save(d / "d1" / "1.png")  # replaced
    (d / "d0" / "broken.jpg").write_bytes(b"nope, still")  # edited: another size
    (d / "d2" / "5.png").unlink()  # deleted
    (d / "d0" / "3.png").rename(d / "d0" / "3-renamed.png")  # renamed
    Image.fromarray(np.full((50, 50, 3), 255, np.uint8)).save(d / "d2" / "new.png")  # new
    annotate([str(d)], out, cfg, engine="local", prune=True)
    assert files_run(out) == 4  # replaced, edited, renamed (under its new name), new
    images = pd.read_parquet(out / "images")
    assert images.image_path.is_unique
    assert_equals_fresh(tmp_path, [str(d)], out)


@pytest.mark.parametrize("crash_at", ["_commit", "remove_shard"])
def test_recut_cut_short_keeps_rows_exactly_once(tmp_path, fakes, monkeypatch, crash_at):
    """A rerun stopped in the middle of re-cutting a changed file's shard: after its new shard's files are
    in but before its marker, or after the marker but before the old shard is gone. The next run ends with
    every row once and equal to a fresh run's."""
    import faceproc.runstate as R

    make_tree(tmp_path / "in")
    out = tmp_path / "out"
    cfg = cfg_for_tests(shard_size=100)
    annotate([str(tmp_path / "in")], out, cfg, engine="local")
    Image.fromarray(np.full((70, 70, 3), 255, np.uint8)).save(tmp_path / "in" / "d1" / "1.png")
    real = getattr(R, crash_at)

    def crash(*a, **k):  # the process dies here: nothing after this step happens
        raise RuntimeError("killed")

    monkeypatch.setattr(R, crash_at, crash)
    with pytest.raises(RuntimeError, match="killed"):
        annotate([str(tmp_path / "in")], out, cfg, engine="local")
    monkeypatch.setattr(R, crash_at, real)
    annotate([str(tmp_path / "in")], out, cfg, engine="local")
    assert files_run(out) == 1  # the unchanged files' rows survived the crash: only the changed file is done
    assert not list((out / "_shards").glob("*.open"))
    assert_equals_fresh(tmp_path, [str(tmp_path / "in")], out)
    assert len(list((out / "images").glob("*.parquet"))) == len(list((out / "_shards").glob("*.json")))


def test_s3_input_overwritten_with_the_same_size_is_redone(s3_server, tmp_path, fakes):
    import time

    import boto3

    c = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
    for i in range(4):
        bmp(tmp_path / f"{i}.bmp", face=i % 2 == 0)
        c.upload_file(str(tmp_path / f"{i}.bmp"), "faceproc", f"changes/in/{i}.bmp")
    src, out = "s3://faceproc/changes/in", tmp_path / "out"
    annotate([src], out, cfg_for_tests(), engine="local")
    time.sleep(1.1)  # S3's LastModified has second resolution
    bmp(tmp_path / "1.bmp", face=True)
    c.upload_file(str(tmp_path / "1.bmp"), "faceproc", "changes/in/1.bmp")
    annotate([src], out, cfg_for_tests(), engine="local")
    assert files_run(out) == 1
    images = pd.read_parquet(out / "images").set_index("image_path")
    assert images.loc[f"{src}/1.bmp", "n_faces"] == 1 and images.index.is_unique
    assert_equals_fresh(tmp_path, [src], out)


def test_verify_counts_a_file_readable_again_as_changed(tmp_path):
    """A file that could not be read when it was done (no content hash) and can be read now, with its stat
    unchanged (permissions fixed): --verify does it again; without, it is kept."""
    from faceproc.changes import compare
    from faceproc.discover import discover

    bmp(tmp_path / "a.bmp")
    bmp(tmp_path / "b.bmp", shade=50)
    files = discover([str(tmp_path)]).files
    marker = {"shard": "s", "paths": [f.path for f in files], "stats": [[f.size, f.mtime_ns, f.ino] for f in files],
              "hashes": [None, hash_of(tmp_path / "b.bmp")]}
    assert compare({"s": marker}, files).kept == 2
    ch = compare({"s": marker}, files, verify=True)
    assert ch.changed == {"s": [str(tmp_path / "a.bmp")]} and ch.kept == 1


def hash_of(path):
    return hashlib.blake2b(path.read_bytes(), digest_size=16).hexdigest()
