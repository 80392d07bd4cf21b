"""`--engine auto` (the default, issue 23.4): small runs in this process, the rest on Ray.

Starting Ray and an actor per CPU, each loading the models, costs seconds that a few photos never win back:
in this process a worker thread per CPU loads its models in a blink (executors/local.py). So `auto` runs
in-process when the work is small (at most AUTO_LOCAL_FILES files to do, which a resumed run counts after
what is done) or when this machine has one CPU (one actor would do what this process does, later), and on
Ray otherwise. "Small" depends on the CPUs: Ray's actors win back their start-up faster the more of them
there are. A cluster named (RAY_ADDRESS, run.ray_address: `ray job submit` sets the first) always means
Ray: the user asked for it, and the driver's machine may be a head with no CPU meant for work.
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger("faceproc")

ENGINES = ("auto", "ray", "local")
# Files to do at or under which `auto` stays in-process: max(AUTO_LOCAL_FILES, AUTO_LOCAL_CPU_FILES // CPUs).
# Measured on this project's 2-CPU machine (docs/performance.md): Ray costs ~8 s more than in-process on
# `make-sample`'s 5 photos (2.7-3.1 s against 9.4-11.4 s); on the 150 group photos, in-process 13.0 s for
# the first 50 and 28.4 s for all, Ray 16.7 s and 31.4 s: Ray starts ~4 s later and then gains ~0.0075 s a
# photo, so it overtakes after ~500 files on 2 CPUs. With more CPUs it gains more a photo (an actor per
# CPU against one process's threads) and overtakes sooner; the 1/CPUs scaling is an assumption, measured
# at 2 CPUs only, with a floor of a few dozen files. Re-measured once the in-process engine ran a worker
# thread per CPU (issue 22): 500 files (both photo sets and the mosaics, 3 folders), in-process 63.2 s,
# Ray 64.6 s, the same rows: 500 is still where they cross on 2 CPUs.
AUTO_LOCAL_FILES = 48
AUTO_LOCAL_CPU_FILES = 1000


def auto_local_files(cpus: int) -> int:
    """The most files `auto` runs in this process on a machine with `cpus` CPUs."""
    return max(AUTO_LOCAL_FILES, AUTO_LOCAL_CPU_FILES // max(cpus, 1))


def check_engine(engine: str) -> None:
    """A wrong engine name is refused before anything is read or written."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")


def local_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def cluster_named(cfg) -> bool:
    return bool(cfg.run.ray_address or os.environ.get("RAY_ADDRESS"))


def choose_engine(engine: str, n_todo: int, cpus: int, cluster: bool) -> tuple[str, str]:
    """(the engine to run, why). `n_todo`: files still to do; `cpus`: this machine's; `cluster`: one named."""
    check_engine(engine)
    if engine != "auto":
        return engine, "asked for"
    if cluster:
        return "ray", "a Ray cluster is named (RAY_ADDRESS / run.ray_address)"
    if cpus <= 1:
        return "local", "this machine has one CPU"
    limit = auto_local_files(cpus)
    if n_todo <= limit:
        return "local", f"{n_todo} files to do, at most {limit} on {cpus} CPUs: quicker than starting Ray"
    return "ray", f"{n_todo} files to do on {cpus} CPUs"
