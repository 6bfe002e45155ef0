"""random-labels: the corrupted labels (exact fraction, fixed per seed, uniform draws), its claims on
synthetic runs in all three verdicts, the slowdown curve, and a tiny end-to-end run."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from scipy import stats as sps

from dlstudies.analysis.claims import evaluate
from dlstudies.config import Runtime
from dlstudies.errors import UsageError
from dlstudies.studies import random_labels as rl

TINY = replace(rl.PRESETS["smoke"], epochs=3, n_train=60, n_test=60)
SEEDS = (0, 1)
LEVELS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


# ---- the corrupted labels -----------------------------------------------------------------------

@pytest.mark.parametrize("p", LEVELS)
def test_exactly_round_p_n_labels_are_replaced_by_their_draws_and_the_rest_kept(p):
    y = torch.arange(503) % 10
    out = rl.corrupt_labels(y, 10, p, seed=7)
    order, draws = rl.corruption_plan(len(y), 10, 7)
    k = int(round(p * len(y)))
    picked, kept = order[:k], order[k:]
    assert torch.equal(out[picked], draws[picked]) and torch.equal(out[kept], y[kept])
    assert int((out != y).sum()) <= k and out.dtype == y.dtype


def test_labels_are_fixed_per_seed_differ_between_seeds_and_nest_across_levels():
    y = torch.arange(400) % 10
    a = rl.corrupt_labels(y, 10, 0.4, 3)
    assert torch.equal(a, rl.corrupt_labels(y, 10, 0.4, 3))
    assert not torch.equal(a, rl.corrupt_labels(y, 10, 0.4, 4))
    low, high = rl.corrupt_labels(y, 10, 0.2, 3), rl.corrupt_labels(y, 10, 0.6, 3)
    changed_low = low != y
    assert torch.equal(high[changed_low], low[changed_low])  # what 0.2 changed, 0.6 changed the same way
    assert torch.equal(rl.corrupt_labels(y, 10, 0.0, 3), y)


def test_replacement_labels_are_uniform_and_may_coincide_with_the_true_one():
    n, k = 20000, 10
    y = torch.zeros(n, dtype=torch.int64)
    out = rl.corrupt_labels(y, k, 1.0, seed=11)
    counts = np.bincount(out.numpy(), minlength=k)
    assert sps.chisquare(counts).pvalue > 1e-3  # uniform over the classes
    kept = int((out == y).sum())  # a draw equal to the true label (class 0): probability 1/k
    assert sps.binomtest(kept, n, 1 / k).pvalue > 1e-3 and kept > 0


def test_corruption_positions_are_uniform_over_the_training_set():
    n, p = 1000, 0.3
    hits = np.zeros(n)
    for seed in range(200):
        order, _ = rl.corruption_plan(n, 10, seed)
        hits[order[:int(round(p * n))].numpy()] += 1
    assert sps.chisquare(hits).pvalue > 1e-3


# ---- claims on synthetic runs ------------------------------------------------------------------

rng = np.random.default_rng(0)


@pytest.fixture(autouse=True)
def fixed_draws():
    """Every test draws the same synthetic runs whichever tests run before it (-k, -x, xdist)."""
    global rng
    rng = np.random.default_rng(0)
CFG = rl.PRESETS["default"]


def runs(per_level: dict[float, list[dict]]) -> dict:
    return {"conditions": {rl.condition(p): {"runs": [{"seed": i, "metrics": {"corruption": p, **m}}
                                                      for i, m in enumerate(ms)]} for p, ms in per_level.items()}}


def claim(i: int):
    return rl.claims(CFG)[i]


@pytest.mark.parametrize("level, verdict", [(1.0, "supported"), (0.5, "contradicted"), (0.99, "inconclusive")])
def test_memorisation_claim_reaches_every_verdict(level, verdict):
    acc = np.clip(level + rng.normal(0, 0.004, 10) * (level < 1), 0, 1)
    res = runs({1.0: [{"best_train_acc": float(a)} for a in acc]})
    assert evaluate(claim(0), res)["verdict"] == verdict


@pytest.mark.parametrize("slope, verdict", [(-0.8, "supported"), (0.8, "contradicted"), (0.0, "inconclusive")])
def test_test_accuracy_trend_reaches_every_verdict(slope, verdict):
    res = runs({p: [{"test_acc": float(np.clip(0.9 + slope * p + rng.normal(0, 0.02 if slope else 0.1), 0, 1))}
                    for _ in range(10)] for p in LEVELS})
    assert evaluate(claim(1), res)["verdict"] == verdict


@pytest.mark.parametrize("shape, verdict", [("rising", "supported"), ("falling", "contradicted"), ("v", "inconclusive")])
def test_fitting_time_trend_reaches_every_verdict(shape, verdict):
    epochs = {"rising": lambda p: 10 + 40 * p, "falling": lambda p: 50 - 40 * p, "v": lambda p: 20 + 60 * abs(p - 0.5)}
    res = runs({p: [{"fit_epochs": int(round(epochs[shape](p) + rng.normal(0, 2)))} for _ in range(10)] for p in LEVELS})
    assert evaluate(claim(2), res)["verdict"] == verdict


def test_a_run_that_never_fits_is_counted_not_dropped():
    res = runs({p: [{"fit_epochs": None if (p == 1.0 and i == 0) else 10 + int(40 * p) + i} for i in range(10)]
                for p in LEVELS})
    c = evaluate(claim(2), res)
    assert c["n_missing"] == 1 and c["n"] == 10 and c["verdict"] == "supported"


def test_slowdown_is_the_per_seed_ratio_with_a_geometric_mean():
    base = [10, 12, 8, 11]
    top = [35, 30, None, 44]
    conditions = runs({0.0: [{"fit_epochs": b} for b in base], 1.0: [{"fit_epochs": t} for t in top]})["conditions"]
    table = rl.slowdown_table(conditions)
    per_seed = [r["metrics"]["slowdown_factor"] for r in table["p=1"]["runs"]]
    assert per_seed[:2] == [3.5, 2.5] and per_seed[2] is None and per_seed[3] == 4.0
    s = table["p=1"]["summary"]
    assert s["value"] == pytest.approx(sps.gmean([3.5, 2.5, 4.0])) and s["n_missing"] == 1
    assert s["ci95"][0] < s["value"] < s["ci95"][1]
    assert [r["metrics"]["slowdown_factor"] for r in table["p=0"]["runs"]] == [1.0] * 4


# ---- end to end --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def study(tmp_path_factory, run_tiny):
    return run_tiny("random-labels", TINY, SEEDS, tmp_path_factory.mktemp("random-labels"))[1:]


def test_every_level_records_curves_fit_epochs_and_its_corruption(study):
    summary, _ = study
    assert list(summary["conditions"]) == [rl.condition(p) for p in TINY.corruption]
    for name, c in summary["conditions"].items():
        assert [r["seed"] for r in c["runs"]] == list(SEEDS)
        for r in c["runs"]:
            m = r["metrics"]
            assert all(len(r["curves"][k]) == TINY.epochs for k in rl.CURVES)
            assert rl.condition(m["corruption"]) == name and m["train_acc"] == r["curves"]["train_acc"][-1]
            assert m["labels_changed_fraction"] <= m["corruption"] + 1e-12
            assert m["fit_epochs"] == rl.first_epoch(np.array(r["curves"]["train_acc"]), TINY.fit_level)
            assert m["best_train_acc"] == max(r["curves"]["train_acc"])


def test_results_are_json_ready_with_verdicts_answer_and_figures(study):
    summary, files = study
    json.dumps(summary, allow_nan=False)
    assert [c["kind"] for c in summary["checks"]] == ["threshold", "trend", "trend"]
    assert all(c["verdict"] == "inconclusive" for c in summary["checks"])  # two seeds: n too small
    assert summary["answer"].startswith("Inconclusive —") and set(summary["slowdown"]) == set(summary["conditions"])
    assert {"curves.png", "corruption_sweep.png"} <= set(files)


def test_every_level_stacks_its_seeds():
    units = rl.units(TINY, (0, 1, 2), Runtime())
    assert [(u.param("corruption"), u.seeds) for u in units[:2]] == [(0.0, (0, 1, 2)), (0.25, (0, 1, 2))]


def test_a_seed_at_a_corrupted_level_trains_its_own_labels_as_it_would_alone():
    # float64: the stack changes a member's last bits only; labels, curves and rates are the seed's
    cfg = replace(TINY, epochs=2)
    runtime = Runtime(dtype="float64")
    stacked = rl.run_unit(rl.Unit("random-labels", cfg, (3, 4), runtime, (("corruption", 0.75),)))["runs"]
    for run in stacked:
        alone = rl.run_unit(rl.Unit("random-labels", cfg, (run["seed"],), runtime, (("corruption", 0.75),)))["runs"][0]
        assert run["metrics"]["labels_changed_fraction"] == alone["metrics"]["labels_changed_fraction"] > 0.5
        for k, curve in run["curves"].items():
            np.testing.assert_allclose(curve, alone["curves"][k], rtol=1e-9, err_msg=k)
    assert stacked[0]["curves"]["train_loss"] != stacked[1]["curves"]["train_loss"]


def test_two_runs_are_identical():
    unit = rl.units(TINY, (3,), Runtime())[-1]  # the fully corrupted fit of seed 3
    assert rl.run_unit(unit) == rl.run_unit(unit)


def test_first_epoch_is_one_based_and_none_when_never_reached():
    acc = np.array([0.5, 0.91, 0.96, 0.97])
    assert rl.first_epoch(acc, 0.9) == 2 and rl.first_epoch(acc, 0.95) == 3 and rl.first_epoch(acc, 0.99) is None


@pytest.mark.parametrize("change", [{"corruption": (0.0, 0.5, 1.0)}, {"corruption": (0.2, 0.4, 0.6, 0.8, 1.0)},
                                    {"corruption": (0.0, 0.2, 0.4, 0.6, 1.5)}, {"model": "rnn"},
                                    {"norm": "batchnorm"}])
def test_config_is_validated(change):
    with pytest.raises(UsageError):
        replace(TINY, **change)


def test_every_scale_sweeps_at_least_five_levels():
    assert all(len(cfg.corruption) >= 5 and 0.0 in cfg.corruption for cfg in rl.PRESETS.values())
    assert rl.PRESETS["default"].corruption == LEVELS


def test_a_wide_mlp_memorises_fully_random_labels_more_slowly(run_tiny):
    cfg = replace(TINY, model="mlp", channels=(), hidden=(256,), lr=1e-2, batch_size=20, epochs=40, n_train=40)
    summary = run_tiny("random-labels", cfg, SEEDS)[1]
    top, true = summary["conditions"]["p=1"]["runs"], summary["conditions"]["p=0"]["runs"]
    assert all(r["metrics"]["train_acc"] == 1.0 for r in top)
    assert all(t["metrics"]["fit_epochs"] > s["metrics"]["fit_epochs"] for t, s in zip(top, true))
    assert all(r["metrics"]["slowdown_factor"] > 1 for r in summary["slowdown"]["p=1"]["runs"])
