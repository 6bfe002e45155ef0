"""Separation of two runs from initial weights 1e-7 apart: the perturbation, the distance, its growth."""

import numpy as np
import pytest
import torch
from torch.nn.utils import parameters_to_vector

from dlstudies.analysis.separation import growth_factor, perturbed, relative_distances
from dlstudies.engine import ENGINES, StopRule, TrainSpec
from dlstudies.models.builders import build_members, mlp
from dlstudies.optim import OptSpec


def _members(seeds, dtype=torch.float64):
    return build_members(lambda: mlp([6, 5, 3], act=torch.nn.Tanh), seeds, dtype)


def test_perturbation_has_the_set_relative_size_and_a_seeded_direction():
    members = _members([0, 1])
    twins = perturbed(members, [0, 1], 1e-7)
    again = perturbed(_members([0, 1]), [0, 1], 1e-7)
    for m, t, a in zip(members, twins, again):
        theta, moved = (parameters_to_vector(n.parameters()).detach() for n in (m, t))
        assert float((moved - theta).norm() / theta.norm()) == pytest.approx(1e-7, rel=1e-6)
        assert torch.equal(moved, parameters_to_vector(a.parameters()))  # the same seed, the same direction
    d0, d1 = ((parameters_to_vector(twins[i].parameters()) - parameters_to_vector(members[i].parameters())).detach()
              for i in (0, 1))
    assert abs(float(torch.dot(d0 / d0.norm(), d1 / d1.norm()))) < 0.5  # different seeds, other directions


def test_relative_distances_against_numpy():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(2, 4, 7)), rng.normal(size=(2, 4, 7))
    d = relative_distances(a, b)
    assert d.shape == (2, 4)
    assert d[1, 2] == pytest.approx(np.sqrt(np.sum((a[1, 2] - b[1, 2]) ** 2)) / np.sqrt(np.sum(a[1, 0] ** 2)))


def test_growth_factor_on_synthetic_curves():
    e = np.arange(31)
    assert growth_factor(1e-7 * 2.0 ** e) == pytest.approx(2.0)  # never saturates: the whole curve
    saturated = np.minimum(1e-7 * 3.0 ** e, 0.5)  # growth ends at the weights' own scale
    assert growth_factor(saturated) == pytest.approx(3.0)
    assert growth_factor(1e-7 * 0.9 ** e) == pytest.approx(0.9)  # shrinking: a contracting run
    assert growth_factor([1e-7, 1.0, 1.0]) == pytest.approx(1e7)  # saturated at once: the first two epochs
    assert growth_factor([1e-7, float("nan"), 1e-6]) is None and growth_factor([0.0, 0.0, 0.0]) is None


def test_twins_without_a_perturbation_never_separate_and_with_one_do():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(30, 6, generator=g, dtype=torch.float64)
    y = (x[:, 0] * 3).long().clamp(max=2)
    seeds = [0, 1]
    spec = TrainSpec(StopRule(4), snapshot_every=1)
    for scale, same in ((0.0, True), (1e-7, False)):
        members = _members(seeds)
        twins = perturbed(members, seeds, scale)
        fit = ENGINES.get("batched")(members + twins, [OptSpec("adam", 0.01)] * 4, x, y, spec, seeds * 2)
        d = relative_distances(fit.snapshots[:2], fit.snapshots[2:])
        assert d.shape == (2, 5)
        assert np.all(d == 0) if same else (np.allclose(d[:, 0], 1e-7) and np.all(d[:, -1] > 0))
