"""params-generalization: its claims on synthetic runs in all three verdicts, the convergence flag, and a
tiny end-to-end run (exact parameter counts, the gaps, the table)."""

import json
from dataclasses import replace

import numpy as np
import pytest

from dlstudies.analysis.claims import evaluate
from dlstudies.errors import UsageError
from dlstudies.studies import params_generalization as pg
from dlstudies.studies.results import best_still_improving, still_improving

TINY = replace(pg.PRESETS["smoke"], epochs=2, n_train=100, n_test=60)
SEEDS = (0, 1)
CFG = pg.PRESETS["default"]
rng = np.random.default_rng(3)


@pytest.fixture(autouse=True)
def fixed_draws():
    """Every test draws the same synthetic runs whichever tests run before it (-k, -x, xdist)."""
    global rng
    rng = np.random.default_rng(3)


def conditions(per_size: dict[int, list[dict]]) -> dict:
    return {f"m{n}": {"runs": [{"seed": i, "metrics": {"n_params": n, **m}} for i, m in enumerate(ms)]}
            for n, ms in per_size.items()}


SIZES = (600, 2000, 5000, 9000, 17000)


@pytest.mark.parametrize("slope, verdict", [(0.01, "supported"), (-0.01, "contradicted"), (0.0, "inconclusive")])
def test_test_accuracy_trend_reaches_every_verdict(slope, verdict):
    res = {"conditions": conditions({n: [{"test_acc": float(0.9 + slope * np.log(n) + rng.normal(0, 0.003 if slope else 0.02))}
                                         for _ in range(10)] for n in SIZES})}
    assert evaluate(pg.claims(CFG)[0], res)["verdict"] == verdict


@pytest.mark.parametrize("slope, verdict", [(-0.05, "supported"), (0.05, "contradicted"), (0.0, "inconclusive")])
def test_test_loss_trend_reaches_every_verdict(slope, verdict):
    res = {"conditions": conditions({n: [{"test_loss": float(np.exp(-1 + slope * np.log(n) + rng.normal(0, 0.01 if slope else 0.3)))}
                                         for _ in range(10)] for n in SIZES})}
    assert evaluate(pg.claims(CFG)[1], res)["verdict"] == verdict


@pytest.mark.parametrize("shift, spread, verdict", [(0.0, 0.01, "supported"), (0.2, 0.01, "contradicted"),
                                                    (0.04, 0.1, "inconclusive")])
def test_constant_gap_equivalence_reaches_every_verdict(shift, spread, verdict):
    small = 0.2 + rng.normal(0, 0.01, 10)
    large = small + shift + rng.normal(0, spread, 10)
    ends = {name: {"runs": [{"seed": i, "metrics": {"loss_gap_nats": float(v)}} for i, v in enumerate(vals)]}
            for name, vals in (("smallest", small), ("largest", large))}
    check = evaluate(pg.claims(CFG)[2], {"ends": ends})
    assert check["verdict"] == verdict and check["margin"] == CFG.gap_margin


@pytest.fixture(scope="module")
def study(tmp_path_factory, run_tiny):
    return run_tiny("params-generalization", TINY, SEEDS, tmp_path_factory.mktemp("params-generalization"))[1:]


def test_every_width_records_its_exact_parameter_count_and_gaps(study):
    summary, _ = study
    assert list(summary["conditions"]) == ["7-11", "50-12", "190-26"]  # by parameter count
    for name, c in summary["conditions"].items():
        h1, h2 = map(int, name.split("-"))
        expected = 64 * h1 + h1 + h1 * h2 + h2 + h2 * 10 + 10  # digits: 8x8 inputs, 10 classes
        assert [r["metrics"]["n_params"] for r in c["runs"]] == [expected] * len(SEEDS)
        for r in c["runs"]:
            m = r["metrics"]
            assert m["loss_gap_nats"] == pytest.approx(m["test_loss"] - m["train_loss"])
            assert m["acc_gap"] == pytest.approx(m["train_acc"] - m["test_acc"])


def test_each_run_says_whether_its_validation_loss_was_still_falling(study):
    summary, _ = study
    for c in summary["conditions"].values():
        for r in c["runs"]:
            assert len(r["curves"]["val_loss"]) == TINY.epochs
            assert r["still_improving"] == best_still_improving(r["curves"]["val_loss"])
    assert sum(c["still_improving"] for c in summary["convergence"].values()) == sum(
        r["still_improving"] for c in summary["conditions"].values() for r in c["runs"])


def test_results_are_json_ready_with_verdicts_answer_and_figures(study):
    summary, files = study
    json.dumps(summary, allow_nan=False)
    assert [c["kind"] for c in summary["checks"]] == ["trend", "trend", "equivalence"]
    assert summary["answer"].startswith("Inconclusive —")  # two seeds: n too small
    assert summary["table"]["columns"][1] == "n_params" and summary["ends"]["largest"]["model"] == "190-26"
    assert {"by_params.png", "training_loss.png"} <= set(files)


@pytest.mark.parametrize("change", [{"h1": (7, 50), "h2": (11, 12, 26)}, {"h1": (7, 7, 9), "h2": (11, 11, 12)}, {"h1": (7,), "h2": (11,)},
                                    {"activation": "swish"}])
def test_config_is_validated(change):
    with pytest.raises(UsageError):
        replace(TINY, **change)


@pytest.mark.parametrize("curve, improving", [
    ([1.0, 0.5, 0.4, 0.45, 0.5, 0.42, 0.6, 0.41, 0.48, 0.44], False),  # best at epoch 3, then jitter
    ([1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.45, 0.42, 0.40, 0.38], True),  # a new best, 5% below the last one
    ([1.0, 0.5, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4, 0.9, 0.398], False),  # a spike, then 0.5% below the best
    ([1.0, None, 0.5, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4, 0.3], True),
])
def test_the_flag_reads_the_best_loss_so_far(curve, improving):
    assert best_still_improving(curve) is improving
    # the single-epoch comparison is fooled by the spike in the third curve
    assert still_improving([0.4] * 8 + [0.9, 0.398]) and not best_still_improving([0.4] * 8 + [0.9, 0.398])
