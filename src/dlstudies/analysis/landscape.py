"""The loss on a 2-D plane through trained parameters (study B6, `loss-surface`).

Li, Xu, Taylor, Studer, Goldstein 2018, "Visualizing the Loss Landscape of Neural Nets"
(NeurIPS): plot L(θ + α·d1 + β·d2) for two directions d1, d2 that are either
- random and *filter-normalized* (section 4): a Gaussian direction whose every filter (a
  convolution's output channel, a linear layer's row) is rescaled to the norm of the same filter
  of θ, so that the plot does not depend on the scale invariance of ReLU/BatchNorm networks;
  biases and BatchNorm parameters get zero direction, as in the paper; or
- the first two principal directions of the training trajectory (section 7), with the final
  point as the origin, so the trajectory can be drawn on the surface.

Also the shared functional evaluation used across `dlstudies.analysis`: the loss of a model at
parameters other than its own, in evaluation mode, by `torch.func.functional_call`.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from dlstudies.analysis.pca import fit_trajectory_pca, flatten_params, unflatten_params
from dlstudies.analysis.replay import replayable

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Params = Mapping[str, torch.Tensor]


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Evaluation mode for the duration, then every submodule's own flag back.

    Why eval mode for every probe: in train mode BatchNorm mixes the samples of a batch (a
    per-sample quantity would then depend on the batching) and writes its running statistics
    in place, which would change the model being probed. Only the flags are touched.
    """
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, flag in flags:
            m.training = flag


def detached_params(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach() for n, p in model.named_parameters()}


def batch_slices(n: int, batch_size: int | None) -> Iterator[slice]:
    """Consecutive slices of at most `batch_size` (None: one slice of all n)."""
    size = batch_size or n
    return (slice(start, start + size) for start in range(0, n, size))


def evaluate(model: nn.Module, state: Params, loss_fn: LossFn, inputs: torch.Tensor, targets: torch.Tensor,
             batch_size: int | None = None, metric_fn: LossFn | None = None) -> tuple[float, float | None]:
    """Mean loss (and mean metric) of `model` with `state` in place of its own tensors, in eval mode.

    `state` may hold parameters and buffers; names it lacks are the model's own. `loss_fn` and
    `metric_fn` return batch means, so a size-weighted mean over batches is the full-set mean.
    """
    n, loss, metric = len(inputs), 0.0, 0.0
    with eval_mode(model), torch.no_grad():
        for part in batch_slices(n, batch_size):
            out, y = functional_call(model, dict(state), (inputs[part],)), targets[part]
            weight = len(y) / n  # 1.0 for one batch, so the full-batch loss is reproduced exactly
            loss += float(loss_fn(out, y)) * weight
            metric += float(metric_fn(out, y)) * weight if metric_fn else 0.0
    return loss, metric if metric_fn else None


def _filter_normalized(p: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    if p.dim() <= 1:  # biases and BatchNorm scale/shift: left out, as Li et al. do
        return torch.zeros_like(p)
    d = torch.randn(p.shape, generator=generator, dtype=p.dtype, device=generator.device).to(p.device)
    dims = tuple(range(1, p.dim()))  # a filter is one slice along the first (output) axis
    # 1e-10 is Li et al.'s guard against an all-zero random filter.
    norm = torch.linalg.vector_norm
    return d * (norm(p, dim=dims, keepdim=True) / (norm(d, dim=dims, keepdim=True) + 1e-10))


def filter_normalized_direction(model: nn.Module, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """A random direction, one tensor per parameter, each filter scaled to the model's filter norm."""
    return {n: _filter_normalized(p, generator) for n, p in detached_params(model).items()}


@dataclass(frozen=True)
class LossPlane:
    """loss[j, i] is the loss at θ + alphas[i]·d1 + betas[j]·d2 (ready for `contour(alphas, betas, loss)`).

    accuracy: the metric on the same grid when a `metric_fn` was given, else None.
    """

    alphas: np.ndarray
    betas: np.ndarray
    loss: np.ndarray
    accuracy: np.ndarray | None = None


def _shifted(theta: Params, d1: Params, d2: Params, a: float, b: float) -> dict[str, torch.Tensor]:
    unknown = (set(d1) | set(d2)) - set(theta)
    if unknown:
        raise KeyError(f"directions name tensors that are not parameters: {sorted(unknown)}")
    # A missing name is a zero direction; t + 0.0 is t exactly, so (0, 0) is the model itself.
    return {n: t + a * d1.get(n, 0.0) + b * d2.get(n, 0.0) for n, t in theta.items()}


@replayable
def loss_plane(model: nn.Module, loss_fn: LossFn, inputs: torch.Tensor, targets: torch.Tensor,
               d1: Params, d2: Params, alphas: Sequence[float], betas: Sequence[float],
               batch_size: int | None = None, metric_fn: LossFn | None = None) -> LossPlane:
    """The loss (and metric) at θ + a·d1 + b·d2 over the grid alphas × betas, in eval mode; in
    batches of `batch_size` samples, each batch evaluated at every point of the grid in turn: it
    stays in the cache, where a pass over all the data per point reads it from memory again (a
    784-32-10 MLP on 54,000 images: 0.58 µs per sample and point in batches of 4096 against 0.92
    in one batch). Each point's batch means are summed in the order `evaluate` sums them."""
    theta = detached_params(model)
    alphas, betas = np.asarray(alphas, dtype=np.float64), np.asarray(betas, dtype=np.float64)
    points = [(float(a), float(b)) for b in betas for a in alphas]
    sums = np.zeros((len(points), 2))
    for part in batch_slices(len(inputs), batch_size):
        x, y = inputs[part], targets[part]
        weight = len(y) / len(inputs)  # 1.0 for one batch: the full-batch loss exactly
        for k, (a, b) in enumerate(points):
            loss, metric = evaluate(model, _shifted(theta, d1, d2, a, b), loss_fn, x, y, None, metric_fn)
            sums[k] += (loss * weight, (metric or 0.0) * weight)
    loss = sums[:, 0].reshape(len(betas), len(alphas))
    accuracy = sums[:, 1].reshape(len(betas), len(alphas)) if metric_fn else None
    return LossPlane(alphas=alphas, betas=betas, loss=loss, accuracy=accuracy)


def pca_directions(trajectory_vectors: np.ndarray, model: nn.Module
                   ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], np.ndarray]:
    """The trajectory's two principal directions as parameter dicts, and its (n, 2) coordinates.

    `trajectory_vectors` (n, P) are `flatten_params` snapshots of `model`'s parameters; `model`
    holds the final point, which is the origin of the plane (Li et al. 2018, section 7), so the
    last snapshot sits at (0, 0) and `loss_plane(model, ..., d1, d2, ...)` is centred on it.
    The components are orthonormal, so the coordinates are plain dot products.
    """
    pca = fit_trajectory_pca(trajectory_vectors, n_components=2)
    origin = flatten_params(model)
    coords = (np.asarray(trajectory_vectors, dtype=np.float64) - origin) @ pca.components.T
    d1, d2 = (unflatten_params(c, model) for c in pca.components)
    return d1, d2, coords
