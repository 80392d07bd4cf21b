"""The Ray executor: the shards of a plan on a pool of actors (a local Ray or a cluster).

Each actor loads detector and model once (from the plan, models' bytes aboard) and commits whole shards
(process_shard). Retries are the pool's own: a shard whose actor died goes back to the queue and to another
live actor at once; dead actors restart where there is room and get work again when they answer a ping.
Back-pressure is a bounded number of shards in flight per actor. A stop (Ctrl-C, SIGTERM) kills the actors
before the driver cleans up, so no shard commits behind its back.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any, Callable

from ..cluster import init_ray, release_embedded_ray, stop_actors
from ..config import Config
from ..discover import Shard
from ..plan import RunPlan
from ..storage import Store
from . import process_shard
from .placement import describe, plan_slots
from .ray_progress import RayBoard, tally_for
from .probe import check_inputs_on_nodes

log = logging.getLogger("faceproc")


def _log_gpu_fallback(gpu_ids) -> None:
    """A worker given a GPU share on a node whose CUDA runtime is missing runs on the CPU: say so once, plainly."""
    try:
        import onnxruntime as ort

        cuda = "CUDAExecutionProvider" in ort.get_available_providers()
    except ImportError:
        cuda = False
    if not cuda:
        logging.getLogger("faceproc").warning(
            "this worker was given GPU %s but onnxruntime has no CUDA provider (install onnxruntime-gpu and CUDA): "
            "detection and age/gender run on the CPU", ",".join(str(g) for g in gpu_ids))


def _make_worker_class(ray):
    @ray.remote
    class ShardWorker:
        def __init__(self, plan: RunPlan, out: str, run_id: str, board=None):
            logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
            from ..pipeline import Annotator

            self.out, self.run_id = out, run_id
            self.board = board  # where files read are counted for a terminal's progress line, or None
            ctx = ray.get_runtime_context()
            self.node = ctx.get_node_id()
            gpus = ray.get_gpu_ids()
            if gpus:
                _log_gpu_fallback(gpus)
            self.annotator = Annotator(plan)
            self.annotator.warm_up()

        def pid(self) -> int:
            return os.getpid()

        def where(self) -> tuple[str, int]:
            return self.node, os.getpid()

        def run(self, shard: Shard) -> dict:
            self.annotator.on_file = tally_for(self.board, shard.shard_id)  # executors/ray_progress.py
            summary = process_shard(self.annotator, shard, self.out, self.run_id)
            summary["node"] = self.node  # which node ran it: recorded in the manifest
            return summary

    return ShardWorker


def ray_workers(cfg: Config) -> int:
    """How many worker actors the cluster takes (starts or attaches to Ray): one per CPU share of each node
    that hosts actors (placement.py: a GPU node only as many as its GPUs allow at an explicit share)."""
    ray = init_ray(cfg)
    return cfg.run.workers or len(plan_slots(ray.nodes(), cfg.run.cpus_per_worker, cfg.run.gpus_per_worker))


def run_ray(cfg: Config, shards: list[Shard], out: Store, run_id: str, on_done: Callable, plan: RunPlan,
            progress=None) -> list[dict]:
    """The shards on Ray actors. Stopped (Ctrl-C, SIGTERM), the actors are killed before the stop goes on, so
    no shard commits after the driver has cleaned up: the shard in flight is dropped or committed whole.
    `progress`: a ProgressLine the workers tell of every file read (executors/ray_progress.py), or None.
    A shard that committed but whose reply never came (its actor killed after the marker) is recorded by the
    engine from the markers on storage (RunRecord.interrupted), for either executor."""
    actors: list = []
    refs: dict = {}  # ref -> (worker, shard, attempt) of the shards in flight: a stop waits for these
    here: list[int] = []  # pids of the actors on the driver's own node: a stop waits until they are gone
    board = RayBoard(init_ray(cfg), progress) if progress is not None else None
    try:
        return _run_ray_actors(cfg, plan, shards, out, run_id, on_done, actors, refs, board, here)
    except KeyboardInterrupt:
        stop_actors(actors, refs, here)
        raise
    finally:
        if board is not None:
            board.stop()


def _run_ray_actors(cfg: Config, plan: RunPlan, shards: list[Shard], out: Store, run_id: str, on_done: Callable,
                    actors: list, in_flight: dict, board=None, here: list | None = None) -> list[dict]:
    ray = init_ray(cfg)
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    res = ray.cluster_resources()
    per = max(cfg.run.cpus_per_worker, 0.01)
    n_workers = max(1, min(ray_workers(cfg), len(shards)))
    slots = plan_slots(ray.nodes(), per, cfg.run.gpus_per_worker, n_workers)  # GPU actors only where GPUs are
    # Every node that may host a worker reads the inputs, or the run stops here, before any shard (probe.py).
    check_inputs_on_nodes(ray, plan_slots(ray.nodes(), per, cfg.run.gpus_per_worker), shards)
    wplan = ray.put(plan.for_workers(per, portable=True))  # once in the object store, the models' bytes aboard
    Worker = _make_worker_class(ray)
    # Retries are the loop's, not Ray's (max_task_retries=0): a shard whose actor died goes back to the queue
    # and to another live actor at once, instead of waiting for its own actor to come back, which never
    # happens when the actor's node is gone and no other node has room for it. Dead actors restart
    # (max_restarts=-1) wherever there is room (their node preference is soft) and get work again when
    # they answer a ping.
    workers = [
        Worker.options(num_cpus=per, num_gpus=s.gpus, max_restarts=-1, max_task_retries=0,
                       scheduling_strategy=NodeAffinitySchedulingStrategy(s.node, soft=True) if s.node else "DEFAULT",
                       ).remote(wplan, str(out), run_id, board and board.actor)
        for s in slots
    ]
    actors.extend(workers)
    log.info("ray: %d workers (cluster: %g CPU, %g GPU), %d shards: %s", n_workers, float(res.get("CPU", 0)),
             float(res.get("GPU", 0)), len(shards), describe(slots, per))
    t_start = time.time()
    me = ray.get_runtime_context().get_node_id()
    placed = ray.get([w.where.remote() for w in workers])  # models loaded: the rest is steady-state work
    if here is not None:
        here.extend(pid for node, pid in placed if node == me)
    log.info("workers ready in %.1f s", time.time() - t_start)
    from ray.exceptions import RayActorError

    pending = list(reversed(shards))
    # in_flight: ref -> (worker, shard, attempt), the caller's dict (a stop waits for these)
    pings: dict[Any, int] = {}
    alive = [True] * n_workers
    load = [0] * n_workers
    attempts: dict[str, int] = {}
    failed: list[dict] = []
    cap = max(1, cfg.run.max_in_flight)

    def submit(w: int, shard: Shard):
        attempts[shard.shard_id] = attempts.get(shard.shard_id, 0) + 1
        in_flight[workers[w].run.remote(shard)] = (w, shard, attempts[shard.shard_id])
        load[w] += 1

    def free_worker() -> int | None:
        live = [w for w in range(n_workers) if alive[w] and load[w] < cap]
        return min(live, key=lambda w: load[w]) if live else None

    while pending or in_flight:
        # Breadth first: every live worker gets a shard before any gets a second one.
        while pending and (w := free_worker()) is not None:
            submit(w, pending.pop())
        ready, _ = ray.wait(list(in_flight) + list(pings), num_returns=1, timeout=60)
        if not ready:
            if not any(alive):
                log.warning("no live worker: waiting for Ray to restart them (%d shards to do)", len(pending))
            continue
        for ref in ready:
            if ref in pings:  # a restarted actor answers: it takes work again
                w = pings.pop(ref)
                try:
                    ray.get(ref)
                    alive[w] = True
                    log.info("worker %d is back", w)
                except RayActorError:
                    pings[workers[w].pid.remote()] = w
                continue
            w, shard, attempt = in_flight.pop(ref)
            load[w] -= 1
            try:
                on_done(ray.get(ref))
            except Exception as e:  # the actor died (process or node lost), or the shard itself raised
                if isinstance(e, RayActorError) and alive[w]:
                    alive[w] = False
                    pings[workers[w].pid.remote()] = w
                    log.warning("worker %d died (%s); its shards go to the others", w, type(e).__name__)
                if attempt < cfg.run.max_task_retries + 1:
                    log.warning("shard %s failed (attempt %d): %s; retrying", shard.shard_id, attempt,
                                str(e).splitlines()[0][:300])
                    pending.append(shard)
                else:
                    log.error("shard %s failed for good: %s", shard.shard_id, e)
                    failed.append({"shard": shard.shard_id, "error": f"{type(e).__name__}: {e}"})
    for w in workers:
        ray.kill(w)
    if board is not None:
        board.stop()  # before Ray goes down
    release_embedded_ray()
    return failed
