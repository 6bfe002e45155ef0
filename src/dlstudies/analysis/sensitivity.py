"""Input sensitivity of a trained model (study B10, `sensitivity`).

Two per-sample measures, averaged over an evaluation set:
- the Frobenius norm of ∂ℓ(f(x_i), y_i)/∂x_i, the gradient of *one sample's* loss w.r.t. that
  sample's input (report B's "sensitivity");
- the Frobenius norm of the input-output Jacobian ∂σ(f(x_i))/∂x_i, with σ the softmax, i.e. the
  Jacobian of the class probabilities, as Novak, Bahri, Abolafia, Pennington, Sohl-Dickstein
  2018 ("Sensitivity and Generalization in Neural Networks: an Empirical Study", ICLR) define it.

Why per sample: the gradient of the batch-*mean* loss w.r.t. the batch is each sample's
gradient divided by the batch size, so a "sensitivity" taken from it falls like 1/batch size.
Here the model runs in eval mode (BatchNorm in train mode would make samples interact), where a
sample's outputs depend on its own input alone: the gradient of the batch's *summed* loss w.r.t.
x_i is then exactly ∂ℓ_i/∂x_i, and that of the summed k-th output is ∂σ_k(f(x_i))/∂x_i for every i
at once. So a batch takes one forward and 1 + K backward passes (K outputs) instead of a vmap over
its samples (measured on the paper CNN, 6.6x faster); the result does not depend on `batch_size`,
which only bounds memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn

from dlstudies.analysis.landscape import batch_slices, eval_mode
from dlstudies.analysis.replay import replayable

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def softmax_outputs(outputs: torch.Tensor) -> torch.Tensor:
    """Class probabilities from logits: the output whose Jacobian Novak et al. 2018 measure."""
    return torch.softmax(outputs, dim=-1)


@dataclass(frozen=True)
class Sensitivity:
    """mean / per_sample: ‖∂ℓ_i/∂x_i‖_F; jacobian_norm / jacobian_per_sample: ‖∂σ(f(x_i))/∂x_i‖_F."""

    mean: float
    per_sample: np.ndarray
    jacobian_norm: float
    jacobian_per_sample: np.ndarray


def _per_sample_norms(model: nn.Module, loss_fn: LossFn, output_fn, x: torch.Tensor, y: torch.Tensor):
    """(‖∂ℓ_i/∂x_i‖_F, ‖∂σ(f(x_i))/∂x_i‖_F) for the samples of one batch, `model` in eval mode."""
    x = x.detach().clone().requires_grad_()
    out = model(x)
    # loss_fn is a mean over the batch: times its size, the sum of the samples' own losses.
    (grads,) = torch.autograd.grad(loss_fn(out, y) * len(x), x, retain_graph=True)
    outputs = output_fn(out).flatten(1)
    squares = torch.zeros(len(x), dtype=x.dtype, device=x.device)
    for k in range(outputs.shape[1]):
        (rows,) = torch.autograd.grad(outputs[:, k].sum(), x, retain_graph=k + 1 < outputs.shape[1])
        squares += rows.flatten(1).pow(2).sum(1)
    return _frobenius(grads), squares.sqrt()


def _frobenius(per_sample: torch.Tensor) -> torch.Tensor:
    return per_sample.flatten(1).norm(dim=1)


@replayable
def sensitivity(model: nn.Module, loss_fn: LossFn, inputs: torch.Tensor, targets: torch.Tensor,
                batch_size: int = 256, output_fn: Callable[[torch.Tensor], torch.Tensor] = softmax_outputs
                ) -> Sensitivity:
    """Per-sample input-gradient and input-output-Jacobian norms of `model` over (inputs, targets).

    `loss_fn(outputs, targets)` is the usual batch-mean loss (e.g. `F.cross_entropy` on logits,
    `F.mse_loss`): a mean over the samples, so that times the batch size it is the sum of each
    sample's own loss (a loss with another reduction would scale the result).
    `output_fn` maps the model's outputs to the quantity whose Jacobian is measured (softmax by
    default; pass `lambda o: o` for a regression model, whose softmax would be constant).
    """
    grads, jacobians = [], []
    with eval_mode(model):
        for part in batch_slices(len(inputs), batch_size):
            g, j = _per_sample_norms(model, loss_fn, output_fn, inputs[part], targets[part])
            grads.append(g.detach())
            jacobians.append(j.detach())
    per_sample = torch.cat(grads).to(torch.float64).numpy()
    jacobian = torch.cat(jacobians).to(torch.float64).numpy()
    return Sensitivity(mean=float(per_sample.mean()), per_sample=per_sample,
                       jacobian_norm=float(jacobian.mean()), jacobian_per_sample=jacobian)
