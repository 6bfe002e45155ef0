"""Linear interpolation between two models (Goodfellow et al. 2015): endpoints, BatchNorm, range."""

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dlstudies.analysis import interpolate, interpolation_curve
from dlstudies.analysis.interpolation import default_alphas



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
    curve = interpolation_curve(a, b, F.cross_entropy, accuracy, data)
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
    curve = interpolation_curve(a, b, F.cross_entropy, None, data, alphas=[0.5])
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
    curve = interpolation_curve(a, b, F.cross_entropy, accuracy, data)
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
