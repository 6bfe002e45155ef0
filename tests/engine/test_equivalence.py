"""The batched engine against the reference engine (one nn.Module + stock torch.optim per member),
in float64: every optimizer, both stop rules, pattern mode and mini-batches, early stoppers."""

import functools

import numpy as np
import pytest
import torch

from dlstudies.engine import ENGINES, StopRule, TrainSpec
from dlstudies.engine.evaluate import accuracy_probe
from dlstudies.models.builders import build_members, mlp
from dlstudies.optim import OPTIMIZERS, OptSpec

SEEDS = [0, 1, 2]


def _data(n=48, d=6, classes=3):
    g = torch.Generator().manual_seed(123)
    x = torch.rand(n, d, generator=g, dtype=torch.float64)
    y = torch.randint(0, classes, (n,), generator=g)
    return x, y


def _both(rules, spec, seeds=SEEDS, lr=0.05, momentum=0.5):
    x, y = _data()
    members = [m for _ in rules for m in build_members(lambda: mlp([6, 5, 4, 3]), seeds, torch.float64)]
    opts = [OptSpec(r, lr, momentum if r in ("generalized-delta", "nesterov") else 0.0) for r in rules for _ in seeds]
    all_seeds = list(seeds) * len(rules)
    return [ENGINES.get(e)(members, opts, x, y, spec, all_seeds) for e in ("batched", "reference")]


def _params(fit):
    return torch.cat([p.detach().flatten() for m in fit.models for p in m.parameters()])


def _assert_same(a, b):
    np.testing.assert_array_equal(a.epochs, b.epochs)
    np.testing.assert_array_equal(a.converged, b.converged)
    assert set(a.history) == set(b.history)
    for k in a.history:
        np.testing.assert_allclose(a.history[k], b.history[k], rtol=1e-10, atol=1e-12, equal_nan=True)
    torch.testing.assert_close(_params(a), _params(b), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("rule", OPTIMIZERS.names())
@pytest.mark.parametrize("batch_size", [1, 10])
def test_each_optimizer_fixed_epochs(rule, batch_size):
    a, b = _both([rule], TrainSpec(StopRule(3), batch_size=batch_size))
    _assert_same(a, b)
    assert (a.epochs == 3).all()


def test_all_rules_in_one_stack_with_probes_and_trace():
    x, y = _data()
    spec = TrainSpec(StopRule(3), batch_size=4, probes=(accuracy_probe("acc", x, y),), trace_epochs=2)
    a, b = _both(OPTIMIZERS.names(), spec)
    _assert_same(a, b)
    for k in ("loss", "grad_norm"):
        np.testing.assert_allclose(a.trace[k], b.trace[k], rtol=1e-10)
        assert a.trace[k].shape == (len(OPTIMIZERS.names()) * len(SEEDS), 2 * 12)


def test_tolerance_stops_members_at_different_epochs_and_freezes_them():
    # With a loose tolerance the members converge at different epochs; each must stop exactly there.
    spec = TrainSpec(StopRule(40, tolerance=2e-3), batch_size=8)
    a, b = _both(["adam", "delta"], spec, lr=0.02)
    _assert_same(a, b)
    assert len(set(a.epochs.tolist())) > 1, "the test needs members that stop at different epochs"
    assert a.converged.any() and (a.epochs < 40).any()
    for i, n in enumerate(a.epochs):
        assert np.isnan(a.history["loss"][i, n:]).all()


def test_frozen_member_does_not_move_while_others_train():
    # Members 0 and 1 are identical except member 1's run is cut short by max_epochs in its own fit;
    # in the stacked fit, a member that converged early must end exactly where a solo fit ends.
    spec = TrainSpec(StopRule(30, tolerance=2e-3), batch_size=8)
    stacked, _ = _both(["adam"], spec, seeds=[0, 1, 2])
    solo, _ = _both(["adam"], spec, seeds=[int(np.argmin(stacked.epochs))])
    i = int(np.argmin(stacked.epochs))
    torch.testing.assert_close(_params(solo), torch.cat([p.flatten() for p in stacked.models[i].parameters()]))


def test_divergence_is_recorded_and_others_go_on():
    # A linear net on squared error explodes under plain SGD with a huge step; Adam's step is bounded.
    x, _ = _data()
    y = x[:, :3] * 100
    members = build_members(lambda: mlp([6, 5, 3], act=torch.nn.Identity), [0, 1], torch.float64) * 2
    opts = [OptSpec("delta", 10.0)] * 2 + [OptSpec("adam", 0.01)] * 2
    spec = TrainSpec(StopRule(6), batch_size=48, loss="mse")
    a, b = [ENGINES.get(e)(members, opts, x, y, spec, [0, 1, 0, 1]) for e in ("batched", "reference")]
    assert a.diverged[:2].all() and not a.diverged[2:].any()
    np.testing.assert_array_equal(a.diverged, b.diverged)
    np.testing.assert_array_equal(a.diverged_epoch, b.diverged_epoch)
    assert (a.epochs[~a.diverged] == 6).all()
    assert (a.diverged_epoch[:2] < 6).all()


@pytest.mark.parametrize("path", ["kernel", "fused", "autograd"])
def test_trace_of_members_that_stop_early_is_nan_after_their_end(path, monkeypatch):
    from dlstudies.engine import batched
    monkeypatch.setitem(ENGINES._items, "batched", functools.partial(batched.fit_batched, path=path))
    spec = TrainSpec(StopRule(40, tolerance=2e-3), batch_size=8, trace_epochs=40)
    a, b = _both(["adam", "delta"], spec, lr=0.02)
    assert len(set(a.epochs.tolist())) > 1
    steps = 48 // 8
    for k in ("loss", "grad_norm"):
        np.testing.assert_allclose(a.trace[k], b.trace[k], rtol=1e-10, atol=1e-12, equal_nan=True)
        for i, n in enumerate(a.epochs):
            assert np.isfinite(a.trace[k][i, :n * steps]).all() and np.isnan(a.trace[k][i, n * steps:]).all()
