"""When to stop, and in which order each member sees the samples.

A sample order is either a name in ORDERS (a rule that draws each member's order from its seed) or
explicit: an integer table (members, samples) used every epoch, a table (epochs, members, samples)
whose epoch e is used at epoch e (cycling past its end), or a function epoch -> (members, samples).
A row holds indices into the training set, each in 0..N-1; a row need not be a permutation (a
curriculum may repeat or leave out samples).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence, Union

import torch

from dlstudies.errors import UsageError
from dlstudies.registry import Registry

ORDERS: Registry = Registry("sample order")
Order = Union[str, torch.Tensor, Callable[[int], torch.Tensor]]

# Sample order is drawn from its own stream, apart from the initial weights, so that changing
# one never changes the other; conditions with the same seed see the same order (paired design).
ORDER_STREAM = 1_000_003


@dataclass(frozen=True)
class StopRule:
    """Stop a member when |Δ mean epoch loss| < tolerance (if tolerance is set), when the history
    `watch` (the epoch loss, or a probe's name) is at or below `target` (if set), or at max_epochs."""

    max_epochs: int
    tolerance: float | None = None
    target: float | None = None
    watch: str = "loss"

    def __post_init__(self):
        if self.max_epochs < 1:
            raise UsageError(f"max_epochs must be >= 1, got {self.max_epochs}")
        if self.tolerance is not None and not self.tolerance >= 0:
            raise UsageError(f"tolerance must be >= 0, got {self.tolerance}")

    def converged(self, previous: torch.Tensor, current: torch.Tensor) -> torch.Tensor:
        if self.tolerance is None:
            return torch.zeros_like(current, dtype=torch.bool)
        return (current - previous).abs() < self.tolerance  # NaN previous (first epoch) compares False

    def reached(self, values: dict[str, torch.Tensor]) -> torch.Tensor:
        """Members whose watched value is at or below the target (none without a target)."""
        watched = values[self.watch].detach().to("cpu", torch.float64)
        if self.target is None:
            return torch.zeros_like(watched, dtype=torch.bool)
        return watched <= self.target


def fixed_epochs(n: int) -> StopRule:
    return StopRule(max_epochs=n)


@ORDERS.register("shuffle")
def shuffled(y: torch.Tensor, seeds: Sequence[int]) -> Callable[[int], torch.Tensor]:
    """Each member reshuffles every epoch from its own generator."""
    gens = [torch.Generator().manual_seed(ORDER_STREAM + int(s)) for s in seeds]
    return lambda epoch: torch.stack([torch.randperm(len(y), generator=g) for g in gens])


@ORDERS.register("class")
def class_order(y: torch.Tensor, seeds: Sequence[int]) -> Callable[[int], torch.Tensor]:
    """Samples sorted by class, as a data file often stores them: the model chases each class in turn."""
    order = torch.argsort(y.cpu(), stable=True)
    return lambda epoch: order.expand(len(seeds), -1)


def explicit_table(order) -> torch.Tensor:
    """An explicit order given as a tensor, array or nested list, as an int64 tensor (TrainSpec checks it)."""
    table = torch.as_tensor(order)
    if table.dtype in (torch.bool,) or table.is_floating_point() or table.is_complex():
        raise UsageError(f"an explicit sample order holds integer sample indices, got dtype {table.dtype}")
    if table.dim() not in (2, 3) or table.shape[-1] == 0 or 0 in table.shape:
        raise UsageError(f"an explicit sample order is (members, samples) or (epochs, members, samples), "
                         f"got shape {tuple(table.shape)}")
    return table.to(torch.int64)


def member_order(order: Order, y: torch.Tensor, seeds: Sequence[int],
                 rows: tuple[int, int] | None = None) -> Callable[[int], torch.Tensor]:
    """epoch -> each member's sample order (members, samples). `rows=(i, M)`: member i of an explicit
    order for M members (the reference engine fits one member at a time)."""
    if isinstance(order, str):
        return ORDERS.get(order)(y, seeds)
    M = len(seeds) if rows is None else rows[1]
    take = slice(None) if rows is None else slice(rows[0], rows[0] + 1)
    if callable(order):
        return lambda epoch: _checked(explicit_table(order(epoch)), M, len(y))[take]
    table = _checked(explicit_table(order), M, len(y))
    return lambda epoch: (table[epoch % len(table)] if table.dim() == 3 else table)[take]


def _checked(table: torch.Tensor, M: int, n: int) -> torch.Tensor:
    if table.shape[-2] != M:
        raise UsageError(f"the explicit sample order has {table.shape[-2]} rows; it needs one per member ({M})")
    if int(table.min()) < 0 or int(table.max()) >= n:
        raise UsageError(f"the explicit sample order holds indices {int(table.min())}..{int(table.max())}; "
                         f"valid: 0..{n - 1} ({n} training samples)")
    return table
