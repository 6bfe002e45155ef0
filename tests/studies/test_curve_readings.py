"""Readings of one run's curves: time to a target, loss AUC, report A's stop rule read off a history."""

import numpy as np
import pytest
import torch

from dlstudies.engine import ENGINES, StopRule, TrainSpec
from dlstudies.models.builders import build_members, mlp
from dlstudies.optim import OptSpec
from dlstudies.studies.results import epochs_to, loss_auc, stop_epoch


def test_time_to_target_on_synthetic_curves():
    curve = [2.0, 1.5, 1.2, 0.99, 1.01, 0.8]
    assert epochs_to(curve, 1.0) == 4  # first epoch at or below, 1-based; a later rise does not matter
    assert epochs_to(curve, 1.2) == 3  # "at most": equality counts
    assert epochs_to(curve, 0.5) is None
    assert epochs_to([0.1, 0.5, 0.7], 0.6, below=False) == 3
    assert epochs_to([None, 0.4, 0.2], 0.3) == 3  # a missing value never reaches anything


def test_loss_auc_is_the_mean_loss_over_the_budget():
    assert loss_auc([3.0, 1.0, 2.0]) == pytest.approx(2.0)
    x = np.exp(-np.arange(100) / 10)
    r = np.exp(-0.1)
    assert loss_auc(x) == pytest.approx((1 - r ** 100) / (1 - r) / 100, rel=1e-12)  # a geometric series
    assert loss_auc([1.0, None]) is None and loss_auc([1.0, float("nan")]) is None


def test_stop_rule_reading_on_synthetic_curves():
    assert stop_epoch([1.0, 0.5, 0.49995, 0.4], 1e-4) == (2, True)  # |Δ| < tol between epochs 2 and 3
    assert stop_epoch([1.0, 0.5, 0.4], 1e-4) == (2, False)  # never: the budget's last epoch
    assert stop_epoch([1.0, 1.0 + 5e-5], 1e-4) == (1, True)  # a rise counts as a change too


def test_stop_rule_read_off_a_history_equals_a_fit_that_stops_by_it():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(40, 6, generator=g)
    y = (x[:, 0] > 0.5).long()
    seeds = [0, 1, 2]
    members = build_members(lambda: mlp([6, 5, 2], act=torch.nn.Tanh), seeds, torch.float64)
    opts = [OptSpec("delta", 0.05)] * 3
    tol = 2e-3
    free = ENGINES.get("batched")(members, opts, x, y, TrainSpec(StopRule(60)), seeds)
    stopped = ENGINES.get("batched")(members, opts, x, y, TrainSpec(StopRule(60, tol)), seeds)
    for i in range(3):
        e, fired = stop_epoch(free.history["loss"][i], tol)
        assert fired == bool(stopped.converged[i]) and e + 1 == int(stopped.epochs[i])
        assert free.history["loss"][i, e] == pytest.approx(stopped.final("loss")[i], rel=1e-12)
