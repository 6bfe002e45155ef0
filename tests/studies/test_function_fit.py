"""function-fit: its claims on synthetic runs in all three verdicts, the count of seeds that fit, and a
tiny end-to-end run (equal parameter counts, the fitted flag, thinned curves, figures)."""

import json
from dataclasses import replace

import numpy as np
import pytest
from scipy import stats as sps

from dlstudies.analysis.claims import evaluate
from dlstudies.config import Runtime
from dlstudies.errors import UsageError
from dlstudies.models import count_params
from dlstudies.models.builders import mlp
from dlstudies.models.widths import MATCH_TOLERANCE, match_error
from dlstudies.studies import function_fit as ff
from dlstudies.studies.base import finite

TINY = replace(ff.PRESETS["smoke"], epochs=15, n_train=32, n_test=32, curve_points=8, plot_points=10)
SEEDS = (0, 1)
CFG = replace(ff.PRESETS["default"], targets=("f1",))
rng = np.random.default_rng(5)


@pytest.fixture(autouse=True)
def fixed_draws():
    """Every test draws the same synthetic runs whichever tests run before it (-k, -x, xdist)."""
    global rng
    rng = np.random.default_rng(5)


def runs(values, fitted=None) -> dict:
    return {"runs": [{"seed": i, "metrics": {"train_mse": float(v)}, "fitted": bool(fitted[i]) if fitted is not None
                      else False} for i, v in enumerate(values)]}


def bimodal(n=10, fit_share=0.5):
    """MSE of seeds that fit (~1e-5) or stall (~6e-3), as measured at default."""
    fits = rng.random(n) < fit_share
    return np.where(fits, 1e-5, 6e-3) * rng.lognormal(0, 0.2, n)


@pytest.mark.parametrize("ratio, verdict", [(0.05, "supported"), (20.0, "contradicted"), (None, "inconclusive")])
def test_deep_vs_shallow_mse_ratio_reaches_every_verdict(ratio, verdict):
    shallow = rng.lognormal(np.log(3e-4), 0.3, 10)
    deep = bimodal() if ratio is None else shallow * ratio * rng.lognormal(0, 0.2, 10)
    check = evaluate(ff.claims(CFG)[0], {"conditions": {"f1/shallow": runs(shallow), "f1/deep": runs(deep)}})
    assert check["verdict"] == verdict and check["scale"] == "ratio"


def test_the_ratio_is_a_geometric_mean_over_seeds():
    shallow = rng.lognormal(np.log(3e-4), 0.3, 10)
    deep = bimodal()
    check = evaluate(ff.claims(CFG)[0], {"conditions": {"f1/shallow": runs(shallow), "f1/deep": runs(deep)}})
    assert check["effect"] == pytest.approx(sps.gmean(deep / shallow))


def test_seeds_that_fit_are_counted_with_an_exact_interval():
    fitted = [True] * 7 + [False] * 3
    out = ff.fit_counts({"f1/deep": runs(np.ones(10), fitted)})["f1/deep"]
    assert (out["fitted"], out["n"]) == (7, 10) and out["fraction"] == 0.7
    # Clopper-Pearson from its beta-quantile definition
    assert out["ci95"] == pytest.approx([sps.beta.ppf(0.025, 7, 4), sps.beta.ppf(0.975, 8, 3)])
    none = ff.fit_counts({"c": runs(np.ones(10), [False] * 10)})["c"]
    assert none["ci95"][0] == 0 and none["ci95"][1] == pytest.approx(1 - 0.025 ** (1 / 10))


@pytest.fixture(scope="module")
def study(tmp_path_factory, run_tiny):
    return run_tiny("function-fit", TINY, SEEDS, tmp_path_factory.mktemp("function-fit"))


def test_every_target_and_model_is_a_condition_with_all_seeds(study):
    _, summary, _ = study
    assert list(summary["conditions"]) == [f"{t}/{m}" for t in ("f1", "f2") for m in ("shallow", "medium", "deep")]
    for c in summary["conditions"].values():
        assert [r["seed"] for r in c["runs"]] == list(SEEDS)
        assert {"train_mse", "test_mse"} <= set(c["summary"])


def test_models_have_equal_parameter_counts_and_the_required_depths(study):
    _, summary, _ = study
    runs_ = [r for c in summary["conditions"].values() for r in c["runs"]]
    assert match_error([r["metrics"]["n_params"] for r in runs_]) <= MATCH_TOLERANCE
    for r in runs_:
        assert count_params(mlp([1, *r["widths"], 1])) == r["metrics"]["n_params"]
    assert [summary["models"][m]["depth"] for m in ("shallow", "medium", "deep")] == [1, 3, 6]
    assert [s["ok"] for s in summary["sanity"]] == [True]


def test_a_run_fits_when_its_mse_is_under_the_level_times_the_variance(study):
    _, summary, _ = study
    for c in summary["conditions"].values():
        for r in c["runs"]:
            variance = summary["truth"][r["condition"].split("/")[0]]["variance"]
            assert r["fitted"] == (r["metrics"]["train_mse"] <= TINY.fit_level * variance)
            assert r["metrics"]["fit_fraction"] == float(r["fitted"])
    assert summary["fits"]["f1/deep"]["n"] == len(SEEDS)


def test_curves_are_thinned_and_predictions_stored(study):
    _, summary, _ = study
    run0 = summary["conditions"]["f1/deep"]["runs"][0]
    assert len(run0["curves"]["loss"]) == len(run0["curves"]["epoch"]) <= TINY.curve_points
    assert run0["curves"]["epoch"][0] == 1 and run0["curves"]["epoch"][-1] == TINY.epochs
    assert len(run0["prediction"]) == len(summary["truth"]["f1"]["x"]) <= TINY.plot_points
    assert isinstance(run0["still_improving"], bool)


def test_results_are_json_ready_with_verdicts_answer_and_figures(study):
    _, summary, files = study
    json.dumps(summary, allow_nan=False)
    assert [(c["a"], c["b"], c["kind"]) for c in summary["checks"]] == [
        ("f1/deep", "f1/shallow", "directional"), ("f2/deep", "f2/shallow", "directional")]
    assert summary["answer"].startswith("Inconclusive —")  # two seeds: n too small
    assert summary["table"]["columns"][-1].startswith("seeds that fit")
    assert "loss_curves.png" in files and "predictions.png" in files


def test_a_unit_is_deterministic(study):
    results, _, _ = study
    unit = ff.STUDY.work_units(TINY, SEEDS, Runtime())[0]
    assert finite(ff.run_unit(unit))["runs"] == results[0]["runs"]


@pytest.mark.parametrize("change", [{"depths": (1, 3)}, {"targets": ("f9",)}, {"activation": "swish"}])
def test_config_is_validated(change):
    with pytest.raises(UsageError):
        replace(TINY, **change)
