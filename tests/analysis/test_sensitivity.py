"""Per-sample input sensitivity: independent of batching, equal to a one-sample-at-a-time loop."""

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dlstudies.analysis import sensitivity



def bn_mlp() -> nn.Sequential:
    torch.manual_seed(0)  # fixture construction only
    net = nn.Sequential(nn.Linear(6, 10), nn.BatchNorm1d(10), nn.Tanh(), nn.Linear(10, 4))
    net(torch.randn(32, 6))  # train-mode pass: running statistics that are not the identity
    return net.double()


def conv_net() -> nn.Sequential:
    torch.manual_seed(1)
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 3 * 3, 3)).double()


def classification(n: int, shape: tuple, classes: int, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, *shape, generator=gen, dtype=torch.float64), torch.randint(0, classes, (n,), generator=gen)


def loop_oracle(model: nn.Module, loss_fn, x, y):
    """One sample at a time, ordinary autograd, on an eval-mode copy."""
    probe = copy.deepcopy(model).eval()
    grads, jacobians = [], []
    for i in range(len(x)):
        xi = x[i:i + 1].clone().requires_grad_()
        (g,) = torch.autograd.grad(loss_fn(probe(xi), y[i:i + 1]), xi)
        jac = torch.autograd.functional.jacobian(lambda s: torch.softmax(probe(s.unsqueeze(0)), -1)[0], x[i])
        grads.append(float(g.norm()))
        jacobians.append(float(jac.norm()))
    return np.array(grads), np.array(jacobians)


@pytest.fixture(scope="module")
def mlp_case():
    model, (x, y) = bn_mlp(), classification(80, (6,), 4)
    return model, x, y, loop_oracle(model, F.cross_entropy, x, y)


@pytest.mark.parametrize("batch_size", [1, 7, 64, 1000])  # 64 leaves a ragged last batch of 16
def test_matches_a_loop_over_single_samples_at_every_batch_size(mlp_case, batch_size):
    model, x, y, (expected_grads, expected_jac) = mlp_case
    result = sensitivity(model, F.cross_entropy, x, y, batch_size=batch_size)
    np.testing.assert_allclose(result.per_sample, expected_grads, rtol=1e-10)
    np.testing.assert_allclose(result.jacobian_per_sample, expected_jac, rtol=1e-10)
    assert result.mean == pytest.approx(expected_grads.mean(), rel=1e-10)
    assert result.jacobian_norm == pytest.approx(expected_jac.mean(), rel=1e-10)


def test_image_inputs_and_an_untouched_model():
    model, (x, y) = conv_net(), classification(20, (1, 5, 5), 3, seed=1)
    model.train()
    before = copy.deepcopy(model.state_dict())
    result = sensitivity(model, F.cross_entropy, x, y, batch_size=6)
    grads, jac = loop_oracle(model, F.cross_entropy, x, y)
    np.testing.assert_allclose(result.per_sample, grads, rtol=1e-10)
    np.testing.assert_allclose(result.jacobian_per_sample, jac, rtol=1e-10)
    assert model.training and all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_regression_with_identity_outputs():
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(1, 8), nn.Tanh(), nn.Linear(8, 1)).double()
    x = torch.linspace(0, 1, 13, dtype=torch.float64)[:, None]
    y = torch.sin(x)
    result = sensitivity(model, F.mse_loss, x, y, batch_size=5, output_fn=lambda o: o)
    for i in range(len(x)):
        xi = x[i:i + 1].clone().requires_grad_()
        (dl,) = torch.autograd.grad(F.mse_loss(model(xi), y[i:i + 1]), xi)
        (df,) = torch.autograd.grad(model(xi).sum(), xi)
        assert result.per_sample[i] == pytest.approx(float(dl.abs()), rel=1e-10)
        assert result.jacobian_per_sample[i] == pytest.approx(float(df.abs()), rel=1e-10)


def test_a_batch_mean_gradient_would_fall_with_batch_size():
    """The trap this module avoids: ‖∂(mean loss)/∂x_i‖ is the per-sample value divided by B."""
    model, (x, y) = bn_mlp(), classification(64, (6,), 4)
    xb = x.clone().requires_grad_()
    (g,) = torch.autograd.grad(F.cross_entropy(copy.deepcopy(model).eval()(xb), y), xb)
    per_sample = sensitivity(model, F.cross_entropy, x, y).per_sample
    np.testing.assert_allclose(g.norm(dim=1).numpy() * len(x), per_sample, rtol=1e-10)
