"""Stacked convolution layers (grouped convolution over the member axis) and a CNN builder.

Stacked activations are (M, B, C, H, W). A convolution folds the member axis into channels,
(B, M*C, H, W), and runs one grouped convolution with M groups: one kernel launch for all
members, each seeing only its own channels and weights.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from dlstudies.models.builders import MODELS
from dlstudies.models.stacked import STACKED_LAYERS


def _fold(x: torch.Tensor) -> torch.Tensor:
    M, B = x.shape[:2]
    return x.transpose(0, 1).reshape(B, M * x.shape[2], *x.shape[3:])


def _unfold(y: torch.Tensor, M: int) -> torch.Tensor:
    B = y.shape[0]
    return y.reshape(B, M, -1, *y.shape[2:]).transpose(0, 1)


@STACKED_LAYERS.register("Conv2d")
def _conv2d(layer: nn.Conv2d, p, b, x, training):
    M = x.shape[0]
    w = p["weight"].reshape(-1, *p["weight"].shape[2:])
    bias = p["bias"].reshape(-1) if "bias" in p else None
    y = F.conv2d(_fold(x), w, bias, layer.stride, layer.padding, layer.dilation, layer.groups * M)
    return _unfold(y, M)


def _per_image(fn: Callable[[nn.Module, torch.Tensor], torch.Tensor]):
    # Pooling acts on each image alone: merge the member and batch axes, apply, split them again.
    def forward(layer, p, b, x, training):
        y = fn(layer, x.reshape(-1, *x.shape[2:]))
        return y.reshape(*x.shape[:2], *y.shape[1:])
    return forward


STACKED_LAYERS.register("MaxPool2d")(_per_image(lambda layer, x: layer(x)))
STACKED_LAYERS.register("AvgPool2d")(_per_image(lambda layer, x: layer(x)))


@STACKED_LAYERS.register("Flatten")
def _flatten(layer: nn.Flatten, p, b, x, training):
    # A member's dim d is the stack's dim d + 1.
    end = layer.end_dim if layer.end_dim < 0 else layer.end_dim + 1
    return x.flatten(layer.start_dim + 1, end)


@MODELS.register("cnn")
def cnn(input_shape: Sequence[int], channels: Sequence[int], hidden: Sequence[int], n_classes: int,
        kernel: int = 3, pool: int = 2, act: Callable[[], nn.Module] = nn.ReLU) -> nn.Sequential:
    """conv(k, same padding) -> act -> maxpool(pool) per channel count, then an MLP head."""
    c, h, w = input_shape
    layers: list[nn.Module] = []
    for out in channels:
        layers += [nn.Conv2d(c, out, kernel, padding=kernel // 2), act(), nn.MaxPool2d(pool)]
        c, h, w = out, h // pool, w // pool
    layers.append(nn.Flatten())
    sizes = [c * h * w, *hidden, n_classes]
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers += [nn.Linear(n_in, n_out)] + ([act()] if i < len(sizes) - 2 else [])
    return nn.Sequential(*layers)
