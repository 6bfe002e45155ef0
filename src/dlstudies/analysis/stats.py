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




# ---- intervals that respect what they measure (METHOD.md §2) -------------------------------------
#
# The functions above are the first generation (t intervals everywhere); the ones below choose the
# statistic and interval from the metric's kind (analysis/measures.py) and are what claims use.

BOOTSTRAP_RESAMPLES = 4000
EXACT_MAX_N = 16  # 2**16 sign patterns: exact; beyond, a fixed-seed Monte-Carlo sign-flip test
NORMALITY_ALPHA = 0.05


def _rng() -> np.random.Generator:
    # A fixed generator: the same seeds give the same intervals and p-values, run after run.
    return np.random.default_rng(20150101)


def bootstrap_ci(x: np.ndarray, level: float = CONFIDENCE) -> list:
    """Percentile bootstrap interval of the mean; inside the data's range, so inside any bounds."""
    if len(x) < 2:
        return [None, None]
    if np.ptp(x) == 0:  # the mean of equal values, as np.mean rounds it: the interval holds its statistic
        return [float(np.mean(x)), float(np.mean(x))]
    res = sps.bootstrap((x,), np.mean, confidence_level=level, n_resamples=BOOTSTRAP_RESAMPLES,
                        method="percentile", random_state=_rng())
    return [_plain(res.confidence_interval.low), _plain(res.confidence_interval.high)]


def t_ci(x: np.ndarray, level: float = CONFIDENCE) -> list:
    if len(x) < 2:
        return [None, None]
    half = float(sps.t.ppf(0.5 + level / 2, len(x) - 1)) * float(np.std(x, ddof=1)) / math.sqrt(len(x))
    return [_plain(np.mean(x) - half), _plain(np.mean(x) + half)]


def plausibly_normal(x: np.ndarray) -> bool:
    """Shapiro-Wilk does not reject normality (n >= 3; constant data are not called normal)."""
    return len(x) >= 3 and np.ptp(x) > 0 and float(sps.shapiro(x).pvalue) >= NORMALITY_ALPHA


def mean_ci(x: np.ndarray, level: float = CONFIDENCE) -> tuple[list, str]:
    """(interval of the mean, its method): t for plausibly normal data, bootstrap percentile otherwise."""
    return (t_ci(x, level), "t") if plausibly_normal(x) else (bootstrap_ci(x, level), "bootstrap")


def _all_positive(x: np.ndarray) -> bool:
    return len(x) > 0 and bool(np.all(x > 0))


def describe(values: Iterable, metric: str) -> dict:
    """The statistic a metric is summarised by, with the interval that belongs to it.

    {"statistic": "mean" | "geometric mean", "value", "ci95", "interval": "t" | "bootstrap" |
    "t on logs", "n", "n_missing", "mean", "std", "median"}. Bounded metrics get bootstrap intervals
    (inside their bounds); positive skewed ones a geometric mean with a t interval on logs.
    """
    from dlstudies.analysis.measures import clip, measure

    raw = list(values)
    x = _finite(raw)
    base = {"n": int(len(x)), "n_missing": len(raw) - int(len(x)), "mean": _plain(np.mean(x)) if len(x) else None,
            "std": _plain(np.std(x, ddof=1)) if len(x) > 1 else (0.0 if len(x) else None),
            "median": _plain(np.median(x)) if len(x) else None}
    kind = measure(metric)
    if not len(x):
        return {**base, "statistic": "mean", "value": None, "ci95": [None, None], "interval": "none"}
    if kind.log and _all_positive(x):
        lo, hi = t_ci(np.log(x))
        ci = [None, None] if lo is None else [_plain(math.exp(lo)), _plain(math.exp(hi))]
        return {**base, "statistic": "geometric mean", "value": _plain(math.exp(np.mean(np.log(x)))),
                "ci95": ci, "interval": "t on logs"}
    bounded = math.isfinite(kind.bounds[0]) or math.isfinite(kind.bounds[1])
    ci, how = (bootstrap_ci(x), "bootstrap") if bounded else mean_ci(x)
    return {**base, "statistic": "mean", "value": base["mean"], "ci95": list(clip(metric, *ci)), "interval": how}


def sign_flip_test(d: np.ndarray) -> float | None:
    """Two-sided p of the exact paired sign-flip permutation test of mean(d) = 0 (scipy)."""
    if len(d) < 2:
        return None
    if np.all(d == 0):
        return 1.0
    exact = len(d) <= EXACT_MAX_N
    res = sps.permutation_test((d,), lambda x, axis: np.mean(x, axis=axis), permutation_type="samples",
                               vectorized=True, n_resamples=np.inf if exact else 20000,
                               alternative="two-sided", random_state=_rng())
    return _plain(min(1.0, res.pvalue))


def paired_effect(a_values: Sequence, b_values: Sequence, metric: str) -> dict:
    """The effect of a over b on one metric, seed by seed: a difference (a ratio for positive
    skewed metrics: the geometric mean of a/b), its 95% CI, the sign-flip test, n and the
    per-seed effects."""
    from dlstudies.analysis.measures import measure

    a_x, b_x = _pairs(a_values, b_values)
    log = measure(metric).log and _all_positive(a_x) and _all_positive(b_x)
    d = np.log(a_x) - np.log(b_x) if log else a_x - b_x
    ci, how = mean_ci(d)
    p = sign_flip_test(d)
    effect = _plain(np.mean(d)) if len(d) else None
    if log:
        effect = None if effect is None else math.exp(effect)
        ci = [None if v is None else math.exp(v) for v in ci]
        how += " on logs"
    elif measure(metric).percent:
        ci = [None if v is None else max(-1.0, min(1.0, v)) for v in ci]
    return {"effect": _plain(effect), "ci95": [_plain(v) for v in ci], "interval": how, "log": bool(log),
            "test": "sign-flip (exact)" if len(d) <= EXACT_MAX_N else "sign-flip (20000 draws)",
            "p_value": p, "n": int(len(d)), "per_seed": [_plain(v) for v in d]}


def holm(p_values: Sequence) -> list:
    """Holm-adjusted p-values within one table (statsmodels); None stays None."""
    from statsmodels.stats.multitest import multipletests

    kept = [(i, p) for i, p in enumerate(p_values) if p is not None]
    adjusted: list = [None] * len(p_values)
    if kept:
        out = multipletests([p for _, p in kept], method="holm")[1]
        for (i, _), q in zip(kept, out):
            adjusted[i] = _plain(q)
    return adjusted


def pairwise_table(metric: str, by_condition: dict[str, Sequence]) -> list[dict]:
    """Every pair of conditions compared on one metric (paired_effect), Holm-adjusted within the table."""
    rows = [{"metric": metric, "a": a, "b": b, **paired_effect(by_condition[a], by_condition[b], metric)}
            for a, b in itertools.combinations(by_condition, 2)]
    for row, q in zip(rows, holm([r["p_value"] for r in rows])):
        row["p_holm"] = q
    return rows


def tost(d: np.ndarray, margin: float) -> dict:
    """Two one-sided t-tests of |mean(d)| < margin (statsmodels): p, and the 90% and 95% t intervals."""
    from statsmodels.stats.weightstats import ttost_paired

    if len(d) < 2 or np.ptp(d) == 0:
        inside = len(d) >= 1 and abs(float(np.mean(d))) < margin
        return {"p_value": (0.0 if inside else 1.0) if len(d) >= 2 else None,
                "ci90": t_ci(d, 0.90), "ci95": t_ci(d, CONFIDENCE)}
    p = float(ttost_paired(d, np.zeros_like(d), -margin, margin)[0])
    return {"p_value": _plain(p), "ci90": t_ci(d, 0.90), "ci95": t_ci(d, CONFIDENCE)}


def rank_trends(per_seed_points: dict[int, list[tuple[float, float]]]) -> np.ndarray:
    """Per seed, Spearman's rho of y against x over that seed's points (NaN where undefined)."""
    rhos = [spearman(*zip(*pts))["rho"] if len(pts) >= 3 else None for pts in per_seed_points.values()]
    return np.array([np.nan if r is None else r for r in rhos], dtype=float)


def rank_correlation(x: np.ndarray, y: np.ndarray) -> tuple:
    """(Spearman rho, its percentile-bootstrap 95% CI over pairs, permutation p) — None where
    undefined (fewer than 3 pairs, or a constant variable)."""
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None, [None, None], None
    rho = lambda a, b, axis=-1: _spearman_axis(a, b, axis)  # noqa: E731
    ci = sps.bootstrap((x, y), rho, paired=True, vectorized=True, confidence_level=CONFIDENCE, method="percentile",
                       n_resamples=BOOTSTRAP_RESAMPLES, random_state=_rng()).confidence_interval
    p = sps.permutation_test((x, y), rho, permutation_type="pairings", vectorized=True, n_resamples=9999,
                             random_state=_rng()).pvalue
    lo, hi = (max(-1.0, v) if v == v else None for v in (ci.low, ci.high))
    return _plain(sps.spearmanr(x, y).statistic), [lo, None if hi is None else min(1.0, hi)], _plain(p)


def _spearman_axis(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    ra, rb = sps.rankdata(a, axis=axis), sps.rankdata(b, axis=axis)
    ra, rb = ra - ra.mean(axis=axis, keepdims=True), rb - rb.mean(axis=axis, keepdims=True)
    den = np.sqrt((ra ** 2).sum(axis=axis) * (rb ** 2).sum(axis=axis))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (ra * rb).sum(axis=axis) / np.where(den > 0, den, 1), 0.0)
