"""A stack of M members with identical architecture, computed by batched kernels.

Every parameter lives in one flat `(M, P)` tensor (so an optimizer step is a handful of
elementwise kernels over all members at once) and each layer sees a view of it shaped
`(M, *shape)`. Inputs are `(M, B, ...)`: each member gets its own batch.
"""

from __future__ import annotations

import warnings
from typing import Callable

import torch
from torch import nn

from dlstudies.registry import Registry

# layer type name -> forward(layer, params, buffers, x, training) -> y, on stacked tensors
STACKED_LAYERS: Registry = Registry("stacked layer")
# Adjacent layer types (a, b) that the stack runs as b then a: parameter-free, b(a(x)) == a(b(x))
# bitwise, gradients too, and a is cheaper after b. ReLU then max-pooling: max commutes with a
# monotone map and a tie goes to the same element (where the max is <= 0 both give gradient 0);
# after 2x2 pooling the ReLU and its backward touch a quarter of the values.
COMMUTING = {("ReLU", "MaxPool2d")}


def _elementwise(fn: Callable[[torch.Tensor], torch.Tensor]):
    return lambda layer, p, b, x, training: fn(x)


for _name, _fn in {"Tanh": torch.tanh, "ReLU": torch.relu, "Sigmoid": torch.sigmoid, "Identity": lambda x: x}.items():
    STACKED_LAYERS.register(_name)(_elementwise(_fn))


@STACKED_LAYERS.register("Linear")
def _linear(layer, p, b, x, training):
    if "bias" not in p:  # Linear(bias=False)
        return torch.bmm(x, p["weight"].transpose(1, 2))
    return torch.baddbmm(p["bias"].unsqueeze(1), x, p["weight"].transpose(1, 2))


class StackedNet:
    """M copies of one `nn.Sequential` architecture, parameters stacked along a leading axis."""

    def __init__(self, members: list[nn.Module]):
        self.template = members[0]
        self.M = len(members)
        states = [dict(m.named_parameters()) for m in members]
        self.names = list(states[0])
        self.shapes = {n: tuple(states[0][n].shape) for n in self.names}
        sizes = [states[0][n].numel() for n in self.names]
        self.offsets = dict(zip(self.names, _cumulative(sizes)))
        self.P = sum(sizes)
        ref = states[0][self.names[0]]
        self.flat = torch.cat([torch.stack([s[n].detach().reshape(-1) for s in states]) for n in self.names], 1)
        self.flat = self.flat.to(ref.dtype).contiguous()
        self.buffers = {n: torch.stack([dict(m.named_buffers())[n] for m in members]).clone()
                        for n, _ in self.template.named_buffers()}
        self.params = self._views()
        self.grad: torch.Tensor | None = None  # (M, P), made by the first zero_grad
        self.layers = _commuted([(layer, _children_of(self.params, name), _children_of(self.buffers, name))
                                 for name, layer in self.template.named_children()])
        # Where the dense head starts: the first Linear layer (len(layers) where there is none).
        types = [type(layer).__name__ for layer, _, _ in self.layers]
        self.head_start = types.index("Linear") if "Linear" in types else len(types)

    def _views_of(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        views = {}
        for n in self.names:
            off, size = self.offsets[n], int(torch.Size(self.shapes[n]).numel())
            views[n] = flat[:, off:off + size].view(self.M, *self.shapes[n])
        return views

    def _views(self) -> dict[str, torch.Tensor]:
        # Leaf views into `flat`: autograd gives one gradient per layer, the optimizer updates `flat`.
        return {n: v.requires_grad_() for n, v in self._views_of(self.flat).items()}

    def forward(self, x: torch.Tensor, training: bool = False, layers: slice = slice(None)) -> torch.Tensor:
        for layer, p, b in self.layers[layers]:
            x = STACKED_LAYERS.get(type(layer).__name__)(layer, p, b, x, training)
        return x

    def zero_grad(self) -> torch.Tensor:
        """The (M, P) gradient buffer, zeroed; `accumulate_grad` adds into it. One buffer per net,
        reused every step: read it before the next zero_grad."""
        if self.grad is None:
            self.grad = torch.zeros_like(self.flat)
            for n, view in self._views_of(self.grad).items():
                self.params[n].grad = view
        else:
            self.grad.zero_()
        return self.grad

    def accumulate_grad(self, loss: torch.Tensor) -> None:
        """Adds the gradient of `loss` into the buffer of `zero_grad`. Each layer's gradient is added
        in place into its slice of the buffer (autograd accumulates into an existing .grad), so no
        (M, P) gradient is allocated and copied per step: a step of the paper CNNs runs 1.1-1.3x
        faster than gathering the layers' gradients with one cat (benchmarks/conv.py), with bitwise
        the same values (0 + g is g)."""
        with warnings.catch_warnings():
            # The buffer's slices are strided like the parameters' views, not contiguous: torch warns
            # that this breaks its layout contract, which costs nothing here (checked in the benchmark).
            warnings.filterwarnings("ignore", message="grad and param do not obey the gradient layout contract")
            loss.backward()

    def member_state(self, i: int) -> dict[str, torch.Tensor]:
        """Member i's parameters and buffers as a state dict for the template architecture."""
        state = {n: self.params[n][i].detach().clone() for n in self.names}
        state.update({n: v[i].clone() for n, v in self.buffers.items()})
        return state

    def to_modules(self, builder: Callable[[], nn.Module]) -> list[nn.Module]:
        modules = []
        for i in range(self.M):
            m = builder().to(self.flat.dtype)
            m.load_state_dict(self.member_state(i))
            modules.append(m.eval())
        return modules


def _commuted(layers: list) -> list:
    out = list(layers)
    for i in range(len(out) - 1):
        if (type(out[i][0]).__name__, type(out[i + 1][0]).__name__) in COMMUTING:
            out[i], out[i + 1] = out[i + 1], out[i]
    return out


def _children_of(tensors: dict[str, torch.Tensor], child: str) -> dict[str, torch.Tensor]:
    # Shares the tensors (not copies): in-place updates of buffers are seen by both dicts.
    return {k.split(".", 1)[1]: v for k, v in tensors.items() if k.split(".", 1)[0] == child}


def _cumulative(sizes: list[int]) -> list[int]:
    out, total = [], 0
    for s in sizes:
        out.append(total)
        total += s
    return out
