"""The exact Hessian against independent float64 oracles, and the minimal ratio's tolerance."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from dlstudies.analysis import flatten_params, hessian_eigenvalues, loss_hessian, minimal_ratio
from dlstudies.analysis.hessian import default_tolerance


# torch.func.hessian's forward-mode pass loads decompositions that torch itself still scripts.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")


def tiny_mlp(act: nn.Module, seed: int, dtype=torch.float64) -> nn.Sequential:
    torch.manual_seed(seed)  # only to build the fixture; the code under test takes no global RNG
    return nn.Sequential(nn.Linear(1, 3), act, nn.Linear(3, 2), act, nn.Linear(2, 1)).to(dtype)


def data(n: int = 12):
    x = torch.linspace(0.05, 1, n, dtype=torch.float64)[:, None]
    return x, torch.sin(5 * torch.pi * x) / (5 * torch.pi * x)


def fd_hessian(model: nn.Module, x, y, h: float = 1e-5) -> np.ndarray:
    """Oracle: central differences of autograd gradients, float64, on a deep copy of the model."""
    def gradient(vec: torch.Tensor) -> torch.Tensor:
        copy = tiny_mlp(nn.Tanh(), 0)
        torch.nn.utils.vector_to_parameters(vec, copy.parameters())
        loss = F.mse_loss(copy(x), y)
        return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, list(copy.parameters()))])

    theta = torch.nn.utils.parameters_to_vector(model.parameters()).detach()
    eye = torch.eye(len(theta), dtype=torch.float64)
    cols = [(gradient(theta + h * e) - gradient(theta - h * e)) / (2 * h) for e in eye]
    hess = torch.stack(cols, 1).numpy()
    return (hess + hess.T) / 2


def handwritten_relu_loss(x, y):
    """Oracle: the 1-3-2-1 ReLU MLP written out by hand as a function of its flat parameter vector."""
    def loss(v: torch.Tensor) -> torch.Tensor:
        w1, b1, w2, b2, w3, b3 = torch.split(v, [3, 3, 6, 2, 2, 1])
        h1 = torch.relu(x @ w1.view(3, 1).T + b1)
        h2 = torch.relu(h1 @ w2.view(2, 3).T + b2)
        return ((h2 @ w3.view(1, 2).T + b3 - y) ** 2).mean()
    return loss


def test_tanh_mlp_matches_finite_differences_of_gradients():
    model, (x, y) = tiny_mlp(nn.Tanh(), 1), data()
    spectrum = hessian_eigenvalues(model, F.mse_loss, x, y)
    oracle = np.linalg.eigvalsh(fd_hessian(model, x, y))
    assert spectrum.n_params == 17 and spectrum.eigenvalues.dtype == np.float64
    assert np.all(np.diff(spectrum.eigenvalues) >= 0)
    np.testing.assert_allclose(spectrum.eigenvalues, oracle, atol=1e-7)


def test_relu_mlp_matches_autograd_hessian_of_handwritten_loss():
    model, (x, y) = tiny_mlp(nn.ReLU(), 3), data()
    theta = torch.nn.utils.parameters_to_vector(model.parameters()).detach()
    oracle = torch.autograd.functional.hessian(handwritten_relu_loss(x, y), theta)
    hess, grad = loss_hessian(model, F.mse_loss, x, y)
    torch.testing.assert_close(hess, oracle, atol=1e-12, rtol=1e-10)
    spectrum = hessian_eigenvalues(model, F.mse_loss, x, y)
    np.testing.assert_allclose(spectrum.eigenvalues, np.linalg.eigvalsh(oracle.numpy()), atol=1e-12)
    expected_grad = torch.func.grad(handwritten_relu_loss(x, y))(theta)
    assert spectrum.grad_norm == pytest.approx(float(expected_grad.norm()), rel=1e-10)


def test_float32_model_is_analysed_in_float64_and_left_untouched():
    model64, (x, y) = tiny_mlp(nn.Tanh(), 4), data()
    model32 = tiny_mlp(nn.Tanh(), 4, torch.float32)
    model32.train()
    before = flatten_params(model32)
    spectrum32 = hessian_eigenvalues(model32, F.mse_loss, x.float(), y.float())
    # The float64 copy of float32 weights differs from the float64 model only by weight rounding.
    spectrum64 = hessian_eigenvalues(model64, F.mse_loss, x, y)
    np.testing.assert_allclose(spectrum32.eigenvalues, spectrum64.eigenvalues, atol=1e-5)
    assert np.array_equal(before, flatten_params(model32)) and model32.training


class Quadratic(nn.Module):
    """loss = ½ θᵀ A θ with A = Q diag(h) Qᵀ: the Hessian's eigenvalues are exactly h."""

    def __init__(self, h: np.ndarray, theta: np.ndarray, seed: int):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        q, _ = torch.linalg.qr(torch.randn(len(h), len(h), generator=gen, dtype=torch.float64))
        self.register_buffer("a", q @ torch.diag(torch.as_tensor(h, dtype=torch.float64)) @ q.T)
        self.theta = nn.Parameter(torch.as_tensor(theta, dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (0.5 * self.theta @ self.a @ self.theta).expand(len(x))


def mean_output(out: torch.Tensor, _: torch.Tensor) -> torch.Tensor:
    return out.mean()


def test_quadratic_with_known_eigenvalues_and_exact_zeros():
    h = np.array([3.0, 0.0, -2.0, 0.0, 0.5, 0.0])
    theta = np.linspace(-1, 1, len(h))
    model, x = Quadratic(h, theta, seed=0), torch.zeros(4, 1, dtype=torch.float64)
    spectrum = hessian_eigenvalues(model, mean_output, x, x[:, 0])
    np.testing.assert_allclose(spectrum.eigenvalues, np.sort(h), atol=1e-13)
    # Rotated zeros compute as ±1e-16: only the tolerance keeps them from counting as positive.
    assert spectrum.minimal_ratio == pytest.approx(2 / 6)
    assert spectrum.tolerance == pytest.approx(default_tolerance(spectrum.eigenvalues))
    expected_grad = model.a.numpy() @ theta
    assert spectrum.grad_norm == pytest.approx(np.linalg.norm(expected_grad), rel=1e-12)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.sampled_from([-1.5, 0.0, 0.25, 2.0]), min_size=1, max_size=7), st.integers(0, 10_000))
def test_minimal_ratio_counts_positive_eigenvalues_of_random_quadratics(h, seed):
    model, x = Quadratic(np.array(h), np.zeros(len(h)), seed), torch.zeros(2, 1, dtype=torch.float64)
    spectrum = hessian_eigenvalues(model, mean_output, x, x[:, 0])
    assert spectrum.minimal_ratio == pytest.approx(np.mean(np.array(h) > 0))
    assert spectrum.grad_norm == 0.0


def test_minimal_ratio_tolerance():
    assert minimal_ratio(np.array([0.0, 0.0, 1.0, 2.0]), tol=0.0) == 0.5  # exact zeros are not positive
    assert minimal_ratio(np.array([-1e-17, 1e-17, 1.0, 2.0])) == 0.5  # rounding noise is not positive
    assert minimal_ratio(np.array([1e-3, 1.0]), tol=1e-2) == 0.5
    assert default_tolerance(np.array([-4.0, 1.0])) == pytest.approx(100 * 2 * np.finfo(float).eps * 4)
