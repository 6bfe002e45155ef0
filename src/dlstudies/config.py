"""Typed, frozen, strict configuration: a study's Config, its scale presets, dotted overrides.

`--set lr=0.05 --set hidden=32,16` replaces fields of the preset; an unknown key or a value that
does not parse as the field's type is a UsageError that names the valid keys.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from typing import Any

from dlstudies.errors import UsageError

SCALES = ("smoke", "default", "paper")
DEFAULT_SEEDS = {"smoke": 3, "default": 5, "paper": 10}


@dataclass(frozen=True)
class Runtime:
    """How units run, as opposed to what they compute (the study's Config)."""

    engine: str = "batched"
    device: str = "cpu"
    data_dir: str | None = None
    dtype: str = "float32"


def _parse_bool(text: str) -> bool:
    table = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
    if text.lower() not in table:
        raise ValueError(text)
    return table[text.lower()]


SCALARS = {int: int, float: float, str: str, bool: _parse_bool}


def parse_value(text: str, hint: Any) -> Any:
    """Parse `text` as the annotated type: scalars, `X | None`, and `tuple[X, ...]` (comma-separated)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if text.lower() == "none" and type(None) in args:
            return None
        return parse_value(text, next(a for a in args if a is not type(None)))
    if origin is tuple:
        return tuple(parse_value(t.strip(), args[0]) for t in text.split(",") if t.strip())
    return SCALARS[hint](text)


def apply_overrides(cfg: Any, pairs: list[str]) -> Any:
    hints = typing.get_type_hints(type(cfg))
    valid = ", ".join(f.name for f in dataclasses.fields(cfg))
    changes = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key = key.strip()
        if not sep:
            raise UsageError(f"--set expects KEY=VALUE, got '{pair}'; valid keys: {valid}")
        if key not in hints:
            raise UsageError(f"unknown --set key '{key}' for {type(cfg).__module__.rsplit('.', 1)[-1]}; valid keys: {valid}")
        try:
            changes[key] = parse_value(text.strip(), hints[key])
        except (ValueError, KeyError, StopIteration):
            raise UsageError(f"--set {key}: cannot read '{text}' as {_type_name(hints[key])}") from None
    return dataclasses.replace(cfg, **changes)


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def require(condition: bool, message: str) -> None:
    """Config validation: a false condition is the user's error, named in `message`."""
    if not condition:
        raise UsageError(message)


def as_dict(cfg: Any) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(cfg).items()}
