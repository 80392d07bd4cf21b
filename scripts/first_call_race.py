"""OpenVINO's first inference calls made by two threads at once can deadlock the process (executors/local.py
makes them one at a time). This runs a fresh process N times, each compiling the SCRFD detector twice and
calling both copies from two threads that start together, and counts the processes that hang.

    python scripts/first_call_race.py --detector ../shared/models/insightface/models/buffalo_s/det_500m.onnx
    python scripts/first_call_race.py --detector ... --one-at-a-time   # the first calls under a lock

Seen on 2 CPUs, openvino 2026.4.1: with the first calls at once, 2 of 40 and 4 of 60 processes hung (and
14 of 40 for the same child without the 20 calls after the first); with --one-at-a-time, 0 of 40 and 0 of 60
(each thread then making 20 more calls at once with the other)."""

from __future__ import annotations

import argparse
import subprocess
import sys

CHILD = r"""
import sys, threading, numpy as np, openvino as ov
path, lock_first = sys.argv[1], sys.argv[2] == "1"
core = ov.Core()
reqs = [core.compile_model(path, "CPU", {"INFERENCE_NUM_THREADS": 1}).create_infer_request() for _ in range(2)]
start, first = threading.Barrier(2), threading.Lock()
x = np.zeros((1, 3, 64, 64), np.float32)
def go(r):
    start.wait()
    if lock_first:
        with first:
            r.infer({0: x})
    for _ in range(20):
        r.infer({0: x})
ts = [threading.Thread(target=go, args=(r,)) for r in reqs]
[t.start() for t in ts]
[t.join() for t in ts]
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--detector", required=True, help="an SCRFD det_*.onnx")
    ap.add_argument("--runs", type=int, default=40)
    ap.add_argument("--timeout", type=float, default=20.0, help="seconds after which a process counts as hung")
    ap.add_argument("--one-at-a-time", action="store_true", help="the first call of each thread under a lock")
    a = ap.parse_args()
    hung = failed = 0
    for _ in range(a.runs):
        try:
            rc = subprocess.run([sys.executable, "-c", CHILD, a.detector, "1" if a.one_at_a_time else "0"],
                                timeout=a.timeout, capture_output=True).returncode
            failed += rc != 0
        except subprocess.TimeoutExpired:
            hung += 1
    print(f"{hung} of {a.runs} processes hung, {failed} failed "
          f"({'first calls one at a time' if a.one_at_a_time else 'first calls at once'})")


if __name__ == "__main__":
    main()
