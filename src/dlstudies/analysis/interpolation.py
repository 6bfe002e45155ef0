"""1-D linear interpolation between two trained models (study B9, `interpolation`).

Goodfellow, Vinyals, Saxe 2015, "Qualitatively characterizing neural network optimization
problems" (ICLR) evaluate θ(α) = (1−α)·θ_a + α·θ_b along a line; Keskar et al. 2017 use the same
plot between a small-batch and a large-batch solution to show the large-batch one sits in a
sharper basin. As in both, α runs beyond [0, 1] (default [−1, 2]) so each basin's walls show.

BatchNorm running statistics belong to the function the model computes in eval mode, so they
are interpolated too (evaluating θ(α) with one endpoint's statistics mixes two models).
`num_batches_tracked` and other non-float buffers are taken from model a.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from dlstudies.analysis.landscape import evaluate

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def default_alphas() -> torch.Tensor:
    """−1 to 2 in steps of 0.1 (31 values), as tenths so that 0 and 1 are hit exactly (linspace misses 0 by 1 ulp)."""
    return torch.arange(-10, 21, dtype=torch.float64) / 10


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {**{n: p.detach() for n, p in model.named_parameters()}, **dict(model.named_buffers())}


def _mix(name: str, a: torch.Tensor, b: torch.Tensor, alpha: float) -> torch.Tensor:
    if not torch.is_floating_point(a):
        return a
    # (1−α)a + αb rather than lerp: exactly a at α = 0 and exactly b at α = 1.
    mixed = (1 - alpha) * a + alpha * b
    # Extrapolating two variances can go negative, which eval-mode BatchNorm turns into NaN.
    return mixed.clamp_min(0) if name.endswith("running_var") else mixed


def interpolate(model_a: nn.Module, model_b: nn.Module, alpha: float) -> dict[str, torch.Tensor]:
    """θ(α): parameters and buffers of (1−α)·model_a + α·model_b, for `functional_call(model_a, ...)`."""
    state_a, state_b = _state(model_a), _state(model_b)
    if state_a.keys() != state_b.keys():
        raise ValueError(f"the two models differ in their tensors: {sorted(state_a.keys() ^ state_b.keys())}")
    return {n: _mix(n, state_a[n], state_b[n], float(alpha)) for n in state_a}


@dataclass(frozen=True)
class InterpolationCurve:
    """Per split name: loss[name][k] (and accuracy[name][k], if a metric was given) at alphas[k]."""

    alphas: np.ndarray
    loss: dict[str, np.ndarray]
    accuracy: dict[str, np.ndarray] | None


def interpolation_curve(model_a: nn.Module, model_b: nn.Module, loss_fn: LossFn, metric_fn: LossFn | None,
                        splits: Mapping[str, tuple[torch.Tensor, torch.Tensor]],
                        alphas: Sequence[float] | torch.Tensor | None = None,
                        batch_size: int | None = None) -> InterpolationCurve:
    """Loss and metric (normally accuracy: a batch mean) of θ(α) on each split, in eval mode.

    `splits` maps a name ("train", "test") to (inputs, targets); `loss_fn` returns a batch mean.
    """
    alphas = np.asarray(default_alphas() if alphas is None else alphas, dtype=np.float64)
    states = [interpolate(model_a, model_b, a) for a in alphas]
    cells = {name: [evaluate(model_a, state, loss_fn, x, y, batch_size, metric_fn) for state in states]
             for name, (x, y) in splits.items()}
    loss = {name: np.array([c[0] for c in row], dtype=np.float64) for name, row in cells.items()}
    accuracy = ({name: np.array([c[1] for c in row], dtype=np.float64) for name, row in cells.items()}
                if metric_fn else None)
    return InterpolationCurve(alphas=alphas, loss=loss, accuracy=accuracy)
