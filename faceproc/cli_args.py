"""The config of a command: YAML file plus its options, checked once; shared by every command module so that
none imports another (cli.py registers cli_models.py's commands)."""

from __future__ import annotations

import click

from .config import Config, ConfigError


def build_config(config: str | None, **overrides) -> Config:
    """A bad config is a one-line-per-problem usage error, not a traceback."""
    try:
        return Config.load(config, {k: v for k, v in overrides.items() if v is not None})
    except ConfigError as e:
        raise click.ClickException(str(e)) from None
