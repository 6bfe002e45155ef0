"""Large batches as micro-batches whose gradients are summed: the same fit as whole batches, to
float rounding (float64); never with BatchNorm; the path taken says so."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from dlstudies.engine import TrainSpec, fixed_epochs
from dlstudies.engine.batched import MICRO_BATCH, fit_batched, micro_size
from dlstudies.engine.reference import fit_reference
from dlstudies.errors import UsageError
from dlstudies.models.builders import build_members
from dlstudies.models.conv import cnn
from dlstudies.models.stacked import StackedNet
from dlstudies.optim import OptSpec


def _members(builder=lambda: cnn((1, 8, 8), (3,), (12,), 4)):
    return build_members(builder, [0, 1, 2], torch.float64)


def _data():
    g = torch.Generator().manual_seed(3)
    return torch.randn(150, 1, 8, 8, generator=g, dtype=torch.float64), torch.randint(0, 4, (150,), generator=g)


def _fit(micro, members=None, opt="adam", batch=100):
    x, y = _data()
    members = members or _members()
    spec = TrainSpec(fixed_epochs(3), batch, trace_epochs=3, micro_batch=micro)
    return fit_batched(members, [OptSpec(opt, 0.01)] * 3, x, y, spec, [0, 1, 2], path="autograd")


@pytest.mark.parametrize("micro", [1, 16, 33])
@pytest.mark.parametrize("opt", ["adam", "nesterov"])
def test_micro_batches_are_the_whole_batch_to_rounding(micro, opt):
    whole, parts = _fit(0, opt=opt), _fit(micro, opt=opt)
    assert whole.path == "autograd-groupedconv" and parts.path == f"autograd-micro{micro}-groupedconv"  # 8x8: grouped
    np.testing.assert_allclose(parts.history["loss"], whole.history["loss"], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(parts.trace["grad_norm"], whole.trace["grad_norm"], rtol=1e-11, atol=1e-14)
    for a, b in zip(parts.models, whole.models):
        for p, q in zip(a.parameters(), b.parameters()):
            torch.testing.assert_close(p, q, rtol=1e-11, atol=1e-13)


def test_micro_batches_agree_with_the_reference_engine():
    x, y = _data()
    spec = TrainSpec(fixed_epochs(2), 100, micro_batch=16)
    ours = fit_batched(_members(), [OptSpec("adam", 0.01)] * 3, x, y, spec, [0, 1, 2])
    ref = fit_reference(_members(), [OptSpec("adam", 0.01)] * 3, x, y, spec, [0, 1, 2])
    np.testing.assert_allclose(ours.history["loss"], ref.history["loss"], rtol=1e-10)


def test_auto_micro_batches_cnns_only_and_never_batch_norm():
    batch = 4 * MICRO_BATCH
    conv = StackedNet(_members())
    mlp = StackedNet(_members(lambda: nn.Sequential(nn.Flatten(), nn.Linear(64, 4))))
    normed = StackedNet(_members(lambda: nn.Sequential(nn.Flatten(), nn.Linear(64, 8), nn.BatchNorm1d(8), nn.Linear(8, 4))))
    assert micro_size(conv, TrainSpec(fixed_epochs(1), batch)) == MICRO_BATCH
    assert micro_size(conv, TrainSpec(fixed_epochs(1), MICRO_BATCH)) == 0  # no larger than a micro-batch
    assert micro_size(conv, TrainSpec(fixed_epochs(1), batch, device="cuda")) == 0  # a GPU takes whole batches
    assert micro_size(mlp, TrainSpec(fixed_epochs(1), batch)) == 0
    assert micro_size(mlp, TrainSpec(fixed_epochs(1), batch, micro_batch=32)) == 32
    assert micro_size(normed, TrainSpec(fixed_epochs(1), batch)) == 0
    with pytest.raises(UsageError, match="BatchNorm"):
        micro_size(normed, TrainSpec(fixed_epochs(1), batch, micro_batch=32))
    with pytest.raises(UsageError, match="micro_batch"):
        TrainSpec(fixed_epochs(1), batch, micro_batch=-1)
