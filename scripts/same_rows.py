"""Before/after check for refactors: annotate one folder with an older commit and with this working tree, and
compare the rows (run ids and timings aside). Issue 11's "behaviour stays the same". Also checks that the
older commit's output resumes under this tree: the same fingerprint, and a rerun into it has nothing to do.

    python scripts/same_rows.py --rev ece05a5 --input sample/ [--config configs/exact.yaml [--both]]

The older commit runs from a `git worktree` in a temporary folder; both runs use --engine local. Pass a
config that pins this tree to the older runtimes (detector.scrfd.runtime: onnxruntime, model.runtime:
keras) to separate refactors from the faster runtimes, which change scores in the last digits.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
IGNORE = {"run_id", "elapsed_ms", "shard"}


def run(tree: Path, inputs: str, out: Path, config: str | None) -> None:
    cmd = [sys.executable, "-c", "from faceproc.cli import main; main()", "annotate", inputs, "-o", str(out),
           "--engine", "local"]
    if config:
        cmd += ["--config", config]
    env = {**os.environ, "PYTHONPATH": str(tree)}
    subprocess.run(cmd, check=True, env=env, cwd=tree, capture_output=True)


def compare(a: Path, b: Path) -> list[str]:
    problems = []
    for table, key in (("images", ["image_path"]), ("faces", ["image_path", "face_index"])):
        x = pd.read_parquet(a / table).sort_values(key).reset_index(drop=True)
        y = pd.read_parquet(b / table).sort_values(key).reset_index(drop=True)
        cols = [c for c in x.columns if c not in IGNORE]
        if list(x.columns) != list(y.columns) or len(x) != len(y):
            problems.append(f"{table}: columns {list(x.columns)} vs {list(y.columns)}, rows {len(x)} vs {len(y)}")
            continue
        for c in cols:
            xa, ya = x[c], y[c]
            if xa.dtype.kind == "f":
                d = float(np.nanmax(np.abs(xa.to_numpy(float) - ya.to_numpy(float)))) if len(xa) else 0.0
                if d > 1e-4:
                    problems.append(f"{table}.{c}: max difference {d:.3g}")
            elif c == "landmarks":
                d = float(np.abs(np.stack(xa) - np.stack(ya)).max()) if len(xa) else 0.0
                if d > 1e-4:
                    problems.append(f"{table}.{c}: max difference {d:.3g}")
            elif xa.astype(str).tolist() != ya.astype(str).tolist():
                problems.append(f"{table}.{c}: values differ")
    return problems


def resumes(old_out: Path, inputs: str, config: str | None) -> list[str]:
    """This tree's rerun into a copy of the older output: refused or redoing work means existing outputs
    would not resume."""
    copy = old_out.with_name(old_out.name + "-resumed")
    shutil.copytree(old_out, copy)
    before = json.loads((copy / "manifest.json").read_text())["fingerprint"]
    try:
        run(REPO, inputs, copy, config)
    except subprocess.CalledProcessError as e:
        return [f"this tree refuses the older output: {e.stderr.decode(errors='replace').strip().splitlines()[-1]}"]
    manifest = json.loads((copy / "manifest.json").read_text())
    problems = [] if manifest["fingerprint"] == before else ["fingerprint: differs from the older output's"]
    if manifest["history"][-1]["files_run"]:
        problems.append(f"resume: {manifest['history'][-1]['files_run']} files done again")
    return problems


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rev", required=True)
    ap.add_argument("--input", required=True)
    ap.add_argument("--config", help="config for this tree's run (e.g. pinning the older runtimes)")
    ap.add_argument("--both", action="store_true", help="give --config to the older commit's run too (a "
                    "commit that knows its keys: e.g. configs/exact_runtimes.yaml on both sides of a refactor)")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        subprocess.run(["git", "worktree", "add", "--detach", str(d / "old"), a.rev], cwd=REPO, check=True,
                       capture_output=True)
        try:
            run(d / "old", os.path.abspath(a.input), d / "out-old", os.path.abspath(a.config) if a.config and a.both else None)
            run(REPO, os.path.abspath(a.input), d / "out-new", os.path.abspath(a.config) if a.config else None)
            problems = compare(d / "out-old", d / "out-new")
            problems += resumes(d / "out-old", os.path.abspath(a.input), os.path.abspath(a.config) if a.config else None)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(d / "old")], cwd=REPO, capture_output=True)
    print("same rows" if not problems else "DIFFERENT:\n  " + "\n  ".join(problems))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
