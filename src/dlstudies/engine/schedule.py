"""When to stop, and in which order each member sees the samples."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from dlstudies.errors import UsageError
from dlstudies.registry import Registry

ORDERS: Registry = Registry("sample order")

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
