"""Where the Ray actors go (faceproc/executors/placement.py): GPU actors only on GPU nodes, CPU actors on the
others, from what each node declares. The real-cluster test is tests/ray/test_placement.py."""

from faceproc.executors.placement import Slot, describe, plan_slots


def node(nid, cpus, gpus=0, alive=True):
    res = {"CPU": float(cpus), "memory": 1e9}
    if gpus:
        res["GPU"] = float(gpus)
    return {"NodeID": nid, "Alive": alive, "Resources": res}


def per_node(slots):
    out = {}
    for s in slots:
        out.setdefault(s.node, []).append(s.gpus)
    return out


def test_mixed_cluster_gpu_actors_on_the_gpu_node_cpu_actors_on_the_cpu_node():
    slots = plan_slots([node("head", 2, gpus=1), node("cpu", 2)], 1, None)
    assert per_node(slots) == {"head": [0.5, 0.5], "cpu": [0.0, 0.0]}
    assert describe(slots, 1) == "node head: 2 x (1 CPU, 0.5 GPU); node cpu: 2 x (1 CPU)"


def test_head_without_cpus_hosts_nothing_and_cpu_only_clusters_ask_for_no_gpu():
    slots = plan_slots([node("head", 0), node("w1", 4), node("w2", 2)], 1, None)
    assert per_node(slots) == {"w1": [0.0] * 4, "w2": [0.0] * 2}
    # an explicit GPU share on a cluster without GPUs: CPU actors, not actors that can never be placed
    assert per_node(plan_slots([node("w1", 2)], 1, 0.5)) == {"w1": [0.0, 0.0]}


def test_gpu_share_per_node_and_never_more_than_one_gpu_each():
    slots = plan_slots([node("a", 4, gpus=2), node("b", 3, gpus=1), node("c", 1, gpus=4)], 1, None)
    assert per_node(slots) == {"a": [0.5] * 4, "b": [0.3333] * 3, "c": [1.0]}
    assert sum(per_node(slots)["b"]) <= 1  # rounded down to Ray's granularity, so all three fit


def test_explicit_gpu_share_limits_the_gpu_node_and_zero_means_cpu_everywhere():
    slots = plan_slots([node("gpu", 8, gpus=1), node("cpu", 2)], 1, 1.0)
    assert per_node(slots) == {"gpu": [1.0], "cpu": [0.0, 0.0]}  # no CPU actor beside the GPU actor
    slots = plan_slots([node("gpu", 2, gpus=1), node("cpu", 2)], 1, 0)
    assert per_node(slots) == {"gpu": [0.0, 0.0], "cpu": [0.0, 0.0]}


def test_cpus_per_worker_and_dead_nodes():
    slots = plan_slots([node("a", 8), node("dead", 8, alive=False)], 2, None)
    assert per_node(slots) == {"a": [0.0] * 4}


def test_fewer_workers_take_gpu_slots_first_spread_over_nodes_and_share_the_freed_gpu():
    nodes = [node("g1", 2, gpus=1), node("g2", 2, gpus=1), node("c", 4)]
    assert per_node(plan_slots(nodes, 1, None, workers=2)) == {"g1": [1.0], "g2": [1.0]}
    three = per_node(plan_slots(nodes, 1, None, workers=5))
    assert three == {"g1": [0.5, 0.5], "g2": [0.5, 0.5], "c": [0.0]}


def test_more_workers_than_room_wait_and_no_room_at_all_is_one_actor_anywhere():
    assert len(plan_slots([node("a", 2)], 1, None, workers=3)) == 3
    assert plan_slots([node("head", 0)], 1, None) == [Slot(None, 0.0)]
    assert describe([Slot(None, 0.0)], 1) == "node any: 1 x (1 CPU)"
