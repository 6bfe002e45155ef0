"""Numerics for analysing trained models at arbitrary parameters (via `torch.func`).

Every function takes a plain `nn.Module` and leaves it as it was: parameters are swapped in with
`torch.func.functional_call`, randomness comes from an explicit `torch.Generator`, results are
frozen dataclasses. Statistics over seeds live in `dlstudies.analysis.stats`.

Imports here are eager on purpose: `sensitivity` and `sharpness` name both a submodule and a
function, and binding the functions here is what keeps `from dlstudies.analysis import sharpness`
the function however the submodules were imported before.
"""

from dlstudies.analysis.hessian import (HessianSpectrum, default_tolerance, hessian_eigenvalues, loss_hessian,
                                        minimal_ratio)
from dlstudies.analysis.interpolation import InterpolationCurve, interpolate, interpolation_curve
from dlstudies.analysis.landscape import (LossPlane, evaluate, filter_normalized_direction, loss_plane,
                                          pca_directions)
from dlstudies.analysis.pca import TrajectoryPCA, fit_trajectory_pca, flatten_params, project, unflatten_params
from dlstudies.analysis.sensitivity import Sensitivity, sensitivity, softmax_outputs
from dlstudies.analysis.sharpness import Sharpness, sharpness

__all__ = [
    "HessianSpectrum", "default_tolerance", "hessian_eigenvalues", "loss_hessian", "minimal_ratio",
    "InterpolationCurve", "interpolate", "interpolation_curve",
    "LossPlane", "evaluate", "filter_normalized_direction", "loss_plane", "pca_directions",
    "TrajectoryPCA", "fit_trajectory_pca", "flatten_params", "project", "unflatten_params",
    "Sensitivity", "sensitivity", "softmax_outputs",
    "Sharpness", "sharpness",
]
