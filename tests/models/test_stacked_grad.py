"""The stack's gradient buffer: each layer's gradient added in place into its slice of one (M, P)
buffer gives bitwise what torch.autograd.grad gives layer by layer, gathered."""

from __future__ import annotations

import torch

from dlstudies.engine.losses import LOSSES
from dlstudies.models.builders import build_members
from dlstudies.models.conv import cnn
from dlstudies.models.stacked import StackedNet


def _setup():
    net = StackedNet(build_members(lambda: cnn((1, 12, 12), (3, 4), (10,), 5), [0, 1, 2]))
    g = torch.Generator().manual_seed(7)
    x, y = torch.randn(3, 40, 1, 12, 12, generator=g), torch.randint(0, 5, (3, 40), generator=g)
    return net, x, y


def _losses(net, x, y):
    return LOSSES.get("cross_entropy").stacked(net.forward(x, training=True), y).sum()


def _gathered(net, loss):
    # The oracle: autograd's gradient of each layer, concatenated in the stack's parameter order.
    grads = torch.autograd.grad(loss, [net.params[n] for n in net.names])
    return torch.cat([g.reshape(net.M, -1) for g in grads], 1)


def test_buffer_holds_the_gradient_bitwise_and_is_reused():
    net, x, y = _setup()
    expected = _gathered(net, _losses(net, x, y))
    grad = net.zero_grad()
    net.accumulate_grad(_losses(net, x, y))
    assert torch.equal(grad, expected)
    again = net.zero_grad()
    assert again.data_ptr() == grad.data_ptr() and not again.any()  # one buffer, zeroed


def test_buffer_sums_parts_in_order():
    net, x, y = _setup()
    parts = [_gathered(net, _losses(net, x[:, s], y[:, s])) for s in (slice(0, 15), slice(15, 40))]
    grad = net.zero_grad()
    for s in (slice(0, 15), slice(15, 40)):
        net.accumulate_grad(_losses(net, x[:, s], y[:, s]))
    assert torch.equal(grad, parts[0] + parts[1])
