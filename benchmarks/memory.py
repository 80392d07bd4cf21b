"""Peak memory of a run, sampled over the process tree (the driver, Ray's processes and its workers), and
the memory check of benchmarks/annotate.py: the same run on SMALL and LARGE photos (copies of a few photos,
corpora.copies) must stay flat (growth of each figure at most FLAT)."""

from __future__ import annotations

import threading

FLAT = 0.20  # the target: peak RSS grows at most 20% from SMALL to LARGE images


class PeakRSS:
    """Samples the RSS of this process and of every descendant (Ray workers included)."""

    def __init__(self, interval=0.2):
        import psutil

        self.p = psutil.Process()
        self.interval = interval
        self.driver = 0
        self.workers = 0
        self.total = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        import psutil

        while not self._stop.is_set():
            try:
                d = self.p.memory_info().rss
                kids = 0
                wmax = 0
                for c in self.p.children(recursive=True):
                    try:
                        r = c.memory_info().rss
                    except psutil.Error:
                        continue
                    kids += r
                    if "ShardWorker" in " ".join(c.cmdline() or []) or "ShardWorker" in c.name():
                        wmax = max(wmax, r)
                self.driver = max(self.driver, d)
                self.workers = max(self.workers, wmax)
                self.total = max(self.total, d + kids)
            except psutil.Error:
                pass
            self._stop.wait(self.interval)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *a):
        self._stop.set()
        self._t.join()

    def as_dict(self):
        mb = 1 / 2**20
        return {"driver_mb": round(self.driver * mb, 1), "worker_max_mb": round(self.workers * mb, 1),
                "all_processes_mb": round(self.total * mb, 1)}


def growth(small: dict, large: dict) -> dict:
    """Each peak's growth from the small run to the large one, and whether all stay within FLAT."""
    m0, m1 = small["memory"], large["memory"]
    # no worker processes (the in-process engine: its threads are the driver's): that peak is not measured
    g = {k: round(m1[k] / m0[k] - 1, 3) if m0[k] else None for k in m0 if m0[k] or m1[k]}
    return {**g, "flat": all(v is not None and v <= FLAT for v in g.values()), "target": FLAT}


def describe_growth(small: int, large: int, g: dict) -> str:
    parts = ", ".join(f"{k.replace('_mb', '').replace('_', ' ')} " + (f"{g[k]:+.1%}" if g[k] is not None else "n/a")
                      for k in ("driver_mb", "worker_max_mb", "all_processes_mb") if k in g)
    return (f"peak RSS from {small} to {large} images: {parts}: "
            f"{'flat' if g['flat'] else 'NOT flat'} (target: at most {g['target']:.0%} growth)")


def describe(n: int, r: dict) -> str:
    m = r["memory"]
    return (f"{n} images in {r['seconds']:.1f} s ({r['images_per_s']:.1f}/s): peak RSS driver {m['driver_mb']:.0f} MB, "
            f"largest worker {m['worker_max_mb']:.0f} MB, all processes {m['all_processes_mb']:.0f} MB")
