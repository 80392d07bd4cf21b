"""No import circle inside faceproc (issue 20): a circle makes a module's meaning depend on import order, and
is where one concern leaks into another. Lazy imports inside functions count too: they are circles all the
same, only hidden from the interpreter until the function runs."""

from __future__ import annotations

import ast
from pathlib import Path

import faceproc

ROOT = Path(faceproc.__file__).parent


def _graph(root: Path = ROOT) -> dict[str, set[str]]:
    mods = {}
    for p in root.rglob("*.py"):
        name = ".".join(("faceproc",) + p.relative_to(root).with_suffix("").parts)
        mods[name.removesuffix(".__init__")] = p
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for m, p in mods.items():
        pkg = m if p.name == "__init__.py" else m.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    parts = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                    target = ".".join(parts + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                subs = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in graph]
                graph[m].update(t for t in (subs or [target]) if t in graph and t != m)
            elif isinstance(node, ast.Import):
                graph[m].update(a.name for a in node.names if a.name in graph and a.name != m)
    return graph


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on.add(start)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def test_faceproc_has_no_import_circle():
    assert _circles(_graph()) == []


def test_the_check_sees_a_circle_even_through_a_lazy_import(tmp_path):
    pkg = tmp_path / "faceproc"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from .b import x\n")
    (pkg / "b.py").write_text("def x():\n    from .c import y\n")
    (pkg / "c.py").write_text("from . import a\n")
    (pkg / "d.py").write_text("from .a import x\n")
    assert _circles(_graph(pkg)) == [["faceproc.a", "faceproc.b", "faceproc.c"]]
