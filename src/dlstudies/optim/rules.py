"""The update rules, each stated once, and the facts about each that the engines need.

A rule's `step` updates a member stack in place: parameters `p` and gradients `g` are (m, P) (any
strides: a transposed stack works too), `state` its per-parameter tensors (plus Adam's per-member
step count), `h` the members' hyperparameters as (m, 1) columns, so that members of one rule can
each have their own. The reference engine uses the stock torch.optim class named here with the
same settings; the tests hold the two to each other, and the compiled kernel
(`engine/csrc/mlp_kernel.cpp`) states the same rules lane by lane.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from dlstudies.registry import Registry

OPTIMIZERS: Registry = Registry("optimizer")


@dataclass(frozen=True)
class Rule:
    step: Callable[[torch.Tensor, torch.Tensor, dict, dict], None]
    torch_class: type
    state: tuple[str, ...] = ()  # per-parameter state tensors, zero at the start
    momentum: bool = False  # takes OptSpec.momentum (torch keyword "momentum")
    extra: dict = field(default_factory=dict)  # settable through OptSpec.extra: torch keyword -> default
    fixed: dict = field(default_factory=dict)  # torch keywords always passed
    kernel: int = 0  # the rule's number in the compiled kernel (enum Rule)
    counts_steps: bool = False  # keeps a per-member step count "t" (bias corrections)


def _delta(p, g, s, h):
    p.sub_(h["lr"] * g)


def _momentum(p, g, s, h):
    s["buf"].mul_(h["momentum"]).add_(g)  # buf starts at zero: the first step's buf is g, as torch's
    p.sub_(h["lr"] * s["buf"])


def _nesterov(p, g, s, h):
    s["buf"].mul_(h["momentum"]).add_(g)
    p.sub_(h["lr"] * (g + h["momentum"] * s["buf"]))


def _adagrad(p, g, s, h):
    s["sum"].addcmul_(g, g)
    p.sub_(h["lr"] * (g / (s["sum"].sqrt() + h["eps"])))


def _rmsprop(p, g, s, h):
    s["sq"].mul_(h["alpha"]).add_((1 - h["alpha"]) * (g * g))
    p.sub_(h["lr"] * (g / (s["sq"].sqrt() + h["eps"])))


def _adam(p, g, s, h):
    s["t"].add_(1)  # per member: one that stopped keeps its bias corrections
    s["m"].lerp_(g, 1 - h["beta1"])
    s["v"].mul_(h["beta2"]).add_((1 - h["beta2"]) * (g * g))
    correction1, correction2 = 1 - h["beta1"] ** s["t"], 1 - h["beta2"] ** s["t"]
    p.sub_(h["lr"] / correction1 * (s["m"] / (s["v"].sqrt() / correction2.sqrt() + h["eps"])))


OPTIMIZERS.register("delta")(Rule(_delta, torch.optim.SGD, kernel=0))  # the delta rule: plain SGD
OPTIMIZERS.register("generalized-delta")(  # SGD with momentum
    Rule(_momentum, torch.optim.SGD, ("buf",), momentum=True, kernel=1))
OPTIMIZERS.register("nesterov")(
    Rule(_nesterov, torch.optim.SGD, ("buf",), momentum=True, fixed={"nesterov": True}, kernel=2))
OPTIMIZERS.register("adagrad")(Rule(_adagrad, torch.optim.Adagrad, ("sum",), extra={"eps": 1e-10}, kernel=3))
OPTIMIZERS.register("rmsprop")(
    Rule(_rmsprop, torch.optim.RMSprop, ("sq",), extra={"alpha": 0.99, "eps": 1e-8}, kernel=4))
OPTIMIZERS.register("adam")(
    Rule(_adam, torch.optim.Adam, ("m", "v"), extra={"betas": (0.9, 0.999), "eps": 1e-8}, kernel=5,
         counts_steps=True))
