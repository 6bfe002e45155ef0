"""The exact Hessian of a small network's loss and its minimal ratio (study B5, `minimal-ratio`).

The minimal ratio of a critical point is the fraction of positive Hessian eigenvalues: 1 at a
strict local minimum, less at a saddle. Where it comes from: the "what happens when the gradient
is almost zero" exercise (report B), after Dauphin et al. 2014 ("Identifying and attacking the
saddle point problem in high-dimensional non-convex optimization", NeurIPS), who relate the index
of critical points to their loss.

Two traps the design avoids: the Hessian is the *full* matrix over the flattened vector of
all parameters (a block-diagonal or diagonal one ignores the coupling between layers), and
"positive" means above a tolerance (an exact zero eigenvalue computes as ±1e-17).
Everything is float64, whatever the model's dtype; eigenvalues by `torch.linalg.eigvalsh`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from dlstudies.analysis.landscape import eval_mode
from dlstudies.analysis.pca import unflatten_params
from dlstudies.analysis.replay import replayable

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

# Multiple of the eigensolver's backward error (n · eps · max|λ|, numpy's `matrix_rank` rule)
# allowed for rounding in the Hessian itself, whose entries are sums over the whole network.
TOLERANCE_FACTOR = 100.0


@dataclass(frozen=True)
class HessianSpectrum:
    """Eigenvalues (ascending, float64) of the loss Hessian w.r.t. all parameters, at one point.

    minimal_ratio: fraction of eigenvalues > tolerance; grad_norm: 2-norm of the gradient there
    (how close the point is to critical). Exact (dense eigendecomposition): nothing to converge.
    """

    eigenvalues: np.ndarray
    tolerance: float
    minimal_ratio: float
    grad_norm: float
    n_params: int


def default_tolerance(eigenvalues: np.ndarray) -> float:
    """TOLERANCE_FACTOR · n · eps(float64) · max|λ|: relative, so the units of the loss cancel."""
    eig = np.asarray(eigenvalues, dtype=np.float64)
    if eig.size == 0:
        return 0.0
    return float(TOLERANCE_FACTOR * eig.size * np.finfo(np.float64).eps * np.abs(eig).max())


def minimal_ratio(eigenvalues: np.ndarray, tol: float | None = None) -> float:
    """Fraction of eigenvalues strictly above `tol` (default: `default_tolerance`)."""
    eig = np.asarray(eigenvalues, dtype=np.float64)
    tol = default_tolerance(eig) if tol is None else tol
    return float(np.mean(eig > tol)) if eig.size else float("nan")


def _float64(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to(torch.float64) if torch.is_floating_point(t) else t


def _vector_loss(model: nn.Module, loss_fn: LossFn, inputs: torch.Tensor, targets: torch.Tensor):
    """The float64 loss as a function of the flat parameter vector (`flatten_params` order)."""
    buffers = {n: _float64(b) for n, b in model.named_buffers()}
    x, y = _float64(inputs), _float64(targets)

    def loss(vector: torch.Tensor) -> torch.Tensor:
        state = {**unflatten_params(vector, model), **buffers}
        return loss_fn(functional_call(model, state, (x,)), y)

    return loss


def loss_hessian(model: nn.Module, loss_fn: LossFn, inputs: torch.Tensor,
                 targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The float64 Hessian (P, P) and gradient (P,) of `loss_fn(model(inputs), targets)`.

    P counts all parameters in `named_parameters()` order (that of `flatten_params`). The model
    is evaluated in eval mode with float64 copies of its parameters and buffers; it is not changed.
    """
    flat = torch.cat([_float64(p).reshape(-1) for p in model.parameters()])
    loss = _vector_loss(model, loss_fn, inputs, targets)
    with eval_mode(model):
        hess, grad = torch.func.hessian(loss)(flat), torch.func.grad(loss)(flat)
    return (hess + hess.T) / 2, grad  # symmetrise: forward-over-reverse is symmetric only to rounding


@replayable
def gradient_norms(model: nn.Module, loss_fn: LossFn, inputs: torch.Tensor, targets: torch.Tensor,
                   vectors: np.ndarray) -> np.ndarray:
    """The full-batch gradient 2-norm (float64, eval mode) at each flat parameter vector (n, P):
    the gradient of the whole training loss, not a mini-batch's, whose norm has a noise floor."""
    loss = _vector_loss(model, loss_fn, inputs, targets)
    grad = torch.func.grad(loss)
    with eval_mode(model):
        return np.array([float(grad(torch.as_tensor(v, dtype=torch.float64)).norm()) for v in np.atleast_2d(vectors)])


@replayable
def hessian_eigenvalues(model: nn.Module, loss_fn: LossFn, inputs: torch.Tensor, targets: torch.Tensor,
                        tol: float | None = None) -> HessianSpectrum:
    """Exact spectrum and minimal ratio of the loss Hessian; `tol` defaults to `default_tolerance`."""
    hess, grad = loss_hessian(model, loss_fn, inputs, targets)
    eig = torch.linalg.eigvalsh(hess).numpy()
    tol = default_tolerance(eig) if tol is None else float(tol)
    return HessianSpectrum(eigenvalues=eig, tolerance=tol, minimal_ratio=minimal_ratio(eig, tol),
                           grad_norm=float(grad.norm()), n_params=int(eig.size))
