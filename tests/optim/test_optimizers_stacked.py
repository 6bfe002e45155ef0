"""Each update rule over a stack of members against stock torch.optim, one optimizer per member:
per-member learning rates and settings, any memory layout, stopped members held exactly."""

import pytest
import torch

from dlstudies.errors import UsageError
from dlstudies.optim import OPTIMIZERS, OptSpec, StackedOptimizer, settings, torch_optimizer

P = 7
EXTRAS = {"adam": [{}, {"betas": (0.8, 0.99)}, {"eps": 1e-3}], "rmsprop": [{}, {"alpha": 0.9}, {"eps": 1e-2}],
          "adagrad": [{}, {"eps": 1e-3}, {}]}


def _specs(rule):
    extras = EXTRAS.get(rule, [{}] * 3)
    momentum = 0.5 if OPTIMIZERS.get(rule).momentum else 0.0
    return [OptSpec(rule, lr, momentum, extra) for lr, extra in zip([0.01, 0.05, 0.2], extras)]


def _layout(base: torch.Tensor, layout: str) -> torch.Tensor:
    if layout == "rows":
        return base.clone()
    if layout == "transposed":
        return base.t().contiguous().t()
    return torch.cat([torch.zeros(P, 1, dtype=base.dtype), base.t().contiguous()], 1).t()[1:]


@pytest.mark.parametrize("rule", OPTIMIZERS.names())
@pytest.mark.parametrize("layout", ["rows", "transposed", "columns of a transposed stack"])
def test_each_rule_against_torch_optim_with_a_stopped_member(rule, layout):
    g = torch.Generator().manual_seed(0)
    base = torch.randn(3, P, generator=g, dtype=torch.float64)
    specs = _specs(rule)
    flat = _layout(base, layout)
    opt = StackedOptimizer(specs, flat).select(torch.arange(3), like=flat)
    refs = [base[i].clone().requires_grad_() for i in range(3)]
    torch_opts = [torch_optimizer(s, [r]) for s, r in zip(specs, refs)]
    step = opt.bind(flat, grad := torch.zeros_like(flat))
    for k in range(5):
        if k == 3:  # member 1 stops: it must not move again
            opt.set_active(torch.tensor([True, False, True]))
        grad.copy_(torch.randn(3, P, generator=g, dtype=torch.float64))
        step()
        for i, (r, o) in enumerate(zip(refs, torch_opts)):
            if k < 3 or i != 1:
                r.grad = grad[i].clone()
                o.step()
    torch.testing.assert_close(flat, torch.stack(refs).detach(), rtol=1e-12, atol=1e-14)


def test_select_keeps_each_members_state():
    flat = torch.randn(5, 4, dtype=torch.float64)
    specs = [OptSpec("adam", 0.01)] * 2 + [OptSpec("delta", 0.1)] * 3
    opt = StackedOptimizer(specs, flat)
    opt.step(flat, torch.ones_like(flat))
    sub = opt.select(torch.tensor([1, 3]), like=flat[[1, 3]].t().contiguous().t())
    assert [(rows.start, rows.stop) for rows, _ in sub.groups] == [(0, 1), (1, 2)]
    adam = sub.groups[0][1]
    torch.testing.assert_close(adam.state["m"], opt.groups[0][1].state["m"][1:2])
    assert adam.state["m"].t().is_contiguous()


def test_extra_settings_are_set_and_unknown_ones_refused():
    assert settings(OptSpec("adam", 0.1, extra={"betas": (0.5, 0.6)}))["beta2"] == 0.6
    assert settings(OptSpec("rmsprop", 0.1, extra={"alpha": 0.5}))["alpha"] == 0.5
    assert torch_optimizer(OptSpec("adam", 0.1, extra={"eps": 0.25}), [torch.zeros(1)]).defaults["eps"] == 0.25
    with pytest.raises(UsageError, match="adam has no setting 'beta'; valid: betas, eps"):
        OptSpec("adam", 0.1, extra={"beta": 0.9})
    with pytest.raises(UsageError, match="delta has no setting 'eps'; valid: none"):
        OptSpec("delta", 0.1, extra={"eps": 1e-8})
