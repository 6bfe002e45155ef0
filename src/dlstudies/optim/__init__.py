"""Optimizers over stacked parameters: M independent optimizers as a few elementwise kernels.

Each rule is a small class over a flat `(m, P)` slice of the stack, with per-member
hyperparameters shaped `(m, 1)` (so a learning-rate sweep shares one stack), and names the stock
`torch.optim` optimizer the reference engine uses for the same rule. Members that have stopped
are masked out exactly: their parameters and state do not move.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch

from dlstudies.errors import UsageError
from dlstudies.registry import Registry

OPTIMIZERS: Registry = Registry("optimizer")


@dataclass(frozen=True)
class OptSpec:
    """One member's update rule: a registered name and its hyperparameters."""

    name: str
    lr: float
    momentum: float = 0.0
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        OPTIMIZERS.get(self.name)  # fail early with the valid names
        if not self.lr > 0:
            raise UsageError(f"learning rate must be > 0, got {self.lr}")
        if not 0 <= self.momentum < 1:
            raise UsageError(f"momentum must be in [0, 1), got {self.momentum}")


class Rule:
    """Base: holds per-member hyperparameters as (m, 1) tensors and the state tensors."""

    def __init__(self, specs: Sequence[OptSpec], params: torch.Tensor):
        col = lambda v: torch.tensor(v, dtype=params.dtype, device=params.device).reshape(-1, 1)  # noqa: E731
        self.lr = col([s.lr for s in specs])
        self.momentum = col([s.momentum for s in specs])
        self.state = self.init(params)

    def init(self, params: torch.Tensor) -> dict[str, torch.Tensor]:
        return {}

    def update(self, p: torch.Tensor, g: torch.Tensor, s: dict) -> tuple[torch.Tensor, dict]:
        raise NotImplementedError


@OPTIMIZERS.register("delta")
class Delta(Rule):
    """The delta rule: plain SGD, p <- p - lr g."""

    torch_class, torch_kwargs = torch.optim.SGD, staticmethod(lambda s: {"lr": s.lr})

    def update(self, p, g, s):
        return p - self.lr * g, s


@OPTIMIZERS.register("generalized-delta")
class GeneralizedDelta(Rule):
    """SGD with momentum: v <- mu v + g, p <- p - lr v (equals -lr g + mu Δp at constant lr)."""

    torch_class, torch_kwargs = torch.optim.SGD, staticmethod(lambda s: {"lr": s.lr, "momentum": s.momentum})

    def init(self, params):
        return {"buf": torch.zeros_like(params)}

    def update(self, p, g, s):
        buf = self.momentum * s["buf"] + g
        return p - self.lr * buf, {"buf": buf}


@OPTIMIZERS.register("nesterov")
class Nesterov(GeneralizedDelta):
    """SGD with Nesterov momentum, as torch.optim.SGD(nesterov=True)."""

    torch_kwargs = staticmethod(lambda s: {"lr": s.lr, "momentum": s.momentum, "nesterov": True})

    def update(self, p, g, s):
        buf = self.momentum * s["buf"] + g
        return p - self.lr * (g + self.momentum * buf), {"buf": buf}


@OPTIMIZERS.register("adagrad")
class Adagrad(Rule):
    EPS = 1e-10
    torch_class, torch_kwargs = torch.optim.Adagrad, staticmethod(lambda s: {"lr": s.lr, "eps": Adagrad.EPS})

    def init(self, params):
        return {"sum": torch.zeros_like(params)}

    def update(self, p, g, s):
        total = s["sum"] + g * g
        return p - self.lr * g / (total.sqrt() + self.EPS), {"sum": total}


@OPTIMIZERS.register("rmsprop")
class RMSprop(Rule):
    ALPHA, EPS = 0.99, 1e-8
    torch_class = torch.optim.RMSprop
    torch_kwargs = staticmethod(lambda s: {"lr": s.lr, "alpha": RMSprop.ALPHA, "eps": RMSprop.EPS})

    def init(self, params):
        return {"sq": torch.zeros_like(params)}

    def update(self, p, g, s):
        sq = self.ALPHA * s["sq"] + (1 - self.ALPHA) * g * g
        return p - self.lr * g / (sq.sqrt() + self.EPS), {"sq": sq}


@OPTIMIZERS.register("adam")
class Adam(Rule):
    B1, B2, EPS = 0.9, 0.999, 1e-8
    torch_class = torch.optim.Adam
    torch_kwargs = staticmethod(lambda s: {"lr": s.lr, "betas": (Adam.B1, Adam.B2), "eps": Adam.EPS})

    def init(self, params):
        # The step count is per member: a member that stopped keeps its bias correction.
        return {"m": torch.zeros_like(params), "v": torch.zeros_like(params), "t": torch.zeros_like(params[:, :1])}

    def update(self, p, g, s):
        t = s["t"] + 1
        m = self.B1 * s["m"] + (1 - self.B1) * g
        v = self.B2 * s["v"] + (1 - self.B2) * g * g
        denom = (v.sqrt() / (1 - self.B2 ** t).sqrt()) + self.EPS
        return p - (self.lr / (1 - self.B1 ** t)) * m / denom, {"m": m, "v": v, "t": t}


class StackedOptimizer:
    """Per-member rules over one flat parameter tensor; contiguous members of one rule form a group."""

    def __init__(self, specs: Sequence[OptSpec], flat: torch.Tensor):
        self.groups = []
        for start, stop in _runs([s.name for s in specs]):
            rule = OPTIMIZERS.get(specs[start].name)(specs[start:stop], flat[start:stop])
            self.groups.append((slice(start, stop), rule))
        self.active: torch.Tensor | None = None  # None means every member is active

    def set_active(self, active: torch.Tensor) -> None:
        self.active = None if bool(active.all()) else active.reshape(-1, 1)

    @torch.no_grad()
    def step(self, flat: torch.Tensor, grad: torch.Tensor) -> None:
        for rows, rule in self.groups:
            new_p, new_s = rule.update(flat[rows], grad[rows], rule.state)
            keep = None if self.active is None else self.active[rows]
            flat[rows] = _masked(keep, new_p, flat[rows])
            rule.state = {k: _masked(keep, v, rule.state[k]) for k, v in new_s.items()}


def _masked(keep: torch.Tensor | None, new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    # A stopped member keeps its exact old values (even if its gradient is NaN).
    return new if keep is None else torch.where(keep, new, old)


def _runs(names: list[str]) -> list[tuple[int, int]]:
    runs, start = [], 0
    for i in range(1, len(names) + 1):
        if i == len(names) or names[i] != names[start]:
            runs.append((start, i))
            start = i
    return runs


def torch_optimizer(spec: OptSpec, params) -> torch.optim.Optimizer:
    """The stock torch.optim optimizer equivalent to `spec`, for the reference engine."""
    rule = OPTIMIZERS.get(spec.name)
    return rule.torch_class(params, **rule.torch_kwargs(spec))
