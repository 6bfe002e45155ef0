"""random-labels end to end at a tiny scale; the labels, the thresholds, memorisation and determinism."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from dlstudies.config import Runtime
from dlstudies.errors import UsageError
from dlstudies.studies import random_labels as rl

TINY = replace(rl.PRESETS["smoke"], epochs=3, n_train=60, n_test=60)
SEEDS = (0, 1)


@pytest.fixture(scope="module")
def study(tmp_path_factory, run_tiny):
    return run_tiny("random-labels", TINY, SEEDS, tmp_path_factory.mktemp("random-labels"))[1:]


def test_both_labellings_record_curves_and_thresholds_per_seed(study):
    summary, _ = study
    assert list(summary["conditions"]) == [rl.TRUE, rl.RANDOM]
    for c in summary["conditions"].values():
        assert [r["seed"] for r in c["runs"]] == list(SEEDS)
        for r in c["runs"]:
            assert all(len(r["curves"][k]) == TINY.epochs for k in rl.CURVES)
            assert {"epochs_to_90", "epochs_to_95", "epochs_to_99"} <= set(r["metrics"])
            assert r["metrics"]["train_acc"] == r["curves"]["train_acc"][-1]


def test_results_are_json_ready_with_checks_and_figures(study):
    summary, files = study
    json.dumps(summary, allow_nan=False)
    assert {"conditions", "comparisons", "checks", "answer", "tables", "slowdown"} <= set(summary)
    assert len(summary["checks"]) == 3 and summary["answer"].endswith(".")
    assert {"curves.png", "epochs_to_threshold.png"} <= set(files)


def test_random_labels_are_fixed_per_seed_and_differ_between_seeds():
    a, b = rl.random_labels(500, 10, 0), rl.random_labels(500, 10, 0)
    assert torch.equal(a, b) and int(a.min()) >= 0 and int(a.max()) <= 9
    assert not torch.equal(a, rl.random_labels(500, 10, 1))


def test_first_epoch_is_one_based_and_none_when_never_reached():
    acc = np.array([0.5, 0.91, 0.96, 0.97])
    assert rl.first_epoch(acc, 0.9) == 2 and rl.first_epoch(acc, 0.95) == 3 and rl.first_epoch(acc, 0.99) is None


def test_a_wide_mlp_memorises_random_labels_and_the_slowdown_is_measured(run_tiny):
    cfg = replace(TINY, model="mlp", channels=(), hidden=(256,), lr=1e-2, batch_size=20, epochs=40, n_train=40)
    summary = run_tiny("random-labels", cfg, SEEDS)[1]
    memorised = summary["checks"][0]
    assert memorised["passed"], memorised["evidence"]
    assert summary["slowdown"]["reached"] == 2 and summary["slowdown"]["summary"]["mean"] >= 1


def test_two_runs_are_identical():
    unit = rl.units(TINY, (3,), Runtime())[1]  # the random-label fit of seed 3
    assert rl.run_unit(unit) == rl.run_unit(unit)


def test_config_is_validated():
    with pytest.raises(UsageError):
        replace(TINY, thresholds=(0.9, 0.99))
    with pytest.raises(UsageError):
        replace(TINY, model="rnn")
    with pytest.raises(UsageError):
        replace(TINY, norm="batchnorm")  # conv layers take no norm here
