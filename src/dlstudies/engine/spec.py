"""What a fit needs besides the members and their optimizers, shared by both engines."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from dlstudies.engine.schedule import Order, StopRule, explicit_table
from dlstudies.errors import UsageError

# A probe measures every member at the end of an epoch, given predict(x) -> (M, N, ...) outputs.
Probe = Callable[[Callable[[torch.Tensor], torch.Tensor]], dict[str, torch.Tensor]]


@dataclass(frozen=True)
class TrainSpec:
    stop: StopRule
    batch_size: int = 1  # 1 is pattern mode
    loss: str = "cross_entropy"
    order: Order = "shuffle"  # a name in ORDERS, or an explicit per-member order (schedule.py)
    trace_epochs: int = 0  # record the per-step loss of the first k epochs
    probes: tuple[Probe, ...] = field(default_factory=tuple)
    device: str = "cpu"
    snapshot_every: int = 0  # keep every member's parameters at epochs 0, k, 2k, ... (0: none)
    micro_batch: int | None = None  # samples per forward/backward of the layers before the dense head (autograd path); None: auto, 0: whole batches
    # y holds each member's own targets, (M, n, ...): members trained on different labels (a
    # corrupted copy per seed) share one stack. A named order reads the first member's targets.
    member_targets: bool = False
    # Keep each member's state where this rule would stop it while training goes on under `stop`:
    # result.kept is the fit that `stop=keep, probes=keep_probes` gives (a stop at a target loss read
    # off a longer fit of the same recipe, not trained twice). `keep_probes` are measured only while
    # some member is still open under the rule, so they cost nothing after it has stopped everyone.
    keep: StopRule | None = None
    keep_probes: tuple[Probe, ...] = field(default_factory=tuple)

    def __post_init__(self):
        if self.batch_size < 1:
            raise UsageError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.micro_batch is not None and self.micro_batch < 0:
            raise UsageError(f"micro_batch must be >= 0 (0: whole batches) or None (auto), got {self.micro_batch}")
        if self.snapshot_every < 0:
            raise UsageError(f"snapshot_every must be >= 0, got {self.snapshot_every}")
        if self.keep is not None and self.keep.max_epochs > self.stop.max_epochs:
            raise UsageError(f"keep.max_epochs ({self.keep.max_epochs}) must be <= stop.max_epochs "
                             f"({self.stop.max_epochs}): the rule is read off this fit's epochs")
        if not isinstance(self.order, str) and not callable(self.order):
            object.__setattr__(self, "order", explicit_table(self.order))  # frozen: set once, here


def batches(n: int, size: int) -> list[slice]:
    """Consecutive batches of an epoch; the last may be smaller (every sample is seen once)."""
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


def order_targets(y: torch.Tensor, spec: TrainSpec, members: int, n: int) -> torch.Tensor:
    """The targets a named sample order reads: y, or with `spec.member_targets` the first member's
    row of y (checked to hold one row of n targets per member)."""
    if not spec.member_targets:
        return y
    if y.dim() < 2 or tuple(y.shape[:2]) != (members, n):
        raise UsageError(f"member_targets: y needs one row of {n} targets per member ({members}), got shape {tuple(y.shape)}")
    return y[0]
