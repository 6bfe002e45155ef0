"""minimal-ratio end to end at a tiny scale, and its two parts: the critical-point search, Spearman."""

import json
from dataclasses import replace

import pytest
import torch
from torch import nn
from torch.func import grad

from dlstudies.config import Runtime
from dlstudies.engine import fit_seconds
from dlstudies.errors import UsageError
from dlstudies.models.builders import build_members, mlp
from dlstudies.studies import STUDIES
from dlstudies.studies import minimal_ratio as mr

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
TINY = replace(mr.PRESETS["smoke"], hidden=(4, 4), restarts=2, n_train=80, epochs=20, gn_steps=10)  # P = 33
SEEDS = (0, 1)


@pytest.fixture(scope="module")
def study(tmp_path_factory, run_tiny):
    return run_tiny("minimal-ratio", TINY, SEEDS, tmp_path_factory.mktemp("minimal-ratio"))[1:]


def test_every_run_has_a_full_spectrum_and_a_ratio_in_unit_interval(study):
    summary, _ = study
    runs = summary["conditions"][mr.CONDITION]["runs"]
    assert len(runs) == len(SEEDS) * TINY.restarts
    assert sorted((r["seed"], r["restart"]) for r in runs) == [(s, r) for s in SEEDS for r in range(TINY.restarts)]
    for r in runs:
        m, h = r["metrics"], r["hessian"]
        assert h["n_eigenvalues"] == m["n_params"] == mr.n_params(TINY.hidden) == 33
        assert h["n_positive"] + h["n_negative"] + h["n_zero"] == h["n_eigenvalues"]
        assert 0 <= m["minimal_ratio"] <= 1 and m["minimal_ratio"] == h["n_positive"] / h["n_eigenvalues"]
        assert m["reached"] == float(m["grad_norm"] < TINY.gn_tolerance)
        assert m["gn_iterations"] <= TINY.gn_steps


def test_results_are_json_ready_with_correlation_checks_and_figure(study):
    summary, files = study
    json.dumps(summary, allow_nan=False)
    assert {"conditions", "checks", "answer", "table", "tables", "sanity", "points"} <= set(summary)
    assert summary["sanity"][0]["ok"]  # one eigenvalue per parameter
    assert summary["checks"][0]["verdict"] == "inconclusive"  # four runs decide nothing
    assert summary["answer"].startswith("Inconclusive —")
    for r in summary["conditions"][mr.CONDITION]["runs"]:
        assert set(r["tolerance_sweep"]) == {"0.1", "1", "10"}
        assert 0 < r["metrics"]["jacobian_rank_fraction"] <= 1
    assert "minimal_ratio_vs_loss.png" in files


def test_critical_point_search_lowers_the_gradient_norm():
    model = build_members(lambda: mlp([1, 6, 1], act=nn.Tanh), [3], torch.float64)[0]
    x = torch.linspace(0.05, 1, 20, dtype=torch.float64)[:, None]
    y = torch.sin(5 * x)
    norm = lambda m: float(grad(mr._loss_of(m, x, y))(torch.cat([p.detach().reshape(-1) for p in m.parameters()])).norm())
    point, used = mr.seek_critical_point(model, x, y, max_iter=200, tolerance=1e-8)
    assert 0 < used <= 200
    assert norm(point) < 1e-3 * norm(model)
    assert all(p.dtype == torch.float64 for p in point.parameters())


def test_config_is_validated():
    with pytest.raises(UsageError):
        replace(TINY, gn_tolerance=0.0)
    with pytest.raises(UsageError):
        replace(TINY, restarts=0)


def test_n_train_must_not_cap_the_ratio():
    with pytest.raises(UsageError, match="2 x the parameter count"):
        replace(TINY, n_train=40)
    assert mr.n_params((5, 6, 14, 7, 8, 4)) == 354  # report B's network


def test_a_dead_network_is_collapsed_and_a_live_one_is_not():
    x = torch.linspace(0.01, 1, 50, dtype=torch.float64)[:, None]
    live = build_members(lambda: mlp([1, 8, 8, 1], act=nn.ReLU), [0], torch.float64)[0]
    with torch.no_grad():
        live[0].weight.fill_(1.0)
        live[0].bias.copy_(-torch.linspace(0, 0.9, 8, dtype=torch.float64))  # unit k is on for x > k/10
    assert not mr.collapsed(live, x)
    assert mr.dead_units(live, x)[0] < 16
    dead = build_members(lambda: mlp([1, 8, 8, 1], act=nn.ReLU), [0], torch.float64)[0]
    with torch.no_grad():
        dead[2].bias.fill_(-100.0)  # the second hidden layer is off for every input
    n_dead, layer_dead = mr.dead_units(dead, x)
    assert layer_dead and n_dead >= 8 and mr.collapsed(dead, x)


def test_jacobian_rank_matches_finite_differences():
    import numpy as np
    from dlstudies.analysis.pca import flatten_params, unflatten_params

    model = build_members(lambda: mlp([1, 3, 2, 1], act=nn.Tanh), [1], torch.float64)[0]
    x = torch.linspace(0, 1, 12, dtype=torch.float64)[:, None]
    theta = flatten_params(model)
    f = lambda v: torch.func.functional_call(model, unflatten_params(v, model), (x,)).reshape(-1).detach().numpy()  # noqa: E731
    h = 1e-6
    jac = np.stack([(f(theta + h * e) - f(theta - h * e)) / (2 * h) for e in np.eye(len(theta))], axis=1)
    exact = mr.output_jacobian(model, x).numpy()
    np.testing.assert_allclose(exact, jac, atol=1e-7)
    assert mr.jacobian_rank(model, x) == np.linalg.matrix_rank(exact)
    with torch.no_grad():
        model[0].bias.fill_(-100.0)  # tanh saturated: the first layer's parameters stop mattering
    assert mr.jacobian_rank(model, x) < np.linalg.matrix_rank(exact)


def test_tolerance_is_tied_to_the_gradient_norm():
    import numpy as np
    eig = np.array([-1e-3, 1e-5, 2e-4, 1.0])
    assert mr.tied_tolerance(eig, 1e-4) == 1e-4
    assert mr.tied_tolerance(eig, 0.0) > 0  # the eigensolver's floor


def _points(loss, ratio):
    return {"points": {mr.POINTS: {"runs": [{"seed": i, "metrics": {"loss": a, "minimal_ratio": b}}
                                             for i, (a, b) in enumerate(zip(loss, ratio))]}}}


@pytest.mark.parametrize("slope, verdict", [(-1.0, "supported"), (1.0, "contradicted"), (0.0, "inconclusive")])
def test_claim_reaches_every_verdict(slope, verdict):
    import numpy as np
    from dlstudies.analysis.claims import evaluate

    rng = np.random.default_rng(3)
    loss = np.linspace(1e-4, 1e-2, 14)
    ratio = 0.5 + slope * 20 * loss + rng.normal(0, 0.02 if slope else 0.3, 14)
    assert evaluate(mr.claims(TINY)[0], _points(list(loss), list(ratio)))["verdict"] == verdict


def test_the_lbfgs_phase_counts_as_training_for_the_plan():
    """L-BFGS runs to gn_steps: `dlstudies plan` scales it with that budget only if it is noted as a
    fit (taken for measures, its growth with the budget had been read as noise or multiplied noise)."""
    unit = STUDIES.get("minimal-ratio").work_units(TINY, SEEDS[:1], Runtime())[0]
    with fit_seconds() as seconds:
        result = mr.run_unit(unit)
    assert len(seconds) == 1 + len(result["runs"]) == 1 + TINY.restarts  # the Adam stack, then one L-BFGS per run
    assert all(s > 0 for s in seconds)
