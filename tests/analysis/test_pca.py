"""Parameter vectors and the trajectory PCA: shapes, selection, and a known 2-D plane."""

import numpy as np
import pytest
import torch
from torch import nn

from dlstudies.analysis import fit_trajectory_pca, flatten_params, project, unflatten_params


def bn_mlp() -> nn.Sequential:
    torch.manual_seed(0)  # fixture construction only
    return nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Tanh(), nn.Linear(3, 2))


def test_flatten_module_state_and_prefix():
    model = bn_mlp()
    vector = flatten_params(model)
    assert vector.dtype == np.float64 and vector.shape == (sum(p.numel() for p in model.parameters()),)
    # A state_dict gives the same vector: BatchNorm running statistics are not weights.
    np.testing.assert_array_equal(flatten_params(model.state_dict()), vector)
    first = flatten_params(model, prefix="0.")
    np.testing.assert_array_equal(first, torch.cat([model[0].weight.reshape(-1), model[0].bias]).detach().numpy())
    with pytest.raises(ValueError, match="no parameter name"):
        flatten_params(model, prefix="9.")


def test_unflatten_inverts_flatten_and_keeps_the_graph():
    model = bn_mlp()
    back = unflatten_params(flatten_params(model), model)
    for name, p in model.named_parameters():
        assert back[name].shape == p.shape and back[name].dtype == p.dtype
        torch.testing.assert_close(back[name], p.detach())
    vec = torch.zeros(len(flatten_params(model)), dtype=torch.float64, requires_grad=True)
    assert unflatten_params(vec, model)["3.weight"].requires_grad
    with pytest.raises(ValueError, match="entries"):
        unflatten_params(np.zeros(3), model)


def plane_snapshots(n: int = 40, p: int = 50, seed: int = 0):
    rng = np.random.default_rng(seed)
    basis, _ = np.linalg.qr(rng.normal(size=(p, 2)))
    coeffs = rng.normal(size=(n, 2)) * np.array([3.0, 1.0])
    return rng.normal(size=p) + coeffs @ basis.T, basis


def test_snapshots_in_a_plane_are_explained_and_reconstructed():
    snapshots, basis = plane_snapshots()
    pca = fit_trajectory_pca(snapshots)
    assert pca.components.shape == (2, 50) and pca.mean.shape == (50,) and pca.coords.shape == (40, 2)
    assert pca.explained_variance_ratio.sum() == pytest.approx(1.0, abs=1e-10)
    np.testing.assert_allclose(pca.components @ pca.components.T, np.eye(2), atol=1e-12)
    # The principal plane is the plane the snapshots were drawn in.
    np.testing.assert_allclose(np.abs(np.linalg.svd(pca.components @ basis)[1]), 1.0, atol=1e-10)
    np.testing.assert_allclose(pca.coords @ pca.components + pca.mean, snapshots, atol=1e-10)
    np.testing.assert_allclose(project(pca, snapshots), pca.coords, atol=1e-12)
    assert project(pca, snapshots[0]).shape == (2,)


def test_pca_is_deterministic_and_checks_its_input():
    snapshots, _ = plane_snapshots(seed=3)
    a, b = fit_trajectory_pca(snapshots), fit_trajectory_pca(snapshots)
    np.testing.assert_array_equal(a.components, b.components)
    assert fit_trajectory_pca(snapshots, n_components=3).components.shape == (3, 50)
    with pytest.raises(ValueError):
        fit_trajectory_pca(snapshots[:1])
