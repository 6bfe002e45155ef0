"""Train a stack of members: `fit()` is the entry point; two engines stand behind one signature.

    from dlstudies.engine import fit
    result = fit(members, OptSpec("adam", 0.01), x, y, epochs=20, batch_size=16, order=my_order)
    result.path  # "fused", "autograd" (batched engine), "kernel", or "reference"

The studies call the engines through ENGINES (`ENGINES.get(name)(members, opts, x, y, spec, seeds)`);
every fit made so reports its path to `record.paths_taken()`, which is how results.json knows which
path trained each unit.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable, Sequence

import torch
from torch import nn

from dlstudies.engine.batched import fit_batched, predict_members
from dlstudies.engine.losses import LOSSES
from dlstudies.engine.record import FitResult, fit_seconds, note_path, paths_taken, training_phase
from dlstudies.engine.reference import fit_reference
from dlstudies.engine.schedule import ORDERS, Order, StopRule, fixed_epochs
from dlstudies.engine.spec import TrainSpec
from dlstudies.errors import UsageError
from dlstudies.optim import OptSpec
from dlstudies.registry import Registry


def _noted(engine: Callable[..., FitResult]) -> Callable[..., FitResult]:
    @functools.wraps(engine)
    def run(*args, **kwargs) -> FitResult:
        with training_phase():
            result = engine(*args, **kwargs)
        return note_path(result)

    return run


ENGINES: Registry = Registry("engine")
ENGINES.register("batched")(_noted(fit_batched))
ENGINES.register("reference")(_noted(fit_reference))


def fit(members: nn.Module | Sequence[nn.Module], opts: OptSpec | Sequence[OptSpec], x: torch.Tensor, y: torch.Tensor,
        spec: TrainSpec | None = None, *, seeds: Sequence[int] | None = None, order: Order | None = None,
        engine: str = "batched", path: str = "auto", epochs: int | None = None, **spec_fields) -> FitResult:
    """Train M members (plain `nn.Module`s of one architecture) at once; returns a FitResult whose
    `path` says which engine path ran: "kernel", "fused" or "autograd" (batched engine), "reference".

    - `opts`: one OptSpec for every member, or one per member;
    - `spec`: a TrainSpec; or leave it out and give `epochs=` and any TrainSpec field
      (`batch_size=`, `loss=`, `probes=`, ...) as keywords;
    - `seeds`: one per member (default 0..M-1); a registered order ("shuffle") draws from them;
    - `order`: replaces the spec's: a name in ORDERS, a (members, samples) table of sample indices
      used every epoch, an (epochs, members, samples) table, or a function epoch -> (members, samples);
    - `engine`: "batched" or "reference"; `path` (batched only): "auto", "kernel", "fused" or "autograd".
    The members passed in are not changed: trained copies are in `result.models`.
    """
    members = [members] if isinstance(members, nn.Module) else list(members)
    opts = [opts] * len(members) if isinstance(opts, OptSpec) else list(opts)
    seeds = list(range(len(members))) if seeds is None else [int(s) for s in seeds]
    _check_members(members, opts, seeds)
    spec = _spec(spec, order, epochs, spec_fields)
    options = {"path": path} if engine == "batched" else {}
    if engine != "batched" and path != "auto":
        raise UsageError(f"path={path!r} chooses among the batched engine's paths; the {engine} engine has one")
    return ENGINES.get(engine)(members, opts, x, y, spec, seeds, **options)


def _check_members(members: list, opts: list, seeds: list) -> None:
    if not members:
        raise UsageError("fit needs at least one member")
    if len(opts) != len(members) or len(seeds) != len(members):
        raise UsageError(f"{len(members)} members need as many optimizers and seeds; got {len(opts)} and {len(seeds)}")


def _spec(spec: TrainSpec | None, order: Order | None, epochs: int | None, fields: dict) -> TrainSpec:
    if spec is None:
        if epochs is None:
            raise UsageError("fit needs a TrainSpec or epochs=N")
        unknown = sorted(set(fields) - {f.name for f in dataclasses.fields(TrainSpec)} | {"stop"} & set(fields))
        if unknown:
            valid = ", ".join(f.name for f in dataclasses.fields(TrainSpec) if f.name != "stop")
            raise UsageError(f"fit: unknown TrainSpec field(s) {', '.join(unknown)}; valid: {valid}")
        spec = TrainSpec(fixed_epochs(epochs), **fields)
    elif epochs is not None or fields:
        raise UsageError("give fit either a TrainSpec or epochs= and its fields, not both")
    return spec if order is None else dataclasses.replace(spec, order=order)


__all__ = ["ENGINES", "LOSSES", "ORDERS", "FitResult", "StopRule", "TrainSpec", "fit", "fit_batched", "fit_reference",
           "fit_seconds", "fixed_epochs", "paths_taken", "predict_members", "training_phase"]
