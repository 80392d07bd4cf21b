"""Where one `faceproc annotate` run's time goes (issue 22.5), for benchmarks/annotate.py.

Wall time from the process's start to the report, in three phases:
- start-up: process start to the first file (Python and imports, discovery, what an earlier run did,
  models found, the Ray cluster, the workers: actors started, models loaded and warmed up, inputs probed);
- work: first file to the last shard committed; split by the workers' own seconds per stage (decode,
  detection, crop, age/gender, rows, commit: faceproc/pipeline.py's timers, in each shard's summary),
  shown per worker (worker-seconds / workers), the rest being per-image bookkeeping and idle workers;
- report: last commit to the report (previews, report, waiting for the embedded Ray's shutdown, which
  runs in the background meanwhile, and the rest: the manifest, compaction).

The driver's phases are timed by wrapping, for the run, the functions that do them (module attributes
looked up at call time); the workers' stages come from the shard summaries the executor hands the driver.
Nothing in the library changes for it.
"""

from __future__ import annotations

import time
from contextlib import ExitStack, contextmanager

STAGES = (("decode", "decode"), ("detect", "detection"), ("crop", "crop"), ("agegender", "age/gender"),
          ("rows", "rows"), ("commit", "commit"))


class Breakdown:
    """Use as `with Breakdown() as b: annotate(...)`; then `b.result()`."""

    def __init__(self):
        import psutil

        self.process_start = psutil.Process().create_time()
        self.spans: dict[str, list[tuple[float, float]]] = {}
        self.summaries: list[dict] = []
        self._stack = ExitStack()

    def _timed(self, name: str, fn):
        def wrapper(*a, **k):
            t0 = time.time()
            try:
                return fn(*a, **k)
            finally:
                self.spans.setdefault(name, []).append((t0, time.time()))
        return wrapper

    def _executor(self, fn):
        """The executor, timed, its on_done also keeping each shard's summary (stages, pid, finished)."""
        def wrapper(*a, **k):
            a = list(a)  # on_done is 5th: run_ray(cfg, shards, out, run_id, on_done, plan), run_local(plan, ...)
            on_done = a[4]

            def keep(summary):
                self.summaries.append(summary)
                return on_done(summary)
            a[4] = keep
            return self._timed("executor", fn)(*a, **k)
        return wrapper

    @contextmanager
    def _patch(self, obj, attr: str, make):
        old = getattr(obj, attr)
        setattr(obj, attr, make(old))
        try:
            yield
        finally:
            setattr(obj, attr, old)

    def __enter__(self):
        import faceproc.engine as engine
        import faceproc.executors.ray_pool as ray_pool
        import faceproc.preview as preview
        import faceproc.report as report
        import faceproc.resume as resume

        self.t_call = time.time()
        for obj, attr, name in ((engine, "discover", "discovery"), (resume, "resume", "resume"),
                                (ray_pool, "init_ray", "cluster"), (preview, "write_previews", "previews"),
                                (report, "build_report", "report"), (engine, "_wait_embedded_ray", "ray_shutdown")):
            self._stack.enter_context(self._patch(obj, attr, lambda f, n=name: self._timed(n, f)))
        resolve = engine.RunPlan.__dict__["resolve"].__func__
        self._stack.enter_context(self._patch(engine.RunPlan, "resolve", lambda _: classmethod(
            self._timed("models", resolve))))
        for attr in ("_run_ray", "_run_local"):
            self._stack.enter_context(self._patch(engine, attr, self._executor))
        return self

    def __exit__(self, *exc):
        self.t_end = time.time()
        self._stack.close()
        return False

    def _sum(self, name: str) -> float:
        return sum(b - a for a, b in self.spans.get(name, []))

    def result(self) -> dict:
        """Seconds per phase and stage (the benchmark's JSON)."""
        r = lambda x: round(x, 2)  # noqa: E731
        out: dict = {"wall_s": r(self.t_end - self.process_start)}
        if not self.summaries:
            return out
        sm = self.summaries
        starts = [s["finished"] - s["seconds"] - s.get("stages", {}).get("commit", 0) for s in sm]
        first, last = min(starts), max(s["finished"] for s in sm)
        ex0 = self.spans["executor"][0][0] if "executor" in self.spans else first
        driver = {k: self._sum(k) for k in ("discovery", "resume", "models", "cluster")}
        startup = {"python_and_imports": self.t_call - self.process_start, **driver,
                   "workers": first - ex0, "other": ex0 - self.t_call - sum(driver.values())}
        workers = len({(s.get("node"), s.get("pid"), s.get("worker")) for s in sm})
        busy = {k: sum(s.get("stages", {}).get(k, 0) for s in sm) for k, _ in STAGES}
        seconds = sum(s["seconds"] for s in sm)
        busy["other"] = seconds - sum(v for k, v in busy.items() if k != "commit")
        busy["idle"] = max(0.0, workers * (last - first) - seconds - busy["commit"])
        tail = {k: self._sum(k) for k in ("previews", "report", "ray_shutdown")}
        tail["other"] = self.t_end - last - sum(tail.values())
        out.update(startup_s=r(first - self.process_start), startup={k: r(v) for k, v in startup.items()},
                   work_s=r(last - first), workers=workers, shards=len(sm),
                   work_worker_seconds={k: r(v) for k, v in busy.items()},
                   work_per_worker={k: r(v / workers) for k, v in busy.items()},
                   report_s=r(self.t_end - last), report={k: r(v) for k, v in tail.items()})
        return out


def describe(b: dict, label: str = "") -> str:
    """The breakdown as three lines for the printout."""
    if "startup" not in b:
        return f"{label}: {b.get('wall_s')} s (no shard ran)"
    j = lambda d, names=None: " | ".join(f"{(names or {}).get(k, k.replace('_', ' '))} {v:.1f}"  # noqa: E731
                                         for k, v in d.items())
    names = dict(STAGES)
    return (f"where the time goes{' (' + label + ')' if label else ''}: {b['wall_s']:.1f} s from process start "
            f"to the report, {b['workers']} workers, {b['shards']} shards\n"
            f"  start-up {b['startup_s']:6.1f} s   {j(b['startup'])}\n"
            f"  work     {b['work_s']:6.1f} s   per worker: {j(b['work_per_worker'], names)}\n"
            f"  report   {b['report_s']:6.1f} s   {j(b['report'])}")


def steady_state(log, files: int) -> dict | None:
    """From the run's log: start-up (until the workers are ready) and the images/s from then to the last shard."""
    import datetime as dt
    import re

    stamp = lambda line: dt.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()  # noqa: E731
    lines = log.read_text().splitlines() if log.exists() else []
    start = next((stamp(x) for x in lines if "starting an embedded Ray" in x or "attaching to the Ray" in x), None)
    ready = next((stamp(x) for x in lines if "workers ready" in x), None)
    done = [stamp(x) for x in lines if re.search(r"shard \w+ done", x)]
    if ready is None or not done:
        return None
    return {"startup_s": round(ready - start, 2) if start else None, "work_s": round(done[-1] - ready, 2),
            "images_per_s": files / max(done[-1] - ready, 1e-9)}
