"""Inputs readable where the workers run (issue 22.1): one probe per node before any shard is sent.

The driver lists the inputs, but the workers read them, on other machines. A worker node without the
archive's mount (or, for S3, without credentials) used to write an `unreadable` row for every photo of its
shards. Now, on a named cluster, a tiny Ray task pinned to each node that may host a worker (hard node
affinity, no CPU asked) opens a few sample files of each input (an object store: stats them) and reports
back; a node that can read none of an input's samples stops the run with one line naming the node and
the input, before any shard is sent, so no row is written.

- Nodes probed: every node the placement plan (placement.py) gives a slot, i.e. every node where a worker
  may start or restart. A node with no CPU share (a head started with `--num-cpus 0`) hosts no worker and is
  not probed.
- Samples: up to SAMPLES_PER_ROOT files still to do per input (first, middle, last), for at most MAX_ROOTS
  inputs, only those the driver itself can read: a file nobody can read is a row like any bad file, not a
  reason to stop the run. A node that reads some samples of an input but not all gets a warning.
- The embedded cluster (`faceproc annotate` without RAY_ADDRESS) is not probed: its workers are this
  process's children, same user, same mounts, and the probe would only cost start-up time.
- A node whose probe does not answer within PROBE_WAIT seconds, or cannot run it (the node died), gets a
  warning and the run goes on: that is not proof it cannot read the inputs.
"""

from __future__ import annotations

import logging
import time
from typing import Iterable

from ..storage import is_uri

log = logging.getLogger("faceproc")

SAMPLES_PER_ROOT = 3
MAX_ROOTS = 16
PROBE_WAIT = 120.0  # seconds: a node may first have to set up the job's runtime env (its working dir)
HOW = ("every node that runs workers needs the inputs at the same path (a volume mounted on every node) or "
       "on S3 with its own credentials (docs/cluster-nodes.md)")


class InputsUnreadable(ValueError):
    """A node that will run workers cannot read an input. A ValueError, so the CLI says it in one line (exit 1)."""


def check_paths(paths: list[str]) -> dict[str, str | None]:
    """Runs on a node: path -> None when this process can read it, else why not. A local file is opened and
    one byte read (what decoding does first); an object is stat'ed (a HEAD: credentials and permission)."""
    res: dict[str, str | None] = {}
    for p in paths:
        try:
            if is_uri(p):
                from pyarrow import fs

                from ..objectstore import filesystem

                fs_, key = filesystem(p)
                if fs_.get_file_info(key).type == fs.FileType.NotFound:
                    raise FileNotFoundError("no such object")
            else:
                with open(p, "rb") as fh:
                    fh.read(1)
            res[p] = None
        except Exception as e:  # noqa: BLE001 (any failure to read is the answer, not a crash)
            why = getattr(e, "strerror", None) or (str(e).splitlines() or [""])[0]
            res[p] = f"{type(e).__name__}: {why}"[:300]
    return res


def pick_samples(shards: Iterable, driver_check=check_paths) -> dict[str, list[str]]:
    """input root -> up to SAMPLES_PER_ROOT of its files to do (first, middle, last; hidden files are never
    read), for the first MAX_ROOTS inputs, keeping only those the driver reads itself (local files; an
    object-store listing already proved the driver's access)."""
    by_root: dict[str, list[str]] = {}
    for shard in shards:
        for f in shard.files:
            if not f.hidden:
                by_root.setdefault(f.root or f.path, []).append(f.path)
    samples: dict[str, list[str]] = {}
    for root in list(by_root)[:MAX_ROOTS]:
        files = by_root[root]
        picks = list(dict.fromkeys(files[i] for i in (0, len(files) // 2, len(files) - 1)))[:SAMPLES_PER_ROOT]
        local = [p for p in picks if not is_uri(p)]
        bad = {p for p, err in driver_check(local).items() if err} if local else set()
        picks = [p for p in picks if p not in bad]
        if picks:
            samples[root] = picks
    return samples


def node_name(node: dict) -> str:
    """'10.0.0.5 (3f2a91c0)': the node's IP and the start of its id (as the driver's plan line shows it)."""
    return f"{node.get('NodeManagerAddress', '?')} ({node['NodeID'][:8]})"


def verdict(samples: dict[str, list[str]], results: dict[str, dict | str],
            names: dict[str, str]) -> tuple[str | None, list[str]]:
    """(the one-line error, or None; warnings) from each probed node's answer: path -> None or why not, or a
    string saying why the node gave no answer. A node fails an input when it reads none of its samples."""
    failures: list[str] = []
    warnings: list[str] = []
    for node in sorted(results, key=lambda n: names.get(n, n)):
        got, name = results[node], names.get(node, node[:8])
        if isinstance(got, str):
            warnings.append(f"node {name} did not answer the input check ({got}); its workers may write "
                            f"'unreadable' rows if it cannot read the inputs")
            continue
        for root, paths in samples.items():
            errs = [(p, got.get(p, "no answer for this file")) for p in paths]
            bad = [(p, e) for p, e in errs if e]
            if len(bad) == len(errs):
                p, e = bad[0]
                failures.append(f"node {name} cannot read the input {root}" +
                                (f" ({p}: {e})" if not failures else ""))
            elif bad:
                warnings.append(f"node {name} cannot read {len(bad)} of {len(errs)} sample files of the input "
                                f"{root} (e.g. {bad[0][0]}: {bad[0][1]}); files it cannot read get 'unreadable' rows")
    if not failures:
        return None, warnings
    more = f"; and {len(failures) - 3} more" if len(failures) > 3 else ""
    return f"{'; '.join(failures[:3])}{more}. Stopped before any row was written: {HOW}", warnings


def check_inputs_on_nodes(ray, slots: list, shards: list, wait: float = PROBE_WAIT) -> None:
    """Probe the inputs on every node of `slots` (placement.Slot: the nodes that may host workers); raise
    InputsUnreadable (one line) when a node cannot read an input. Nothing to do on the embedded cluster."""
    from ..cluster import EMBEDDED

    hosts = sorted({s.node for s in slots if s.node})
    if EMBEDDED["started"] or not hosts:
        return
    samples = pick_samples(shards)
    if not samples:
        return
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    t0 = time.time()
    names = {n["NodeID"]: node_name(n) for n in ray.nodes()}
    paths = [p for ps in samples.values() for p in ps]
    probe = ray.remote(num_cpus=0, max_retries=0)(check_paths)
    refs = {node: probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False)).remote(paths)
            for node in hosts}
    ready, _ = ray.wait(list(refs.values()), num_returns=len(refs), timeout=wait)
    results: dict[str, dict | str] = {}
    for node, ref in refs.items():
        if ref not in ready:
            results[node] = f"no answer within {wait:.0f} s"
            continue
        try:
            results[node] = ray.get(ref)
        except Exception as e:  # noqa: BLE001 (the node died, its runtime env failed: not an answer)
            results[node] = f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
    error, warnings = verdict(samples, results, names)
    for w in warnings:
        log.warning(w)
    if error:
        raise InputsUnreadable(error)
    log.info("inputs: %d sample files of %d input(s) readable on %d node(s) (%.1f s)", len(paths), len(samples),
             len(hosts), time.time() - t0)
