"""The README says what is true: its pandas examples run against a real output folder (made with stand-in
models), its test command is what CI runs, its links and screenshot exist, and its configuration table names
settings and environment variables the code reads. Its recipes: tests/unit/test_recipes.py."""

import re

from tests.conftest import REPO
from tests.helpers import cfg_for_tests, make_tree

from faceproc.engine import annotate


def readme() -> str:
    return (REPO / "README.md").read_text()


def readme_query_block() -> str:
    section = readme().split("### Querying with pandas", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_pandas_examples_run(tmp_path, monkeypatch, fakes):  # noqa: F811
    make_tree(tmp_path / "in", 9)
    annotate([str(tmp_path / "in")], tmp_path / "out", cfg_for_tests(), engine="local", models=fakes)
    monkeypatch.chdir(tmp_path)
    code = readme_query_block()
    assert "pd.read_parquet(\"out/faces\")" in code
    scope = {}
    exec(compile(code, "README.md", "exec"), scope)
    assert len(scope["faces"]) == 5 and len(scope["images"]) == 10
    assert scope["per_photo"]["n"].sum() == 5


def test_ci_runs_the_readme_test_command():
    """.ci/run must run the README's test command, word for word (with its install steps before it)."""
    command = re.search(r"^(python -m pytest[^#\n]*?)\s*# the test command", readme(), re.M).group(1).strip()
    ci = (REPO / ".ci" / "run").read_text().strip().splitlines()
    assert ci[-1].strip() == command


def anchors(page) -> set[str]:
    """GitHub's heading anchors of a Markdown file: lower case, punctuation dropped, spaces as dashes."""
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in re.findall(r"^#+ (.+)$", text, re.M)}


def test_readme_and_docs_links_exist():
    """Every relative link and image of the README and of docs/*.md points at a file of the repository (and a
    heading of it, for a #fragment); the screenshot is small."""
    local = [t for t in re.findall(r"\]\(([^)\s]+)\)", readme()) if "://" not in t]
    assert "docs/img/report.png" in local and "docs/guarantees.md" in local
    pages = [(REPO / "README.md", local)] + [(p, re.findall(r"\]\(([^)\s]+)\)", p.read_text()))
                                               for p in sorted((REPO / "docs").glob("*.md"))]
    broken = []
    for page, links in pages:
        for link in links:
            if "://" in link:
                continue
            path, _, frag = link.partition("#")
            target = (page.parent / path) if path else page
            if not target.is_file() or (frag and frag not in anchors(target)):
                broken.append(f"{page.name}: {link}")
    assert broken == []
    assert (REPO / "docs/img/report.png").stat().st_size < 150_000


def test_readme_configuration_table_names_real_settings():
    """Each row of the model-locations table: the config key is a setting, the variable is read by the code."""
    from faceproc.config import Config
    from faceproc.train.config import TrainConfig

    section = readme().split("## Configuration", 1)[1].split("\n## ", 1)[0]
    rows = [r for r in section.splitlines() if r.startswith("| ") and "`" in r]
    assert len(rows) >= 6
    source = "\n".join(p.read_text() for p in (REPO / "faceproc").rglob("*.py"))
    for row in rows:
        cells = row.split("|")[1:-1]
        for key in re.findall(r"`([a-z_.]+)`", cells[1]):
            obj = TrainConfig() if "." not in key else Config()
            for part in key.split("."):
                assert hasattr(obj, part), f"README config key {key} is not a setting"
                obj = getattr(obj, part)
        for var in re.findall(r"`(FACEPROC_[A-Z_]+)", cells[2]):
            read = f'"{var}"' in source  # (not in the assert: pytest would print every source file)
            assert read, f"README names {var}, which faceproc does not read"
