"""Keskar et al.'s sharpness on quadratics whose maximum over the box is known exactly."""

import copy
import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dlstudies.analysis import sharpness



class Quadratic(nn.Module):
    """loss = ½ θᵀAθ whatever the input, for a positive semi-definite A: convex, so its box maximum
    is at a vertex (for a diagonal A, at the known corner that pushes every |θ_i + y_i| out)."""

    def __init__(self, a, theta):
        super().__init__()
        self.register_buffer("a", torch.as_tensor(a, dtype=torch.float64))
        self.theta = nn.Parameter(torch.as_tensor(theta, dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (0.5 * self.theta @ self.a @ self.theta).expand(len(x))


def DiagonalQuadratic(h, theta) -> Quadratic:  # noqa: N802 (reads as the class it builds)
    return Quadratic(np.diag(h), theta)


def mean_output(out: torch.Tensor, _: torch.Tensor) -> torch.Tensor:
    return out.mean()


def expected_sharpness(h, theta, eps) -> float:
    """For h ≥ 0 the maximum of ½ Σ h_i (θ_i + y_i)² over |y_i| ≤ ε(|θ_i|+1) pushes every |θ_i + y_i| out."""
    h, theta = np.asarray(h), np.asarray(theta)
    base = 0.5 * np.sum(h * theta ** 2)
    top = 0.5 * np.sum(h * (np.abs(theta) + eps * (np.abs(theta) + 1)) ** 2)
    return (top - base) / (1 + base) * 100


X = torch.zeros(5, 1, dtype=torch.float64)
H = np.array([4.0, 1.0, 0.25, 2.0])


def test_at_a_minimum_with_a_random_start():
    result = sharpness(DiagonalQuadratic(H, np.zeros(4)), mean_output, X, X[:, 0], epsilon=1e-2,
                       generator=torch.Generator().manual_seed(0))
    assert result.base_loss == 0.0 and result.epsilon == 1e-2 and result.steps == 10
    assert result.value == pytest.approx(expected_sharpness(H, np.zeros(4), 1e-2), rel=1e-2)


def test_away_from_the_minimum_from_the_centre():
    theta = np.array([0.5, -1.0, 2.0, -0.1])
    result = sharpness(DiagonalQuadratic(H, theta), mean_output, X, X[:, 0], epsilon=1e-3)
    assert result.base_loss == pytest.approx(0.5 * np.sum(H * theta ** 2))
    assert result.max_loss >= result.base_loss
    assert result.value == pytest.approx(expected_sharpness(H, theta, 1e-3), rel=1e-2)


def test_a_sharper_quadratic_is_sharper():
    values = [sharpness(DiagonalQuadratic(scale * H, np.zeros(4)), mean_output, X, X[:, 0],
                        generator=torch.Generator().manual_seed(1)).value for scale in (1.0, 10.0)]
    assert 0 < values[0] < values[1]


def small_classifier():
    torch.manual_seed(0)  # fixture construction only
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Tanh(), nn.Linear(8, 3)).double()
    gen = torch.Generator().manual_seed(0)
    return model, torch.randn(50, 4, generator=gen, dtype=torch.float64), torch.randint(0, 3, (50,), generator=gen)


def test_network_sharpness_is_non_negative_seeded_and_leaves_the_model_alone():
    model, x, y = small_classifier()
    before = copy.deepcopy(model.state_dict())
    runs = [sharpness(model, F.cross_entropy, x, y, epsilon=1e-2, generator=torch.Generator().manual_seed(3))
            for _ in range(2)]
    assert runs[0] == runs[1] and runs[0].value > 0
    batched = sharpness(model, F.cross_entropy, x, y, epsilon=1e-2, batch_size=16)
    assert batched.value >= 0 and batched.base_loss == pytest.approx(runs[0].base_loss, rel=1e-12)
    assert model.training and all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def rotated_problem(seed: int, d: int = 6):
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    a = q @ np.diag(rng.uniform(0.1, 5.0, d)) @ q.T
    return a, rng.normal(0, 0.05, d)


def vertex_sharpness(a, theta, eps) -> float:
    """Oracle: the box maximum of a convex function is at one of the 2^d vertices; enumerate them."""
    box = eps * (np.abs(theta) + 1)
    signs = np.array(list(itertools.product((-1.0, 1.0), repeat=len(theta))))
    points = theta + signs * box
    top = 0.5 * np.max(np.einsum("ki,ij,kj->k", points, a, points))
    base = 0.5 * theta @ a @ theta
    return (top - base) / (1 + base) * 100


@pytest.mark.parametrize("seed", range(4))
def test_several_starts_come_close_to_the_vertex_maximum_of_a_rotated_quadratic(seed):
    a, theta = rotated_problem(seed)
    model, eps = Quadratic(a, theta), 0.05
    oracle = vertex_sharpness(a, theta, eps)
    one = sharpness(model, mean_output, X, X[:, 0], epsilon=eps, steps=5, generator=torch.Generator().manual_seed(seed))
    five = sharpness(model, mean_output, X, X[:, 0], epsilon=eps, steps=5, starts=5,
                     generator=torch.Generator().manual_seed(seed))
    assert five.per_start[0] == pytest.approx(one.value, rel=1e-12)  # the first start is the one-start ascent
    assert five.value == max(five.per_start) and len(five.per_start) == 5
    assert one.value <= five.value <= oracle * (1 + 1e-9)
    assert five.value >= 0.9 * oracle


def test_several_starts_need_a_generator():
    with pytest.raises(ValueError, match="starts"):
        sharpness(Quadratic(np.eye(2), np.zeros(2)), mean_output, X, X[:, 0], starts=3)
