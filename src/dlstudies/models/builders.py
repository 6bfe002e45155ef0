"""Model builders. A member is a plain `nn.Sequential`, initialised from an explicit generator.

The plain module is the source of truth: the reference engine trains it as it is, the batched
engine stacks the parameters of many of them, and analysis probes it with torch.func.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
from torch import nn

from dlstudies.registry import Registry

MODELS: Registry = Registry("model")
ACTIVATIONS: Registry = Registry("activation")
NORMS: Registry = Registry("normalization")
INITIALISERS: Registry = Registry("initialiser")

for _name, _cls in {"tanh": nn.Tanh, "relu": nn.ReLU, "sigmoid": nn.Sigmoid, "identity": nn.Identity}.items():
    ACTIVATIONS.register(_name)(_cls)
NORMS.register("none")(None)
NORMS.register("batchnorm")(nn.BatchNorm1d)
NORMS.register("layernorm")(nn.LayerNorm)


@MODELS.register("mlp")
def mlp(sizes: Sequence[int], act: Callable[[], nn.Module] = nn.Tanh, norm: Callable[[int], nn.Module] | None = None,
        flatten: bool = False) -> nn.Sequential:
    """Linear layers of the given sizes; each hidden one followed by `norm` (if any), then `act`.

    `flatten` puts an nn.Flatten first, for image inputs.
    """
    layers: list[nn.Module] = [nn.Flatten()] if flatten else []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.extend(([norm(n_out)] if norm else []) + [act()])
    return nn.Sequential(*layers)


def _uniform_fan_in(module: nn.Module, g: torch.Generator) -> None:
    # PyTorch's default for Linear and Conv (kaiming-uniform with a=sqrt(5)) is U(-1/sqrt(fan_in), ..)
    # for weight and bias alike; drawn here from an explicit generator instead of the global one.
    fan_in = module.weight[0].numel()
    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
    with torch.no_grad():
        module.weight.uniform_(-bound, bound, generator=g)
        if module.bias is not None:
            module.bias.uniform_(-bound, bound, generator=g)


INITIALISERS.register("Linear")(_uniform_fan_in)
INITIALISERS.register("Conv2d")(_uniform_fan_in)
INITIALISERS.register("Conv1d")(_uniform_fan_in)


def init_module(model: nn.Module, generator: torch.Generator) -> nn.Module:
    """Re-initialise every layer that has random weights, in module order, from `generator`."""
    for sub in model.modules():
        if type(sub).__name__ in INITIALISERS:
            INITIALISERS.get(type(sub).__name__)(sub, generator)
    return model


def build_members(builder: Callable[[], nn.Module], seeds: Sequence[int], dtype=torch.float32) -> list[nn.Module]:
    """One member per seed; the same seed gives the same initial weights in every condition."""
    return [init_module(builder().to(dtype), torch.Generator().manual_seed(int(s))) for s in seeds]


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
