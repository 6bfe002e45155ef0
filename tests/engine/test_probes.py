"""Probes: loss and accuracy from one chunked forward, bitwise as the two separate probes give them;
a probe run every k epochs."""

from __future__ import annotations

import math

import pytest
import torch

from dlstudies.engine import TrainSpec, fixed_epochs
from dlstudies.engine.batched import fit_batched, predict_members, stacked_predict
from dlstudies.engine.evaluate import accuracy_probe, every, loss_probe, probe_interval, loss_accuracy_probe
from dlstudies.models.builders import build_members
from dlstudies.models.conv import cnn
from dlstudies.models.stacked import StackedNet
from dlstudies.optim import OptSpec


def _members(m: int = 3):
    return build_members(lambda: cnn((1, 12, 12), (4, 8), (16,), 10), list(range(m)))


def _data(n: int = 300, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 12, 12, generator=g), torch.randint(0, 10, (n,), generator=g)


@pytest.mark.parametrize("chunk", [None, 1, 7, 64, 4096])
def test_split_probe_is_bitwise_the_two_probes(chunk):
    members, (x, y) = _members(), _data()
    calls = []

    def predict(inputs):
        calls.append(len(inputs))
        return predict_members(members, inputs)  # itself in chunks of PROBE_CHUNK

    together = loss_accuracy_probe("train", x, y, "cross_entropy", chunk=chunk)(predict)
    assert sum(calls) == len(x)  # one forward pass over the set
    apart = {**loss_probe("train_loss", x, y, "cross_entropy")(predict), **accuracy_probe("train_acc", x, y)(predict)}
    assert set(together) == {"train_loss", "train_acc"}
    for name in together:
        assert torch.equal(together[name], apart[name]), name


def test_chunk_size_leaves_outputs_bitwise_as_they_are():
    """Chunks of 64 (the CPU default) give exactly the outputs of chunks of 4096, at M = 10."""
    net, (x, _) = StackedNet(_members(10)), _data(700)
    reference = stacked_predict(net, x, chunk=4096)
    assert torch.equal(stacked_predict(net, x), reference)
    assert torch.equal(stacked_predict(net, x, chunk=64), reference)


def test_probe_interval_gives_about_the_points_asked_for():
    assert probe_interval(100) == 1 and probe_interval(1000) == 10 and probe_interval(1001) == 11
    assert probe_interval(20000, points=100) == 200


def test_every_k_epochs_in_a_fit():
    """Through the engine: measured after epochs 1, k, 2k and the last; NaN between; the measured
    epochs hold what the every-epoch probe holds there."""
    (x, y), epochs, k = _data(120), 7, 3
    run = lambda probe: fit_batched(_members(2), [OptSpec("delta", 0.05)] * 2, x, y,  # noqa: E731
                                    TrainSpec(fixed_epochs(epochs), 32, probes=(probe,)), [0, 1]).history["train_acc"]
    full = run(loss_accuracy_probe("train", x, y, "cross_entropy"))
    sparse = run(every(k, loss_accuracy_probe("train", x, y, "cross_entropy"), epochs))
    measured = [e - 1 for e in range(1, epochs + 1) if e == 1 or e % k == 0 or e == epochs]
    assert measured == [0, 2, 5, 6]
    assert (sparse[:, measured] == full[:, measured]).all()
    others = [i for i in range(epochs) if i not in measured]
    assert all(math.isnan(v) for v in sparse[:, others].ravel())
