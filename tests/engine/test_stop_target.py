"""Stopping at a target: a member stops after the first epoch whose watched value (a probe) is at or
below the target, in both engines; the oracle is the same fit run for a fixed number of epochs."""

import numpy as np
import pytest
import torch
from torch import nn

from dlstudies.engine import ENGINES, StopRule, TrainSpec
from dlstudies.engine.evaluate import loss_probe
from dlstudies.models.builders import build_members
from dlstudies.optim import OptSpec


def problem():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(48, 4, generator=gen)
    return x, (x[:, 0] > x[:, 1]).long()


@pytest.mark.parametrize("engine", ["batched", "reference"])
def test_members_stop_at_the_first_epoch_at_or_below_the_target(engine):
    x, y = problem()
    members = build_members(lambda: nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2)), [0, 1, 2])
    opts = [OptSpec("delta", 0.2)] * 3
    probes = (loss_probe("train_loss", x, y, "cross_entropy"),)
    fit = ENGINES.get(engine)

    free = fit(members, opts, x, y, TrainSpec(StopRule(40), 8, probes=probes), [0, 1, 2])
    curve = free.history["train_loss"]
    target = float(np.median(curve[:, 20]))  # reached by some members within the budget, not by all at once
    stopped = fit(members, opts, x, y, TrainSpec(StopRule(40, target=target, watch="train_loss"), 8, probes=probes),
                  [0, 1, 2])
    for i in range(3):
        below = np.flatnonzero(curve[i] <= target)
        expected = int(below[0]) + 1 if len(below) else 40
        assert stopped.epochs[i] == expected and bool(stopped.converged[i]) == bool(len(below))
        np.testing.assert_allclose(stopped.history["train_loss"][i, :expected], curve[i, :expected], rtol=1e-6)


def test_without_a_target_nothing_is_reached():
    rule = StopRule(5)
    assert not rule.reached({"loss": torch.tensor([0.0, -1.0])}).any()
    assert StopRule(5, target=0.5).reached({"loss": torch.tensor([0.5, 0.6])}).tolist() == [True, False]
