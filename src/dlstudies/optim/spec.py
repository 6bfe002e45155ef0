"""A member's update rule as settings: OptSpec, its resolved hyperparameters, its torch.optim twin."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from dlstudies.errors import UsageError
from dlstudies.optim.rules import OPTIMIZERS


@dataclass(frozen=True)
class OptSpec:
    """One member's update rule: a registered name, its learning rate and momentum (rules with
    momentum only), and `extra` settings by their torch.optim keyword (Adam's betas and eps,
    RMSProp's alpha and eps, Adagrad's eps); an unknown one is an error."""

    name: str
    lr: float
    momentum: float = 0.0
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        rule = OPTIMIZERS.get(self.name)  # fail early with the valid names
        if not self.lr > 0:
            raise UsageError(f"learning rate must be > 0, got {self.lr}")
        if not 0 <= self.momentum < 1:
            raise UsageError(f"momentum must be in [0, 1), got {self.momentum}")
        unknown = sorted(set(self.extra) - set(rule.extra))
        if unknown:
            valid = ", ".join(rule.extra) or "none"
            raise UsageError(f"{self.name} has no setting {', '.join(map(repr, unknown))}; valid: {valid}")


def settings(spec: OptSpec) -> dict[str, float]:
    """Every hyperparameter of the member's rule, flat (Adam's betas as beta1, beta2); 0 where unused."""
    rule = OPTIMIZERS.get(spec.name)
    extra = {**rule.extra, **spec.extra}
    beta1, beta2 = extra.get("betas", (0.0, 0.0))
    return {"lr": spec.lr, "momentum": spec.momentum if rule.momentum else 0.0, "beta1": beta1, "beta2": beta2,
            "eps": extra.get("eps", 0.0), "alpha": extra.get("alpha", 0.0)}


def torch_optimizer(spec: OptSpec, params) -> torch.optim.Optimizer:
    """The stock torch.optim optimizer equivalent to `spec`, for the reference engine."""
    rule = OPTIMIZERS.get(spec.name)
    momentum = {"momentum": spec.momentum} if rule.momentum else {}
    return rule.torch_class(params, lr=spec.lr, **momentum, **{**rule.extra, **spec.extra}, **rule.fixed)
