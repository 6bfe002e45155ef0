"""sensitivity end to end at a tiny scale: per-batch-size metrics, trends, and the batching self-check.

The analysis functions themselves are tested against oracles in tests/analysis/test_sensitivity.py
and tests/analysis/test_sharpness.py.
"""

import json
from dataclasses import replace

import pytest

from dlstudies.errors import UsageError
from dlstudies.studies import sensitivity as sv

TINY = replace(sv.PRESETS["smoke"], epochs=2, n_train=100, n_test=40)
SEEDS = (0, 1)


@pytest.fixture(scope="module")
def study(tmp_path_factory, run_tiny):
    return run_tiny("sensitivity", TINY, SEEDS, tmp_path_factory.mktemp("sensitivity"))[1:]


def test_every_batch_size_records_sensitivity_and_sharpness(study):
    summary, _ = study
    assert list(summary["conditions"]) == [f"batch-{b}" for b in TINY.batch_sizes]
    for c in summary["conditions"].values():
        assert [r["seed"] for r in c["runs"]] == list(SEEDS)
        for r in c["runs"]:
            m = r["metrics"]
            assert m["sensitivity"] > 0 and m["jacobian_norm"] > 0 and m["sharpness"] >= 0
            assert len(r["curves"]["loss"]) == TINY.epochs


def test_sensitivity_does_not_depend_on_the_evaluation_batching(study):
    summary, _ = study
    check = summary["checks"][-1]
    assert check["passed"], check["evidence"]
    assert all(d["max_abs_diff"] <= 1e-5 * (1 + d["scale"]) for d in summary["batch_independence"])


def test_results_are_json_ready_with_checks_trends_and_figures(study):
    summary, files = study
    json.dumps(summary, allow_nan=False)
    assert {"conditions", "comparisons", "checks", "answer", "tables", "trends"} <= set(summary)
    assert len(summary["checks"]) == 5
    assert all(len(t["per_seed"]) == len(SEEDS) for t in summary["trends"].values())
    assert {"by_batch_size.png", "training_loss.png"} <= set(files)


def test_config_is_validated():
    with pytest.raises(UsageError):
        replace(TINY, batch_sizes=(32, 32))
    with pytest.raises(UsageError):
        replace(TINY, batch_sizes=(32,))
    with pytest.raises(UsageError):
        replace(TINY, epsilon=0.0)
