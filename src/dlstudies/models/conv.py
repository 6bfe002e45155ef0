"""Stacked convolution layers and a CNN builder.

Stacked activations are (M, B, C, H, W). Two layouts of a stacked convolution (CONV_LAYOUTS), the
same numbers to float rounding:
- "members" (the CPU's on inputs of MEMBERS_MIN_PIXELS or more): one ungrouped convolution per
  member, each member's images channels-last (stored (M, B, H, W, C)), so that the max-pooling
  after it runs torch's channels-last kernel and no layer copies the stack into another layout.
  Measured (benchmarks/conv.py, one thread), a training step of the paper CNNs (28x28) runs
  1.4-1.7x faster than "grouped": with 1 or 8 input channels per member, oneDNN's grouped kernels
  reach a third of its ungrouped rate, and torch's NCHW max-pooling costs 4x its channels-last one.
- "grouped" (a GPU's, and the CPU's on small maps such as 8x8 digits): the member axis folded into
  channels, (B, M*C, H, W), one grouped convolution with M groups: one kernel launch for all members.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from dlstudies.errors import UsageError
from dlstudies.models.builders import MODELS
from dlstudies.models.stacked import STACKED_LAYERS
from dlstudies.registry import Registry

# name -> conv(layer, weight (M, O, C/g, k, k), bias (M, O) or None, x (M, B, C, H, W)) -> (M, B, O, H', W')
CONV_LAYOUTS: Registry = Registry("convolution layout")


def _fold(x: torch.Tensor) -> torch.Tensor:
    M, B = x.shape[:2]
    return x.transpose(0, 1).reshape(B, M * x.shape[2], *x.shape[3:])


def _unfold(y: torch.Tensor, M: int) -> torch.Tensor:
    B = y.shape[0]
    return y.reshape(B, M, -1, *y.shape[2:]).transpose(0, 1)


# Pixels of a layer's input from which "members" is the faster layout on a CPU (benchmarks/conv.py,
# one thread): a step at 28x28 runs 1.4-1.7x faster per member; on 8x8 digits a step costs 0.94-1.09x
# (one conv) and 1.6x *more* with three convs down to 2x2, where M small calls cost more than the work.
MEMBERS_MIN_PIXELS = 100


def conv_layout(device: torch.device | str, image: Sequence[int]) -> str:
    """The layout a stack on `device` convolves an (H, W) input in: on the CPU per member where the
    images are large enough to pay for M calls, else one grouped launch (always on a GPU, which pays
    per launch). Rounding alone differs between them; the shape and device decide, nothing else."""
    large = image[0] * image[1] >= MEMBERS_MIN_PIXELS
    return "members" if torch.device(device).type == "cpu" and large else "grouped"


@CONV_LAYOUTS.register("grouped")
def _grouped(layer: nn.Conv2d, weight, bias, x):
    M = x.shape[0]
    w = weight.reshape(-1, *weight.shape[2:])
    bias = bias.reshape(-1) if bias is not None else None
    y = F.conv2d(_fold(x), w, bias, layer.stride, layer.padding, layer.dilation, layer.groups * M)
    return _unfold(y, M)


def _channels_last(t: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) stored (B, H, W, C); a view where it is so already. With C = 1 both layouts hold
    the same bytes, but torch reads the channel stride to decide, so it is set explicitly."""
    B, C, H, W = t.shape
    return t.permute(0, 2, 3, 1).contiguous().view(B, H * W * C).view(B, H, W, C).permute(0, 3, 1, 2)


@CONV_LAYOUTS.register("members")
def _members(layer: nn.Conv2d, weight, bias, x):
    biases = bias.unbind(0) if bias is not None else [None] * x.shape[0]
    # unbind, not x[i]: its backward is one stack, where M selects would each fill a stack of zeros.
    ys = [F.conv2d(_channels_last(xi), wi, bi, layer.stride, layer.padding, layer.dilation, layer.groups)
          for xi, wi, bi in zip(x.unbind(0), weight.unbind(0), biases)]
    return torch.stack([y.permute(0, 2, 3, 1) for y in ys]).permute(0, 1, 4, 2, 3)  # stored (M, B, H, W, C)


@STACKED_LAYERS.register("Conv2d")
def _conv2d(layer: nn.Conv2d, p, b, x, training):
    if layer.padding_mode != "zeros":
        raise UsageError(f"Conv2d padding_mode={layer.padding_mode!r}: the stacked convolution pads with zeros only")
    return CONV_LAYOUTS.get(conv_layout(x.device, x.shape[-2:]))(layer, p["weight"], p.get("bias"), x)


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


class ConvNet(nn.Sequential):
    """A CNN as one module (evaluations, measures, the reference engine): on a CPU it convolves large
    images channels-last, as a stack's "members" layout does, so that its max-pooling too runs
    torch's channels-last kernel. Measured (one thread), the paper CNN's forward on 256 28x28 images
    takes 10.5 ms instead of 25.6. The layers, and so the parameter names, are nn.Sequential's."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4 and conv_layout(x.device, x.shape[-2:]) == "members":
            x = _channels_last(x)
        return super().forward(x)


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
    return ConvNet(*layers)
