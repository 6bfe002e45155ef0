"""Turning unit results into the parts of results.json every study shares."""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

from dlstudies.analysis import stats


def group_runs(unit_results: Iterable[dict]) -> dict[str, dict]:
    """{condition: {"runs": [...]}} in first-seen condition order, runs sorted by seed."""
    conditions: dict[str, dict] = {}
    for result in unit_results:
        for run in result["runs"]:
            conditions.setdefault(run["condition"], {"runs": []})["runs"].append(run)
    for c in conditions.values():
        c["runs"].sort(key=lambda r: r["seed"])
    return conditions


def metric_values(conditions: dict, condition: str, metric: str) -> list:
    return [r["metrics"].get(metric) for r in conditions[condition]["runs"]]


def add_summaries(conditions: dict, metrics: Sequence[str]) -> dict:
    for name, c in conditions.items():
        c["summary"] = {m: stats.summary(metric_values(conditions, name, m)) for m in metrics}
    return conditions


def compare(conditions: dict, metric: str, higher_is_better: bool, pairs: Sequence[tuple[str, str]] | None = None) -> list[dict]:
    """Paired comparisons (same seeds) between conditions, all pairs unless `pairs` is given."""
    if pairs is None:
        return stats.all_pairs(metric, {c: metric_values(conditions, c, metric) for c in conditions}, higher_is_better)
    return [stats.paired_comparison(metric, a, metric_values(conditions, a, metric), b,
                                    metric_values(conditions, b, metric), higher_is_better) for a, b in pairs]


def fmt_ci(summary: dict, percent: bool = False, bounded: bool = True) -> str:
    """'mean [95% CI lo, hi]' for tables and answers; percentages for accuracies.

    bounded=False is for a signed difference (of accuracies, say): '+2.7% [-1.8%, +7.1%]', with
    signs, and the interval not clipped to [0, 1] as a fraction's is.
    """
    if summary.get("mean") is None:
        return "n/a"
    lo, hi = summary["ci95"]
    if not bounded:
        f = "+.1%" if percent else "+.3g"
        return "n/a" if lo is None else f"{summary['mean']:{f}} [{lo:{f}}, {hi:{f}}]"
    scale, unit = (100.0, "%") if percent else (1.0, "")
    if percent:  # a t interval can pass the ends of [0, 1]; a fraction cannot
        lo, hi = max(lo, 0.0), min(hi, 1.0)
    return f"{summary['mean'] * scale:.3g}{unit} [95% CI {lo * scale:.3g}, {hi * scale:.3g}]"


def fmt_diff(cmp: dict, percent: bool = True) -> str:
    """A paired comparison's mean difference a - b with its 95% CI, signed (see fmt_ci)."""
    return fmt_ci({"mean": cmp["diff"], "ci95": cmp["ci95"]}, percent, bounded=False)


def fmt_num(v) -> str:
    return "n/a" if v is None else f"{v:.3g}"


def fmt_p(p) -> str:
    return "n/a" if p is None else f"{p:.2g}"


def summary_table(title: str, conditions: dict, metrics: Sequence[str], percent: Sequence[str] = ()) -> dict:
    rows = [[name] + [fmt_ci(c["summary"][m], m in percent) for m in metrics] for name, c in conditions.items()]
    return {"title": title, "columns": ["condition"] + [f"{m} (mean [95% CI])" for m in metrics], "rows": rows}


def diverged_runs(conditions: dict) -> list[dict]:
    return [{"condition": name, "seed": r["seed"], "epoch": r.get("diverged_epoch")}
            for name, c in conditions.items() for r in c["runs"] if r.get("diverged")]


def median_diff_sentence(cmp: dict, unit: str) -> str:
    """'A needed fewer epochs than B in k of n seeds; median difference d, 95% CI [lo, hi]'."""
    lo, hi = cmp["ci95"] if cmp.get("ci95") else (None, None)
    ci = f", 95% CI [{lo:.3g}, {hi:.3g}]" if lo is not None else ""
    diff = cmp.get("median_diff")  # None when every run of a side diverged: nothing to compare
    diff = "n/a" if diff is None else f"{diff:.3g} {unit}"
    return f"median difference {diff}{ci} (p = {fmt_p(cmp['p_value'])}, {cmp['test']})"


def all_runs(conditions: dict) -> list[dict]:
    """Every run of every condition, condition by condition."""
    return [r for c in conditions.values() for r in c["runs"]]


def metric_array(runs: Sequence[dict], metric: str) -> np.ndarray:
    """One metric of every run as floats, NaN where it is missing (None)."""
    return np.array([np.nan if r["metrics"][metric] is None else r["metrics"][metric] for r in runs], dtype=float)


def in_most(flags) -> tuple[int, bool]:
    """(k, k > n/2): in how many of n runs (seeds) a claim held, and whether that is most of them."""
    flags = np.asarray(flags, dtype=bool)
    k = int(np.sum(flags))
    return k, k > len(flags) / 2
