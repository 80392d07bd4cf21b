"""Building a tree of settings dataclasses from YAML-shaped dicts: every problem at once, one per line.

Generic on purpose (it knows no faceproc section): types are checked and coerced by pydantic from the
annotations (lax: "64" -> 64), value rules come from the caller by dotted key, and an unknown key names
its replacement or the nested section where a key of that name now lives.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, Callable

Rules = dict[str, tuple[Callable[[Any], bool], str]]


class ConfigError(ValueError):
    """Every problem of a config at once, one per line."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("invalid configuration:\n  " + "\n  ".join(self.problems))


def walk(obj, where: str = ""):
    """(dotted key, field, value) of every leaf setting, through nested sections."""
    for f in dataclasses.fields(obj):
        value, key = getattr(obj, f.name), f"{where}.{f.name}" if where else f.name
        if dataclasses.is_dataclass(value):
            yield from walk(value, key)
        else:
            yield key, f, value


def broken_rules(obj, rules: Rules) -> list[str]:
    return [f"{key} = {value!r}: {rules[key][1]}" for key, _, value in walk(obj)
            if key in rules and not rules[key][0](value)]


def _sections(cls) -> dict[str, type]:
    """Field name -> dataclass of every nested section of cls."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if dataclasses.is_dataclass(hints[f.name])}


def _typed(cls, data: dict[str, Any], where: str) -> tuple[dict[str, Any], list[str]]:
    from pydantic import TypeAdapter, ValidationError

    hints = typing.get_type_hints(cls)
    out, problems = {}, []
    for name, value in data.items():
        try:
            out[name] = TypeAdapter(hints[name]).validate_python(value)
        except ValidationError as e:
            problems.append(f"{where}.{name} = {value!r}: {e.errors()[0]['msg']} (expected "
                            f"{next(f.type for f in dataclasses.fields(cls) if f.name == name)})")
    return out, problems


def _unknown(cls, key: str, where: str, replaced: dict[tuple[str, str], str]) -> str:
    known = sorted(f.name for f in dataclasses.fields(cls))
    msg = f"unknown key {(where + '.') if where else ''}{key} (known: {', '.join(known)})"
    if (cls.__name__, key) in replaced:
        return f"{msg}; {replaced[(cls.__name__, key)]}"
    homes = [name for name, sub in _sections(cls).items() if key in {f.name for f in dataclasses.fields(sub)}]
    if homes:
        return f"{msg}; it now sits under its {' or '.join(homes)} section: " + ", ".join(
            f"{where}.{h}.{key}" if where else f"{h}.{key}" for h in homes)
    return msg


def build(cls, data: Any, rules: Rules, replaced: dict[tuple[str, str], str], where: str = ""):
    """cls(**data), nested sections built alike; raises ConfigError with every problem found."""
    if not isinstance(data, dict):
        raise ConfigError([f"config section {where or '<root>'} must be a mapping, got {type(data).__name__}"])
    known = {f.name for f in dataclasses.fields(cls)}
    sections = _sections(cls)
    problems = [_unknown(cls, k, where, replaced) for k in sorted(set(data) - known, key=str)]
    kwargs, plain = {}, {}
    for name, value in data.items():
        if name in sections:
            try:
                kwargs[name] = build(sections[name], value or {}, rules, replaced, f"{where}.{name}" if where else name)
            except ConfigError as e:
                problems += e.problems
        elif name in known:
            plain[name] = value
    typed, type_problems = _typed(cls, plain, where)
    problems += type_problems
    for name, value in typed.items():  # value rules on what passed the type check: all problems at once
        rule = rules.get(f"{where}.{name}")
        if rule and not rule[0](value):
            problems.append(f"{where}.{name} = {value!r}: {rule[1]}")
    if problems:
        raise ConfigError(problems)
    return cls(**kwargs, **typed)
