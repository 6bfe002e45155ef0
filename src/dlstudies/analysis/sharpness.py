"""Sharpness of a minimum (study B10, `sensitivity`).

Keskar, Mudigere, Nocedal, Smelyanskiy, Tang 2017, "On Large-Batch Training for Deep Learning:
Generalization Gap and Sharp Minima" (ICLR), metric 2.1 with A = I (the full space):

    φ(θ, ε) = (max_{y ∈ C_ε} L(θ + y) − L(θ)) / (1 + L(θ)) × 100,
    C_ε = {y : |y_i| ≤ ε (|θ_i| + 1)}.

Keskar et al. solve the inner maximisation with L-BFGS-B; here a few steps of projected
sign-gradient ascent do it (the box is a product of intervals, so the projection is a clamp,
and a sign step moves every coordinate by the same fraction of its own interval). The maximum
is over every point visited, θ included, so φ ≥ 0 and more steps never lower it.

One ascent from one random point of the box finds 0.56-0.95 of the box maximum of a rotated
quadratic; `starts` ascents from independent random points, taking the largest rise found,
come closer (and never lower it). φ spans orders of magnitude between models: compare it on a
log scale (ratios of geometric means), as the studies do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn
from torch.func import functional_call, grad_and_value

from dlstudies.analysis.landscape import batch_slices, detached_params, eval_mode, evaluate
from dlstudies.analysis.replay import replayable

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Params = dict[str, torch.Tensor]


@dataclass(frozen=True)
class Sharpness:
    """value: φ in percent; base_loss: L(θ); max_loss: the largest L(θ + y) found in the box."""

    value: float
    base_loss: float
    max_loss: float
    epsilon: float
    steps: int
    per_start: tuple[float, ...] = ()  # φ each ascent found; value is their maximum


def _loss_and_grad(model: nn.Module, loss_fn: LossFn, params: Params, inputs: torch.Tensor,
                   targets: torch.Tensor, batch_size: int | None) -> tuple[float, Params]:
    """Full-set mean loss and its gradient w.r.t. `params`, accumulated over batches."""
    n, total, grads = len(inputs), 0.0, {k: torch.zeros_like(v) for k, v in params.items()}
    for part in batch_slices(n, batch_size):
        def batch_loss(p: Params, x=inputs[part], y=targets[part]) -> torch.Tensor:
            return loss_fn(functional_call(model, p, (x,)), y)
        g, value = grad_and_value(batch_loss)(params)
        weight = len(targets[part]) / n
        total += float(value) * weight
        grads = {k: grads[k] + weight * g[k] for k in grads}
    return total, grads


def _start(box: Params, generator: torch.Generator | None) -> Params:
    if generator is None:
        return {n: torch.zeros_like(b) for n, b in box.items()}
    return {n: (2 * torch.rand(b.shape, generator=generator, dtype=b.dtype, device=generator.device).to(b.device)
                - 1) * b for n, b in box.items()}


def _ascend(y: Params, grads: Params, box: Params, fraction: float) -> Params:
    return {n: torch.minimum(torch.maximum(y[n] + fraction * box[n] * grads[n].sign(), -box[n]), box[n])
            for n in y}


def _ascent(model: nn.Module, loss_fn: LossFn, theta: Params, box: Params, y: Params, inputs, targets,
            steps: int, fraction: float, batch_size: int | None) -> float:
    """The largest loss met by `steps` projected sign-gradient steps from θ + y (the last point included)."""
    best = -float("inf")
    for _ in range(steps):
        loss, grads = _loss_and_grad(model, loss_fn, {n: theta[n] + y[n] for n in theta}, inputs, targets, batch_size)
        best, y = max(best, loss), _ascend(y, grads, box, fraction)
    final, _ = evaluate(model, {n: theta[n] + y[n] for n in theta}, loss_fn, inputs, targets, batch_size)
    return max(best, final)


@replayable
def sharpness(model: nn.Module, loss_fn: LossFn, inputs: torch.Tensor, targets: torch.Tensor,
              epsilon: float = 1e-3, steps: int = 10, lr: float | None = None,
              generator: torch.Generator | None = None, batch_size: int | None = None,
              starts: int = 1) -> Sharpness:
    """Keskar et al.'s sharpness of `model` on (inputs, targets), in eval mode, in percent.

    Each step moves every coordinate by `lr` times its box half-width ε(|θ_i| + 1) along the
    sign of the gradient; the default lr = 2/steps lets the ascent cross the whole box. With a
    `generator` each of the `starts` ascents begins at its own uniform random point of the box,
    else the one ascent starts at θ, where an exact critical point has zero gradient and the
    ascent would not move: pass a generator there.
    """
    if starts < 1 or (starts > 1 and generator is None):
        raise ValueError(f"starts must be >= 1, and several starts need a generator; got starts={starts}")
    theta = detached_params(model)
    box = {n: epsilon * (t.abs() + 1) for n, t in theta.items()}
    fraction = 2.0 / steps if lr is None else lr
    base, _ = evaluate(model, theta, loss_fn, inputs, targets, batch_size)
    with eval_mode(model):
        tops = [max(base, _ascent(model, loss_fn, theta, box, _start(box, generator), inputs, targets, steps,
                                  fraction, batch_size)) for _ in range(starts)]
    phi = [(t - base) / (1 + base) * 100 for t in tops]
    return Sharpness(value=max(phi), base_loss=base, max_loss=max(tops), epsilon=float(epsilon), steps=int(steps),
                     per_start=tuple(phi))
