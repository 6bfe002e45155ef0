"""Stacked BatchNorm1d and LayerNorm against the plain torch layers, and the batched engine against
the reference engine on MLPs that carry them (float64)."""

import itertools

import numpy as np
import pytest
import torch
from torch import nn

from dlstudies.engine import ENGINES, StopRule, TrainSpec
from dlstudies.engine.evaluate import accuracy_probe
from dlstudies.errors import UsageError
from dlstudies.models.builders import NORMS, build_members, mlp
from dlstudies.models.stacked import StackedNet
from dlstudies.optim import OptSpec

SEEDS = [0, 1, 2]


def _layers(make, M=3):
    layers = [make().double() for _ in range(M)]
    g = torch.Generator().manual_seed(7)
    for layer in layers:  # affine parameters away from (1, 0), so a wrong broadcast shows
        with torch.no_grad():
            for p in layer.parameters():
                p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64))
    return layers


def _stacked_vs_plain(make, shape, training, steps=3):
    layers = _layers(make)
    net = StackedNet([nn.Sequential(layer) for layer in layers])
    g = torch.Generator().manual_seed(3)
    for _ in range(steps):
        x = torch.randn(len(layers), *shape, generator=g, dtype=torch.float64) * 2 + 1
        out = net.forward(x, training=training)
        for i, layer in enumerate(layers):
            layer.train(training)
            torch.testing.assert_close(out[i], layer(x[i]), rtol=1e-12, atol=1e-12)
    return net, layers


@pytest.mark.parametrize("momentum", [0.1, None])
@pytest.mark.parametrize("shape", [(8, 4), (5, 4, 3)])
def test_batchnorm_training_updates_running_stats_like_torch(momentum, shape):
    net, layers = _stacked_vs_plain(lambda: nn.BatchNorm1d(4, momentum=momentum), shape, training=True)
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        expected = torch.stack([getattr(layer, name) for layer in layers])
        torch.testing.assert_close(net.buffers[f"0.{name}"], expected, rtol=1e-12, atol=1e-12)
    assert net.buffers["0.num_batches_tracked"].tolist() == [3, 3, 3]


def test_batchnorm_eval_uses_running_stats_and_leaves_them():
    layers = _layers(lambda: nn.BatchNorm1d(4))
    for layer in layers:  # some history in the running statistics first
        layer.train()(torch.randn(6, 4, dtype=torch.float64) * 3)
    net = StackedNet([nn.Sequential(layer) for layer in layers])
    before = {k: v.clone() for k, v in net.buffers.items()}
    x = torch.randn(3, 5, 4, dtype=torch.float64)
    out = net.forward(x, training=False)
    for i, layer in enumerate(layers):
        torch.testing.assert_close(out[i], layer.eval()(x[i]), rtol=1e-12, atol=1e-12)
    for k, v in net.buffers.items():
        assert torch.equal(v, before[k])


@pytest.mark.parametrize("training", [True, False])
def test_batchnorm_without_running_stats_uses_batch_stats(training):
    _stacked_vs_plain(lambda: nn.BatchNorm1d(4, track_running_stats=False), (6, 4), training=training)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("bias", [True, False])
def test_layernorm_matches_torch(training, bias):
    _stacked_vs_plain(lambda: nn.LayerNorm(4, bias=bias), (6, 4), training=training)


def test_batchnorm_batch_of_one_is_a_usage_error():
    net = StackedNet([nn.Sequential(nn.BatchNorm1d(4)) for _ in range(2)])
    with pytest.raises(UsageError, match="batch_size >= 2"):
        net.forward(torch.randn(2, 1, 4), training=True)
    assert net.forward(torch.randn(2, 1, 4), training=False).shape == (2, 1, 4)  # eval is fine


def _data(n=44, d=6, classes=3):
    g = torch.Generator().manual_seed(123)
    return torch.rand(n, d, generator=g, dtype=torch.float64), torch.randint(0, classes, (n,), generator=g)


def _both(norm, spec, rule="adam", seeds=SEEDS):
    x, y = _data()
    members = build_members(lambda: mlp([6, 5, 4, 3], norm=NORMS.get(norm)), seeds, torch.float64)
    opts = [OptSpec(rule, 0.02)] * len(seeds)
    return [ENGINES.get(e)(members, opts, x, y, spec, list(seeds)) for e in ("batched", "reference")]


def _gauge(model):
    """The bias of a Linear that feeds a BatchNorm, and the running mean that follows it.

    BatchNorm subtracts the batch mean, so that bias changes nothing in training and its gradient
    is pure round-off (~1e-16), which differs between any two correct kernels. SGD turns it into
    steps of lr * 1e-16; Adam divides it by sqrt(v) + eps and makes steps of ~lr * 1e-8, so under
    Adam these entries agree only to ~1e-8 between engines. Everything else is held to 1e-10.
    """
    mods = list(model.children())
    return {k for i, (m, n) in enumerate(itertools.pairwise(mods)) if isinstance(n, nn.BatchNorm1d)
            for k in (f"{i}.bias", f"{i + 1}.running_mean")}


def _assert_same_states(a, b):
    np.testing.assert_array_equal(a.epochs, b.epochs)
    for k in a.history:
        np.testing.assert_allclose(a.history[k], b.history[k], rtol=1e-10, atol=1e-12, equal_nan=True)
    for ma, mb in zip(a.models, b.models):
        sa, sb = ma.state_dict(), mb.state_dict()
        assert set(sa) == set(sb)
        for k in sa:
            torch.testing.assert_close(sa[k], sb[k], rtol=1e-10, atol=1e-7 if k in _gauge(ma) else 1e-12)


@pytest.mark.parametrize("rule", ["delta", "adam"])
@pytest.mark.parametrize("norm", ["batchnorm", "layernorm"])
def test_engines_agree_with_norm_layers(norm, rule):
    # Batches of 8 over 44 samples: a last batch of 4, so partial batches are covered too.
    x, y = _data()
    spec = TrainSpec(StopRule(4), batch_size=8, probes=(accuracy_probe("acc", x, y),))
    a, b = _both(norm, spec, rule)
    _assert_same_states(a, b)
    if rule != "adam":  # no gauge drift: the pre-BatchNorm biases agree as tightly as the rest
        for ma, mb in zip(a.models, b.models):
            for k in _gauge(ma):
                torch.testing.assert_close(ma.state_dict()[k], mb.state_dict()[k], rtol=1e-10, atol=1e-12)


def test_stopped_batchnorm_members_keep_their_running_stats():
    # Members stop at different epochs; a stopped member's running statistics must stop with it.
    spec = TrainSpec(StopRule(40, tolerance=3e-3), batch_size=8)
    a, b = _both("batchnorm", spec)
    assert len(set(a.epochs.tolist())) > 1, "the test needs members that stop at different epochs"
    _assert_same_states(a, b)
    steps_per_epoch = 6
    tracked = [m.state_dict()["1.num_batches_tracked"].item() for m in a.models]
    assert tracked == [int(e) * steps_per_epoch for e in a.epochs]
