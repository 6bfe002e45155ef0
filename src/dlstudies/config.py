"""Typed, frozen, strict configuration: a study's Config, its scale presets, dotted overrides.

`--set lr=0.05 --set hidden=32,16` replaces fields of the preset; an unknown key or a value that
does not parse as the field's type is a UsageError that names the valid keys.
"""

from __future__ import annotations

import dataclasses
import math
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


def _parse_float(text: str) -> float:
    # results.json holds only finite numbers, and no setting means anything at NaN or infinity
    # (`lr=inf` would pass `lr > 0`); None, where a field allows it, is written `none`.
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(text)
    return value


SCALARS = {int: int, float: _parse_float, str: str, bool: _parse_bool}


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
            raise UsageError(f"unknown --set key '{key}' for {_study_of(cfg)}; valid keys: {valid}")
        try:
            changes[key] = parse_value(text.strip(), hints[key])
        except (ValueError, KeyError, IndexError, TypeError, StopIteration):
            raise UsageError(f"--set {key}: cannot read '{text}' as {_type_name(hints[key])}") from None
    return check_common(_replaced(cfg, changes))


def _count(v) -> bool:
    return v is None or v >= 1


# Settings many studies share, with one meaning in all of them: checked here once for every
# Config, so no study can forget one; each Config's __post_init__ checks the rest.
COMMON_CHECKS = {
    "n_train": (_count, "must be >= 1, or none for the whole split"),
    "n_test": (_count, "must be >= 1, or none for the whole split"),
    "seed_chunk": (lambda v: v >= 1, "must be >= 1"),
    "hidden": (lambda v: all(h >= 1 for h in v), "widths must all be >= 1"),
}


def check_fields(cfg: Any) -> Any:
    """Every field rule that applies to the Config (by field name); UsageError on the first broken one."""
    return check_common(cfg)


def check_common(cfg: Any) -> Any:
    for name, (valid, rule) in COMMON_CHECKS.items():
        if hasattr(cfg, name) and not valid(getattr(cfg, name)):
            raise UsageError(f"{name} {rule}, got {_written(getattr(cfg, name))}")
    return cfg


def _written(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


def _replaced(cfg: Any, changes: dict) -> Any:
    """The config with `changes`; its __post_init__ raises UsageError for values it rejects.

    A TypeError or ValueError from a check that did not expect a value (`None >= 1`) is still
    the user's value that the study cannot take, so it becomes a UsageError too.
    """
    try:
        return dataclasses.replace(cfg, **changes)
    except UsageError:
        raise
    except (TypeError, ValueError) as err:
        settings = ", ".join(f"{k}={v!r}" for k, v in changes.items())
        raise UsageError(f"--set {settings}: not valid for {_study_of(cfg)} ({err})") from None


def _study_of(cfg: Any) -> str:
    return type(cfg).__module__.rsplit(".", 1)[-1]


def _type_name(hint: Any) -> str:
    """How a value of `hint` is written on the command line: 'int', 'int or none', 'comma-separated ints'."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in args if a is not type(None)) + (" or none" if type(None) in args else "")
    if origin is tuple and args:
        return f"comma-separated {_type_name(args[0])}s"
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def require(condition: bool, message: str) -> None:
    """Config validation: a false condition is the user's error, named in `message`."""
    if not condition:
        raise UsageError(message)


def as_dict(cfg: Any) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(cfg).items()}
