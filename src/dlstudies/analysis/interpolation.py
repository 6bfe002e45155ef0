"""1-D linear interpolation between two trained models (study B9, `interpolation`).

Goodfellow, Vinyals, Saxe 2015, "Qualitatively characterizing neural network optimization
problems" (ICLR) evaluate θ(α) = (1−α)·θ_a + α·θ_b along a line; Keskar et al. 2017 use the same
plot between a small-batch and a large-batch solution to show the large-batch one sits in a
sharper basin. As in both, α runs beyond [0, 1] (default [−1, 2]) so each basin's walls show.

BatchNorm running statistics belong to the function the model computes in eval mode, and neither
endpoint's statistics fit the weights θ(α): by default (`bn_stats="recompute"`) they are
recomputed at each θ(α) by one forward pass in train mode over the training inputs (the whole set
as one batch: the running mean and variance become that set's own, as after training). Mixing
the two endpoints' statistics linearly (`bn_stats="interpolate"`) is kept as an option; it is
wrong away from the endpoints (on a BatchNorm MLP: train loss 877 at α = 1.5 against 0.56 with
the statistics recomputed). `num_batches_tracked` and other non-float buffers come from model a.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from dlstudies.analysis.landscape import evaluate
from dlstudies.analysis.replay import replayable
from dlstudies.registry import Registry

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
State = dict[str, torch.Tensor]
BN_STATS: Registry = Registry("BatchNorm statistics")


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


def has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


@BN_STATS.register("interpolate")
def _interpolated(model: nn.Module, state: State, inputs: torch.Tensor | None) -> State:
    return state  # interpolate() already mixed the running statistics with the weights


@BN_STATS.register("recompute")
def recompute_batchnorm(model: nn.Module, state: State, inputs: torch.Tensor | None) -> State:
    """`state` with every BatchNorm's running statistics set by one train-mode forward pass over
    `inputs`: momentum None makes that one batch's mean and (unbiased) variance the statistics."""
    if not has_batchnorm(model):
        return state
    if inputs is None:
        raise ValueError("recomputing BatchNorm statistics needs the training inputs (bn_inputs)")
    net = copy.deepcopy(model)
    net.load_state_dict({**net.state_dict(), **state})
    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None
    net.train()
    with torch.no_grad():
        net(inputs)
    return {**state, **{n: b.detach() for n, b in net.named_buffers()}}


def endpoint_model(model: nn.Module, bn_stats: str, inputs: torch.Tensor | None) -> nn.Module:
    """A copy of `model` as the curve evaluates it at its own endpoint (BatchNorm statistics
    recomputed from `inputs` under "recompute"), in eval mode: the endpoints' reference."""
    net = copy.deepcopy(model)
    net.load_state_dict({**net.state_dict(), **BN_STATS.get(bn_stats)(model, _state(model), inputs)})
    return net.eval()


@dataclass(frozen=True)
class InterpolationCurve:
    """Per split name: loss[name][k] (and accuracy[name][k], if a metric was given) at alphas[k]."""

    alphas: np.ndarray
    loss: dict[str, np.ndarray]
    accuracy: dict[str, np.ndarray] | None


@replayable
def interpolation_curve(model_a: nn.Module, model_b: nn.Module, loss_fn: LossFn, metric_fn: LossFn | None,
                        splits: Mapping[str, tuple[torch.Tensor, torch.Tensor]],
                        alphas: Sequence[float] | torch.Tensor | None = None,
                        batch_size: int | None = None, bn_stats: str = "recompute",
                        bn_inputs: torch.Tensor | None = None) -> InterpolationCurve:
    """Loss and metric (normally accuracy: a batch mean) of θ(α) on each split, in eval mode.

    `splits` maps a name ("train", "test") to (inputs, targets); `loss_fn` returns a batch mean.
    BatchNorm statistics at θ(α) are `bn_stats` ("recompute" from `bn_inputs`, by default the
    "train" split's inputs, or "interpolate"); a model without BatchNorm is unaffected.
    """
    alphas = np.asarray(default_alphas() if alphas is None else alphas, dtype=np.float64)
    fix = BN_STATS.get(bn_stats)
    inputs = bn_inputs if bn_inputs is not None else splits.get("train", (None, None))[0]
    states = [fix(model_a, interpolate(model_a, model_b, a), inputs) for a in alphas]
    cells = {name: [evaluate(model_a, state, loss_fn, x, y, batch_size, metric_fn) for state in states]
             for name, (x, y) in splits.items()}
    loss = {name: np.array([c[0] for c in row], dtype=np.float64) for name, row in cells.items()}
    accuracy = ({name: np.array([c[1] for c in row], dtype=np.float64) for name, row in cells.items()}
                if metric_fn else None)
    return InterpolationCurve(alphas=alphas, loss=loss, accuracy=accuracy)
