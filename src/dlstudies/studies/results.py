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


def fmt_ci(summary: dict, percent: bool = False) -> str:
    """'mean [95% CI lo, hi]' for tables and answers; percentages for accuracies."""
    if summary.get("mean") is None:
        return "n/a"
    scale, unit = (100.0, "%") if percent else (1.0, "")
    lo, hi = summary["ci95"]
    if percent:  # a t interval can pass the ends of [0, 1]; a fraction cannot
        lo, hi = max(lo, 0.0), min(hi, 1.0)
    return f"{summary['mean'] * scale:.3g}{unit} [95% CI {lo * scale:.3g}, {hi * scale:.3g}]"


def summary_table(title: str, conditions: dict, metrics: Sequence[str], percent: Sequence[str] = ()) -> dict:
    rows = [[name] + [fmt_ci(c["summary"][m], m in percent) for m in metrics] for name, c in conditions.items()]
    return {"title": title, "columns": ["condition"] + [f"{m} (mean [95% CI])" for m in metrics], "rows": rows}


def summed_confusion(runs: Sequence[dict], split: str) -> np.ndarray:
    """Confusion counts summed over seeds, row-normalised (rows: true class)."""
    total = np.sum([np.asarray(r["confusion"][split], dtype=float) for r in runs], axis=0)
    return total / np.maximum(total.sum(1, keepdims=True), 1)


def diverged_runs(conditions: dict) -> list[dict]:
    return [{"condition": name, "seed": r["seed"], "epoch": r.get("diverged_epoch")}
            for name, c in conditions.items() for r in c["runs"] if r.get("diverged")]


def median_diff_sentence(cmp: dict, unit: str) -> str:
    """'A needed fewer epochs than B in k of n seeds; median difference d, 95% CI [lo, hi]'."""
    lo, hi = cmp["ci95"] if cmp.get("ci95") else (None, None)
    ci = f", 95% CI [{lo:.3g}, {hi:.3g}]" if lo is not None else ""
    return f"median difference {cmp['median_diff']:.3g} {unit}{ci} (p = {_p(cmp['p_value'])}, {cmp['test']})"


def _p(p) -> str:
    return "n/a" if p is None else f"{p:.2g}"
