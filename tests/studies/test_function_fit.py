"""function-fit end to end at a tiny scale: equal parameter counts, recorded metrics, figures."""

import json
from dataclasses import replace

import pytest

from dlstudies.config import Runtime
from dlstudies.errors import UsageError
from dlstudies.models import count_params
from dlstudies.models.builders import mlp
from dlstudies.models.widths import MATCH_TOLERANCE, match_error
from dlstudies.studies import function_fit as ff
from dlstudies.studies.base import finite

TINY = replace(ff.PRESETS["smoke"], epochs=15, n_train=32, n_test=32, curve_points=8, plot_points=10)
SEEDS = (0, 1)


@pytest.fixture(scope="module")
def study(tmp_path_factory, run_tiny):
    return run_tiny("function-fit", TINY, SEEDS, tmp_path_factory.mktemp("function-fit"))


def test_every_target_and_model_is_a_condition_with_all_seeds(study):
    _, summary, _ = study
    assert list(summary["conditions"]) == [f"{t}/{m}" for t in ("f1", "f2") for m in ("shallow", "medium", "deep")]
    for c in summary["conditions"].values():
        assert [r["seed"] for r in c["runs"]] == list(SEEDS)
        assert {"n_params", "train_mse", "test_mse"} <= set(c["summary"])


def test_models_have_equal_parameter_counts_and_the_required_depths(study):
    _, summary, _ = study
    runs = [r for c in summary["conditions"].values() for r in c["runs"]]
    assert match_error([r["metrics"]["n_params"] for r in runs]) <= MATCH_TOLERANCE
    for r in runs:
        assert count_params(mlp([1, *r["widths"], 1])) == r["metrics"]["n_params"]
    assert [summary["models"][m]["depth"] for m in ("shallow", "medium", "deep")] == [1, 3, 6]


def test_curves_are_thinned_and_predictions_stored(study):
    _, summary, _ = study
    run0 = summary["conditions"]["f1/deep"]["runs"][0]
    assert len(run0["curves"]["loss"]) == len(run0["curves"]["epoch"]) <= TINY.curve_points
    assert run0["curves"]["epoch"][0] == 1 and run0["curves"]["epoch"][-1] == TINY.epochs
    assert len(run0["prediction"]) == len(summary["truth"]["f1"]["x"]) <= TINY.plot_points


def test_results_are_json_ready_with_checks_answer_and_figures(study, tmp_path):
    _, summary, files = study
    json.dumps(summary, allow_nan=False)
    assert {"conditions", "comparisons", "checks", "answer", "tables"} <= set(summary)
    deep_vs_shallow = [c for c in summary["comparisons"] if c["a"] == "f1/deep" and c["b"] == "f1/shallow"]
    assert deep_vs_shallow and deep_vs_shallow[0]["n"] == len(SEEDS)
    assert summary["checks"][0]["passed"]  # equal counts
    assert "loss_curves.png" in files and "predictions.png" in files


def test_a_unit_is_deterministic(study):
    results, _, _ = study
    again = finite(ff.run_unit(ff.units(TINY, SEEDS, Runtime())[0]))
    assert again["runs"] == results[0]["runs"]


def test_config_is_validated():
    with pytest.raises(UsageError):
        replace(TINY, depths=(1, 3))
    with pytest.raises(UsageError):
        replace(TINY, targets=("f9",))
