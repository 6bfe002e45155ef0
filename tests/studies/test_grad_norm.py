"""grad-norm end to end at a tiny scale: per-iteration traces, checks, figures, determinism."""

import json

import numpy as np
import pytest

from dlstudies.config import Runtime
from dlstudies.errors import UsageError
from dlstudies.studies import STUDIES, Unit, load_studies
from dlstudies.studies.grad_norm import Config

TINY = ["epochs=2", "n_train=64", "batch_size=16"]  # 4 iterations per epoch


@pytest.fixture(scope="module")
def results(tmp_path_factory, run_smoke):
    return run_smoke("grad-norm", TINY, tmp_path_factory.mktemp("gn"))


def test_records_loss_and_grad_norm_every_iteration(results):
    res, _ = results
    runs = res["conditions"]["adam"]["runs"]
    assert [r["seed"] for r in runs] == [0, 1]
    for run in runs:
        loss, norm = np.array(run["curves"]["loss"]), np.array(run["curves"]["grad_norm"])
        assert loss.shape == norm.shape == (2 * 4,)
        assert np.all(np.isfinite(loss)) and np.all(norm > 0)
        # The epoch means the metrics use are the means of that epoch's iterations.
        assert run["metrics"]["final_minibatch_grad_norm"] == pytest.approx(norm[4:].mean())
        assert run["metrics"]["final_loss"] == pytest.approx(loss[4:].mean())
        full = run["curves"]["full_grad_norm"]
        assert len(full) == 2 + 1 and run["metrics"]["initial_full_grad_norm"] == full[0]
    assert res["steps_per_epoch"] == 4


def test_results_have_the_shared_parts_and_figures(results):
    res, folder = results
    assert set(res) >= {"conditions", "checks", "answer", "table", "verdicts", "setup"}
    assert res["conditions"]["adam"]["summary"]["final_full_grad_norm"]["n"] == 2
    assert all(c["verdict"] == "inconclusive" and "n too small" in c["evidence"] for c in res["checks"])
    assert res["answer"].startswith("Inconclusive —") and "full-batch" in res["answer"]
    assert json.loads((folder / "results.json").read_text())["study"] == "grad-norm"
    for name in res["figures"]:
        assert (folder / name).stat().st_size > 1000


def test_two_runs_of_a_unit_are_identical():
    load_studies()
    study = STUDIES.get("grad-norm")
    cfg = Config(epochs=2, n_train=48, batch_size=16)
    unit = Unit("grad-norm", cfg, (3,), Runtime())
    assert study.run_unit(unit) == study.run_unit(unit)


def test_config_is_validated():
    with pytest.raises(UsageError):
        Config(epochs=1)
    with pytest.raises(UsageError):
        Config(optimizer="nope")


def test_full_batch_gradient_norm_matches_finite_differences():
    import torch
    from torch import nn

    from dlstudies.analysis.hessian import gradient_norms
    from dlstudies.analysis.pca import flatten_params

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    x, y = torch.randn(20, 3, dtype=torch.float64), torch.randint(0, 2, (20,))
    theta = flatten_params(model)
    loss_fn = nn.functional.cross_entropy

    def loss_at(v):
        from dlstudies.analysis.pca import unflatten_params
        return float(loss_fn(torch.func.functional_call(model, unflatten_params(v, model), (x,)), y))

    h = 1e-6
    grad = np.array([(loss_at(theta + h * e) - loss_at(theta - h * e)) / (2 * h) for e in np.eye(len(theta))])
    assert gradient_norms(model, loss_fn, x, y, theta[None])[0] == pytest.approx(np.linalg.norm(grad), rel=1e-6)


def _endpoints(ratios):
    runs = lambda vals: {"runs": [{"seed": i, "metrics": {"full_grad_norm": v}} for i, v in enumerate(vals)]}  # noqa: E731
    start = np.linspace(0.2, 0.4, len(ratios))
    return {"endpoints": {"end": runs(list(start * ratios)), "start": runs(list(start))}}


@pytest.mark.parametrize("ratio, verdicts", [(0.3, ("supported", "contradicted")), (3.0, ("contradicted", "supported")),
                                             (1.0, ("inconclusive", "inconclusive"))])
def test_claims_reach_every_verdict(ratio, verdicts):
    from dlstudies.analysis.claims import evaluate
    from dlstudies.studies.grad_norm import claims

    rng = np.random.default_rng(1)
    spread = 0.02 if ratio != 1.0 else 0.3
    res = _endpoints(ratio * np.exp(rng.normal(0, spread, 10)))
    assert tuple(evaluate(c, res)["verdict"] for c in claims(Config())) == verdicts
