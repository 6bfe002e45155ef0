"""What a study is: its question, its Config presets, and four functions the runner calls."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from dlstudies.config import DEFAULT_SEEDS, Runtime
from dlstudies.registry import Registry, caller_module

STUDIES: Registry = Registry("study")


@dataclass(frozen=True)
class Unit:
    """One piece of work: a study's config, the seeds it trains and what else sets it apart."""

    study: str
    config: Any
    seeds: tuple[int, ...]
    runtime: Runtime
    params: tuple[tuple[str, Any], ...] = ()  # e.g. (("condition", "adam"),)

    def param(self, name: str, default: Any = None) -> Any:
        return dict(self.params).get(name, default)


@dataclass(frozen=True)
class Study:
    name: str
    question: str
    presets: dict[str, Any]  # scale -> Config
    units: Callable[[Any, tuple[int, ...], Runtime], list[Unit]]
    run_unit: Callable[[Unit], dict]  # -> {"runs": [...], ...} of plain, JSON-ready data
    summarize: Callable[[Any, list[dict]], dict]  # -> conditions, comparisons, checks, answer, ...
    figures: Callable[[dict, Any], list[str]]  # (results, folder) -> file names drawn
    runtime_s: str = ""  # expected runtime at default scale, for `dlstudies list`
    seeds: dict[str, int] | None = None  # seeds per scale when --seeds is not given; None: DEFAULT_SEEDS

    def default_seeds(self, scale: str) -> int:
        return (self.seeds or DEFAULT_SEEDS)[scale]


def register(study: Study) -> Study:
    """Add a study under its name, owned by the calling module (a notebook cell: `__main__`)."""
    return STUDIES.register(study.name, module=caller_module())(study)


def seed_chunks(seeds: tuple[int, ...], size: int) -> list[tuple[int, ...]]:
    """Seeds in fixed-size chunks: the partition, and so each result, never depends on --workers."""
    return [tuple(seeds[i:i + size]) for i in range(0, len(seeds), max(1, size))]


def finite(value: Any) -> Any:
    """JSON-ready plain data: numpy to Python, NaN and infinities to None."""
    if isinstance(value, dict):
        return {str(k): finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    if isinstance(value, np.ndarray):
        return finite(value.tolist())
    if isinstance(value, (np.integer, np.bool_)):
        return value.item()
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value
