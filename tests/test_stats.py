"""Statistics held to scipy computed independently (t.interval, wilcoxon, ttest_rel)."""

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps

from dlstudies.analysis.stats import (
    all_pairs,
    ci_clear_of_zero,
    paired_comparison,
    spearman,
    summary,
    trend,
)


def test_summary_ci_matches_scipy_t_interval():
    x = [0.41, 0.43, 0.47, 0.40, 0.45]
    s = summary(x)
    lo, hi = sps.t.interval(0.95, len(x) - 1, loc=np.mean(x), scale=sps.sem(x))
    assert s["ci95"] == pytest.approx([lo, hi], rel=1e-12)
    assert s["mean"] == pytest.approx(np.mean(x))
    assert s["std"] == pytest.approx(np.std(x, ddof=1))
    assert s["median"] == pytest.approx(0.43)
    assert s["n"] == 5


def test_summary_drops_missing_and_non_finite():
    s = summary([1.0, None, float("nan"), 3.0, float("inf")])
    assert s["n"] == 2 and s["mean"] == 2.0


def test_summary_one_value_and_none():
    assert summary([2.5]) == {"mean": 2.5, "std": 0.0, "ci95": [2.5, 2.5], "n": 1, "median": 2.5}
    empty = summary([None, float("nan")])
    assert empty["mean"] is None and empty["ci95"] == [None, None] and empty["n"] == 0


def test_summary_constant_values_have_zero_width_ci():
    assert summary([3.0, 3.0, 3.0])["ci95"] == [3.0, 3.0]


def test_summary_returns_plain_python_numbers():
    s = summary(np.array([1, 2, 3], dtype=np.float32))
    assert all(type(v) is float for v in [s["mean"], s["std"], s["median"], *s["ci95"]])


def test_paired_comparison_wilcoxon_matches_scipy():
    a = [0.90, 0.85, 0.88, 0.92, 0.87, 0.91, 0.86]
    b = [0.80, 0.86, 0.81, 0.85, 0.84, 0.83, 0.79]
    c = paired_comparison("test_acc", "adam", a, "delta", b)
    d = np.subtract(a, b)
    assert c["test"] == "wilcoxon" and c["n"] == 7
    assert c["p_value"] == pytest.approx(sps.wilcoxon(a, b).pvalue)
    assert c["diff"] == pytest.approx(d.mean())
    assert c["median_diff"] == pytest.approx(np.median(d))
    lo, hi = sps.t.interval(0.95, 6, loc=d.mean(), scale=sps.sem(d))
    assert c["ci95"] == pytest.approx([lo, hi])
    assert c["wins"] == {"adam": 6, "delta": 1, "ties": 0}


def test_paired_comparison_small_n_uses_paired_t_test():
    a, b = [1.0, 2.0, 3.5], [0.5, 1.0, 2.0]
    c = paired_comparison("loss", "x", a, "y", b, higher_is_better=False)
    assert c["test"] == "t-test"
    assert c["p_value"] == pytest.approx(sps.ttest_rel(a, b).pvalue)
    assert c["wins"] == {"x": 0, "y": 3, "ties": 0}  # lower loss is better: y wins


def test_paired_comparison_ties_and_missing_pairs():
    a = [1.0, 2.0, None, 4.0, float("nan"), 5.0]
    b = [1.0, 1.0, 3.0, 5.0, 2.0, 5.0]
    c = paired_comparison("m", "a", a, "b", b)
    assert c["n"] == 4
    assert c["wins"] == {"a": 1, "b": 1, "ties": 2}


def test_all_differences_zero_gives_p_one():
    c = paired_comparison("m", "a", [1, 2, 3, 4, 5, 6], "b", [1, 2, 3, 4, 5, 6])
    assert c["p_value"] == 1.0 and c["diff"] == 0.0 and c["wins"]["ties"] == 6


def test_constant_nonzero_differences_do_not_claim_p_zero():
    c = paired_comparison("m", "a", [2.0, 3.0, 4.0], "b", [1.0, 2.0, 3.0])
    assert c["p_value"] == pytest.approx(sps.wilcoxon([1.0, 1.0, 1.0]).pvalue)


def test_too_few_pairs_has_no_p_value():
    c = paired_comparison("m", "a", [1.0, None], "b", [0.0, 1.0])
    assert c["n"] == 1 and c["p_value"] is None and c["test"] == "none"
    c = paired_comparison("m", "a", [], "b", [])
    assert c["n"] == 0 and c["diff"] is None


def test_unaligned_pairs_are_an_error():
    with pytest.raises(ValueError):
        paired_comparison("m", "a", [1.0, 2.0], "b", [1.0])


def test_all_pairs_covers_each_pair_once_in_order():
    out = all_pairs("acc", {"p": [1, 2], "q": [2, 3], "r": [0, 1]})
    assert [(c["a"], c["b"]) for c in out] == [("p", "q"), ("p", "r"), ("q", "r")]


values = st.lists(st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True, width=32)),
                  max_size=12)


@settings(max_examples=60, deadline=None)
@given(values, values)
def test_output_is_strict_json(xs, ys):
    n = min(len(xs), len(ys))
    c = paired_comparison("m", "a", xs[:n], "b", ys[:n])
    json.dumps([summary(xs), c], allow_nan=False)
    assert all(v is None or math.isfinite(v) for v in summary(xs)["ci95"])


def _conditions(values_by_seed: dict[str, list]) -> dict:
    return {name: {"runs": [{"seed": s, "metrics": {"m": v}} for s, v in enumerate(vals)]}
            for name, vals in values_by_seed.items()}


def test_trend_is_the_per_seed_spearman_correlation():
    conditions = _conditions({"a": [1.0, 3.0], "b": [2.0, 2.0], "c": [3.0, 1.0]})
    t = trend(conditions, {"a": 10, "b": 20, "c": 30}, "m")
    assert t["per_seed"] == [pytest.approx(1.0), pytest.approx(-1.0)]
    assert t["summary"]["mean"] == pytest.approx(0.0)


def test_trend_needs_three_finite_points_and_a_varying_metric():
    two = trend(_conditions({"a": [1.0], "b": [2.0]}), {"a": 1, "b": 2}, "m")
    flat = trend(_conditions({"a": [1.0], "b": [1.0], "c": [1.0]}), {"a": 1, "b": 2, "c": 3}, "m")
    assert two["per_seed"] == [None] and flat["per_seed"] == [None] and flat["summary"]["n"] == 0


def test_trend_skips_missing_values_and_keeps_its_interval_inside_plus_minus_one():
    conditions = _conditions({"a": [1.0, 1.0, None], "b": [2.0, 2.0, 5.0], "c": [3.0, 3.1, 4.0], "d": [4.0, 3.9, 3.0]})
    t = trend(conditions, {"a": 1, "b": 2, "c": 3, "d": 4}, "m")
    assert t["per_seed"][0] == pytest.approx(1.0) and t["per_seed"][2] == pytest.approx(-1.0)
    assert -1.0 <= t["summary"]["ci95"][0] <= t["summary"]["ci95"][1] <= 1.0


def test_spearman_sign_and_undefined_cases():
    assert spearman([1, 2, 3, 4, 5], [5, 4, 3, 2, 1])["rho"] == pytest.approx(-1)
    assert spearman([1, 2], [2, 1])["rho"] is None
    assert spearman([1, 2, 3], [0.5, 0.5, 0.5])["rho"] is None


def test_spearman_matches_scipy_on_the_finite_pairs():
    x, y = [1.0, 2.0, None, 4.0, 5.0, 6.0], [2.0, 1.0, 7.0, 4.0, float("nan"), 3.0]
    expected = sps.spearmanr([1.0, 2.0, 4.0, 6.0], [2.0, 1.0, 4.0, 3.0])
    r = spearman(x, y)
    assert r["n"] == 4 and r["rho"] == pytest.approx(expected.statistic) and r["p_value"] == pytest.approx(expected.pvalue)


def test_ci_clear_of_zero_needs_two_values_and_the_whole_interval_on_one_side():
    assert ci_clear_of_zero({"ci95": [0.1, 0.3], "n": 3}) and not ci_clear_of_zero({"ci95": [0.1, 0.3], "n": 3}, -1)
    assert ci_clear_of_zero({"ci95": [-0.3, -0.1], "n": 2}, sign=-1)
    assert not ci_clear_of_zero({"ci95": [-0.1, 0.3], "n": 5}) and not ci_clear_of_zero({"ci95": [-0.1, 0.3], "n": 5}, -1)
    assert not ci_clear_of_zero({"ci95": [0.2, 0.2], "n": 1}) and not ci_clear_of_zero({"ci95": [None, None], "n": 0})
