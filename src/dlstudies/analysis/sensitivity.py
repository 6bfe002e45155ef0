"""Input sensitivity of a trained model (study B10, `sensitivity`).

Two per-sample measures, averaged over an evaluation set:
- the Frobenius norm of ∂ℓ(f(x_i), y_i)/∂x_i, the gradient of *one sample's* loss w.r.t. that
  sample's input (report B's "sensitivity");
- the Frobenius norm of the input-output Jacobian ∂σ(f(x_i))/∂x_i, with σ the softmax, i.e. the
  Jacobian of the class probabilities, as Novak, Bahri, Abolafia, Pennington, Sohl-Dickstein
  2018 ("Sensitivity and Generalization in Neural Networks: an Empirical Study", ICLR) define it.

Why per sample: the gradient of the batch-*mean* loss w.r.t. the batch is each sample's
gradient divided by the batch size, so a "sensitivity" taken from it falls like 1/batch size.
Here each sample is a batch of one under `torch.func.vmap`, and the model runs in eval mode
(BatchNorm in train mode would make samples interact): the result does not depend on
`batch_size`, which only bounds memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, grad, jacrev, vmap

from dlstudies.analysis.landscape import batch_slices, eval_mode

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


def _per_sample_maps(model: nn.Module, loss_fn: LossFn, output_fn: Callable[[torch.Tensor], torch.Tensor]):
    state = {**{n: p.detach() for n, p in model.named_parameters()}, **dict(model.named_buffers())}

    def forward(x: torch.Tensor) -> torch.Tensor:  # one sample, seen by the model as a batch of one
        return functional_call(model, state, (x.unsqueeze(0),))

    def sample_loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return loss_fn(forward(x), y.unsqueeze(0))  # the batch mean over one sample is its loss

    def sample_output(x: torch.Tensor) -> torch.Tensor:
        return output_fn(forward(x)).squeeze(0)

    return vmap(grad(sample_loss)), vmap(jacrev(sample_output))


def _frobenius(per_sample: torch.Tensor) -> torch.Tensor:
    return per_sample.flatten(1).norm(dim=1)


def sensitivity(model: nn.Module, loss_fn: LossFn, inputs: torch.Tensor, targets: torch.Tensor,
                batch_size: int = 256, output_fn: Callable[[torch.Tensor], torch.Tensor] = softmax_outputs
                ) -> Sensitivity:
    """Per-sample input-gradient and input-output-Jacobian norms of `model` over (inputs, targets).

    `loss_fn(outputs, targets)` is the usual batch-mean loss (e.g. `F.cross_entropy` on logits,
    `F.mse_loss`); it is called on one sample at a time, where the mean is that sample's loss.
    `output_fn` maps the model's outputs to the quantity whose Jacobian is measured (softmax by
    default; pass `lambda o: o` for a regression model, whose softmax would be constant).
    """
    input_grad, output_jacobian = _per_sample_maps(model, loss_fn, output_fn)
    grads, jacobians = [], []
    with eval_mode(model):
        for part in batch_slices(len(inputs), batch_size):
            grads.append(_frobenius(input_grad(inputs[part], targets[part])))
            jacobians.append(_frobenius(output_jacobian(inputs[part])))
    per_sample = torch.cat(grads).to(torch.float64).numpy()
    jacobian = torch.cat(jacobians).to(torch.float64).numpy()
    return Sensitivity(mean=float(per_sample.mean()), per_sample=per_sample,
                       jacobian_norm=float(jacobian.mean()), jacobian_per_sample=jacobian)
