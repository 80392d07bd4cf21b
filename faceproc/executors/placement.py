"""Where the Ray actors go (issue 22.3): GPU actors only on nodes with GPUs, CPU actors on the other nodes.

Before, every actor asked for the same share of the cluster's GPUs (all GPUs / all actors). On a cluster
with mixed node types a CPU-only node could then host no actor, and the run waited forever for the actors
that did not fit. Now the plan is made per node from what each node declares (ray.nodes()):

- a node with GPUs hosts GPU actors: one per `cpus_per_worker` of its CPUs, sharing its GPUs
  (`gpus_per_worker` unset: GPUs / actors, at most one each), or as many as its GPUs allow at an explicit
  `gpus_per_worker`. No CPU actor goes there: the GPU actors need its CPUs for decoding and cropping.
- a node without GPUs (or every node, at `gpus_per_worker: 0`) hosts CPU actors, one per CPU share.

Each actor asks for its node softly (Ray's NodeAffinitySchedulingStrategy, soft=True): it prefers the planned
node, and when that node is gone, Ray restarts it wherever its CPU and GPU request fits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Slot:
    node: str | None  # the node id the actor prefers; None: anywhere (no node had room when the plan was made)
    gpus: float  # its GPU share; 0 for a CPU actor


def _fits(have: float, each: float) -> int:
    return int(math.floor(have / each + 1e-9)) if each > 0 else 0


def _share(gpus: float, actors: int) -> float:
    """GPUs / actors, at most one each, rounded down to Ray's resource granularity (1e-4) so they all fit."""
    return min(1.0, math.floor(gpus / max(actors, 1) * 1e4) / 1e4)


def plan_slots(nodes: list[dict], cpus_per_worker: float, gpus_per_worker: float | None,
               workers: int = 0) -> list[Slot]:
    """One Slot per actor. `nodes`: ray.nodes() (NodeID, Alive, Resources); `workers`: how many actors
    (0: as many as the nodes take; fewer: GPU slots first, spread over the nodes; more: the extra ones wait
    for room, as Ray does). With no room anywhere, one actor that waits for a node (an autoscaler's)."""
    per = max(cpus_per_worker, 0.01)
    gpu_nodes: list[tuple[str, float, int]] = []  # (node, GPUs, actors it takes)
    cpu_nodes: list[tuple[str, int]] = []
    for n in sorted((n for n in nodes if n.get("Alive", True)), key=lambda n: n["NodeID"]):
        res = n.get("Resources") or {}
        cpus, gpus = float(res.get("CPU", 0)), float(res.get("GPU", 0))
        k = _fits(cpus, per)
        if gpus > 0 and gpus_per_worker != 0:
            if gpus_per_worker is not None:
                k = min(k, _fits(gpus, gpus_per_worker))
            if k:
                gpu_nodes.append((n["NodeID"], gpus, k))
        elif k:
            cpu_nodes.append((n["NodeID"], k))
    # Round robin over the nodes (GPU nodes first), so that fewer workers than slots still spread out.
    order: list[tuple[str | None, bool]] = []  # (node, on a GPU)
    for group, on_gpu in (([(node, k) for node, _, k in gpu_nodes], True), (cpu_nodes, False)):
        left = dict(group)
        while any(left.values()):
            for node in left:
                if left[node]:
                    order.append((node, on_gpu))
                    left[node] -= 1
    if not order:
        order = [(None, False)]
    n = workers or len(order)
    chosen = [order[i % len(order)] for i in range(n)]
    gpus_of = {node: g for node, g, _ in gpu_nodes}
    taken = {node: sum(1 for c in chosen if c[0] == node) for node in gpus_of}
    slots = []
    for node, on_gpu in chosen:
        share = 0.0
        if on_gpu:
            share = gpus_per_worker if gpus_per_worker is not None else _share(gpus_of[node], taken[node])
        slots.append(Slot(node, share))
    return slots


def describe(slots: list[Slot], cpus_per_worker: float) -> str:
    """'node 1a2b3c4d: 2 x (1 CPU, 0.5 GPU); node 5e6f7a8b: 2 x (1 CPU)', in the slots' order."""
    counts: dict[tuple[str | None, float], int] = {}
    for s in slots:
        counts[(s.node, s.gpus)] = counts.get((s.node, s.gpus), 0) + 1
    parts = []
    for (node, gpus), k in counts.items():
        what = f"{cpus_per_worker:g} CPU" + (f", {gpus:g} GPU" if gpus else "")
        parts.append(f"node {node[:8] if node else 'any'}: {k} x ({what})")
    return "; ".join(parts)
