"""Linear interpolation between two models (Goodfellow et al. 2015): endpoints, BatchNorm, range.

BatchNorm statistics at θ(α) are recomputed by default; the oracle is a hand-written float64
forward pass with the training set's own mean and variance, and a train-mode forward pass."""

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dlstudies.analysis import interpolate, interpolation_curve
from dlstudies.analysis.interpolation import default_alphas, recompute_batchnorm



def bn_mlp(seed: int) -> nn.Sequential:
    torch.manual_seed(seed)  # fixture construction only
    net = nn.Sequential(nn.Linear(5, 8), nn.BatchNorm1d(8), nn.Tanh(), nn.Linear(8, 3)).double()
    with torch.no_grad():  # running statistics that differ between the two models
        net[1].running_mean.copy_(torch.randn(8, dtype=torch.float64))
        net[1].running_var.copy_(torch.rand(8, dtype=torch.float64) + 0.5)
        net[1].num_batches_tracked.fill_(seed + 10)
    return net


def splits():
    gen = torch.Generator().manual_seed(0)
    make = lambda n: (torch.randn(n, 5, generator=gen, dtype=torch.float64), torch.randint(0, 3, (n,), generator=gen))
    return {"train": make(40), "test": make(25)}


def accuracy(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (out.argmax(-1) == y).double().mean()


def eval_loss(model: nn.Module, x, y) -> float:
    with torch.no_grad():
        return float(F.cross_entropy(copy.deepcopy(model).eval()(x), y))


def test_endpoints_reproduce_each_model():
    a, b, data = bn_mlp(0), bn_mlp(1), splits()
    curve = interpolation_curve(a, b, F.cross_entropy, accuracy, data, bn_stats="interpolate")
    i0, i1 = int(np.argmin(np.abs(curve.alphas))), int(np.argmin(np.abs(curve.alphas - 1)))
    assert curve.alphas[i0] == 0.0 and curve.alphas[i1] == 1.0
    for name, (x, y) in data.items():
        assert curve.loss[name].shape == curve.accuracy[name].shape == (31,)
        assert curve.loss[name][i0] == pytest.approx(eval_loss(a, x, y), rel=1e-12)
        assert curve.loss[name][i1] == pytest.approx(eval_loss(b, x, y), rel=1e-12)
        np.testing.assert_allclose(curve.alphas, np.linspace(-1, 2, 31), atol=1e-15)
        assert np.all((curve.accuracy[name] >= 0) & (curve.accuracy[name] <= 1))


def test_endpoint_states_are_exact():
    a, b = bn_mlp(0), bn_mlp(1)
    for alpha, model in ((0.0, a), (1.0, b)):
        state = interpolate(a, b, alpha)
        for name, tensor in model.state_dict().items():
            assert torch.equal(state[name], tensor) or name.endswith("num_batches_tracked")


def test_batchnorm_statistics_are_interpolated_and_used():
    a, b, data = bn_mlp(0), bn_mlp(1), splits()
    state = interpolate(a, b, 0.5)
    bn_a, bn_b = a[1], b[1]
    torch.testing.assert_close(state["1.running_mean"], (bn_a.running_mean + bn_b.running_mean) / 2)
    torch.testing.assert_close(state["1.running_var"], (bn_a.running_var + bn_b.running_var) / 2)
    assert int(state["1.num_batches_tracked"]) == 10  # taken from a
    # Oracle: a module loaded with the averaged state_dict, evaluated the ordinary way.
    mid = copy.deepcopy(a)
    mid.load_state_dict({k: (v + b.state_dict()[k]) / 2 if v.is_floating_point() else v
                         for k, v in a.state_dict().items()})
    curve = interpolation_curve(a, b, F.cross_entropy, None, data, alphas=[0.5], bn_stats="interpolate")
    assert curve.accuracy is None
    x, y = data["test"]
    assert curve.loss["test"][0] == pytest.approx(eval_loss(mid, x, y), rel=1e-12)


def test_alphas_reach_outside_the_segment_and_stay_finite():
    alphas = default_alphas()
    assert len(alphas) == 31 and float(alphas[0]) == -1.0 and float(alphas[-1]) == 2.0
    a, b, data = bn_mlp(0), bn_mlp(1), splits()
    with torch.no_grad():  # extrapolating these variances linearly would make some negative
        b[1].running_var.fill_(0.1)
        a[1].running_var.fill_(2.0)
    assert float(interpolate(a, b, 2.0)["1.running_var"].min()) == 0.0
    curve = interpolation_curve(a, b, F.cross_entropy, accuracy, data, bn_stats="interpolate")
    assert curve.alphas.min() < 0 and curve.alphas.max() > 1
    assert all(np.all(np.isfinite(v)) for v in curve.loss.values())


def test_models_are_untouched_and_must_match():
    a, b, data = bn_mlp(0), bn_mlp(1), splits()
    a.train()
    before = copy.deepcopy(a.state_dict())
    interpolation_curve(a, b, F.cross_entropy, accuracy, data, alphas=torch.tensor([0.25, 1.5]))
    assert a.training and all(torch.equal(v, before[k]) for k, v in a.state_dict().items())
    with pytest.raises(ValueError, match="differ"):
        interpolate(a, nn.Sequential(nn.Linear(5, 3)).double(), 0.5)


def by_hand(a: nn.Sequential, b: nn.Sequential, alpha: float, x_train, x) -> torch.Tensor:
    """Oracle for θ(α) with recomputed statistics: Linear, BatchNorm with the training set's own
    mean and unbiased variance of the mixed first layer's outputs, tanh, Linear; float64 by hand."""
    mix = lambda name: (1 - alpha) * a.state_dict()[name] + alpha * b.state_dict()[name]  # noqa: E731
    first = lambda inputs: inputs @ mix("0.weight").T + mix("0.bias")  # noqa: E731
    h_train = first(x_train)
    mean, var = h_train.mean(0), h_train.var(0, unbiased=True)
    z = (first(x) - mean) / torch.sqrt(var + a[1].eps) * mix("1.weight") + mix("1.bias")
    return torch.tanh(z) @ mix("3.weight").T + mix("3.bias")


@pytest.mark.parametrize("alpha", [-1.0, 0.0, 0.5, 1.5, 2.0])
def test_recomputed_statistics_are_the_training_sets_own(alpha):
    a, b, data = bn_mlp(0), bn_mlp(1), splits()
    (x_train, _), (x, y) = data["train"], data["test"]
    curve = interpolation_curve(a, b, F.cross_entropy, None, data, alphas=[alpha])
    assert curve.loss["test"][0] == pytest.approx(float(F.cross_entropy(by_hand(a, b, alpha, x_train, x), y)), rel=1e-10)
    # And the function is what a train-mode forward pass over the training set computes (up to
    # the unbiased variance's N/(N-1), which the stored statistics carry and the batch does not).
    state = recompute_batchnorm(a, interpolate(a, b, alpha), x_train)
    net = copy.deepcopy(a)
    net.load_state_dict({**net.state_dict(), **state})
    with torch.no_grad():
        train_mode = F.cross_entropy(net.train()(x_train), data["train"][1])
    assert curve.loss["train"][0] == pytest.approx(float(train_mode), rel=5e-2)
    torch.testing.assert_close(state["1.running_mean"], (x_train @ net[0].weight.T + net[0].bias).mean(0))


def test_recompute_differs_from_interpolated_statistics_away_from_the_endpoints_only():
    a, b, data = bn_mlp(0), bn_mlp(1), splits()
    x_train = data["train"][0]
    for m in (a, b):  # the models' own statistics are the training set's: recomputing keeps them
        m.load_state_dict(recompute_batchnorm(m, {**dict(m.named_parameters()), **dict(m.named_buffers())},
                                              x_train), strict=False)
    both = [interpolation_curve(a, b, F.cross_entropy, None, data, alphas=[0.0, 1.0, 1.5], bn_stats=kind).loss["test"]
            for kind in ("recompute", "interpolate")]
    np.testing.assert_allclose(both[0][:2], both[1][:2], rtol=1e-12)
    assert abs(both[0][2] - both[1][2]) > 1e-6


def test_a_model_without_batchnorm_is_left_alone_and_recompute_needs_inputs():
    a, b = nn.Linear(5, 3).double(), nn.Linear(5, 3).double()
    state = interpolate(a, b, 0.3)
    assert recompute_batchnorm(a, state, None) is state
    with pytest.raises(ValueError, match="training inputs"):
        recompute_batchnorm(bn_mlp(0), interpolate(bn_mlp(0), bn_mlp(1), 0.3), None)
