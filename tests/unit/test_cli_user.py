"""The command line for a user (issue 23, item 7): `annotate --help` says in plain words what it does, with an
example, frozen vs unfrozen and their measured figures (from the shipped model cards); the default config
ships inside the package, `faceproc config` prints it, and it is exactly the code's defaults."""

import json
import re
import tomllib
from pathlib import Path

import yaml
from click.testing import CliRunner

from faceproc.cli import _model_figures, main
from faceproc.config import Config
from tests.conftest import REPO

PACKAGE = REPO / "faceproc"


def help_text(*cmd) -> str:
    r = CliRunner().invoke(main, [*cmd, "--help"], terminal_width=200)
    assert r.exit_code == 0, r.output
    return r.output


def test_annotate_help_is_in_a_users_words():
    text = help_text("annotate")
    main_text = text.split("Options:")[0]
    assert main_text.count("faceproc annotate ~/Pictures -o ~/faces") == 2  # an example, and its rerun:
    assert "only new and changed photos" in main_text  # what a rerun does
    for jargon in ("shard", "actor", "fingerprint", "manifest"):
        assert jargon not in main_text.lower(), jargon
    assert re.search(r"Exit status: 0 done, 1 error or refusal .*, 2 .*, 64 bad command line,\s+130 interrupted",
                     " ".join(main_text.split()))
    assert "unfrozen, the default, is the more accurate" in main_text
    assert "frozen keeps its ImageNet network fixed" in main_text and "faster to train, less accurate" in main_text


def test_the_help_quotes_the_shipped_models_measured_figures():
    """Read from the cards (the report half's group photos), so a newly shipped model cannot leave them stale."""
    flat = " ".join(help_text("annotate").split())
    u, f = (json.loads((PACKAGE / "weights" / f"{v}.json").read_text())["photo_evaluation"]["photos"]
            for v in ("unfrozen", "frozen"))
    assert (f"on {u['photos']} group photos kept apart from every choice ({u['n']} faces): unfrozen is off by "
            f"{u['age_mae']:.1f} years on average and gets {u['gender_acc']:.1%} of genders right; frozen "
            f"{f['age_mae']:.1f} years and {f['gender_acc']:.1%}") in flat
    assert u["age_mae"] < f["age_mae"] and u["gender_acc"] > f["gender_acc"]  # "the more accurate" holds


def test_the_figures_follow_the_cards(tmp_path):
    for v, (mae, acc) in {"unfrozen": (4.04, 0.955), "frozen": (7.96, 0.8)}.items():
        card = {"photo_evaluation": {"photos": {"photos": 12, "n": 34, "age_mae": mae, "gender_acc": acc}}}
        (tmp_path / f"{v}.json").write_text(json.dumps(card))
    assert _model_figures(tmp_path) == ("on 12 group photos kept apart from every choice (34 faces): unfrozen is off "
                                        "by 4.0 years on average and gets 95.5% of genders right; frozen 8.0 years "
                                        "and 80.0%")
    (tmp_path / "frozen.json").write_text("{}")  # a card without the figures: the help points to the cards
    assert "faceproc/weights/unfrozen.json" in _model_figures(tmp_path)


def test_option_help_is_short_and_plain():
    text = help_text("annotate").split("Options:")[1]
    assert "faceproc config" in text  # where --config's file comes from
    assert "configs/annotate.yaml" not in text  # a file pip does not install
    assert "actor" not in text.lower()
    helps = re.findall(r"^\s+-.*?\s{2,}(\S.*)$", text, re.M)
    assert helps and max(len(h) for h in helps) < 150


def test_faceproc_config_prints_the_packaged_defaults_and_they_are_the_codes():
    r = CliRunner().invoke(main, ["config"])
    assert r.exit_code == 0
    packaged = (PACKAGE / "default_config.yaml").read_text(encoding="utf-8")
    assert r.output == packaged
    assert yaml.safe_load(r.output) == Config().to_dict()  # every setting, each with the code's default
    # the repository's copy is the same file
    assert (REPO / "configs" / "annotate.yaml").read_text(encoding="utf-8") == packaged


def test_the_printed_config_is_a_working_config_file(tmp_path):
    (tmp_path / "my.yaml").write_text(CliRunner().invoke(main, ["config"]).output)
    assert Config.load(tmp_path / "my.yaml").to_dict() == Config().to_dict()


def test_pip_installs_the_default_config():
    data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["faceproc"]
    assert "default_config.yaml" in data
    assert Path(PACKAGE / "default_config.yaml").is_file()
