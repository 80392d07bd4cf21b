"""The input probe's decisions (faceproc/executors/probe.py, issue 22.1), with fake node answers: which nodes
are probed, which files are sampled, when a run stops and what the one line says. The real thing, on a Ray
cluster with a node that cannot see the inputs: tests/ray/test_probe_nodes.py."""

import pytest

from faceproc.discover import Shard
from faceproc.executors import probe as P
from faceproc.executors.placement import plan_slots
from faceproc.lock import LOCK
from faceproc.walk import FileEntry

A, B, HEAD = "a" * 56, "b" * 56, "c" * 56
NAMES = {A: "10.0.0.1 (aaaaaaaa)", B: "10.0.0.2 (bbbbbbbb)"}
SAMPLES = {"/in": ["/in/0.jpg", "/in/5.jpg", "/in/9.jpg"], "/more": ["/more/x.jpg"]}


def reads_all(paths):
    return {p: None for p in paths}


def test_every_node_reads_every_input_nothing_to_say():
    results = {A: reads_all(sum(SAMPLES.values(), [])), B: reads_all(sum(SAMPLES.values(), []))}
    assert P.verdict(SAMPLES, results, NAMES) == (None, [])


def test_a_node_that_reads_none_of_an_inputs_samples_stops_the_run_naming_node_and_input():
    every = sum(SAMPLES.values(), [])
    no_mount = {p: ("FileNotFoundError: No such file or directory" if p.startswith("/in/") else None) for p in every}
    error, warnings = P.verdict(SAMPLES, {A: reads_all(every), B: no_mount}, NAMES)
    assert error.startswith("node 10.0.0.2 (bbbbbbbb) cannot read the input /in (/in/0.jpg: FileNotFoundError: ")
    assert "10.0.0.1" not in error and "/more" not in error  # node A is fine; node B reads the other input
    assert "Stopped before any row was written" in error and "\n" not in error
    assert warnings == []


def test_several_failures_are_all_named_on_one_line():
    every = sum(SAMPLES.values(), [])
    denied = {p: "PermissionError: Permission denied" for p in every}
    error, _ = P.verdict(SAMPLES, {A: denied, B: denied}, NAMES)
    for what in ("10.0.0.1 (aaaaaaaa) cannot read the input /in", "10.0.0.1 (aaaaaaaa) cannot read the input /more",
                 "10.0.0.2 (bbbbbbbb) cannot read the input /in", "and 1 more"):
        assert what in error
    assert "\n" not in error


def test_a_node_that_reads_some_samples_goes_on_with_a_warning():
    every = sum(SAMPLES.values(), [])
    partly = {**reads_all(every), "/in/5.jpg": "PermissionError: Permission denied"}
    error, warnings = P.verdict(SAMPLES, {A: partly}, NAMES)
    assert error is None
    assert len(warnings) == 1 and "1 of 3 sample files of the input /in" in warnings[0] and "/in/5.jpg" in warnings[0]


def test_a_node_that_gives_no_answer_is_a_warning_not_a_stop():
    every = sum(SAMPLES.values(), [])
    error, warnings = P.verdict(SAMPLES, {A: reads_all(every), B: "no answer within 120 s"}, NAMES)
    assert error is None
    assert len(warnings) == 1 and "10.0.0.2 (bbbbbbbb) did not answer" in warnings[0]


# ------------------------------------------------------------------ what is sampled, what a node checks

def entries(root, names, hidden=()):
    return [FileEntry(f"{root}/{n}", hidden=n in hidden, root=root) for n in names]


def test_samples_first_middle_last_per_input_readable_by_the_driver_never_hidden(tmp_path):
    root = str(tmp_path / "in")
    (tmp_path / "in").mkdir()
    names = [f"{i}.jpg" for i in range(10)]
    for n in names[1:]:
        (tmp_path / "in" / n).write_bytes(b"x")  # 0.jpg is missing: the driver cannot read it either
    files = entries(root, [".h.jpg"] + names, hidden={".h.jpg"})
    shards = [Shard("s1", root, files[:4]), Shard("s2", root, files[4:])]
    s3 = Shard("s3", "s3://b/p", [FileEntry(f"s3://b/p/{i}.jpg", root="s3://b/p") for i in range(4)])
    samples = P.pick_samples(shards + [s3])
    assert samples[root] == [f"{root}/5.jpg", f"{root}/9.jpg"]  # 0.jpg dropped (a bad file, not a node's fault)
    assert samples["s3://b/p"] == ["s3://b/p/0.jpg", "s3://b/p/2.jpg", "s3://b/p/3.jpg"]  # listed: not re-checked


def test_samples_for_at_most_max_roots_inputs(monkeypatch):
    monkeypatch.setattr(P, "MAX_ROOTS", 2)
    shards = [Shard(f"s{i}", f"/r{i}", entries(f"/r{i}", ["a.jpg"])) for i in range(4)]
    assert list(P.pick_samples(shards, driver_check=reads_all)) == ["/r0", "/r1"]


def test_check_paths_reads_a_file_and_says_why_not(tmp_path):
    ok = tmp_path / "ok.jpg"
    ok.write_bytes(b"\xff\xd8")
    got = P.check_paths([str(ok), str(tmp_path / "gone.jpg"), str(tmp_path)])
    assert got[str(ok)] is None
    assert got[str(tmp_path / "gone.jpg")] == "FileNotFoundError: No such file or directory"
    assert got[str(tmp_path)] == "IsADirectoryError: Is a directory"


@pytest.mark.skipif(not __import__("os").path.exists("/proc/self/mem"), reason="Linux only")
def test_check_paths_reads_not_only_opens():
    """A file that opens but cannot be read (as a dead network mount's files can): /proc/self/mem at offset 0."""
    assert P.check_paths(["/proc/self/mem"]) == {"/proc/self/mem": "OSError: Input/output error"}


# ------------------------------------------------------------------ the probe on a (fake) cluster

class FakeRay:
    """ray's surface the probe uses; each node answers with `answers[node](paths)` (or raises it)."""

    def __init__(self, nodes, answers, late=()):
        self._nodes, self.answers, self.late, self.probed = nodes, answers, set(late), []

    def nodes(self):
        return self._nodes

    def remote(self, **opts):
        assert opts == {"num_cpus": 0, "max_retries": 0}
        ray = self

        class Remote:
            def __init__(self, fn):
                self.fn = fn

            def options(self, scheduling_strategy):
                assert scheduling_strategy.soft is False  # pinned: the probe must run on that very node
                node = scheduling_strategy.node_id
                return type("R", (), {"remote": lambda _, paths: ray._submit(node, paths)})()

        return Remote

    def _submit(self, node, paths):
        self.probed.append(node)
        return (node, tuple(paths))

    def wait(self, refs, num_returns, timeout):
        return [r for r in refs if r[0] not in self.late], []

    def get(self, ref):
        node, paths = ref
        answer = self.answers[node]
        if isinstance(answer, Exception):
            raise answer
        return answer(list(paths))


def cluster(**answers):
    res = {A: {"CPU": 2.0}, B: {"CPU": 2.0}, HEAD: {"CPU": 0.0}}
    nodes = [{"NodeID": n, "Alive": True, "Resources": r, "NodeManagerAddress": f"10.0.0.{i}"}
             for i, (n, r) in enumerate(res.items(), 1)]
    return nodes, plan_slots(nodes, 1.0, None)


@pytest.fixture
def shards(tmp_path):
    (tmp_path / "in").mkdir()
    for i in range(3):
        (tmp_path / "in" / f"{i}.jpg").write_bytes(b"x")
    return [Shard("s", str(tmp_path / "in"), entries(str(tmp_path / "in"), ["0.jpg", "1.jpg", "2.jpg"]))]


def test_only_nodes_that_host_workers_are_probed_and_a_blind_one_stops_the_run(shards):
    nodes, slots = cluster()
    blind = lambda paths: {p: "FileNotFoundError: No such file or directory" for p in paths}  # noqa: E731
    ray = FakeRay(nodes, {A: reads_all, B: blind, HEAD: blind})
    with pytest.raises(P.InputsUnreadable, match=r"^node 10\.0\.0\.2 \(bbbbbbbb\) cannot read the input /") as e:
        P.check_inputs_on_nodes(ray, slots, shards)
    assert sorted(ray.probed) == [A, B]  # the head (no CPU: no worker) is never probed, though it is blind too
    assert "10.0.0.3" not in str(e.value)
    P.check_inputs_on_nodes(FakeRay(nodes, {A: reads_all, B: reads_all}), slots, shards)  # all read: no error


def test_nodes_that_die_or_do_not_answer_do_not_stop_the_run(shards, caplog):
    nodes, slots = cluster()
    ray = FakeRay(nodes, {A: RuntimeError("node died"), B: reads_all}, late=[B])
    P.check_inputs_on_nodes(ray, slots, shards)
    said = caplog.text
    assert "10.0.0.1 (aaaaaaaa) did not answer the input check (RuntimeError: node died)" in said
    assert "10.0.0.2 (bbbbbbbb) did not answer the input check (no answer within 120 s)" in said


def test_the_embedded_cluster_is_not_probed(shards, monkeypatch):
    from faceproc.cluster import EMBEDDED

    monkeypatch.setitem(EMBEDDED, "started", True)
    nodes, slots = cluster()
    ray = FakeRay(nodes, {})
    P.check_inputs_on_nodes(ray, slots, shards)
    assert ray.probed == []


# ------------------------------------------------------------------ what a stopped run leaves

def test_a_probe_stop_is_exit_1_with_one_line_and_the_same_command_later_finishes(tmp_path, fakes, monkeypatch):
    """The Ray executor raising the probe's error (its cluster stood in for) through the real CLI: exit 1, the
    line as it is, no row, the lock released; run again once the node reads the inputs, every row is written."""
    import pandas as pd
    from click.testing import CliRunner

    import faceproc.engine as engine
    from faceproc.cli import main
    from tests.helpers import make_tree

    make_tree(tmp_path / "in")
    line = "node 10.0.0.2 (bbbbbbbb) cannot read the input /in (/in/0.jpg: FileNotFoundError: No such file)"

    def blind(cfg, todo, out, run_id, on_done, plan):
        raise P.InputsUnreadable(line)

    monkeypatch.setattr(engine, "_ray_workers", lambda cfg: 2)
    monkeypatch.setattr(engine, "_run_ray", blind)
    args = ["annotate", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--engine", "ray", "--random-init"]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 1, r.output
    assert r.output.strip().splitlines()[-1] == f"Error: {line}"
    assert not list((tmp_path / "out").rglob("*.parquet")) and not (tmp_path / "out" / LOCK).exists()
    monkeypatch.setattr(engine, "_run_ray", lambda cfg, todo, out, run_id, on_done, plan:
                        engine._run_local(plan.for_workers(1), todo, out, run_id, on_done))  # the node mounted now
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    assert len(pd.read_parquet(tmp_path / "out" / "images")) == 8
