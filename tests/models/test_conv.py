"""Stacked convolutions and pooling against the reference engine, in float64."""

import numpy as np
import torch

from dlstudies.engine import ENGINES, StopRule, TrainSpec
from dlstudies.models import StackedNet, build_members, count_params
from dlstudies.models.builders import mlp
from dlstudies.models.conv import cnn
from dlstudies.optim import OptSpec


def _images(n=24):
    g = torch.Generator().manual_seed(5)
    return torch.rand(n, 1, 8, 8, generator=g, dtype=torch.float64), torch.randint(0, 4, (n,), generator=g)


def test_stacked_forward_equals_each_member():
    x, _ = _images()
    members = build_members(lambda: cnn((1, 8, 8), (3, 4), (7,), 4), [0, 1, 2], torch.float64)
    out = StackedNet(members).forward(x.expand(3, *x.shape))
    for i, m in enumerate(members):
        torch.testing.assert_close(out[i], m(x))


def test_cnn_training_matches_reference_engine():
    x, y = _images()
    members = build_members(lambda: cnn((1, 8, 8), (3, 4), (7,), 4), [0, 1], torch.float64)
    spec = TrainSpec(StopRule(2), batch_size=6)
    opts = [OptSpec("adam", 0.01)] * 2
    a, b = [ENGINES.get(e)(members, opts, x, y, spec, [0, 1]) for e in ("batched", "reference")]
    np.testing.assert_allclose(a.history["loss"], b.history["loss"], rtol=1e-10)
    for ma, mb in zip(a.models, b.models):
        for pa, pb in zip(ma.parameters(), mb.parameters()):
            torch.testing.assert_close(pa, pb, rtol=1e-10, atol=1e-12)


def test_image_mlp_flattens_and_counts_parameters():
    x, _ = _images()
    members = build_members(lambda: mlp([64, 5, 4], flatten=True), [0, 1], torch.float64)
    out = StackedNet(members).forward(x.expand(2, *x.shape))
    torch.testing.assert_close(out[1], members[1](x))
    assert count_params(members[0]) == 64 * 5 + 5 + 5 * 4 + 4


def test_cnn_module_on_large_images_convolves_channels_last_with_the_plain_layers_numbers():
    g = torch.Generator().manual_seed(3)
    x = torch.rand(5, 1, 12, 12, generator=g, dtype=torch.float64, requires_grad=True)
    net = cnn((1, 12, 12), (3, 4), (6,), 3).double()
    plain = torch.nn.Sequential(*net)  # the same layers, NCHW throughout
    seen = []
    net[0].register_forward_hook(lambda mod, inp, out: seen.append(inp[0].is_contiguous(memory_format=torch.channels_last)
                                                                     and inp[0].stride(1) == 1))
    out = net(x)
    assert seen == [True]  # 144 pixels: at least MEMBERS_MIN_PIXELS, the CPU's channels-last layout
    torch.testing.assert_close(out, plain(x), rtol=1e-12, atol=1e-14)
    grad, = torch.autograd.grad(out.square().sum(), x)
    torch.testing.assert_close(grad, torch.autograd.grad(plain(x).square().sum(), x)[0], rtol=1e-12, atol=1e-14)
    assert list(dict(net.named_parameters())) == list(dict(plain.named_parameters()))
