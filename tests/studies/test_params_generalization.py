"""params-generalization end to end at a tiny scale; parameter counts and the per-seed trend statistic."""

import json
from dataclasses import replace

import pytest

from dlstudies.errors import UsageError
from dlstudies.studies import params_generalization as pg

TINY = replace(pg.PRESETS["smoke"], epochs=2, n_train=100, n_test=60)
SEEDS = (0, 1)


@pytest.fixture(scope="module")
def study(tmp_path_factory, run_tiny):
    return run_tiny("params-generalization", TINY, SEEDS, tmp_path_factory.mktemp("params-generalization"))[1:]


def test_every_width_records_its_exact_parameter_count(study):
    summary, _ = study
    assert list(summary["conditions"]) == ["7-11", "50-12", "190-26"]  # by parameter count
    for name, c in summary["conditions"].items():
        h1, h2 = map(int, name.split("-"))
        expected = 64 * h1 + h1 + h1 * h2 + h2 + h2 * 10 + 10  # digits: 8x8 inputs, 10 classes
        assert [r["metrics"]["n_params"] for r in c["runs"]] == [expected] * len(SEEDS)
        for r in c["runs"]:
            m = r["metrics"]
            assert m["gap_loss"] == pytest.approx(m["test_loss"] - m["train_loss"])
            assert m["gap_acc"] == pytest.approx(m["train_acc"] - m["test_acc"])


def test_results_are_json_ready_with_checks_and_figures(study):
    summary, files = study
    json.dumps(summary, allow_nan=False)
    assert {"conditions", "comparisons", "checks", "answer", "tables", "trends"} <= set(summary)
    assert len(summary["checks"]) == 3 and summary["tables"][0]["columns"][1] == "n_params"
    assert {"by_params.png", "training_loss.png"} <= set(files)


def test_config_is_validated():
    with pytest.raises(UsageError):
        replace(TINY, h1=(7, 50), h2=(11, 12, 26))
    with pytest.raises(UsageError):
        replace(TINY, h1=(7, 7), h2=(11, 11))
    with pytest.raises(UsageError):
        replace(TINY, activation="swish")
