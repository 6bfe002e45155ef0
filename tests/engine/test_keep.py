"""A second stop rule read off a longer fit (`TrainSpec.keep`): `result.kept` is the fit that rule
gives when trained on its own, in both engines, and the fit itself is unchanged by it."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from dlstudies.engine import StopRule, TrainSpec, fixed_epochs
from dlstudies.engine.batched import fit_batched
from dlstudies.engine.evaluate import loss_probe
from dlstudies.engine.reference import fit_reference
from dlstudies.errors import UsageError
from dlstudies.models.builders import build_members, mlp
from dlstudies.models.conv import cnn

from dlstudies.optim import OptSpec

SEEDS = [0, 1, 2]
OPTS = [OptSpec("nesterov", 0.05, 0.9)] * 3
EPOCHS, KEEP_EPOCHS = 6, 4
CNN = lambda: cnn((1, 10, 10), (3, 4), (12,), 4)  # noqa: E731
MLP = lambda: mlp([100, 12, 4], flatten=True)  # noqa: E731


def _data(n=60):
    g = torch.Generator().manual_seed(5)
    return torch.randn(n, 1, 10, 10, generator=g, dtype=torch.float64), torch.randint(0, 4, (n,), generator=g)


def _fit(engine, builder, x, y, spec):
    return engine(build_members(builder, SEEDS, torch.float64), OPTS, x, y, spec, SEEDS)


def _target(engine, builder, x, y, probe) -> float:
    """A target loss that members reach at different epochs or not at all within KEEP_EPOCHS."""
    pilot = _fit(engine, builder, x, y, TrainSpec(fixed_epochs(KEEP_EPOCHS), 16, probes=(probe,)))
    # halfway between the two highest losses after 3 epochs: the highest member is later (or never)
    # than the others, and no member is within rounding of the target
    return float(np.sort(pilot.history["train_loss"][:, 2])[-2:].mean())


def _rule(target: float) -> StopRule:
    return StopRule(KEEP_EPOCHS, target=target, watch="train_loss")


def _assert_same_fit(a, b, rtol=1e-10):
    np.testing.assert_array_equal(a.epochs, b.epochs)
    np.testing.assert_array_equal(a.converged, b.converged)
    np.testing.assert_array_equal(a.diverged, b.diverged)
    assert set(a.history) == set(b.history)
    for k in a.history:
        np.testing.assert_allclose(a.history[k], b.history[k], rtol=rtol, err_msg=k)
    for m, n in zip(a.models, b.models):
        for p, q in zip(m.state_dict().values(), n.state_dict().values()):
            torch.testing.assert_close(p, q, rtol=rtol, atol=1e-12)


@pytest.mark.parametrize("engine", [fit_batched, fit_reference], ids=["batched", "reference"])
@pytest.mark.parametrize("builder", [CNN, MLP], ids=["cnn", "mlp"])
def test_kept_is_the_fit_under_the_rule_and_the_fit_is_unchanged(engine, builder):
    x, y = _data()
    probe = loss_probe("train_loss", x, y, "cross_entropy")
    rule = _rule(_target(engine, builder, x, y, probe))
    plain = TrainSpec(fixed_epochs(EPOCHS), 16)
    both = _fit(engine, builder, x, y, dataclasses.replace(plain, keep=rule, keep_probes=(probe,)))
    alone = _fit(engine, builder, x, y, TrainSpec(rule, 16, probes=(probe,)))
    assert len(set(alone.epochs.tolist())) > 1 and alone.converged.any()  # the rule stops members apart
    _assert_same_fit(both.kept, alone)
    _assert_same_fit(both, _fit(engine, builder, x, y, plain), rtol=0)  # the keep rule changes nothing
    assert set(both.history) == {"loss"}  # keep_probes are the kept fit's alone


def test_both_engines_keep_the_same_members():
    x, y = _data()
    probe = loss_probe("train_loss", x, y, "cross_entropy")
    spec = TrainSpec(fixed_epochs(EPOCHS), 16, keep=_rule(_target(fit_reference, CNN, x, y, probe)), keep_probes=(probe,))
    _assert_same_fit(_fit(fit_batched, CNN, x, y, spec).kept, _fit(fit_reference, CNN, x, y, spec).kept)


def test_keep_probes_run_only_while_a_member_is_open():
    x, y = _data()
    calls = []
    probe = loss_probe("train_loss", x, y, "cross_entropy")
    counted = lambda predict: calls.append(1) or probe(predict)  # noqa: E731
    spec = TrainSpec(fixed_epochs(EPOCHS), 16, keep=StopRule(2, target=1e-9, watch="train_loss"), keep_probes=(counted,))
    fit = _fit(fit_batched, CNN, x, y, spec)
    assert len(calls) == 2 and fit.kept.epochs.tolist() == [2, 2, 2] and fit.epochs.tolist() == [EPOCHS] * 3


def test_a_member_the_fit_stops_first_is_kept_where_it_stopped():
    x, y = _data()
    probe = loss_probe("train_loss", x, y, "cross_entropy")
    stop = StopRule(3, target=1e9, watch="loss")  # every member stops after its first epoch
    spec = TrainSpec(stop, 16, keep=StopRule(3, target=1e-9, watch="train_loss"), keep_probes=(probe,))
    fit = _fit(fit_batched, CNN, x, y, spec)
    assert fit.kept.epochs.tolist() == [1, 1, 1] and not fit.kept.converged.any()
    _assert_same_fit(dataclasses.replace(fit.kept, history={}, converged=fit.converged), dataclasses.replace(fit, history={}), rtol=0)


def test_a_keep_rule_longer_than_the_fit_is_refused():
    with pytest.raises(UsageError, match=r"keep.max_epochs \(5\) must be <= stop.max_epochs \(3\)"):
        TrainSpec(fixed_epochs(3), keep=fixed_epochs(5))
