"""interpolation end to end at a tiny scale: endpoints, the α grid, BatchNorm and independent starts.

The analysis functions themselves are tested against oracles in tests/analysis/test_interpolation.py.
"""

import json
from dataclasses import replace

import numpy as np
import pytest

from dlstudies.errors import UsageError
from dlstudies.studies import interpolation as ip

TINY = replace(ip.PRESETS["smoke"], epochs=2, n_train=100, n_test=60)
SEEDS = (0, 1)


@pytest.fixture(scope="module")
def study(tmp_path_factory, run_tiny):
    return run_tiny("interpolation", TINY, SEEDS, tmp_path_factory.mktemp("interpolation"))[1:]


def test_alpha_grid_spans_minus_one_to_two_with_both_endpoints_exactly():
    a = ip.alphas(replace(TINY, n_alphas=7))
    assert a[0] == -1.0 and a[-1] == 2.0 and 0.0 in a and 1.0 in a


def test_endpoints_reproduce_the_trained_models_losses(study):
    summary, _ = study
    endpoint = summary["checks"][0]
    assert endpoint["passed"], endpoint["evidence"]
    small, large = summary["conditions"].values()
    for curve, *runs in zip(summary["curves"], small["runs"], large["runs"]):
        at = {alpha: int(np.flatnonzero(np.asarray(curve["alphas"]) == alpha)[0]) for alpha in (0.0, 1.0)}
        for alpha, run in zip((0.0, 1.0), runs):
            for split in ("train", "test"):
                own = run["metrics"][f"{split}_loss"]
                assert curve[f"{split}_loss"][at[alpha]] == pytest.approx(own, rel=1e-5)
                assert run["metrics"][f"endpoint_{split}_loss"] == curve[f"{split}_loss"][at[alpha]]


def test_results_are_json_ready_with_checks_and_figures(study):
    summary, files = study
    json.dumps(summary, allow_nan=False)
    assert {"conditions", "comparisons", "checks", "answer", "tables", "curves", "barrier"} <= set(summary)
    assert list(summary["conditions"]) == ["batch-25", "batch-100"]
    assert [c["seed"] for c in summary["curves"]] == list(SEEDS)
    assert {"flank_rise_10", "flank_rise_25", "flank_rise_50"} <= set(summary["conditions"]["batch-25"]["summary"])
    assert {"interpolation.png", "training_loss.png"} <= set(files)


@pytest.mark.parametrize("change", [{"model": "mlp", "channels": (), "hidden": (16,), "norm": "batchnorm"},
                                    {"same_init": False}])
def test_batchnorm_statistics_and_independent_starts_keep_the_endpoints(change, run_tiny):
    summary = run_tiny("interpolation", replace(TINY, **change), SEEDS)[1]
    assert summary["checks"][0]["passed"], summary["checks"][0]["evidence"]


def test_config_is_validated():
    with pytest.raises(UsageError):
        replace(TINY, small_batch=100, large_batch=25)
    with pytest.raises(UsageError):
        replace(TINY, alpha_min=0.5)
    with pytest.raises(UsageError):
        replace(TINY, optimizer="lbfgs")
