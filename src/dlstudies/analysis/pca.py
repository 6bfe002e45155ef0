"""Parameter vectors and the PCA of a training trajectory.

Study B3 (`weight-trajectory`) and B6 (`loss-surface`) view training as a path of parameter
vectors and project it on its two principal directions, as Li et al. 2018 ("Visualizing the
Loss Landscape of Neural Nets", NeurIPS, section 7) do. The PCA itself is scikit-learn's.

Flattening order is always the order of `model.named_parameters()` (or of the mapping given),
so a vector made by `flatten_params` goes back into shape with `unflatten_params`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np
import torch
from torch import nn

# BatchNorm statistics are estimates, not weights: a trajectory of "the weights" leaves them out.
_STATISTICS = ("running_mean", "running_var", "num_batches_tracked")


def _named_tensors(state_or_module: nn.Module | Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if isinstance(state_or_module, nn.Module):
        return dict(state_or_module.named_parameters())
    return {n: t for n, t in state_or_module.items()
            if torch.is_floating_point(t) and not n.endswith(_STATISTICS)}


def _selected(named: dict[str, torch.Tensor], prefix: str | None) -> dict[str, torch.Tensor]:
    chosen = {n: t for n, t in named.items() if prefix is None or n.startswith(prefix)}
    if not chosen:
        raise ValueError(f"no parameter name starts with {prefix!r}; names: {sorted(named)}")
    return chosen


def flatten_params(state_or_module: nn.Module | Mapping[str, torch.Tensor], prefix: str | None = None) -> np.ndarray:
    """One float64 vector of the parameters, optionally only those whose name starts with `prefix`.

    A module gives its `named_parameters()`; a mapping (a snapshot, a `state_dict()`) gives its
    floating-point entries except BatchNorm running statistics. `prefix="0."` selects the first
    layer of an `nn.Sequential`.
    """
    chosen = _selected(_named_tensors(state_or_module), prefix)
    return torch.cat([t.detach().reshape(-1).to("cpu", torch.float64) for t in chosen.values()]).numpy()


def unflatten_params(vector: np.ndarray | torch.Tensor, model: nn.Module,
                     prefix: str | None = None) -> dict[str, torch.Tensor]:
    """The inverse of `flatten_params(model, prefix)`: a dict of tensors shaped like the parameters.

    A torch vector stays in the autograd graph (its dtype is kept, so a float64 vector gives a
    float64 dict); a numpy vector becomes tensors of each parameter's dtype and device.
    """
    shapes = _selected(dict(model.named_parameters()), prefix)
    is_tensor = isinstance(vector, torch.Tensor)
    flat = vector if is_tensor else torch.as_tensor(np.asarray(vector))
    sizes = [p.numel() for p in shapes.values()]
    if flat.numel() != sum(sizes):
        raise ValueError(f"vector has {flat.numel()} entries, the parameters {sum(sizes)}")
    pieces = torch.split(flat.reshape(-1), sizes)
    return {n: piece.view(p.shape) if is_tensor else piece.reshape(p.shape).to(p.device, p.dtype)
            for (n, p), piece in zip(shapes.items(), pieces)}


@dataclass(frozen=True)
class TrajectoryPCA:
    """The principal plane of a set of parameter snapshots.

    components: (k, P) orthonormal rows; mean: (P,); explained_variance_ratio: (k,);
    coords: (n_snapshots, k), the snapshots' coordinates about the mean.
    """

    components: np.ndarray
    mean: np.ndarray
    explained_variance_ratio: np.ndarray
    coords: np.ndarray


def fit_trajectory_pca(snapshots: np.ndarray, n_components: int = 2) -> TrajectoryPCA:
    """PCA of `snapshots` (n_snapshots, n_params), e.g. all runs' snapshots stacked together."""
    x = np.asarray(snapshots, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < n_components:
        raise ValueError(f"need a (n_snapshots >= {n_components}, n_params) array, got shape {x.shape}")
    from sklearn.decomposition import PCA  # here, not at the top: it costs about a second to import

    # The exact solver: the randomized one would make the plane depend on numpy's global RNG.
    pca = PCA(n_components=n_components, svd_solver="full").fit(x)
    return TrajectoryPCA(components=pca.components_, mean=pca.mean_,
                         explained_variance_ratio=pca.explained_variance_ratio_, coords=pca.transform(x))


def project(pca: TrajectoryPCA, vectors: np.ndarray) -> np.ndarray:
    """Coordinates of parameter vectors, (P,) or (n, P), in the plane: (k,) or (n, k)."""
    return (np.asarray(vectors, dtype=np.float64) - pca.mean) @ pca.components.T


def random_walk_share(steps: np.ndarray, n_params: int, generator: np.random.Generator, n_components: int = 2) -> float:
    """The baseline a trajectory's PCA share is held against: the share of variance in the first
    `n_components` principal components of an isotropic random walk in R^n_params with the same
    step lengths. Even a walk with no structure at all puts ~76% in two components (for many
    steps the k-th share tends to 6 / (pi^2 k^2); Antognini & Sohl-Dickstein 2018), so "two PCs
    hold most of the variance" says nothing unless it beats this."""
    steps = np.asarray(steps, dtype=np.float64)
    directions = generator.standard_normal((len(steps), n_params))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    walk = np.vstack([np.zeros(n_params), np.cumsum(steps[:, None] * directions, axis=0)])
    return float(np.sum(fit_trajectory_pca(walk, n_components).explained_variance_ratio))
