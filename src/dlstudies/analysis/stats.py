"""Statistics over seeds: summaries with t-based 95% CIs and paired comparisons of conditions.

Every function returns plain, JSON-ready data (Python floats, ints, lists, None): a value that
is not finite becomes None, so `json.dumps(..., allow_nan=False)` never fails on our output.

Choice of test in `paired_comparison` (why not always Wilcoxon): the two-sided exact Wilcoxon
signed-rank test cannot go below p = 2 / 2**n, i.e. 0.0625 at n = 5 and 0.125 at n = 4, so with
five or fewer seeds it can never reach p < 0.05 however consistent the effect. With n >= 6
(`WILCOXON_MIN_N`) we use Wilcoxon (no normality assumption, robust to one wild seed); with
2 <= n < 6 the paired t-test, and the entry says which (`"test"`). Degenerate cases: all
differences zero -> p = 1.0; all differences equal but non-zero (zero variance, where the t
statistic is infinite) -> the exact Wilcoxon p, which is honest about how few pairs there are;
n < 2 -> p = None, test "none".
"""

from __future__ import annotations

import itertools
import math
from typing import Iterable, Sequence

import numpy as np
from scipy import stats as sps

WILCOXON_MIN_N = 6
CONFIDENCE = 0.95


def _finite(values: Iterable) -> np.ndarray:
    """The finite values as float64; None, NaN and ±inf (a diverged run) are dropped."""
    kept = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    return np.asarray(kept, dtype=np.float64)


def _plain(x) -> float | None:
    """A JSON-ready float, or None where the value is missing or not finite."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def t_halfwidth(x: np.ndarray) -> float:
    """Half-width of the two-sided t confidence interval of the mean (0 for n < 2)."""
    n = len(x)
    if n < 2:
        return 0.0
    sem = float(np.std(x, ddof=1)) / math.sqrt(n)
    return float(sps.t.ppf(0.5 + CONFIDENCE / 2, n - 1)) * sem


def summary(values: Iterable) -> dict:
    """Mean, sample std (ddof=1; 0 for one value), t-based 95% CI, n and median of the finite values."""
    x = _finite(values)
    if len(x) == 0:
        return {"mean": None, "std": None, "ci95": [None, None], "n": 0, "median": None}
    mean, half = float(np.mean(x)), t_halfwidth(x)
    std = float(np.std(x, ddof=1)) if len(x) > 1 else 0.0
    return {"mean": _plain(mean), "std": _plain(std), "ci95": [_plain(mean - half), _plain(mean + half)],
            "n": int(len(x)), "median": _plain(np.median(x))}


def _pairs(a_values: Sequence, b_values: Sequence) -> tuple[np.ndarray, np.ndarray]:
    """Aligned pairs (same seed) where both values are finite."""
    if len(a_values) != len(b_values):
        raise ValueError(f"paired values differ in length: {len(a_values)} vs {len(b_values)}")
    kept = [(float(a), float(b)) for a, b in zip(a_values, b_values)
            if a is not None and b is not None and math.isfinite(float(a)) and math.isfinite(float(b))]
    arr = np.asarray(kept, dtype=np.float64).reshape(-1, 2)
    return arr[:, 0], arr[:, 1]


def _wilcoxon(d: np.ndarray) -> float:
    return float(sps.wilcoxon(d).pvalue)


def _t_test(d: np.ndarray) -> float:
    return float(sps.ttest_1samp(d, 0.0).pvalue)


def paired_test(d: np.ndarray) -> tuple[str, float | None]:
    """(test name, two-sided p) for paired differences d; see the module docstring for the choice."""
    n = len(d)
    if n < 2:
        return "none", None
    test = "wilcoxon" if n >= WILCOXON_MIN_N else "t-test"
    if np.all(d == 0):
        return test, 1.0
    if test == "t-test" and np.all(d == d[0]):
        return "wilcoxon", _wilcoxon(d)  # zero variance: t is infinite, its p = 0 would lie
    return test, (_wilcoxon(d) if test == "wilcoxon" else _t_test(d))


def _wins(a: str, b: str, a_x: np.ndarray, b_x: np.ndarray, higher_is_better: bool) -> dict:
    sign = 1.0 if higher_is_better else -1.0
    better = sign * (a_x - b_x)
    return {a: int(np.sum(better > 0)), b: int(np.sum(better < 0)), "ties": int(np.sum(better == 0))}


def paired_comparison(metric: str, a: str, a_values: Sequence, b: str, b_values: Sequence,
                      higher_is_better: bool = True) -> dict:
    """Compare conditions a and b on one metric, pair by pair (index = seed); diff = mean of a - b."""
    a_x, b_x = _pairs(a_values, b_values)
    d = a_x - b_x
    s = summary(d)
    test, p = paired_test(d)
    return {"metric": metric, "a": a, "b": b, "diff": s["mean"], "median_diff": s["median"],
            "ci95": s["ci95"], "p_value": _plain(p), "test": test, "n": int(len(d)),
            "wins": _wins(a, b, a_x, b_x, higher_is_better), "higher_is_better": bool(higher_is_better)}


def all_pairs(metric: str, by_condition: dict[str, Sequence], higher_is_better: bool = True) -> list[dict]:
    """Paired comparisons of every pair of conditions, in the dict's order (a before b)."""
    return [paired_comparison(metric, a, by_condition[a], b, by_condition[b], higher_is_better)
            for a, b in itertools.combinations(by_condition, 2)]


def ci_clear_of_zero(s: dict, sign: int = 1) -> bool:
    """The 95% CI of a summary or a paired comparison (keys "ci95", "n") lies wholly above zero
    (sign > 0) or wholly below it (sign < 0); never with fewer than two values."""
    lo, hi = s["ci95"]
    return bool(s["n"] >= 2 and lo is not None and (lo > 0 if sign > 0 else hi < 0))


def spearman(x: Sequence, y: Sequence) -> dict:
    """Spearman's rank correlation over the pairs where both values are finite: {"rho", "p_value",
    "n", "test"}; rho and p are None with fewer than three pairs or a constant x or y (undefined)."""
    pairs = [(float(a), float(b)) for a, b in zip(x, y)
             if a is not None and b is not None and math.isfinite(float(a)) and math.isfinite(float(b))]
    arr = np.asarray(pairs, dtype=np.float64).reshape(-1, 2)
    n = len(arr)
    if n < 3 or np.ptp(arr[:, 0]) == 0 or np.ptp(arr[:, 1]) == 0:
        return {"rho": None, "p_value": None, "n": n, "test": "spearman"}
    result = sps.spearmanr(arr[:, 0], arr[:, 1])
    return {"rho": float(result.statistic), "p_value": float(result.pvalue), "n": n, "test": "spearman"}


def trend(conditions: dict, x: dict[str, float], metric: str) -> dict:
    """Per seed, the Spearman correlation of `metric` with x[condition] across the conditions
    ({name: {"runs": [{"seed", "metrics"}]}}), and its summary over seeds.

    A seed with fewer than three finite points, or a constant metric, has no correlation (None).
    """
    seeds = sorted({r["seed"] for c in conditions.values() for r in c["runs"]})
    per_seed = []
    for seed in seeds:
        points = [(x[name], r["metrics"].get(metric)) for name, c in conditions.items() for r in c["runs"]
                  if r["seed"] == seed]
        per_seed.append(spearman(*zip(*points))["rho"] if points else None)
    s = summary(per_seed)
    if s["n"]:  # a t interval can pass ±1; a correlation cannot
        s["ci95"] = [max(s["ci95"][0], -1.0), min(s["ci95"][1], 1.0)]
    return {"metric": metric, "seeds": seeds, "per_seed": per_seed, "summary": s}


def check(claim: str, source: str, passed: bool, evidence: str) -> dict:
    """One entry of results.json's "checks": a claim of the literature and what we measured."""
    return {"claim": str(claim), "source": str(source), "passed": bool(passed), "evidence": str(evidence)}
