"""What `ray job submit --working-dir .` uploads (issue 22.4): jobs/runtime-env.yaml keeps virtualenvs, outputs,
caches and secrets out, keeps every file of the repository in, and .gitignore names the same things; every
documented `ray job submit` with a working dir uses that runtime env. The real upload is tested in
tests/ray/test_two_node.py."""

import re
import shutil
import subprocess

import pytest
import yaml

from tests.conftest import REPO

# What a developer's checkout holds besides the repository's files.
JUNK = [".venv/lib/python3.11/site-packages/torch/lib.so", "venv/bin/python", "env/bin/python", ".env",
        "out/run1/faces/a.parquet", "runs/unfrozen/model.keras", "cache/crops.parquet", "sample/t1.jpg",
        ".pytest_cache/v/cache/lastfailed", ".mypy_cache/3.11/x.json", ".ruff_cache/x",
        "faceproc/__pycache__/engine.cpython-311.pyc", "faceproc.egg-info/PKG-INFO", "build/lib/x.py",
        "benchmarks/corpus/p.jpg", "notes.tmp", ".git/objects/pack/x.pack"]


def excludes():
    return yaml.safe_load((REPO / "jobs" / "runtime-env.yaml").read_text())["excludes"]


def excluded_by_ray(tmp_path, paths):
    """Which of `paths` (relative, created under tmp_path) Ray's own matcher for `excludes` leaves out."""
    from ray._private.runtime_env.packaging import _get_excludes

    match = _get_excludes(tmp_path, excludes())
    out = set()
    for rel in paths:
        parts = rel.split("/")
        # Ray walks down from the root and skips a folder as a whole: a path is left out if it or a parent is.
        if any(match(tmp_path.joinpath(*parts[:i])) for i in range(1, len(parts) + 1)):
            out.add(rel)
    return out


def repo_files():
    if not shutil.which("git") or not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    r = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True, text=True,
                       check=True)
    return [f for f in r.stdout.splitlines() if f]


def test_runtime_env_leaves_out_virtualenvs_outputs_and_caches_and_keeps_every_repository_file(tmp_path):
    files = repo_files()
    assert "faceproc/engine.py" in files and "jobs/annotate.py" in files
    assert excluded_by_ray(tmp_path, JUNK) == set(JUNK)
    assert excluded_by_ray(tmp_path, files) == set(), "the runtime env would leave repository files behind"


def test_gitignore_names_the_same_things():
    repo_files()  # a git checkout
    r = subprocess.run(["git", "check-ignore", "--no-index", *JUNK], cwd=REPO, capture_output=True, text=True)
    assert set(r.stdout.split()) == set(JUNK) - {".git/objects/pack/x.pack"}  # git never lists its own folder


def test_documented_submits_with_a_working_dir_use_the_runtime_env():
    docs = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), *sorted((REPO / "jobs").glob("*"))]
    seen = 0
    for doc in docs:
        text = doc.read_text(encoding="utf-8").replace("\\\n", " ")
        for cmd in re.findall(r"ray job submit[^\n`]*", text):
            if "--working-dir" in cmd:
                seen += 1
                assert "--runtime-env jobs/runtime-env.yaml" in cmd, f"{doc.name}: {cmd}"
    assert seen >= 2
