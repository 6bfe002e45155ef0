"""Members that train on labels of their own (`TrainSpec.member_targets`): one stack gives each member
the fit it gets alone on its labels, in both engines, probes included."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from dlstudies.engine import TrainSpec, fixed_epochs
from dlstudies.engine.batched import fit_batched
from dlstudies.engine.evaluate import loss_accuracy_probe
from dlstudies.engine.reference import fit_reference
from dlstudies.errors import UsageError
from dlstudies.models.builders import build_members, mlp
from dlstudies.models.conv import cnn
from dlstudies.optim import OptSpec

SEEDS = [0, 1, 2]
OPTS = [OptSpec("nesterov", 0.05, 0.9)] * 3


def _data(n=60, shape=(1, 10, 10)):
    g = torch.Generator().manual_seed(9)
    x = torch.randn(n, *shape, generator=g, dtype=torch.float64)
    own = torch.randint(0, 4, (len(SEEDS), n), generator=g)  # each member's labels
    return x, own


def _members(builder, seeds=SEEDS):
    return build_members(builder, list(seeds), torch.float64)


def _spec(x, y, member_targets: bool):
    probes = (loss_accuracy_probe("train", x, y, "cross_entropy"),)
    return TrainSpec(fixed_epochs(3), 16, probes=probes, trace_epochs=1, member_targets=member_targets)


def _alone(engine, builder, x, own, i):
    return engine(_members(builder, [SEEDS[i]]), OPTS[:1], x, own[i], _spec(x, own[i], False), [SEEDS[i]])


def _assert_member(stacked, alone, i):
    for k in stacked.history:
        np.testing.assert_allclose(stacked.history[k][i], alone.history[k][0], rtol=1e-10, err_msg=k)
    np.testing.assert_allclose(stacked.trace["grad_norm"][i], alone.trace["grad_norm"][0], rtol=1e-10)
    for p, q in zip(stacked.models[i].parameters(), alone.models[0].parameters()):
        torch.testing.assert_close(p, q, rtol=1e-10, atol=1e-12)


CNN = lambda: cnn((1, 10, 10), (3, 4), (12,), 4)  # noqa: E731
MLP = lambda: mlp([100, 12, 4], flatten=True)  # noqa: E731


@pytest.mark.parametrize("engine", [fit_batched, fit_reference], ids=["batched", "reference"])
@pytest.mark.parametrize("builder", [CNN, MLP], ids=["cnn", "mlp"])
def test_a_stack_on_own_labels_gives_each_member_its_fit_alone(engine, builder):
    x, own = _data()
    stacked = engine(_members(builder), OPTS, x, own, _spec(x, own, True), SEEDS)
    assert set(stacked.history) == {"loss", "train_loss", "train_acc"}
    for i in range(len(SEEDS)):
        _assert_member(stacked, _alone(engine, builder, x, own, i), i)


def test_the_batched_stack_on_own_labels_agrees_with_the_reference_engine():
    x, own = _data()
    ours = fit_batched(_members(CNN), OPTS, x, own, _spec(x, own, True), SEEDS)
    ref = fit_reference(_members(CNN), OPTS, x, own, _spec(x, own, True), SEEDS)
    for i in range(len(SEEDS)):
        _assert_member(ours, dataclasses.replace(ref, history={k: v[i:i + 1] for k, v in ref.history.items()},
                                                 trace={k: v[i:i + 1] for k, v in ref.trace.items()},
                                                 models=ref.models[i:i + 1]), i)


def test_own_labels_differ_from_shared_ones():
    # Guards the test above: had the stack read member 0's labels for all, members 1 and 2 would differ.
    x, own = _data()
    stacked = fit_batched(_members(CNN), OPTS, x, own, _spec(x, own, True), SEEDS)
    shared = fit_batched(_members(CNN), OPTS, x, own[0], _spec(x, own[0], False), SEEDS)
    assert not np.allclose(stacked.history["loss"][1:], shared.history["loss"][1:], rtol=1e-6)
    np.testing.assert_allclose(stacked.history["loss"][0], shared.history["loss"][0], rtol=1e-10)


def test_own_labels_take_the_autograd_path_of_an_mlp():
    x, own = _data()
    assert fit_batched(_members(MLP), OPTS, x, own, _spec(x, own, True), SEEDS).path == "autograd"
    with pytest.raises(UsageError, match="member_targets"):
        fit_batched(_members(MLP), OPTS, x, own, _spec(x, own, True), SEEDS, path="fused")


@pytest.mark.parametrize("engine", [fit_batched, fit_reference], ids=["batched", "reference"])
def test_own_labels_of_the_wrong_shape_are_refused(engine):
    x, own = _data()
    with pytest.raises(UsageError, match=r"one row of 60 targets per member \(3\)"):
        engine(_members(CNN), OPTS, x, own[:2], _spec(x, own[:2], True), SEEDS)


def test_a_probe_on_own_labels_scores_each_member_on_its_row():
    g = torch.Generator().manual_seed(1)
    outputs, own = torch.randn(3, 20, 4, generator=g, dtype=torch.float64), torch.randint(0, 4, (3, 20), generator=g)
    values = loss_accuracy_probe("train", None, own, "cross_entropy")(lambda _: outputs)
    for i in range(3):
        alone = loss_accuracy_probe("train", None, own[i], "cross_entropy")(lambda _: outputs[i:i + 1])
        assert values["train_loss"][i] == alone["train_loss"][0] and values["train_acc"][i] == alone["train_acc"][0]
        expected = torch.nn.functional.cross_entropy(outputs[i], own[i])
        assert float(values["train_loss"][i]) == pytest.approx(float(expected), rel=1e-12)
