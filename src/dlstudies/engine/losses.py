"""Losses, each in two forms: per member over a stack, and for one plain model.

The stacked form returns one loss per member (mean over that member's batch); the engine sums
them for backward, so each member's gradient is its own (a mean over members would divide it by M).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from dlstudies.registry import Registry

LOSSES: Registry = Registry("loss")


@dataclass(frozen=True)
class Loss:
    stacked: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (M, B, ...) -> (M,)
    single: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (B, ...) -> scalar
    classification: bool


def _ce_stacked(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    # Logits in, softmax inside cross_entropy: applying softmax first would apply it twice.
    M, B, C = out.shape
    return F.cross_entropy(out.reshape(M * B, C), y.reshape(-1), reduction="none").view(M, B).mean(1)


def _mse_stacked(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (out - y).square().flatten(1).mean(1)


LOSSES.register("cross_entropy")(Loss(_ce_stacked, F.cross_entropy, True))
LOSSES.register("mse")(Loss(_mse_stacked, F.mse_loss, False))
