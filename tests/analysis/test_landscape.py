"""Loss planes (Li et al. 2018): the centre is the model, directions are filter-normalized and seeded."""

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dlstudies.analysis import (evaluate, filter_normalized_direction, flatten_params, loss_plane, pca_directions,
                                unflatten_params)



def conv_net() -> nn.Sequential:
    torch.manual_seed(0)  # fixture construction only
    net = nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 4 * 4, 5))
    net(torch.randn(16, 1, 6, 6))  # one train-mode pass so the running statistics are not trivial
    return net.double()


def conv_data(n: int = 30):
    gen = torch.Generator().manual_seed(1)
    return torch.randn(n, 1, 6, 6, generator=gen, dtype=torch.float64), torch.randint(0, 5, (n,), generator=gen)


def accuracy(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (out.argmax(-1) == y).double().mean()


def direct_loss(model: nn.Module, x, y, shift: dict | None = None) -> float:
    """Oracle: a deep copy with the shift added in place, evaluated the ordinary way."""
    probe = copy.deepcopy(model).eval()
    with torch.no_grad():
        for name, p in probe.named_parameters():
            p += (shift or {}).get(name, 0)
        return float(F.cross_entropy(probe(x), y))


def test_direction_has_the_models_filter_norms_and_zero_biases():
    model = conv_net()
    d = filter_normalized_direction(model, torch.Generator().manual_seed(0))
    assert d.keys() == dict(model.named_parameters()).keys()
    for name, p in model.named_parameters():
        assert d[name].shape == p.shape and d[name].dtype == p.dtype
        if p.dim() == 1:  # biases and BatchNorm weight/bias
            assert torch.count_nonzero(d[name]) == 0
        else:
            torch.testing.assert_close(d[name].flatten(1).norm(dim=1), p.detach().flatten(1).norm(dim=1))


def test_direction_is_reproducible_from_the_seed():
    model = conv_net()
    a, b, c = (filter_normalized_direction(model, torch.Generator().manual_seed(s)) for s in (7, 7, 8))
    assert all(torch.equal(a[n], b[n]) for n in a)
    assert not torch.equal(a["0.weight"], c["0.weight"])


def test_centre_of_the_plane_is_the_trained_model():
    model, (x, y) = conv_net(), conv_data()
    model.train()
    state_before = {k: v.clone() for k, v in model.state_dict().items()}
    gen = torch.Generator().manual_seed(0)
    d1, d2 = filter_normalized_direction(model, gen), filter_normalized_direction(model, gen)
    alphas, betas = [-1.0, 0.0, 0.5, 1.0], [-0.5, 0.0, 0.5]
    plane = loss_plane(model, F.cross_entropy, x, y, d1, d2, alphas, betas, metric_fn=accuracy)
    assert plane.loss.shape == (3, 4) and plane.accuracy.shape == (3, 4)
    assert plane.loss[1, 1] == pytest.approx(direct_loss(model, x, y), rel=1e-12)
    assert plane.loss[1, 1] == evaluate(model, {}, F.cross_entropy, x, y)[0]  # bit for bit
    shift = {n: 0.5 * d1[n] + 0.5 * d2[n] for n in d1}
    assert plane.loss[2, 2] == pytest.approx(direct_loss(model, x, y, shift), rel=1e-12)
    assert model.training and all(torch.equal(v, state_before[k]) for k, v in model.state_dict().items())


def test_plane_does_not_depend_on_batch_size():
    model, (x, y) = conv_net(), conv_data()
    gen = torch.Generator().manual_seed(2)
    d1, d2 = filter_normalized_direction(model, gen), filter_normalized_direction(model, gen)
    full = loss_plane(model, F.cross_entropy, x, y, d1, d2, [0.0, 0.3], [0.2], metric_fn=accuracy)
    batched = loss_plane(model, F.cross_entropy, x, y, d1, d2, [0.0, 0.3], [0.2], batch_size=7, metric_fn=accuracy)
    np.testing.assert_allclose(batched.loss, full.loss, rtol=1e-12)
    np.testing.assert_allclose(batched.accuracy, full.accuracy, rtol=1e-12)
    # Batch by batch over the grid, each point's batches summed as `evaluate` sums them: bit for bit.
    state = {n: t.detach() + 0.3 * d1[n] + 0.2 * d2[n] for n, t in model.named_parameters()}
    assert (batched.loss[0, 1], batched.accuracy[0, 1]) == evaluate(model, state, F.cross_entropy, x, y, 7, accuracy)


def test_unknown_direction_names_are_rejected():
    model, (x, y) = conv_net(), conv_data()
    with pytest.raises(KeyError, match="not parameters"):
        loss_plane(model, F.cross_entropy, x, y, {"nope": torch.zeros(1)}, {}, [0.0], [0.0])


def test_pca_directions_put_the_final_point_at_the_origin():
    model, (x, y) = conv_net(), conv_data()
    final = flatten_params(model)
    rng = np.random.default_rng(0)
    steps = rng.normal(size=(6, 2)) @ rng.normal(size=(2, final.size))  # a path in a 2-D plane
    trajectory = np.vstack([final + steps, final])
    d1, d2, coords = pca_directions(trajectory, model)
    assert coords.shape == (7, 2)
    np.testing.assert_allclose(coords[-1], 0.0, atol=1e-12)
    v1, v2 = flatten_params(d1), flatten_params(d2)
    np.testing.assert_allclose([v1 @ v1, v2 @ v2, v1 @ v2], [1.0, 1.0, 0.0], atol=1e-10)
    # The path lies in the plane, so the coordinates reconstruct it from the final point.
    np.testing.assert_allclose(final + coords[:, :1] * v1 + coords[:, 1:] * v2, trajectory, atol=1e-9)
    assert d1.keys() == unflatten_params(final, model).keys()
    plane = loss_plane(model, F.cross_entropy, x, y, d1, d2, [0.0], [0.0])
    assert plane.loss[0, 0] == pytest.approx(direct_loss(model, x, y), rel=1e-12)
