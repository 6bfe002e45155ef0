"""Every path the batched engine can take — the compiled kernel, the hand-fused path (pattern mode
and mini-batches) and the autograd path — against the reference engine, in float64; and the path
actually taken."""

import numpy as np
import pytest
import torch
from torch import nn

from dlstudies.engine import ENGINES, StopRule, TrainSpec, fused, kernel
from dlstudies.engine.batched import fit_batched
from dlstudies.engine.evaluate import accuracy_probe
from dlstudies.errors import UsageError
from dlstudies.models.builders import build_members, mlp
from dlstudies.models.stacked import StackedNet
from dlstudies.optim import OPTIMIZERS, OptSpec

SEEDS = [0, 1, 2]
PATHS = ["kernel", "fused", "autograd"]


def _data(n=48, d=6, classes=3):
    g = torch.Generator().manual_seed(123)
    x = torch.rand(n, d, generator=g, dtype=torch.float64)
    y = torch.randint(0, classes, (n,), generator=g)
    return x, y


def _opts(rules, seeds, lr=0.05, momentum=0.5):
    lrs = lr if isinstance(lr, list) else [lr] * len(seeds)
    return [OptSpec(r, lrs[i], momentum if r in ("generalized-delta", "nesterov") else 0.0)
            for r in rules for i in range(len(seeds))]


def _both(rules, spec, path, seeds=SEEDS, lr=0.05, builder=None, x=None, y=None):
    if x is None:
        x, y = _data()
    builder = builder or (lambda: mlp([6, 5, 4, 3]))
    members = [m for _ in rules for m in build_members(builder, seeds, torch.float64)]
    opts, all_seeds = _opts(rules, seeds, lr), list(seeds) * len(rules)
    return (fit_batched(members, opts, x, y, spec, all_seeds, path=path),
            ENGINES.get("reference")(members, opts, x, y, spec, all_seeds))


def _params(fit):
    return torch.cat([p.detach().flatten() for m in fit.models for p in m.parameters()])


def _assert_same(a, b):
    np.testing.assert_array_equal(a.epochs, b.epochs)
    np.testing.assert_array_equal(a.converged, b.converged)
    np.testing.assert_array_equal(a.diverged, b.diverged)
    assert set(a.history) == set(b.history)
    for k in a.history:
        np.testing.assert_allclose(a.history[k], b.history[k], rtol=1e-10, atol=1e-12, equal_nan=True)
    torch.testing.assert_close(_params(a), _params(b), rtol=1e-10, atol=1e-12)


@pytest.fixture
def fused_epochs(monkeypatch):
    """Counts epochs run by the fused path, to assert it was taken."""
    calls = []
    real = fused.FusedTrainer.epoch
    monkeypatch.setattr(fused.FusedTrainer, "epoch", lambda self, *a: calls.append(1) or real(self, *a))
    return calls


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("rule", OPTIMIZERS.names())
@pytest.mark.parametrize("batch_size", [1, 10])  # 10: the last batch of 48 samples has 8
def test_each_optimizer_fixed_epochs(rule, batch_size, path, fused_epochs):
    a, b = _both([rule], TrainSpec(StopRule(3), batch_size=batch_size), path)
    _assert_same(a, b)
    assert (a.epochs == 3).all()
    assert len(fused_epochs) == (3 if path == "fused" else 0) and a.path == path


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("rule", OPTIMIZERS.names())
@pytest.mark.parametrize("batch_size", [1, 7])
def test_learning_rate_sweep_in_one_stack(rule, batch_size, path):
    # Members of one rule with different learning rates: per-member hyperparameters, no fused kernel.
    spec = TrainSpec(StopRule(3), batch_size=batch_size)
    _assert_same(*_both([rule], spec, path, lr=[0.01, 0.05, 0.2]))


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("batch_size", [1, 4])
def test_all_rules_in_one_stack_with_probes_and_trace(batch_size, path):
    x, y = _data()
    spec = TrainSpec(StopRule(3), batch_size=batch_size, probes=(accuracy_probe("acc", x, y),), trace_epochs=2)
    a, b = _both(OPTIMIZERS.names(), spec, path)
    _assert_same(a, b)
    steps = 2 * -(-48 // batch_size)
    for k in ("loss", "grad_norm"):
        assert a.trace[k].shape == (len(OPTIMIZERS.names()) * len(SEEDS), steps)
        np.testing.assert_allclose(a.trace[k], b.trace[k], rtol=1e-10)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("batch_size", [1, 8])
def test_tolerance_stops_members_at_different_epochs_and_freezes_them(batch_size, path, fused_epochs):
    spec = TrainSpec(StopRule(40, tolerance=2e-3), batch_size=batch_size)
    a, b = _both(["adam", "delta"], spec, path, lr=0.02)
    _assert_same(a, b)
    assert len(set(a.epochs.tolist())) > 1, "the test needs members that stop at different epochs"
    assert a.converged.any() and (a.epochs < 40).any()
    for i, n in enumerate(a.epochs):
        assert np.isnan(a.history["loss"][i, n:]).all()
    if path == "fused":
        assert len(fused_epochs) == a.epochs.max()


@pytest.mark.parametrize("batch_size", [1, 8])
def test_stopped_member_ends_where_a_solo_fit_ends(batch_size):
    spec = TrainSpec(StopRule(30, tolerance=2e-3), batch_size=batch_size)
    stacked, _ = _both(["adam"], spec, "fused")
    i = int(np.argmin(stacked.epochs))
    assert stacked.epochs[i] < stacked.epochs.max()
    solo, _ = _both(["adam"], spec, "fused", seeds=[SEEDS[i]])
    assert stacked.path == solo.path == "fused"
    # not bit for bit: a stack of 3 and a stack of 1 are different kernel shapes
    torch.testing.assert_close(_params(solo), torch.cat([p.flatten() for p in stacked.models[i].parameters()]),
                               rtol=1e-8, atol=1e-10)


ARCHITECTURES = {
    "relu": lambda: mlp([6, 5, 4, 3], act=nn.ReLU),
    "sigmoid": lambda: mlp([6, 5, 4, 3], act=nn.Sigmoid),
    "linear": lambda: mlp([6, 5, 3], act=nn.Identity),
    "one layer": lambda: nn.Sequential(nn.Linear(6, 3)),
    "no bias": lambda: nn.Sequential(nn.Linear(6, 5, bias=False), nn.Tanh(), nn.Linear(5, 3)),
    "activation first, stacked": lambda: nn.Sequential(nn.Sigmoid(), nn.Linear(6, 5), nn.Tanh(), nn.ReLU(),
                                                       nn.Identity(), nn.Linear(5, 3), nn.Tanh()),
}


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("batch_size", [1, 5])
@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_architectures(arch, batch_size, path, fused_epochs):
    a, b = _both(["adam", "generalized-delta"], TrainSpec(StopRule(3), batch_size=batch_size), path,
                 builder=ARCHITECTURES[arch])
    _assert_same(a, b)
    assert len(fused_epochs) == (3 if path == "fused" else 0)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("batch_size", [1, 6, 47])  # 47: a last batch of one sample
def test_squared_error(batch_size, path):
    x, _ = _data()
    y = torch.stack([x[:, 0] * x[:, 1], x[:, 2] - x[:, 3], x[:, 4]], 1)
    spec = TrainSpec(StopRule(3), batch_size=batch_size, loss="mse", trace_epochs=1)
    a, b = _both(["rmsprop", "nesterov", "delta"], spec, path, x=x, y=y,
                 builder=lambda: mlp([6, 5, 3], act=nn.Sigmoid))
    _assert_same(a, b)
    np.testing.assert_allclose(a.trace["loss"], b.trace["loss"], rtol=1e-10)


@pytest.mark.parametrize("path", ["kernel", "fused"])
@pytest.mark.parametrize("batch_size", [1, 48])
def test_divergence_is_recorded_and_others_go_on(batch_size, path):
    # A linear net on squared error explodes under plain SGD with a huge step; Adam's step is bounded.
    x, _ = _data()
    y = x[:, :3] * 100
    members = build_members(lambda: mlp([6, 5, 3], act=nn.Identity), [0, 1], torch.float64) * 2
    opts = [OptSpec("delta", 10.0)] * 2 + [OptSpec("adam", 0.01)] * 2
    spec = TrainSpec(StopRule(6), batch_size=batch_size, loss="mse")
    a = fit_batched(members, opts, x, y, spec, [0, 1, 0, 1], path=path)
    b = ENGINES.get("reference")(members, opts, x, y, spec, [0, 1, 0, 1])
    assert a.diverged[:2].all() and not a.diverged[2:].any()
    np.testing.assert_array_equal(a.diverged, b.diverged)
    np.testing.assert_array_equal(a.diverged_epoch, b.diverged_epoch)
    np.testing.assert_allclose(a.history["loss"][2:], b.history["loss"][2:], rtol=1e-10)
    torch.testing.assert_close(_params(a)[_params(a).numel() // 2:], _params(b)[_params(b).numel() // 2:],
                               rtol=1e-10, atol=1e-12)


def test_auto_takes_the_kernel_for_an_mlp_and_the_fused_path_without_a_compiler(fused_epochs, monkeypatch, capsys):
    x, y = _data()
    spec = TrainSpec(StopRule(2))
    members = build_members(lambda: mlp([6, 5, 3]), SEEDS, torch.float64)
    compiled = ENGINES.get("batched")(members, _opts(["adam"], SEEDS), x, y, spec, SEEDS)
    assert compiled.path == "kernel" and len(fused_epochs) == 0
    monkeypatch.setattr(kernel, "compiler", lambda: None)
    monkeypatch.setattr(kernel, "_said", set())
    fallback = ENGINES.get("batched")(members, _opts(["adam"], SEEDS), x, y, spec, SEEDS)
    assert fallback.path == "fused" and len(fused_epochs) == 2
    said = capsys.readouterr().err.strip().splitlines()
    assert len(said) == 1 and "no C++ compiler" in said[0] and "fused path runs" in said[0]
    _assert_same(compiled, fallback)  # the same numbers to rounding
    with pytest.raises(UsageError, match="kernel path does not apply: no compiled kernel"):
        fit_batched(members, _opts(["adam"], SEEDS), x, y, spec, SEEDS, path="kernel")
    normed = build_members(lambda: nn.Sequential(nn.Linear(6, 5), nn.LayerNorm(5), nn.Tanh(), nn.Linear(5, 3)),
                           SEEDS, torch.float64)
    assert fused.why_not(StackedNet(normed), x, y, spec) is not None
    assert ENGINES.get("batched")(normed, _opts(["adam"], SEEDS), x, y, spec, SEEDS).path == "autograd"
    assert ENGINES.get("reference")(normed, _opts(["adam"], SEEDS), x, y, spec, SEEDS).path == "reference"


@pytest.mark.parametrize("model, loss, why", [
    (lambda: nn.Sequential(nn.Linear(6, 5), nn.Softplus(), nn.Linear(5, 3)), "cross_entropy", "Softplus"),
    (lambda: nn.Sequential(nn.Linear(6, 5), nn.BatchNorm1d(5), nn.Linear(5, 3)), "cross_entropy", "BatchNorm1d"),
    (lambda: mlp([6, 5, 3]), "mse", "squared-error targets"),
])
def test_fused_refuses_what_it_does_not_cover(model, loss, why):
    x, y = _data()
    members = build_members(model, SEEDS, torch.float64)
    spec = TrainSpec(StopRule(1), loss=loss)
    with pytest.raises(UsageError, match=why):
        fit_batched(members, _opts(["delta"], SEEDS), x, y, spec, SEEDS, path="fused")
    with pytest.raises(UsageError, match="path must be"):
        fit_batched(members, _opts(["delta"], SEEDS), x, y, spec, SEEDS, path="fast")


@pytest.mark.parametrize("path", PATHS)
def test_extra_settings_reach_every_path(path):
    # Adam's betas and eps, RMSProp's alpha and eps, Adagrad's eps, member by member.
    x, y = _data()
    extras = [("adam", {"betas": (0.8, 0.99)}), ("adam", {"eps": 1e-2}), ("rmsprop", {"alpha": 0.9}),
              ("rmsprop", {"eps": 1e-1}), ("adagrad", {"eps": 0.5}), ("adagrad", {})]
    opts = [OptSpec(rule, 0.05, extra=extra) for rule, extra in extras]
    members = build_members(lambda: mlp([6, 5, 4, 3]), range(len(opts)), torch.float64)
    spec = TrainSpec(StopRule(3), batch_size=4)
    a = fit_batched(members, opts, x, y, spec, range(len(opts)), path=path)
    b = ENGINES.get("reference")(members, opts, x, y, spec, range(len(opts)))
    _assert_same(a, b)
    plain = ENGINES.get("reference")(members, [OptSpec(rule, 0.05) for rule, _ in extras], x, y, spec, range(len(opts)))
    assert not np.allclose(a.history["loss"][:5], plain.history["loss"][:5], rtol=1e-6)  # the settings took effect
