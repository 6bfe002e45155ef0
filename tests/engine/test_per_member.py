"""The compiled kernel's guarantee: a member's numbers are a function of its own seed, settings and
dtype alone, bitwise — alone, in a stack of 2, 5 or 64, beside other rules, and while others stop."""

import numpy as np
import pytest
import torch
from torch import nn

from dlstudies.engine import StopRule, TrainSpec, predict_members
from dlstudies.engine.batched import fit_batched
from dlstudies.engine.evaluate import accuracy_probe, loss_probe
from dlstudies.models.builders import build_members, mlp
from dlstudies.optim import OPTIMIZERS, OptSpec

N = 24
TARGET = 7  # the member's seed


def _data(dtype):
    g = torch.Generator().manual_seed(5)
    return torch.rand(N, 6, generator=g, dtype=torch.float64).to(dtype), torch.randint(0, 3, (N,), generator=g)


def _spec(x, y, batch_size, tolerance=None, epochs=4):
    probes = (accuracy_probe("acc", x, y), loss_probe("probe_loss", x, y, "cross_entropy"))
    return TrainSpec(StopRule(epochs, tolerance), batch_size=batch_size, probes=probes, trace_epochs=2,
                     snapshot_every=2)


def _opt(rule, lr=0.05):
    return OptSpec(rule, lr, 0.5 if rule in ("generalized-delta", "nesterov") else 0.0)


def _fit(seeds, opts, dtype, spec, x, y):
    members = build_members(lambda: mlp([6, 5, 4, 3]), seeds, dtype)
    fit = fit_batched(members, opts, x, y, spec, seeds, path="kernel")
    assert fit.path == "kernel"
    return fit


def _member(fit, i):
    """Everything the fit recorded about member i, as arrays."""
    out = {"epochs": fit.epochs[i:i + 1], "converged": fit.converged[i:i + 1], "snapshots": fit.snapshots[i],
           "params": torch.cat([p.detach().flatten() for p in fit.models[i].parameters()]).numpy()}
    out.update({f"history.{k}": v[i, :fit.epochs[i]] for k, v in fit.history.items()})
    out.update({f"trace.{k}": v[i] for k, v in fit.trace.items()})
    return out


def _assert_bitwise(a, b):
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k, strict=True)


STACKS = {  # (seeds, rules) beside the target; the target goes in at position `at`
    "2": ([3], ["same"], 1),
    "5, other rules": ([0, 1, 2, 3], ["delta", "adam", "same", "rmsprop"], 2),
    "64": (list(range(100, 163)), ["same"] * 63, 37),
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("batch_size", [1, 5])
@pytest.mark.parametrize("rule", OPTIMIZERS.names())
def test_a_member_is_the_same_alone_and_in_any_stack(rule, batch_size, dtype):
    x, y = _data(dtype)
    spec = _spec(x, y, batch_size)
    alone = _member(_fit([TARGET], [_opt(rule)], dtype, spec, x, y), 0)
    for seeds, rules, at in STACKS.values():
        opts = [_opt(rule if r == "same" else r) for r in rules]
        fit = _fit(seeds[:at] + [TARGET] + seeds[at:], opts[:at] + [_opt(rule)] + opts[at:], dtype, spec, x, y)
        _assert_bitwise(_member(fit, at), alone)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("rule", OPTIMIZERS.names())
def test_a_member_is_the_same_while_others_stop_early(rule, dtype):
    # Members with a tiny step change their loss by less than the tolerance and stop after two
    # epochs; one with a huge step diverges; the target trains on.
    x, y = _data(dtype)
    spec = _spec(x, y, 1, tolerance=1e-5, epochs=6)
    alone_fit = _fit([TARGET], [_opt(rule)], dtype, spec, x, y)
    opts = [_opt(rule, 1e-7), _opt(rule), _opt(rule, 1e-7), _opt("delta", 1e4)]
    fit = _fit([1, TARGET, 2, 3], opts, dtype, spec, x, y)
    assert fit.epochs[0] < fit.epochs[1] and fit.epochs[2] < fit.epochs[1] and fit.epochs[0] == 2
    _assert_bitwise(_member(fit, 1), _member(alone_fit, 0))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("model", [lambda: mlp([6, 5, 3]), lambda: nn.Sequential(nn.Linear(6, 3), nn.ReLU())])
def test_predict_members_is_per_member(model, dtype):
    x, _ = _data(dtype)
    models = build_members(model, list(range(9)), dtype)
    together = predict_members(models, x)
    for i in (0, 4, 8):
        assert torch.equal(predict_members([models[i]], x)[0], together[i])
    torch.testing.assert_close(together[3], models[3](x), rtol=1e-5 if dtype == torch.float32 else 1e-12, atol=1e-6)


@pytest.mark.parametrize("dtype, ulps", [(torch.float64, 4), (torch.float32, 4)])
@pytest.mark.parametrize("act", [nn.Tanh, nn.Sigmoid])
def test_the_kernels_own_tanh_and_sigmoid_against_torch(act, dtype, ulps):
    # One Linear of weight 1 and bias 0, then the activation: the kernel's outputs are the activation.
    x = torch.cat([torch.linspace(-40, 40, 2001, dtype=torch.float64), torch.logspace(-12, 0, 200, dtype=torch.float64),
                   -torch.logspace(-12, 0, 200, dtype=torch.float64)]).to(dtype).unsqueeze(1)
    model = nn.Sequential(nn.Linear(1, 1), act()).to(dtype)
    with torch.no_grad():
        model[0].weight.fill_(1.0)
        model[0].bias.zero_()
    ours = predict_members([model] * 3, x)
    assert torch.equal(ours[0], ours[2])
    exact = act()(x.double())
    eps = torch.finfo(dtype).eps
    assert ((ours[1].double() - exact).abs() <= ulps * eps * exact.abs() + torch.finfo(dtype).tiny).all()
