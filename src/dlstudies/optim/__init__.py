"""Optimizers over stacked parameters: M independent optimizers as a few elementwise kernels.

Each rule is a small class over a flat `(m, P)` slice of the stack, with per-member
hyperparameters shaped `(m, 1)` (so a learning-rate sweep shares one stack), and names the stock
`torch.optim` optimizer the reference engine uses for the same rule. Members that have stopped
are masked out exactly: their parameters and state do not move.

Two forms of each rule: `update` is the plain functional statement (new tensors; the masked step
uses it), and `step_` does the same update in place when every member is active, with as few
kernels as it can: torch's fused CPU/GPU kernels (`torch._fused_adam_`, `_fused_sgd_`,
`_fused_adagrad_`, one pass over the stack) where the group shares one learning rate (and, for
Adam, one step count), in-place elementwise ops otherwise. Both are held to stock torch.optim.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

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
        self._set_hyper([s.lr for s in specs], [s.momentum for s in specs], params)
        self.state = self.init(params)
        self.same_steps = True  # every member has taken the same number of steps (no masked step yet)

    def _set_hyper(self, lrs: list[float], momenta: list[float], like: torch.Tensor) -> None:
        col = lambda v: torch.tensor(v, dtype=like.dtype, device=like.device).reshape(-1, 1)  # noqa: E731
        self.lrs, self.momenta = list(lrs), list(momenta)
        self.lr, self.momentum = col(self.lrs), col(self.momenta)
        # The Python float when the whole group shares it (fused kernels take scalars), else None.
        self.lr_value = self.lrs[0] if len(set(self.lrs)) == 1 else None
        self.momentum_value = self.momenta[0] if len(set(self.momenta)) == 1 else None

    def init(self, params: torch.Tensor) -> dict[str, torch.Tensor]:
        return {}

    def update(self, p: torch.Tensor, g: torch.Tensor, s: dict) -> tuple[torch.Tensor, dict]:
        raise NotImplementedError

    def step_(self, p: torch.Tensor, g: torch.Tensor) -> None:
        """The update in place, every member active. Subclasses do it with fewer kernels."""
        new_p, self.state = self.update(p, g, self.state)
        p.copy_(new_p)

    def bind(self, p: torch.Tensor, g: torch.Tensor) -> Callable[[], None]:
        """`step_(p, g)` as a call without arguments, for a loop that steps the same buffers many
        times: the layout checks and views are done once. Valid until the state is replaced (select,
        or a masked step)."""
        return lambda: self.step_(p, g)

    def select(self, rows: torch.Tensor, like: torch.Tensor | None = None,
               columns: torch.Tensor | None = None) -> Rule:
        """The same rule restricted to members `rows` (state copied), e.g. to drop stopped members.

        `like`: the (len(rows), P) parameters it will step; state of that shape takes their memory
        layout (a transposed stack keeps transposed state, so the fused kernels still apply).
        `columns`: the parameters reordered as `params[:, columns]`, and so the state with them.
        """
        new = copy.copy(self)
        idx = rows.tolist()
        new._set_hyper([self.lrs[i] for i in idx], [self.momenta[i] for i in idx], self.lr)
        rows = rows.to(self.lr.device)
        new.state = {k: _like(v.index_select(0, rows), like, columns) for k, v in self.state.items()}
        new.same_steps = "t" not in new.state or bool((new.state["t"] == new.state["t"][:1]).all())
        return new


@OPTIMIZERS.register("delta")
class Delta(Rule):
    """The delta rule: plain SGD, p <- p - lr g."""

    torch_class, torch_kwargs = torch.optim.SGD, staticmethod(lambda s: {"lr": s.lr})

    def update(self, p, g, s):
        return p - self.lr * g, s

    def step_(self, p, g):
        if self.lr_value is not None:
            p.add_(g, alpha=-self.lr_value)  # as torch.optim.SGD
        else:
            p.addcmul_(g, self.lr, value=-1)


@OPTIMIZERS.register("generalized-delta")
class GeneralizedDelta(Rule):
    """SGD with momentum: v <- mu v + g, p <- p - lr v (equals -lr g + mu Δp at constant lr)."""

    torch_class, torch_kwargs = torch.optim.SGD, staticmethod(lambda s: {"lr": s.lr, "momentum": s.momentum})
    nesterov = False

    def init(self, params):
        return {"buf": torch.zeros_like(params)}

    def update(self, p, g, s):
        buf = self.momentum * s["buf"] + g
        return p - self.lr * buf, {"buf": buf}

    def step_(self, p, g):
        buf = self.state["buf"]
        dense = _dense(p, g, buf)
        # torch's fused kernel refuses momentum buffers when momentum is 0 (it keeps none then).
        if self.lr_value is not None and self.momentum_value and dense:
            # buf starts at zero, so the first step's mu*0 + g equals torch's buf = g.clone().
            torch._fused_sgd_(*([t] for t in dense), weight_decay=0.0, momentum=self.momentum_value,
                              lr=self.lr_value, dampening=0.0, nesterov=self.nesterov, maximize=False,
                              is_first_step=False)
            return
        mu, lr = self.momentum_value, self.lr_value
        buf.mul_(self.momentum if mu is None else mu).add_(g)  # as torch.optim.SGD
        if self.nesterov:
            direction = torch.addcmul(g, buf, self.momentum) if mu is None else torch.add(g, buf, alpha=mu)
        else:
            direction = buf
        if lr is None:
            p.addcmul_(direction, self.lr, value=-1)
        else:
            p.add_(direction, alpha=-lr)


@OPTIMIZERS.register("nesterov")
class Nesterov(GeneralizedDelta):
    """SGD with Nesterov momentum, as torch.optim.SGD(nesterov=True)."""

    torch_kwargs = staticmethod(lambda s: {"lr": s.lr, "momentum": s.momentum, "nesterov": True})
    nesterov = True

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

    def step_(self, p, g):
        total = self.state["sum"]
        dense = _dense(p, g, total)
        if self.lr_value is not None and dense:
            # lr_decay = 0, so the step count does not enter; the kernel neither reads nor needs it.
            if getattr(self, "_no_step", None) is None or self._no_step.device != p.device:
                self._no_step = p.new_zeros(())
            torch._fused_adagrad_(*([t] for t in dense), [self._no_step], lr=self.lr_value,
                                  lr_decay=0.0, weight_decay=0.0, eps=self.EPS, maximize=False)
            return
        total.addcmul_(g, g)  # as torch.optim.Adagrad
        std = total.sqrt().add_(self.EPS)
        if self.lr_value is not None:
            p.addcdiv_(g, std, value=-self.lr_value)
        else:
            p.addcmul_(g / std, self.lr, value=-1)


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

    def step_(self, p, g):
        sq = self.state["sq"]
        sq.mul_(self.ALPHA).addcmul_(g, g, value=1 - self.ALPHA)  # as torch.optim.RMSprop
        avg = sq.sqrt().add_(self.EPS)
        if self.lr_value is not None:
            p.addcdiv_(g, avg, value=-self.lr_value)
        else:
            p.addcmul_(torch.div(g, avg), self.lr, value=-1)


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

    def step_(self, p, g):
        fused = self._fused_args(p, g)
        if fused:
            self._fused(*fused)
            return
        m, v, t = self.state["m"], self.state["v"], self.state["t"]
        t.add_(1)
        m.lerp_(g, 1 - self.B1)  # as torch.optim.Adam
        v.mul_(self.B2).addcmul_(g, g, value=1 - self.B2)
        if self.same_steps:  # one step count: the bias corrections are numbers, as in torch.optim.Adam
            step = float(t[0, 0])
            denom = v.sqrt().div_((1 - self.B2 ** step) ** 0.5).add_(self.EPS)
            if self.lr_value is not None:
                p.addcdiv_(m, denom, value=-self.lr_value / (1 - self.B1 ** step))
            else:
                p.addcmul_(m / denom, self.lr, value=-1 / (1 - self.B1 ** step))
            return
        denom = v.sqrt().div_((1 - self.B2 ** t).sqrt()).add_(self.EPS)
        p.addcmul_(m / denom, self.lr / (1 - self.B1 ** t), value=-1)

    def _fused_args(self, p, g):
        m, v, t = self.state["m"], self.state["v"], self.state["t"]
        dense = _dense(p, g, m, v)
        if self.lr_value is None or not self.same_steps or not dense:
            return None
        # the kernel reads the (shared) step count from t's first entry
        return [[x] for x in dense] + [[], [t[0, 0]]], t

    def _fused(self, args, t):
        t.add_(1)
        torch._fused_adam_(*args, lr=self.lr_value, beta1=self.B1, beta2=self.B2, weight_decay=0.0, eps=self.EPS,
                           amsgrad=False, maximize=False)

    def bind(self, p, g):
        fused = self._fused_args(p, g)
        return (lambda: self._fused(*fused)) if fused else (lambda: self.step_(p, g))


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
        if self.active is None:  # everyone trains: in place, fused kernels where they apply
            for rows, rule in self.groups:
                rule.step_(flat[rows], grad[rows])
            return
        for rows, rule in self.groups:
            new_p, new_s = rule.update(flat[rows], grad[rows], rule.state)
            keep = self.active[rows]
            flat[rows] = _masked(keep, new_p, flat[rows])
            rule.state = {k: _masked(keep, v, rule.state[k]) for k, v in new_s.items()}
            rule.same_steps = False

    def bind(self, flat: torch.Tensor, grad: torch.Tensor) -> Callable[[], None]:
        """`step(flat, grad)` for these buffers as a call without arguments, every member active
        (for a loop that steps the same buffers many times). Valid until the next select."""
        steps = [rule.bind(flat[rows], grad[rows]) for rows, rule in self.groups]
        if len(steps) == 1:
            return steps[0]

        def step() -> None:
            for one in steps:
                one()
        return step

    def select(self, rows: torch.Tensor, like: torch.Tensor | None = None,
               columns: torch.Tensor | None = None) -> StackedOptimizer:
        """The optimizer of members `rows` only (sorted indices into this stack), state copied.

        `like`: the (len(rows), P) parameters it will step, whose memory layout the state takes;
        `columns`: those parameters are this stack's reordered as `params[:, columns]`."""
        new = StackedOptimizer.__new__(StackedOptimizer)
        new.groups, new.active, start = [], None, 0
        rows = rows.cpu()
        for span, rule in self.groups:
            mine = rows[(rows >= span.start) & (rows < span.stop)] - span.start
            if len(mine):
                part = slice(start, start + len(mine))
                new.groups.append((part, rule.select(mine, None if like is None else like[part], columns)))
                start += len(mine)
        return new


def _dense(*tensors: torch.Tensor) -> list[torch.Tensor] | None:
    """The tensors as contiguous tensors over the same elements, where they share one dense layout
    (row-major, or a transposed stack): the fused kernels read memory in order, ignoring strides."""
    if all(t.is_contiguous() for t in tensors):
        return list(tensors)
    if all(t.dim() == 2 and t.t().is_contiguous() for t in tensors):
        return [t.t() for t in tensors]
    return None


def _like(state: torch.Tensor, like: torch.Tensor | None, columns: torch.Tensor | None) -> torch.Tensor:
    if like is None or state.shape != like.shape:  # not per parameter (Adam's step count)
        return state
    if columns is not None:
        state = state[:, columns.to(state.device)]
    return torch.empty_like(like).copy_(state)


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
