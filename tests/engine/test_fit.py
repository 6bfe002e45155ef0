"""`dlstudies.engine.fit`: the documented entry point, explicit per-member sample orders on every
engine path (held to the reference engine in float64), and the path each fit reports."""

import numpy as np
import pytest
import torch
from torch import nn

from dlstudies.engine import ENGINES, ORDERS, StopRule, TrainSpec, fit, paths_taken
from dlstudies.errors import UsageError
from dlstudies.models.builders import build_members, mlp
from dlstudies.optim import OptSpec

SEEDS = [0, 1, 2]
N = 30


def _data(n=N, d=5, classes=3):
    g = torch.Generator().manual_seed(7)
    return torch.rand(n, d, generator=g, dtype=torch.float64), torch.randint(0, classes, (n,), generator=g)


def _members(norm=None):
    return build_members(lambda: mlp([5, 4, 3], norm=norm), SEEDS, torch.float64)


def _params(result):
    return torch.cat([p.detach().flatten() for m in result.models for p in m.parameters()])


def _table(epochs=3, seed=11):
    """A (epochs, members, samples) order: each member its own permutation each epoch."""
    g = torch.Generator().manual_seed(seed)
    return torch.stack([torch.stack([torch.randperm(N, generator=g) for _ in SEEDS]) for _ in range(epochs)])


@pytest.mark.parametrize("path", ["kernel", "fused", "autograd"])
@pytest.mark.parametrize("batch_size", [1, 4])
def test_explicit_order_matches_the_reference_engine(path, batch_size):
    x, y = _data()
    order = _table()
    kw = dict(epochs=3, batch_size=batch_size, order=order)
    batched = fit(_members(), OptSpec("adam", 0.05), x, y, path=path, **kw)
    reference = fit(_members(), OptSpec("adam", 0.05), x, y, engine="reference", **kw)
    assert (batched.path, reference.path) == (path, "reference")
    torch.testing.assert_close(_params(batched), _params(reference), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(batched.history["loss"], reference.history["loss"], rtol=1e-10)


def test_an_explicit_order_equal_to_shuffle_trains_the_same_members():
    # "shuffle" drawn by hand for three epochs, as a table: the same fit to the last bit.
    x, y = _data()
    draw = ORDERS.get("shuffle")(y, SEEDS)
    table = torch.stack([draw(e) for e in range(3)])
    named = fit(_members(), OptSpec("delta", 0.1), x, y, epochs=3, order="shuffle")
    explicit = fit(_members(), OptSpec("delta", 0.1), x, y, epochs=3, order=table)
    torch.testing.assert_close(_params(named), _params(explicit), rtol=0, atol=0)


def test_a_function_order_and_a_fixed_table_and_a_subset_of_samples():
    # A curriculum: every member sees only the first 10 samples, reversed, every epoch.
    x, y = _data()
    rows = torch.arange(9, -1, -1).expand(len(SEEDS), -1)
    a = fit(_members(), OptSpec("delta", 0.1), x, y, epochs=2, order=rows)
    b = fit(_members(), OptSpec("delta", 0.1), x, y, epochs=2, order=lambda epoch: rows.numpy())
    c = fit(_members(), OptSpec("delta", 0.1), x[:10].flip(0), y[:10].flip(0), epochs=2, order=torch.arange(10).expand(3, -1))
    torch.testing.assert_close(_params(a), _params(b), rtol=0, atol=0)
    torch.testing.assert_close(_params(a), _params(c), rtol=1e-12, atol=1e-12)


def test_the_path_that_ran_is_reported_and_collected():
    x, y = _data()
    with paths_taken() as taken:
        mlp_fit = fit(_members(), OptSpec("adam", 0.01), x, y, epochs=1)
        fused = fit(_members(), OptSpec("adam", 0.01), x, y, epochs=1, path="fused")
        normed = fit(_members(norm=nn.BatchNorm1d), OptSpec("adam", 0.01), x, y, epochs=1, batch_size=5)
        ref = fit(_members(), OptSpec("adam", 0.01), x, y, epochs=1, engine="reference")
        ENGINES.get("batched")(_members(), [OptSpec("adam", 0.01)] * 3, x, y, TrainSpec(StopRule(1)), SEEDS)
    assert (mlp_fit.path, fused.path, normed.path, ref.path) == ("kernel", "fused", "autograd", "reference")
    assert taken == ["kernel", "fused", "autograd", "reference", "kernel"]


def test_members_passed_in_are_not_changed():
    x, y = _data()
    members = _members()
    before = torch.cat([p.detach().flatten().clone() for m in members for p in m.parameters()])
    fit(members, OptSpec("adam", 0.05), x, y, epochs=2)
    assert torch.equal(before, torch.cat([p.detach().flatten() for m in members for p in m.parameters()]))


@pytest.mark.parametrize("order, message", [
    (torch.zeros(2, N, dtype=torch.int64), r"has 2 rows; it needs one per member \(3\)"),
    (torch.full((3, N), N), r"indices 30..30; valid: 0..29"),
    (torch.rand(3, N), "integer sample indices"),
    (torch.zeros(N, dtype=torch.int64), r"\(members, samples\) or \(epochs, members, samples\)"),
    ("sorted", "unknown sample order 'sorted'; valid: class, shuffle"),
])
def test_a_bad_order_is_a_usage_error(order, message):
    x, y = _data()
    with pytest.raises(UsageError, match=message):
        fit(_members(), OptSpec("adam", 0.01), x, y, epochs=1, order=order)


@pytest.mark.parametrize("kwargs, message", [
    ({}, "fit needs a TrainSpec or epochs=N"),
    ({"epochs": 1, "batchsize": 2}, "unknown TrainSpec field.s. batchsize; valid: batch_size"),
    ({"spec": TrainSpec(StopRule(1)), "epochs": 2}, "either a TrainSpec or epochs="),
    ({"epochs": 1, "seeds": [0]}, "3 members need as many optimizers and seeds"),
    ({"epochs": 1, "engine": "reference", "path": "fused"}, "the reference engine has one"),
    ({"epochs": 1, "engine": "jit"}, "unknown engine 'jit'"),
])
def test_bad_arguments_are_usage_errors(kwargs, message):
    x, y = _data()
    with pytest.raises(UsageError, match=message):
        fit(_members(), OptSpec("adam", 0.01), x, y, **kwargs)
