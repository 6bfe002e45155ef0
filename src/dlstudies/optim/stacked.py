"""M members' optimizers over one flat (M, P) parameter tensor.

Members of one rule that sit next to each other form a group; each group keeps its state tensors
and its members' hyperparameters as (m, 1) columns (a learning-rate sweep shares one stack) and
steps with its rule's one statement (`rules.py`). Members that have stopped are held exactly:
their parameters and state are put back after the step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from dlstudies.optim.rules import OPTIMIZERS, Rule
from dlstudies.optim.spec import OptSpec, settings


class Group:
    """Members of one rule: their hyperparameters and state."""

    def __init__(self, rule: Rule, specs: Sequence[OptSpec], params: torch.Tensor):
        self.rule, self.specs = rule, list(specs)
        cols = {k: [settings(s)[k] for s in specs] for k in settings(specs[0])}
        self.hyper = {k: torch.tensor(v, dtype=params.dtype, device=params.device).reshape(-1, 1)
                      for k, v in cols.items()}
        self.state = {k: torch.zeros_like(params) for k in rule.state}
        if rule.counts_steps:
            self.state["t"] = torch.zeros_like(params[:, :1])

    def step(self, p: torch.Tensor, g: torch.Tensor) -> None:
        self.rule.step(p, g, self.state, self.hyper)

    def select(self, rows: torch.Tensor, like: torch.Tensor | None, columns: torch.Tensor | None) -> Group:
        new = Group.__new__(Group)
        new.rule, new.specs = self.rule, [self.specs[i] for i in rows.tolist()]
        rows = rows.to(next(iter(self.hyper.values())).device)
        new.hyper = {k: v.index_select(0, rows) for k, v in self.hyper.items()}
        new.state = {k: _like(v.index_select(0, rows), like, columns) for k, v in self.state.items()}
        return new


class StackedOptimizer:
    """Per-member rules over one flat parameter tensor; contiguous members of one rule form a group."""

    def __init__(self, specs: Sequence[OptSpec], flat: torch.Tensor):
        self.groups: list[tuple[slice, Group]] = []
        for start, stop in _runs([s.name for s in specs]):
            rule = OPTIMIZERS.get(specs[start].name)
            self.groups.append((slice(start, stop), Group(rule, specs[start:stop], flat[start:stop])))
        self.active: torch.Tensor | None = None  # None means every member is active

    def set_active(self, active: torch.Tensor) -> None:
        self.active = None if bool(active.all()) else active.reshape(-1, 1)

    @torch.no_grad()
    def step(self, flat: torch.Tensor, grad: torch.Tensor) -> None:
        held = None if self.active is None else self._hold(flat)
        for rows, group in self.groups:
            group.step(flat[rows], grad[rows])
        if held is not None:
            self._put_back(flat, held)

    def _hold(self, flat: torch.Tensor):
        return flat.clone(), [{k: v.clone() for k, v in group.state.items()} for _, group in self.groups]

    def _put_back(self, flat: torch.Tensor, held) -> None:
        # A stopped member keeps its exact old values (even if its gradient is NaN).
        old_flat, old_states = held
        flat.copy_(torch.where(self.active, flat, old_flat))
        for (rows, group), old in zip(self.groups, old_states):
            keep = self.active[rows]
            for k, v in group.state.items():
                v.copy_(torch.where(keep, v, old[k]))

    def bind(self, flat: torch.Tensor, grad: torch.Tensor) -> Callable[[], None]:
        """`step(flat, grad)` for these buffers as a call without arguments (for a loop that steps
        the same buffers many times): the views are taken once. Valid until the next select."""
        views = [(group, flat[rows], grad[rows]) for rows, group in self.groups]

        def step() -> None:
            if self.active is not None:
                return self.step(flat, grad)
            for group, p, g in views:
                group.step(p, g)
        return step

    def select(self, rows: torch.Tensor, like: torch.Tensor | None = None,
               columns: torch.Tensor | None = None) -> StackedOptimizer:
        """The optimizer of members `rows` only (sorted indices into this stack), state copied.

        `like`: the (len(rows), P) parameters it will step, whose memory layout the state takes;
        `columns`: those parameters are this stack's reordered as `params[:, columns]`."""
        new = StackedOptimizer.__new__(StackedOptimizer)
        new.groups, new.active, start = [], None, 0
        rows = rows.cpu()
        for span, group in self.groups:
            mine = rows[(rows >= span.start) & (rows < span.stop)] - span.start
            if len(mine):
                part = slice(start, start + len(mine))
                new.groups.append((part, group.select(mine, None if like is None else like[part], columns)))
                start += len(mine)
        return new


def _like(state: torch.Tensor, like: torch.Tensor | None, columns: torch.Tensor | None) -> torch.Tensor:
    if like is None or state.shape != like.shape:  # not per parameter (Adam's step count)
        return state
    if columns is not None:
        state = state[:, columns.to(state.device)]
    return torch.empty_like(like).copy_(state)


def _runs(names: list[str]) -> list[tuple[int, int]]:
    runs, start = [], 0
    for i in range(1, len(names) + 1):
        if i == len(names) or names[i] != names[start]:
            runs.append((start, i))
            start = i
    return runs
