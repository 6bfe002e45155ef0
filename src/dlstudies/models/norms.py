"""Stacked normalization layers: BatchNorm1d and LayerNorm over inputs shaped (M, B, C[, L]).

Each member normalises with its own statistics over its own batch, never across the stack, so
member i computes exactly what the plain layer it stacks computes. BatchNorm1d follows
torch.nn.BatchNorm1d to the letter: in training mode it normalises with the biased batch
variance and moves the running mean and the *unbiased* running variance by `momentum` (or by the
cumulative average 1/num_batches_tracked when momentum is None), in place, in the StackedNet's
`buffers`; in eval mode it uses the running statistics. Parameters arrive as (M, C) views.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from dlstudies.errors import UsageError
from dlstudies.models.stacked import STACKED_LAYERS


def _per_channel(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(M, C) statistics or parameters shaped to broadcast against x = (M, B, C, *rest)."""
    return t.view(t.shape[0], 1, t.shape[1], *([1] * (x.dim() - 3)))


def _affine(y: torch.Tensor, p: dict, shape: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    # A layer built with affine=False (or LayerNorm with bias=False) has no such parameter.
    if "weight" in p:
        y = y * shape(p["weight"])
    if "bias" in p:
        y = y + shape(p["bias"])
    return y


def _batch_moments(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Per member and channel: mean, biased variance, and how many values each was taken over."""
    dims = [1, *range(3, x.dim())]
    count = x.numel() // (x.shape[0] * x.shape[2])
    if count < 2:
        # torch raises a bare ValueError here; name the setting that causes it instead.
        raise UsageError("BatchNorm1d in training mode needs more than one value per channel, got a batch of 1: "
                         "use batch_size >= 2 (and no final batch of one sample)")
    return x.mean(dims), x.var(dims, unbiased=False), count


@torch.no_grad()
def _update_running(layer, b: dict, mean: torch.Tensor, var: torch.Tensor, count: int) -> None:
    """torch's update, in place in the shared buffers (the StackedNet sees it)."""
    b["num_batches_tracked"].add_(1)
    if layer.momentum is None:  # cumulative moving average, per member
        factor = (1.0 / b["num_batches_tracked"].to(mean.dtype)).unsqueeze(1)
    else:
        factor = layer.momentum
    b["running_mean"].mul_(1 - factor).add_(factor * mean)
    b["running_var"].mul_(1 - factor).add_(factor * var * (count / (count - 1)))


@STACKED_LAYERS.register("BatchNorm1d")
def batchnorm1d(layer, p, b, x, training):
    if training or not layer.track_running_stats:  # without running stats torch always uses the batch's
        mean, var, count = _batch_moments(x)
        if training and layer.track_running_stats:
            _update_running(layer, b, mean.detach(), var.detach(), count)
    else:
        mean, var = b["running_mean"], b["running_var"]
    y = (x - _per_channel(mean, x)) * torch.rsqrt(_per_channel(var, x) + layer.eps)
    return _affine(y, p, lambda t: _per_channel(t, x))


@STACKED_LAYERS.register("LayerNorm")
def layernorm(layer, p, b, x, training):
    # Statistics over each sample's own features: no batch dependence, same in train and eval.
    y = F.layer_norm(x, layer.normalized_shape, eps=layer.eps)
    return _affine(y, p, lambda t: t.unsqueeze(1))
