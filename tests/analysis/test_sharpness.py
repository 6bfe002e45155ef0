"""Keskar et al.'s sharpness on quadratics whose maximum over the box is known exactly."""

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dlstudies.analysis import sharpness



class DiagonalQuadratic(nn.Module):
    """loss = ½ Σ h_i θ_i², whatever the input: the box maximum is at a known corner."""

    def __init__(self, h, theta):
        super().__init__()
        self.register_buffer("h", torch.as_tensor(h, dtype=torch.float64))
        self.theta = nn.Parameter(torch.as_tensor(theta, dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (0.5 * (self.h * self.theta ** 2).sum()).expand(len(x))


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
