"""minimal-ratio end to end at a tiny scale, and its two parts: the critical-point search, Spearman."""

import json
from dataclasses import replace

import pytest
import torch
from torch import nn
from torch.func import grad

from dlstudies.errors import UsageError
from dlstudies.models.builders import build_members, mlp
from dlstudies.studies import minimal_ratio as mr

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
TINY = replace(mr.PRESETS["smoke"], restarts=2, n_train=16, epochs=20, gn_steps=10)
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
        assert h["n_eigenvalues"] == m["n_params"] == 354  # 1-5-6-14-7-8-4-1
        assert h["n_positive"] + h["n_negative"] + h["n_zero"] == h["n_eigenvalues"]
        assert 0 <= m["minimal_ratio"] <= 1 and m["minimal_ratio"] == h["n_positive"] / h["n_eigenvalues"]
        assert m["reached"] == float(m["grad_norm"] < TINY.gn_tolerance)
        assert m["gn_iterations"] <= TINY.gn_steps


def test_results_are_json_ready_with_correlation_checks_and_figure(study):
    summary, files = study
    json.dumps(summary, allow_nan=False)
    assert {"conditions", "comparisons", "checks", "answer", "tables", "correlation"} <= set(summary)
    assert summary["checks"][0]["passed"]  # one eigenvalue per parameter
    assert summary["correlation"]["all"]["n"] == len(SEEDS) * TINY.restarts
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
