"""The claim evaluator and the intervals under it, on synthetic runs with known answers."""

import itertools

import numpy as np
import pytest
from statsmodels.stats.multitest import multipletests

from dlstudies.analysis import stats
from dlstudies.analysis.claims import Claim, counts, evaluate, opening
from dlstudies.analysis.measures import effect_text, interval_text, measure


def table(values: dict[str, list], metric: str, x: dict | None = None) -> dict:
    """{"conditions": {name: {"runs": [...]}}}, run i of each condition being seed i."""
    return {"conditions": {name: {"runs": [{"seed": i, "metrics": {metric: v, **({"x": x[name]} if x else {})}}
                                           for i, v in enumerate(vals)]} for name, vals in values.items()}}


rng = np.random.default_rng(0)
BASE = rng.uniform(0.5, 0.7, 10)


def directional(shift, n=10, metric="test_acc"):
    res = table({"a": list(BASE[:n] + shift + rng.normal(0, 0.005, n)), "b": list(BASE[:n])}, metric)
    return evaluate(Claim("a beats b", "test", metric, "directional", a="a", b="b"), res)


@pytest.mark.parametrize("shift, verdict", [(0.05, "supported"), (-0.05, "contradicted"), (0.0, "inconclusive")])
def test_directional_reaches_every_verdict(shift, verdict):
    assert directional(shift)["verdict"] == verdict


def test_directional_needs_eight_seeds():
    c = directional(0.05, n=5)
    assert c["verdict"] == "inconclusive" and "n too small" in c["evidence"]


def test_directional_reads_accuracies_in_percent_points():
    c = directional(0.05)
    assert f"+{100 * c['effect']:.1f} pp [" in c["evidence"]


def test_directional_positive_metric_is_a_ratio():
    loss_b = rng.lognormal(0, 0.3, 10)
    res = table({"a": list(loss_b * 0.3), "b": list(loss_b)}, "final_loss")
    c = evaluate(Claim("a lower", "t", "final_loss", "directional", a="a", b="b", direction="lower"), res)
    assert c["verdict"] == "supported" and c["scale"] == "ratio"
    assert c["effect"] == pytest.approx(0.3)
    assert c["ci95"][0] <= c["effect"] <= c["ci95"][1] < 1
    assert "0.300x" in c["evidence"]


def test_diverged_runs_are_counted_not_dropped_silently():
    vals = list(BASE + 0.05)
    vals[3] = None
    c = evaluate(Claim("a beats b", "t", "test_acc", "directional", a="a", b="b"),
                 table({"a": vals, "b": list(BASE)}, "test_acc"))
    assert c["n"] == 9 and c["n_missing"] == 1 and "1 run(s) without a finite value" in c["evidence"]


@pytest.mark.parametrize("level, verdict", [(0.99, "supported"), (0.5, "contradicted"), (0.949, "inconclusive")])
def test_threshold_reaches_every_verdict(level, verdict):
    vals = np.clip(level + rng.normal(0, 0.003, 10), 0, 1)
    c = evaluate(Claim("memorised", "t", "train_acc", "threshold", a="a", threshold=0.95),
                 table({"a": list(vals)}, "train_acc"))
    assert c["verdict"] == verdict
    assert 0 <= c["ci95"][0] <= c["ci95"][1] <= 1


@pytest.mark.parametrize("slope, verdict", [(1.0, "supported"), (-1.0, "contradicted"), (0.0, "inconclusive")])
def test_trend_reaches_every_verdict(slope, verdict):
    xs = {f"c{k}": float(k) for k in range(5)}
    values = {name: list(slope * x + rng.normal(0, 0.3 if slope else 1.0, 10)) for name, x in xs.items()}
    c = evaluate(Claim("rises", "t", "score", "trend", x="x"), table(values, "score", xs))
    assert c["verdict"] == verdict
    assert -1 <= c["ci95"][0] <= c["ci95"][1] <= 1


@pytest.mark.parametrize("shift, spread, verdict", [(0.0, 0.002, "supported"), (0.1, 0.002, "contradicted"),
                                                    (0.02, 0.04, "inconclusive")])
def test_equivalence_reaches_every_verdict(shift, spread, verdict):
    res = table({"a": list(BASE + shift + rng.normal(0, spread, 10)), "b": list(BASE)}, "gap")
    c = evaluate(Claim("constant", "t", "gap", "equivalence", a="a", b="b", margin=0.02), res)
    assert c["verdict"] == verdict


def test_missing_condition_is_inconclusive_and_says_so():
    c = evaluate(Claim("a beats b", "t", "test_acc", "directional", a="a", b="zzz"), table({"a": [0.5]}, "test_acc"))
    assert c["verdict"] == "inconclusive" and "zzz" in c["evidence"]


def test_counts_and_openings():
    checks = [{"verdict": "supported"}, {"verdict": "inconclusive"}, {"verdict": "supported"}]
    assert counts(checks) == {"supported": 2, "contradicted": 0, "inconclusive": 1}
    assert opening("contradicted") == "No —" and opening("supported", yes_no=False) == "Supported —"


# ---- intervals and tests against independent oracles -----------------------------------------

@pytest.mark.parametrize("values", [[1.0] * 10, [0.0] * 10, [1.0] * 9 + [0.9], [0.0] * 9 + [0.1], [0.0, 1.0] * 5])
def test_fraction_intervals_stay_in_bounds(values):
    s = stats.describe(values, "test_acc")
    assert 0.0 <= s["ci95"][0] <= s["value"] <= s["ci95"][1] <= 1.0


def test_equal_values_have_their_mean_inside_the_interval():
    s = stats.describe([0.1] * 10, "test_acc")  # np.mean gives 0.10000000000000002 here
    assert s["ci95"][0] <= s["value"] <= s["ci95"][1]


def test_positive_metric_is_a_geometric_mean_with_positive_interval():
    values = [1e-3, 2e-3, 5e-2, 1e-4, 3e-3, 1e-2, 4e-4, 2e-2]
    s = stats.describe(values, "final_loss")
    assert s["statistic"] == "geometric mean"
    assert s["value"] == pytest.approx(np.exp(np.mean(np.log(values))))
    assert 0 < s["ci95"][0] < s["value"] < s["ci95"][1]


def test_sign_flip_matches_full_enumeration():
    d = np.array([0.3, -0.1, 0.5, 0.2, 0.4, -0.05, 0.25])
    flips = np.array(list(itertools.product([-1, 1], repeat=len(d))))
    null = np.abs((flips * d).mean(axis=1))
    p_oracle = np.mean(null >= abs(d.mean()) - 1e-12)
    assert stats.sign_flip_test(d) == pytest.approx(p_oracle)


def test_sign_flip_reaches_its_floor_at_ten_seeds():
    assert stats.sign_flip_test(np.arange(1, 11, dtype=float)) == pytest.approx(2 / 2 ** 10)


def test_holm_matches_the_textbook_procedure():
    p = [0.01, 0.04, 0.03, 0.005]
    order = np.argsort(p)
    adjusted, running = np.empty(4), 0.0
    for rank, i in enumerate(order):  # Holm: (m - rank) * p, made monotone, capped at 1
        running = max(running, min(1.0, (4 - rank) * p[i]))
        adjusted[i] = running
    assert stats.holm(p) == pytest.approx(list(adjusted))
    assert stats.holm(p) == pytest.approx(list(multipletests(p, method="holm")[1]))
    assert stats.holm([None, 0.01]) == [None, 0.01]


def test_pairwise_table_is_holm_adjusted():
    by = {"a": list(BASE + 0.05), "b": list(BASE), "c": list(BASE + 0.01)}
    rows = stats.pairwise_table("test_acc", by)
    assert len(rows) == 3
    assert [r["p_holm"] for r in rows] == pytest.approx(stats.holm([r["p_value"] for r in rows]))


def test_units_read_as_people_read_them():
    assert measure("test_acc").percent and measure("minimal_ratio").bounds == (0.0, 1.0)
    assert measure("final_loss").log and measure("slowdown_factor").log
    assert effect_text("test_acc", -2.22e-17) == "0 pp"
    assert effect_text("test_acc", 0.08) == "+8.0 pp"
    assert interval_text("final_loss", [0.2, 0.5], effect=True) == "[0.200x, 0.500x]"
