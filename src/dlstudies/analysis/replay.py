"""Measures `dlstudies plan` times once, not in every slice.

A plan times several slices of one unit (budgets and data sizes cut small) and keeps only their
costs. A measure taken on a trained model (a Hessian spectrum, sharpness, an interpolation curve, a
loss plane) costs what the shapes of its inputs and its settings make it cost, whatever the weights
the training left: its slices at other epoch budgets would only time it again. A function marked
`@replayable` runs as it is, except inside `replaying(memo)`: there a call whose inputs have the
shapes and settings of one run REAL_RUNS times before in that memo returns that call's value and
notes the least CPU seconds (`time.process_time`) it took, instead of running again. Its first run
in a process may pay one-off work (the first call of a kernel), so one run is not enough.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import time
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

REAL_RUNS = 2


@dataclass
class Seen:
    """A measure's calls of one cost key: how many ran, the least CPU seconds, the last value."""

    runs: int
    seconds: float
    value: Any


@dataclass
class Replay:
    memo: dict  # cost key -> Seen, kept across the slices of one kind of unit
    seconds: float = 0.0  # CPU seconds of the calls replayed inside this block
    calls: int = 0  # calls replayed inside this block
    inside: bool = False  # a replayable measure is running: measures it calls are part of its cost


_REPLAY: ContextVar[Replay | None] = ContextVar("replay", default=None)


@contextlib.contextmanager
def replaying(memo: dict):
    """Replay the measures met REAL_RUNS times in `memo` inside the block; yields the Replay, whose
    `seconds` the block's own CPU time lacks."""
    replay = Replay(memo)
    token = _REPLAY.set(replay)
    try:
        yield replay
    finally:
        _REPLAY.reset(token)


def replayable(fn: Callable) -> Callable:
    """Mark `fn` as a measure whose cost its inputs' shapes and its settings set (see the module)."""

    @functools.wraps(fn)
    def measure(*args, **kwargs):
        replay = _REPLAY.get()
        if replay is None or replay.inside:
            return fn(*args, **kwargs)
        key = (fn.__module__, fn.__qualname__, cost_key(args), cost_key(kwargs))
        seen = replay.memo.get(key)
        if seen is not None and seen.runs >= REAL_RUNS:
            replay.seconds += seen.seconds
            replay.calls += 1
            return copy.deepcopy(seen.value)
        replay.inside, start = True, time.process_time()
        try:
            value = fn(*args, **kwargs)
        finally:
            replay.inside = False
        seconds = time.process_time() - start
        runs, least = (0, seconds) if seen is None else (seen.runs, min(seen.seconds, seconds))
        replay.memo[key] = Seen(runs + 1, least, value)
        return value

    return measure


def cost_key(value: Any) -> Any:
    """What of `value` sets a measure's cost: a tensor's or array's shape and type, a model's class
    and parameter shapes, a setting's value; not the numbers a tensor holds."""
    for kind, key in COST_KEYS:
        if isinstance(value, kind):
            return key(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return (type(value).__qualname__, tuple(cost_key(getattr(value, f.name)) for f in dataclasses.fields(value)))
    if callable(value):
        return (getattr(value, "__module__", None), getattr(value, "__qualname__", type(value).__qualname__))
    if hasattr(value, "__dict__"):
        return (type(value).__qualname__, cost_key(vars(value)))
    return type(value).__qualname__  # a generator, a stream: its state sets values, not costs


def _module_key(model: nn.Module) -> tuple:
    shapes = lambda named: tuple((n, tuple(t.shape), str(t.dtype)) for n, t in named)  # noqa: E731
    return ("module", type(model).__qualname__, shapes(model.named_parameters()), shapes(model.named_buffers()))


COST_KEYS: tuple[tuple[type | tuple[type, ...], Callable[[Any], Any]], ...] = (
    ((bool, int, float, complex, str, bytes, type(None)), lambda v: (type(v).__name__, v)),
    (torch.Tensor, lambda t: ("tensor", tuple(t.shape), str(t.dtype), t.device.type)),
    (np.ndarray, lambda a: ("array", a.shape, str(a.dtype))),
    (nn.Module, _module_key),
    (dict, lambda d: ("dict", tuple((cost_key(k), cost_key(v)) for k, v in d.items()))),
    ((list, tuple), lambda s: (type(s).__name__, tuple(cost_key(v) for v in s))),
)
