"""A user's files are sacred (issue 19): faceproc writes, overwrites and removes only files it wrote itself,
and refuses, before writing anything, an output folder that is an input, lies in one, holds one, or holds
files it did not write."""

import json
import os

import pandas as pd
import pytest
from click.testing import CliRunner

from faceproc.cli import EXIT_USAGE, main
from faceproc.engine import annotate
from faceproc.ownership import OutputRefused, discard
from faceproc.storage import Store
from tests.helpers import cfg_for_tests, make_tree


def snapshot(folder):
    """Every file under a folder with its bytes, and every folder."""
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None) for p in sorted(folder.rglob("*"))}


def cli(*args):
    return CliRunner().invoke(main, ["annotate", *map(str, args), "--engine", "local", "--random-init"])


def photos(folder, n=3):
    make_tree(folder, n=n)
    return folder


def test_input_inside_the_output_is_refused_and_force_never_deletes_the_photos(tmp_path, fakes):
    """The issue's case: input dataset/images, -o dataset; then another --model with --force deleted
    dataset/images with the user's photos (3 of 3 gone)."""
    dataset = tmp_path / "dataset"
    photos(dataset / "images")
    before = snapshot(dataset)
    r = cli(dataset / "images", "-o", dataset)
    assert r.exit_code == 1 and f"the input {dataset / 'images'} lies inside the output folder {dataset}" in r.output
    assert len(r.output.strip().splitlines()) == 1
    r = cli(dataset / "images", "-o", dataset, "--model", "frozen", "--force")
    assert r.exit_code == 1 and "lies inside the output folder" in r.output
    assert snapshot(dataset) == before  # not a byte written, not a photo gone


def test_a_folder_holding_someone_elses_manifest_and_images_is_never_touched(tmp_path, fakes):
    photos(tmp_path / "in")
    out = tmp_path / "theirs"
    (out / "images").mkdir(parents=True)
    (out / "images" / "hero.jpg").write_bytes(b"\xff\xd8 their photo")
    (out / "manifest.json").write_text(json.dumps({"name": "their dataset", "files": ["images/hero.jpg"]}))
    before = snapshot(out)
    for extra in ([], ["--force"]):
        r = cli(tmp_path / "in", "-o", out, *extra)
        assert r.exit_code == 1 and "is not a faceproc output folder" in r.output, r.output
        assert snapshot(out) == before
    # without a manifest at all: a folder of someone's files is not an output folder either
    (out / "manifest.json").unlink()
    before = snapshot(out)
    r = cli(tmp_path / "in", "-o", out, "--force")
    assert r.exit_code == 1 and "not a faceproc output folder" in r.output and "images/" in r.output
    assert snapshot(out) == before


def test_files_put_into_a_faceproc_output_are_never_removed(tmp_path, fakes):
    """A faceproc output into which a user later put a folder of photos named images/ (and a file of theirs):
    refused with or without --force, even with other settings, and not a byte of theirs changes."""
    photos(tmp_path / "in")
    out = tmp_path / "out"
    assert cli(tmp_path / "in", "-o", out).exit_code == 0
    (out / "images" / "hero.jpg").write_bytes(b"their photo")
    (out / "notes.txt").write_text("theirs")
    before = snapshot(out)
    for extra in ([], ["--force"], ["--force", "--model", "frozen"], ["--prune"]):
        r = cli(tmp_path / "in", "-o", out, *extra)
        assert r.exit_code == 1 and "2 entries faceproc did not write (images/hero.jpg, notes.txt)" in r.output
        assert snapshot(out) == before


def test_output_equal_to_or_inside_an_input_and_empty_output_are_refused(tmp_path, fakes, monkeypatch):
    src = photos(tmp_path / "photos")
    before = snapshot(src)
    r = cli(src, "-o", src)
    assert r.exit_code == 1 and f"the output folder {src} is the input {src}" in r.output
    r = cli(src, "-o", src / "out")
    assert r.exit_code == 1 and "lies inside the input" in r.output
    r = cli(src / "d0" / "0.png", "-o", src / "d0" / "0.png")  # a single photo as input, and as output
    assert r.exit_code == 1 and "is the input" in r.output
    link = tmp_path / "link"
    link.symlink_to(src)
    r = cli(src, "-o", link)  # the same folder under another name
    assert r.exit_code == 1 and "is the input" in r.output
    monkeypatch.chdir(src)  # -o "" used to write into the current directory
    r = cli(src, "-o", "")
    assert r.exit_code == EXIT_USAGE and "empty" in r.output
    with pytest.raises(OutputRefused, match="empty"):
        annotate([str(src)], "", cfg_for_tests(), engine="local")
    assert snapshot(src) == before  # no manifest, report or log among the photos


def test_faceprocs_own_leftovers_are_fine(tmp_path, fakes):
    """A first run that stopped before its manifest (a log and a lock of a dead process) and the files a run
    writes (log, report, previews, markers) are faceproc's: the next run goes on."""
    import socket

    photos(tmp_path / "in", n=6)
    out = tmp_path / "out"
    out.mkdir()
    (out / "faceproc.log").write_text("an earlier start\n")
    (out / ".faceproc.lock").write_text(json.dumps({"host": socket.gethostname(), "pid": 2**22 + 7, "started": 0}))
    cfg = cfg_for_tests()
    cfg.run.previews = 2
    annotate([str(tmp_path / "in")], out, cfg, engine="local")
    assert list((out / "previews").iterdir()) and (out / "report.html").exists()
    annotate([str(tmp_path / "in")], out, cfg, engine="local")
    assert len(pd.read_parquet(out / "images")) == 7


def test_what_a_file_browser_leaves_is_tolerated_and_left_alone(tmp_path, fakes):
    """Opening the output in Finder or Explorer leaves .DS_Store / Thumbs.db: not a reason to refuse the
    nightly run, and not faceproc's to remove; a Thumbs.db among the tables (which readers would choke on) is
    named instead."""
    photos(tmp_path / "in")
    out = tmp_path / "out"
    out.mkdir()
    (out / ".DS_Store").write_bytes(b"finder")  # a new folder someone looked at: still empty for faceproc
    annotate([str(tmp_path / "in")], out, cfg_for_tests(previews=1), engine="local")
    litter = [out / "Thumbs.db", out / "previews" / ".DS_Store", out / "images" / ".DS_Store",
              out / "images" / "._abc.parquet"]
    for p in litter:
        p.write_bytes(b"litter")
    other = cfg_for_tests(previews=1)
    other.detector.threshold = 0.7
    annotate([str(tmp_path / "in")], out, other, engine="local", force=True)
    assert all(p.read_bytes() == b"litter" for p in litter) and len(pd.read_parquet(out / "images")) == 4
    (out / "images" / "Thumbs.db").write_bytes(b"explorer")
    with pytest.raises(OutputRefused, match="images/Thumbs.db"):
        annotate([str(tmp_path / "in")], out, other, engine="local")


def test_table_files_are_recorded_before_they_exist(tmp_path, fakes):
    """A shard file faceproc wrote but never committed (killed between its move and its marker) is known by
    its intent record and cleared; the same file without any record is not faceproc's to remove."""
    photos(tmp_path / "in", n=6)
    out = tmp_path / "out"
    annotate([str(tmp_path / "in")], out, cfg_for_tests(), engine="local")
    data = next((out / "images").glob("*.parquet")).read_bytes()
    stray = "0123456789abcdef"
    (out / "images" / f"{stray}.parquet").write_bytes(data)
    with pytest.raises(OutputRefused, match=f"images/{stray}.parquet"):
        annotate([str(tmp_path / "in")], out, cfg_for_tests(), engine="local")
    (out / "_shards" / f"{stray}.open").write_text("{}")
    annotate([str(tmp_path / "in")], out, cfg_for_tests(), engine="local")
    assert not (out / "images" / f"{stray}.parquet").exists() and not (out / "_shards" / f"{stray}.open").exists()
    assert len(pd.read_parquet(out / "images")) == 7


def test_force_removes_recorded_files_one_by_one_never_a_folder(tmp_path, fakes):
    photos(tmp_path / "in", n=6)
    out = tmp_path / "out"
    cfg = cfg_for_tests(shard_size=2)
    cfg.run.previews = 2
    annotate([str(tmp_path / "in")], out, cfg, engine="local")
    other = cfg_for_tests(shard_size=2)
    other.detector.threshold = 0.7
    annotate([str(tmp_path / "in")], out, other, engine="local", force=True)
    assert json.loads((out / "manifest.json").read_text())["fingerprint"]["detector"]["threshold"] == 0.7
    assert len(pd.read_parquet(out / "images")) == 7
    # discard itself, handed a folder that (against the checks) holds a file of a user: that file and its
    # folder stay, everything faceproc recorded goes
    (out / "images" / "hero.jpg").write_bytes(b"theirs")
    assert discard(Store(out)) > 0
    assert (out / "images" / "hero.jpg").read_bytes() == b"theirs"
    assert not list((out / "images").glob("*.parquet")) and not (out / "faces").exists()
    assert not (out / "_shards").exists() and not (out / "previews").exists()


def test_s3_output_ownership(s3_server, tmp_path, fakes):
    import boto3

    photos(tmp_path / "in")
    c = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
    c.put_object(Bucket="faceproc", Key="own/theirs/manifest.json", Body=b'{"name": "theirs"}')
    c.put_object(Bucket="faceproc", Key="own/theirs/images/hero.jpg", Body=b"their photo")
    for extra in ({}, {"force": True}):
        with pytest.raises(OutputRefused, match="not a faceproc output folder"):
            annotate([str(tmp_path / "in")], "s3://faceproc/own/theirs", cfg_for_tests(), engine="local", **extra)
    keys = {o["Key"] for o in c.list_objects_v2(Bucket="faceproc", Prefix="own/theirs/")["Contents"]}
    assert keys == {"own/theirs/manifest.json", "own/theirs/images/hero.jpg"}
    assert c.get_object(Bucket="faceproc", Key="own/theirs/manifest.json")["Body"].read() == b'{"name": "theirs"}'
    # prefixes: the output equal to, inside or holding the input
    for src, out in (("s3://faceproc/own/in", "s3://faceproc/own/in"), ("s3://faceproc/own/in", "s3://faceproc/own/in/o"),
                     ("s3://faceproc/own/o/in", "s3://faceproc/own/o")):
        with pytest.raises(OutputRefused, match="is the input|lies inside"):
            annotate([src], out, cfg_for_tests(), engine="local")
    # a faceproc output on S3: --force with other settings removes its recorded objects only
    out = "s3://faceproc/own/out"
    annotate([str(tmp_path / "in")], out, cfg_for_tests(), engine="local")
    other = cfg_for_tests()
    other.detector.threshold = 0.7
    annotate([str(tmp_path / "in")], out, other, engine="local", force=True)
    c.put_object(Bucket="faceproc", Key="own/out/images/hero.jpg", Body=b"their photo")
    with pytest.raises(OutputRefused, match="images/hero.jpg"):
        annotate([str(tmp_path / "in")], out, cfg_for_tests(), engine="local", force=True)
    assert c.get_object(Bucket="faceproc", Key="own/out/images/hero.jpg")["Body"].read() == b"their photo"
