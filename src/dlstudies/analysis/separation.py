"""How fast two runs that start 1e-7 apart separate: perturbed initial weights, the distance
between the runs' parameters per epoch, and its growth factor per epoch.

A run of pattern-mode SGD is a long chain of data-dependent steps; if a tiny change of the initial
weights grows by a factor r > 1 per epoch, after k epochs it is r^k larger, and once it reaches the
size of the weights themselves the two runs are as unrelated as two seeds. That bounds how much one
seed's numbers say: what separates within the budget is noise of the trajectory, not the rule.
"""

from __future__ import annotations

import copy
from typing import Sequence

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parameters_to_vector, vector_to_parameters

# The fitted growth uses the epochs before the runs are this far apart (relative to the initial
# weights' norm): beyond it the distance saturates at the weights' own scale and stops growing.
SATURATION = 0.1
# Offset of the direction's generator from the initialisation's: the direction is seeded by the
# seed, but is not the same random stream that drew the weights.
DIRECTION_STREAM = 7_000_003


def perturbed(members: Sequence[nn.Module], seeds: Sequence[int], scale: float) -> list[nn.Module]:
    """Copies of the members, each moved by `scale`·‖θ‖ in a random direction drawn from its seed
    (the same direction for every condition of a seed, so conditions stay paired)."""
    out = []
    for member, seed in zip(members, seeds):
        twin = copy.deepcopy(member)
        theta = parameters_to_vector(twin.parameters()).detach()
        g = torch.Generator().manual_seed(DIRECTION_STREAM + int(seed))
        u = torch.randn(theta.shape, generator=g, dtype=torch.float64).to(theta.dtype)
        vector_to_parameters(theta + scale * theta.norm() * u / u.norm(), twin.parameters())
        out.append(twin)
    return out


def relative_distances(snaps_a: np.ndarray, snaps_b: np.ndarray) -> np.ndarray:
    """(M, epochs + 1): ‖θ_a(e) − θ_b(e)‖ / ‖θ_a(0)‖ from two (M, epochs + 1, P) snapshot stacks."""
    a, b = np.asarray(snaps_a, dtype=np.float64), np.asarray(snaps_b, dtype=np.float64)
    return np.linalg.norm(a - b, axis=2) / np.linalg.norm(a[:, :1], axis=2)


def growth_factor(distance: Sequence[float], saturation: float = SATURATION) -> float | None:
    """Growth factor per epoch of a distance curve: exp of the least-squares slope of log distance
    against epoch, over the epochs before it first exceeds `saturation` (at least the first two).
    None where the curve has a non-positive or non-finite value there (a diverged run)."""
    d = np.asarray(distance, dtype=np.float64)
    over = np.nonzero(d > saturation)[0]
    end = max(2, int(over[0]) if len(over) else len(d))
    d = d[:end]
    if len(d) < 2 or not np.all(np.isfinite(d)) or not np.all(d > 0):
        return None
    slope = np.polyfit(np.arange(len(d), dtype=np.float64), np.log(d), 1)[0]
    return float(np.exp(slope))
