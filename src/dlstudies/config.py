"""Typed, frozen, strict configuration: a study's Config, its scale presets, dotted overrides.

`--set lr=0.05 --set hidden=32,16` replaces fields of the preset; an unknown key or a value that
does not parse as the field's type is a UsageError that names the valid keys.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import functools
import math
import types
import typing
from dataclasses import dataclass
from typing import Any, Callable

from dlstudies.errors import UsageError

SCALES = ("smoke", "default", "paper")
DEFAULT_SEEDS = {"smoke": 3, "default": 5, "paper": 10}
MAX_SEEDS = 1000  # enough for any confidence interval the studies report; more is a typo


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
    if origin is tuple:  # '' is the empty tuple (no hidden layer); '1,,2' or '1,' is a typo, not (1, 2)
        parts = [t.strip() for t in text.split(",")] if text.strip() else []
        if not all(parts):
            raise ValueError(text)
        return tuple(parse_value(t, args[0]) for t in parts)
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
    check_values(type(cfg), changes)  # the declared bounds first, with their words, before any study code
    return check_fields(_replaced(cfg, changes))


# ---- declared bounds ---------------------------------------------------------------------------
# Every field of every Config has a rule: a predicate on one value (a tuple field's every element)
# and the words that say what it must be. Rules go by field NAME, so a setting that several
# studies share (lr, epochs, hidden, ...) means the same everywhere and no study can forget one;
# a study-specific field may instead carry `dataclasses.field(metadata={"rule": (predicate, text)})`.
# Bounds are generous (a study's own `validate` checks the finer structure) but finite: a value
# past them is a typo, and would otherwise overflow a float, or run for days without a word.

Rule = tuple[Callable[[Any], bool], str]

MAX_ITEMS = 64  # elements of a tuple field (hidden layers, thresholds, batch sizes, ...)
MAX_WIDTH = 100_000  # units of one layer; what fits in memory is checked with the data (memory.py)
MAX_EPOCHS = 1_000_000
MAX_SAMPLES = 10_000_000


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_real(v: Any) -> bool:
    return (_is_int(v) or isinstance(v, float)) and math.isfinite(v)


def ints(lo: int, hi: int, noun: str = "") -> Rule:
    """An integer in [lo, hi]; `noun` words a tuple field ('widths' -> 'widths must all be ...')."""
    text = f"{noun} must all be" if noun else "must be"
    return (lambda v: _is_int(v) and lo <= v <= hi), f"{text} >= {lo} and <= {hi:,}"


def reals(lo: float, hi: float, lo_open: bool = False, hi_open: bool = False, noun: str = "") -> Rule:
    def valid(v):
        return _is_real(v) and (lo < v if lo_open else lo <= v) and (v < hi if hi_open else v <= hi)
    text = f"{noun} must all be" if noun else "must be"
    return valid, f"{text} {'>' if lo_open else '>='} {lo:g} and {'<' if hi_open else '<='} {hi:g}"


def names(max_len: int = 100) -> Rule:
    return (lambda v: isinstance(v, str) and 0 < len(v) <= max_len and v.isprintable()), \
        f"must be a name (1 to {max_len} printable characters)"


LR = reals(0, 1e3, lo_open=True, hi_open=True)  # > 0; at 1e3 and above a step overflows float32 weights
EPOCHS = ints(1, MAX_EPOCHS)
BATCH = ints(1, MAX_SAMPLES)
SAMPLES = ints(1, MAX_SAMPLES)
WIDTHS = ints(1, MAX_WIDTH, "widths")
CHANNELS = ints(1, 10_000, "channels")
DISTANCE = reals(0, 1e3, lo_open=True)
NAME = names()

FIELD_RULES: dict[str, Rule] = {
    # optimisation
    "lr": LR, "lr_*": LR, "*_lr": LR,
    "momentum": reals(0, 1, hi_open=True),
    "tolerance": reals(0, 1e3), "*_tolerance": reals(0, 1e3),
    "epochs": EPOCHS, "*epochs": EPOCHS, "budgets": ints(1, MAX_EPOCHS, "epoch budgets"),
    "gn_steps": ints(0, MAX_EPOCHS), "sharpness_steps": ints(1, 100_000),
    "batch_size": BATCH, "*_batch_size": BATCH, "batch_sizes": ints(1, MAX_SAMPLES, "batch sizes"),
    "small_batch": BATCH, "large_batch": BATCH, "eval_batch": BATCH,
    "restarts": ints(1, 1000), "same_init": ((lambda v: isinstance(v, bool)), "must be true or false"),
    # models
    "hidden": WIDTHS, "encoder": WIDTHS, "h1": WIDTHS, "h2": WIDTHS, "mlp_width": ints(1, MAX_WIDTH),
    "cnn_fc": ints(1, MAX_WIDTH), "channels": CHANNELS, "cnn_shallow": CHANNELS, "cnn_deep": CHANNELS,
    "depths": ints(1, 1000, "depths"), "mlp_depths": ints(1, 1000, "depths"), "layers_per_aann": ints(1, 100),
    "budget": ints(1, 100_000_000),
    "activation": NAME, "optimizer": NAME, "model": NAME, "norm": NAME, "target": NAME,
    "targets": NAME, "rules": NAME, "norms": NAME, "families": NAME,
    # data and seeds
    "data": names(4096), "n_train": SAMPLES, "n_test": SAMPLES, "sharpness_n": SAMPLES,
    "fractions": reals(0, 1, lo_open=True, noun="fractions"), "seed_chunk": ints(1, MAX_SEEDS),
    # what is measured
    "thresholds": reals(0, 1e3, lo_open=True, noun="thresholds"), "flanks": reals(0, 1e3, lo_open=True, noun="flanks"),
    "curve_points": ints(1, 100_000), "plot_points": ints(1, 100_000), "snapshot_every": EPOCHS,
    "grid": ints(1, 1001), "n_alphas": ints(1, 10_001), "radius": DISTANCE, "rise_radius": DISTANCE,
    "margin": reals(0, 1e3), "epsilon": DISTANCE, "alpha_min": reals(-1e3, 1e3), "alpha_max": reals(-1e3, 1e3),
}

# Where one name means something else in one study: {study module: {field: rule}}.
STUDY_RULES: dict[str, dict[str, Rule]] = {
    "random_labels": {"thresholds": reals(0, 1, lo_open=True, noun="accuracy thresholds")},
}


def rule_for(cls: type, f: dataclasses.Field) -> Rule | None:
    """The field's own rule, else its study's, else the shared one by name (exact, then pattern)."""
    if "rule" in f.metadata:
        return f.metadata["rule"]
    study = STUDY_RULES.get(cls.__module__.rsplit(".", 1)[-1], {})
    if f.name in study or f.name in FIELD_RULES:
        return study.get(f.name) or FIELD_RULES[f.name]
    return next((r for pattern, r in FIELD_RULES.items() if fnmatch.fnmatchcase(f.name, pattern)), None)


@functools.lru_cache(maxsize=None)
def _fields_of(cls: type) -> tuple[dict, dict]:
    return {f.name: f for f in dataclasses.fields(cls)}, typing.get_type_hints(cls)


def check_values(cls: type, values: dict) -> None:
    """Raise UsageError for the first value outside its field's declared bounds."""
    fields, hints = _fields_of(cls)
    for name, value in values.items():
        problem = _violation(cls, fields[name], hints[name], value)
        if problem:
            raise UsageError(f"{name} {problem}, got {_written(value)}")


def check_fields(cfg: Any) -> Any:
    """Every field of `cfg` within its declared bounds (however the Config was built), or UsageError."""
    check_values(type(cfg), {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)})
    return cfg


def _violation(cls: type, f: dataclasses.Field, hint: Any, value: Any) -> str | None:
    rule = rule_for(cls, f)
    if rule is None:  # test_bounds holds every field of every study to a rule; a new one fails there
        return None
    valid, text = rule
    if value is None:
        return None if type(None) in typing.get_args(hint) else f"{text}, not none"
    if typing.get_origin(hint) is tuple or isinstance(value, tuple):
        if not isinstance(value, tuple) or len(value) > MAX_ITEMS:
            return f"{text}, at most {MAX_ITEMS} of them"
        return None if all(valid(v) for v in value) else text
    return None if valid(value) else text


def _written(value: Any) -> str:
    text = ",".join(map(str, value)) if isinstance(value, tuple) else str(value)
    return text if len(text) <= 80 else text[:77] + "..."


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
