"""The README's pandas examples run against a real output folder (made with stand-in models)."""

import re

from tests.conftest import REPO
from tests.helpers import cfg_for_tests, make_tree

from faceproc.engine import annotate


def readme_query_block() -> str:
    text = (REPO / "README.md").read_text()
    section = text.split("### Querying with pandas", 1)[1]
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
    text = (REPO / "README.md").read_text()
    command = re.search(r"^(python -m pytest[^#\n]*?)\s*# the test command", text, re.M).group(1).strip()
    ci = (REPO / ".ci" / "run").read_text().strip().splitlines()
    assert ci[-1].strip() == command
