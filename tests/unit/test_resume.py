"""faceproc/resume.py called directly, on a committed shard of two generated files: its defaults are the safe
ones (other settings refused, rows of files no longer among the inputs kept, an unchanged stat trusted),
a refusal names every changed setting, --force starts from nothing (survivors of the mutation run,
docs/mutation.md)."""

import json
import logging

import pyarrow as pa
import pytest

import faceproc.resume as resume
import faceproc.runstate as R
from faceproc.record import MANIFEST
from faceproc.discover import Shard, discover, shard_id
from faceproc.ownership import SHOW
from faceproc.pipeline import ShardResult
from faceproc.schema import FACES, IMAGES
from faceproc.storage import Store

FP = {"detector": {"threshold": 0.5}, "model": "a"}


def committed(tmp_path, content_hash="0" * 32):
    """Two files on disk, committed as one shard whose rows record `content_hash` (not the files' bytes' hash:
    only --verify reads the bytes again), into an output whose manifest holds FP."""
    d = tmp_path / "in"
    d.mkdir()
    for name in ("a.jpg", "b.jpg"):
        (d / name).write_bytes(name.encode())
    files = discover([str(d)]).files
    images = [{"image_path": f.path, "status": "ok", "content_hash": content_hash} for f in files]
    res = ShardResult(FACES.empty_table(), pa.Table.from_pylist(images, schema=IMAGES), {"ok": 2}, 0.5)
    store = Store(tmp_path / "out")
    sid = shard_id([f.path for f in files])
    R.commit_shard(store, Shard(sid, str(d), files), res)
    store.write_text(MANIFEST, json.dumps({"fingerprint": FP}))
    return store, files, sid


def test_by_default_other_settings_are_refused_naming_each(tmp_path):
    store, files, sid = committed(tmp_path)
    other = {"detector": {"threshold": 0.7}, "model": "b"}
    with pytest.raises(R.RunConfigMismatch, match=r"\(detector\.threshold: 0\.5 -> 0\.7; model: 'a' -> 'b'\)"):
        resume.resume(store, files, other)
    assert store.exists(R.shard_marker(sid))  # nothing discarded


def test_by_default_rows_of_files_no_longer_among_the_inputs_are_kept(tmp_path):
    store, files, sid = committed(tmp_path)
    with pytest.raises(R.RunConfigMismatch, match=f"1 file\\(s\\) that these inputs do not cover.*{files[1].path}"):
        resume.resume(store, files[:1], FP)
    assert json.loads(store.read_text(R.shard_marker(sid)))["paths"] == [f.path for f in files]


def test_by_default_an_unchanged_stat_is_trusted_and_verify_reads_the_bytes(tmp_path):
    store, files, sid = committed(tmp_path)  # the recorded hash is not the files' own
    r = resume.resume(store, files, FP)
    assert (r.todo, list(r.done), r.old) == ([], [sid], {"fingerprint": FP})
    assert (r.changes.kept, r.changes.changed, r.changes.missing) == (2, {}, {})
    r = resume.resume(store, files, FP, verify=True)
    assert r.todo == files and r.done == {}


@pytest.mark.parametrize("manifest", ["other settings", "unreadable"])
def test_force_starts_from_nothing(tmp_path, manifest):
    store, files, sid = committed(tmp_path)
    if manifest == "unreadable":
        store.write_text(MANIFEST, "{not json")
    r = resume.resume(store, files, {"model": "b"} if manifest == "other settings" else FP, force=True)
    assert r.old is None and r.done == {} and r.todo == files
    assert not store.exists(R.shard_marker(sid))


def test_shown_names_renames_and_counts_what_it_leaves_out():
    assert resume._shown(["/a", "/b"], {"/a": "/c"}) == "/a (now /c), /b"
    paths = [f"/p{i}" for i in range(SHOW)]
    assert resume._shown(paths, {}) == ", ".join(paths)
    assert resume._shown(paths + ["/x", "/y"], {}) == ", ".join(paths) + " and 2 more"


@pytest.mark.parametrize("output", ["new", "nothing committed", "no manifest", "no manifest, every file changed"])
def test_only_a_new_output_resumes_without_a_word(tmp_path, caplog, output):
    """Anything the output already holds (a manifest, committed rows, rows done again) gets the line that says
    what was kept; a new output's stderr stays quiet."""
    if output == "new":
        store, files = Store(tmp_path / "out"), []
    else:
        store, files, sid = committed(tmp_path)
    if output == "nothing committed":
        R.remove_shard(store, sid)
    if output.startswith("no manifest"):
        store.delete(MANIFEST)
    if output.endswith("changed"):
        for f in files:
            with open(f.path, "ab") as fh:
                fh.write(b" edited")
        files = discover([str(tmp_path / "in")]).files
    with caplog.at_level(logging.INFO, logger="faceproc"):
        r = resume.resume(store, files, FP)
    assert r.done == ({sid: r.done[sid]} if output == "no manifest" else {})
    said = [m for m in caplog.messages if m.startswith("kept the rows of")]
    assert len(said) == (0 if output == "new" else 1)
