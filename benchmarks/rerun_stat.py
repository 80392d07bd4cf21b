"""What a rerun over an unchanged archive costs: about a stat per file plus reading the shard markers.

    python benchmarks/rerun_stat.py                 # 100,000 tiny files in 1,000 folders
    python benchmarks/rerun_stat.py --files 10000   # a quicker look

A generated tree of empty `.jpg` files (the cheapest path through the pipeline: each becomes an
`empty_file` row, so the first run is affordable on two cores; the stand-in detector and age/gender model
of tests/helpers.py are never reached) is annotated once, then annotated again unchanged. Reported: the
rerun's wall time as `faceproc annotate` spends it (in-process engine), its parts measured on their own
(the ownership check of the output folder, discovery with its stat per file, reading the markers and
comparing every file's record, the report rebuilt from the rows at the end), and a bare walk of the same
tree with `os.scandir` and an `os.stat` per file, for comparison. Page cache warm (the tree was just
written), as on a nightly rerun. Writes benchmarks/results/rerun_stat.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def make_tree(root: Path, n: int, per_folder: int = 100) -> None:
    for i in range(n):
        d = root / f"f{i // per_folder:04d}"
        if i % per_folder == 0:
            d.mkdir(parents=True, exist_ok=True)
        (d / f"img{i:06d}.jpg").touch()


def bare_stat_walk(root: str) -> int:
    """The floor: every folder listed, every file stat'ed."""
    n, stack = 0, [root]
    while stack:
        with os.scandir(stack.pop()) as it:
            for e in it:
                if e.is_dir():
                    stack.append(e.path)
                else:
                    os.stat(e.path)
                    n += 1
    return n


def timed(fn, repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3, help="reruns timed (the median is reported)")
    ap.add_argument("--work", default=None, help="where the tree and the output go [default: a temp folder]")
    ap.add_argument("--json", default=str(REPO / "benchmarks" / "results" / "rerun_stat.json"))
    args = ap.parse_args()

    import logging

    logging.basicConfig(level=logging.WARNING)
    for h in logging.getLogger().handlers:  # the run's INFO lines go to OUT/faceproc.log only
        h.setLevel(logging.WARNING)
    from faceproc.discover import discover
    from faceproc.engine import annotate
    from faceproc.ownership import check_owned
    from faceproc.report import build_report
    from faceproc.resume import resume
    from faceproc.storage import Store
    from tests.helpers import cfg_for_tests, install_fakes

    install_fakes()
    work = Path(args.work or tempfile.mkdtemp(prefix="rerun_stat-"))
    tree, out = work / "archive", work / "out"
    try:
        t = time.perf_counter()
        make_tree(tree, args.files)
        t_make = time.perf_counter() - t
        cfg = cfg_for_tests()
        t = time.perf_counter()
        annotate([str(tree)], out, cfg, engine="local", progress=False)
        t_first = time.perf_counter() - t
        print(f"{args.files} files: tree written in {t_make:.1f} s, first run {t_first:.1f} s", flush=True)

        bare, n = timed(lambda: bare_stat_walk(str(tree)), args.repeat)
        assert n == args.files
        rerun, rep = timed(lambda: annotate([str(tree)], out, cfg, engine="local", progress=False), args.repeat)
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["history"][-1]["files_run"] == 0 and rep["files"] == args.files

        store = Store(out)
        t_owned, _ = timed(lambda: check_owned(store), args.repeat)
        t_disc, disc = timed(lambda: discover([str(tree)], exclude=[str(out)]), args.repeat)
        fp = manifest["fingerprint"]
        t_resume, plan = timed(lambda: resume(store, disc.files, fp), args.repeat)
        assert not plan.todo and plan.changes.kept == args.files
        t_report, _ = timed(lambda: build_report(store), args.repeat)
        markers = list((out / "_shards").glob("*.json"))
        res = {
            "files": args.files, "folders": -(-args.files // 100), "first_run_s": round(t_first, 2),
            "rerun_s": round(rerun, 3), "bare_stat_walk_s": round(bare, 3),
            "rerun_parts_s": {"ownership_check": round(t_owned, 3), "discover_with_stat": round(t_disc, 3),
                              "read_markers_and_compare": round(t_resume, 3), "report": round(t_report, 3)},
            "rerun_without_report_s": round(rerun - t_report, 3),
            "markers": len(markers), "marker_mb": round(sum(p.stat().st_size for p in markers) / 2**20, 2),
            "per_file_us": {"rerun_without_report": round((rerun - t_report) / args.files * 1e6, 1),
                            "bare_stat_walk": round(bare / args.files * 1e6, 1)},
            "repeat": args.repeat, "cpus": os.cpu_count(), "python": platform.python_version(),
            "command": "python benchmarks/rerun_stat.py" + (f" --files {args.files}" if args.files != 100_000 else ""),
        }
        print(json.dumps(res, indent=1))
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(res, indent=1) + "\n")
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
