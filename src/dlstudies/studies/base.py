"""What a study is: its question, its Config presets, its work-unit grid, its claims, and the
functions the runner calls.

A study module holds only its science (how a unit trains and measures, what the literature
claims, how the answer reads, what the figures draw); the `Study` record owns the rest: field
rules that run on every Config however it is built (`StudyConfig`), the units from a declared
grid of conditions × seed blocks, the standard summary per condition and the claim evaluation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from dlstudies.config import DEFAULT_SEEDS, MAX_SEEDS, Runtime, check_fields, ints
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
class StudyConfig:
    """Base of every study's Config. The field rules (config.check_fields: bounds by field name,
    or a field's own `metadata["rule"]`) and the study's `validate()` run in `__post_init__`, so
    they hold for presets, `dataclasses.replace()` and `--set` alike. Subclasses override
    `validate` (cross-field rules, registry names), never `__post_init__`."""

    def __post_init__(self):
        check_fields(self)
        self.validate()

    def validate(self) -> None:
        pass


Grid = Callable[[Any], Sequence[tuple[tuple[str, Any], ...]]]


def no_grid(cfg: Any) -> list[tuple]:
    return [()]


@dataclass(frozen=True)
class Study:
    """A study. `grid(cfg)` lists the unit params (e.g. `(("norm", "batchnorm"),)`), each run for
    every block of seeds; `claims(cfg)` the Claim records judged after `summarize`; `answer(cfg,
    results)` the one-sentence answer, opening with the verdict. `units` overrides the grid where
    a study needs another partition."""

    name: str
    question: str
    presets: dict[str, Any]  # scale -> Config
    run_unit: Callable[[Unit], dict]  # -> {"runs": [...], ...} of plain, JSON-ready data
    summarize: Callable[..., dict]  # (cfg, unit_results[, standard]) -> conditions, tables, ...
    figures: Callable[[dict, Any], list[str]]  # (results, folder) -> file names drawn
    runtime_s: str = ""  # expected runtime at default scale, for `dlstudies list`
    seeds: dict[str, int] | None = None  # seeds per scale when --seeds is not given; None: DEFAULT_SEEDS
    grid: Grid = no_grid
    units: Callable[[Any, tuple[int, ...], Runtime], list[Unit]] | None = None
    metrics: tuple[str, ...] = ()  # summarised per condition by the standard summary
    claims: Callable[[Any], list] | None = None
    answer: Callable[[Any, dict], str] | None = None
    setup: Callable[[Any], str] | None = None  # one line: data, model, optimizer, budget

    def default_seeds(self, scale: str) -> int:
        return (self.seeds or DEFAULT_SEEDS)[scale]

    def work_units(self, cfg: Any, seeds: tuple[int, ...], runtime: Runtime) -> list[Unit]:
        if self.units is not None:
            return self.units(cfg, seeds, runtime)
        size = getattr(cfg, "seed_chunk", len(seeds) or 1)
        return [Unit(self.name, cfg, block, runtime, tuple(params))
                for params in self.grid(cfg) for block in seed_blocks(seeds, size)]


def register(study: Study) -> Study:
    """Add a study under its name, owned by the calling module (a notebook cell: `__main__`)."""
    return STUDIES.register(study.name, module=caller_module())(study)


def seed_chunks(seeds: tuple[int, ...], size: int) -> list[tuple[int, ...]]:
    """Seeds in fixed-size chunks: the partition, and so each result, never depends on --workers."""
    return [tuple(seeds[i:i + size]) for i in range(0, len(seeds), max(1, size))]


def seed_blocks(seeds: Sequence[int], size: int) -> list[tuple[int, ...]]:
    """Seeds grouped by block id (seed // size): seed 3 trains beside seeds 0-9 whether 4 or 10
    seeds were asked for, and a seed list (0, 1, 12) keeps 12 in a block of its own."""
    blocks: dict[int, list[int]] = {}
    for s in sorted(seeds):
        blocks.setdefault(s // max(1, size), []).append(s)
    return [tuple(b) for _, b in sorted(blocks.items())]


def added_seeds_field():
    """A Config's `added_seeds`: how many seeds the arms a study adds beside its source's run (None:
    every seed). The `paper` presets keep the source's arms at its seed count and run the added ones
    (de-confounding arms, intermediate levels) at fewer: they are what makes a paper run long."""
    return field(default=None, metadata={"rule": ints(1, MAX_SEEDS)})


def first_seeds(seeds: Sequence[int], n: int | None) -> tuple[int, ...]:
    """The first n of the seeds in order (all of them where n is None): an arm with fewer seeds runs a
    prefix, so it pairs by seed with every arm that runs more."""
    ordered = tuple(sorted(seeds))
    return ordered if n is None else ordered[:n]


def arm_seed_blocks(arm_seeds: Mapping[str, Sequence[int]], size: int) -> list[tuple[tuple[str, ...], tuple[int, ...]]]:
    """(arms, seed block) pairs that train each arm on its own seeds: seeds grouped by the arms that run
    them (a seed every arm runs trains beside its like), each group in seed_blocks of `size`. Depends
    on the config's arms and seeds alone: the same partition on every machine and device."""
    groups: dict[tuple[str, ...], list[int]] = {}
    for s in sorted({s for seeds in arm_seeds.values() for s in seeds}):
        groups.setdefault(tuple(a for a, seeds in arm_seeds.items() if s in seeds), []).append(s)
    return [(arms, block) for arms, seeds in groups.items() for block in seed_blocks(seeds, size)]


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
