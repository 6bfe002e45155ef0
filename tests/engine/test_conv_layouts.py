"""Stacked convolutions: both layouts against the plain layers (float64), the CNN trained by the
batched engine against the reference engine, and ReLU/max-pooling run in the cheaper order exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dlstudies.engine import TrainSpec, fixed_epochs
from dlstudies.engine.batched import fit_batched
from dlstudies.engine.reference import fit_reference
from dlstudies.errors import UsageError
from dlstudies.models import conv
from dlstudies.models.builders import build_members
from dlstudies.models.conv import CONV_LAYOUTS, cnn
from dlstudies.models.stacked import StackedNet
from dlstudies.optim import OptSpec


def _layer_case(c_in: int, groups: int = 1):
    g = torch.Generator().manual_seed(c_in)
    layers = [nn.Conv2d(c_in, 4, 3, padding=1, groups=groups).double() for _ in range(3)]
    x = torch.randn(3, 5, c_in, 9, 7, generator=g, dtype=torch.float64, requires_grad=True)
    return layers, x


@pytest.mark.parametrize("layout", list(CONV_LAYOUTS))
@pytest.mark.parametrize("c_in, groups", [(1, 1), (4, 1), (4, 2)])
def test_each_layout_is_each_members_own_convolution(layout, c_in, groups):
    layers, x = _layer_case(c_in, groups)
    w = torch.stack([m.weight for m in layers]).detach().requires_grad_()
    b = torch.stack([m.bias for m in layers]).detach().requires_grad_()
    out = CONV_LAYOUTS.get(layout)(layers[0], w, b, x)
    expected = torch.stack([F.conv2d(x[i], w[i], b[i], 1, 1, 1, groups) for i in range(3)])
    torch.testing.assert_close(out, expected, rtol=1e-13, atol=1e-13)
    g = torch.randn_like(out)
    ours = torch.autograd.grad(out, (x, w, b), g)
    theirs = torch.autograd.grad(expected, (x, w, b), g)
    for a, e in zip(ours, theirs):
        torch.testing.assert_close(a, e, rtol=1e-12, atol=1e-12)


def _data(n=90):
    g = torch.Generator().manual_seed(5)
    return torch.randn(n, 1, 12, 12, generator=g, dtype=torch.float64), torch.randint(0, 4, (n,), generator=g)


def _cnn_members():
    return build_members(lambda: cnn((1, 12, 12), (3, 5), (16, 8), 4), [0, 1, 2], torch.float64)


@pytest.mark.parametrize("layout", list(CONV_LAYOUTS))
def test_two_conv_cnn_trains_as_the_reference_engine(layout, monkeypatch):
    monkeypatch.setattr(conv, "conv_layout", lambda device, image: layout)
    x, y = _data()
    spec = TrainSpec(fixed_epochs(2), 20, trace_epochs=1)
    opts = [OptSpec("adam", 0.01)] * 3
    ours = fit_batched(_cnn_members(), opts, x, y, spec, [0, 1, 2])
    ref = fit_reference(_cnn_members(), opts, x, y, spec, [0, 1, 2])
    assert ours.path == f"autograd-{layout}conv"
    np.testing.assert_allclose(ours.history["loss"], ref.history["loss"], rtol=1e-10)
    np.testing.assert_allclose(ours.trace["grad_norm"], ref.trace["grad_norm"], rtol=1e-10)
    for a, b in zip(ours.models, ref.models):
        for p, q in zip(a.parameters(), b.parameters()):
            torch.testing.assert_close(p, q, rtol=1e-10, atol=1e-12)


def test_relu_and_max_pool_commute_bitwise_forward_and_backward():
    members = _cnn_members()
    net = StackedNet(members)
    kinds = [type(layer).__name__ for layer, _, _ in net.layers]
    assert kinds[:3] == ["Conv2d", "MaxPool2d", "ReLU"]  # the template's order is Conv2d, ReLU, MaxPool2d
    x = torch.randn(3, 6, 1, 12, 12, dtype=torch.float64)
    x[:, :, :, :4] = 0.0  # windows whose maximum ties at zero after the ReLU
    out = net.forward(x, training=True)
    plain = torch.stack([m(x[i]) for i, m in enumerate(members)])
    torch.testing.assert_close(out, plain, rtol=1e-13, atol=1e-13)
    z = torch.randn(3, 5, 12, 12, dtype=torch.float64, requires_grad=True)
    for f, g in [(lambda t: F.max_pool2d(torch.relu(t), 2), lambda t: torch.relu(F.max_pool2d(t, 2)))]:
        z0 = torch.where(torch.rand_like(z) < 0.3, torch.zeros_like(z), z).detach().requires_grad_()
        a, b = f(z0), g(z0)
        assert torch.equal(a, b)
        w = torch.randn_like(a)
        assert torch.equal(torch.autograd.grad(a, z0, w)[0], torch.autograd.grad(b, z0, w)[0])


def test_other_padding_modes_are_refused():
    members = build_members(lambda: nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, padding_mode="reflect")), [0])
    with pytest.raises(UsageError, match="padding_mode"):
        StackedNet(members).forward(torch.randn(1, 2, 1, 5, 5))


def test_the_layout_follows_the_device_and_the_image_size_alone():
    assert conv.conv_layout("cpu", (28, 28)) == "members" and conv.conv_layout("cpu", (14, 14)) == "members"
    assert conv.conv_layout("cpu", (8, 8)) == "grouped"  # small maps: M calls cost more than their work
    assert conv.conv_layout("cuda", (28, 28)) == "grouped"
