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


def diverged_runs(conditions: dict) -> list[dict]:
    return [{"condition": name, "seed": r["seed"], "epoch": r.get("diverged_epoch")}
            for name, c in conditions.items() for r in c["runs"] if r.get("diverged")]


def all_runs(conditions: dict) -> list[dict]:
    """Every run of every condition, condition by condition."""
    return [r for c in conditions.values() for r in c["runs"]]


# ---- the standard summary every study gets (METHOD.md §2) --------------------------------------

def describe_conditions(conditions: dict, metrics: Sequence[str]) -> dict:
    """Each condition's summary per metric: the statistic its kind takes, with its own interval."""
    for name, c in conditions.items():
        c["summary"] = {m: stats.describe(metric_values(conditions, name, m), m) for m in metrics}
    return conditions


def cell(s: dict, metric: str) -> str:
    """'85.4% [83.1%, 87.2%]' or '0.0123 [0.0101, 0.0150]': a summary's statistic and its interval."""
    from dlstudies.analysis.measures import interval_text, value_text

    if s.get("value") is None:
        return "n/a"
    return f"{value_text(metric, s['value'])} {interval_text(metric, s['ci95'])}"


def main_table(conditions: dict, metrics: Sequence[str], title: str = "") -> dict:
    """The study's table: one row per condition, one column per metric, statistic [95% CI]."""
    def heading(m):
        stat = next((c["summary"][m]["statistic"] for c in conditions.values()
                     if c["summary"][m].get("value") is not None), "mean")
        return f"{m} ({stat} [95% CI])"
    rows = [[name] + [cell(c["summary"][m], m) for m in metrics] for name, c in conditions.items()]
    return {"title": title or "Per condition, over seeds", "columns": ["condition"] + [heading(m) for m in metrics],
            "rows": rows}


def convergence(conditions: dict) -> dict:
    """How many runs per condition are flagged still improving / diverged (answers must read it)."""
    return {name: {"runs": len(c["runs"]),
                   "still_improving": sum(bool(r.get("still_improving")) for r in c["runs"]),
                   "diverged": sum(bool(r.get("diverged")) for r in c["runs"])}
            for name, c in conditions.items()}


STILL_IMPROVING_TAIL = 0.1
STILL_IMPROVING_DROP = 0.01


def still_improving(curve: Sequence) -> bool:
    """The run is still improving: over its last 10% of epochs the loss fell by more than 1%
    (relative). A curve of fewer than two finite points says nothing: False."""
    x = np.asarray([np.nan if v is None else v for v in curve], dtype=float)
    x = x[np.isfinite(x)]
    if len(x) < 2:
        return False
    k = max(1, int(np.ceil(STILL_IMPROVING_TAIL * len(x))))
    before, last = x[-1 - k], x[-1]
    return bool(before > 0 and (before - last) / before > STILL_IMPROVING_DROP)


def standard_summary(study, unit_results: list[dict]) -> dict:
    conditions = describe_conditions(group_runs(unit_results), study.metrics)
    return {"conditions": conditions, "table": main_table(conditions, study.metrics),
            "convergence": convergence(conditions), "diverged": diverged_runs(conditions)}


def summarize_study(study, cfg, unit_results: list[dict]) -> dict:
    """What results.json holds of a study's measurements: the study's own summary, and, for a study
    that declares its claims, the standard summary under it, the checks, their counts and the answer.
    A study that declares metrics gets `summarize(cfg, unit_results, standard)`."""
    from dlstudies.analysis.claims import counts, evaluate_all

    if not study.metrics:
        results = study.summarize(cfg, unit_results)
    else:
        standard = standard_summary(study, unit_results)
        results = {**standard, **study.summarize(cfg, unit_results, standard)}
    if study.claims is not None:
        results["checks"] = evaluate_all(study.claims(cfg), results)
        if not results["checks"]:
            raise ValueError(f"study {study.name} declares no claim: every study is judged by at least one")
        results["verdicts"] = counts(results["checks"])
    if study.answer is not None:
        results["answer"] = study.answer(cfg, results)
    if study.setup is not None:
        results["setup"] = study.setup(cfg)
    return results


def paired_contrast(table: dict, a: str, b: str, metric: str) -> dict:
    """Condition a against b on one metric, paired by seed (stats.paired_effect: a ratio for positive
    skewed metrics), with `text`: the effect and its 95% CI in the reader's units ('3.1x [2.2x, 4.4x]')."""
    from dlstudies.analysis.claims import aligned
    from dlstudies.analysis.measures import effect_text, interval_text

    x, y, _ = aligned(table, a, b, metric)  # the pairing a paired claim on the same metric uses
    e = stats.paired_effect(x, y, metric)
    e["text"] = f"{effect_text(metric, e['effect'], e['log'])} {interval_text(metric, e['ci95'], True, e['log'])}"
    return e


def overall_verdict(checks: Sequence[dict]) -> str:
    """The verdict on a question several planned claims answer together (one per target or model
    family): supported when every one is, contradicted when one is and none is supported,
    inconclusive otherwise (the answer then names each claim's verdict)."""
    verdicts = {c["verdict"] for c in checks}
    if verdicts == {"supported"}:
        return "supported"
    if "contradicted" in verdicts and "supported" not in verdicts:
        return "contradicted"
    return "inconclusive"


def best_still_improving(curve: Sequence) -> bool:
    """`still_improving` on the running minimum: the last 10% of epochs found a loss more than 1%
    below the best one before them. For curves that jitter (a mini-batch run's validation loss moves
    by several percent from epoch to epoch; full-batch Adam spikes), where comparing two single
    epochs is decided by one spike; the best value so far is what more training could still lower."""
    x = np.asarray([np.nan if v is None else v for v in curve], dtype=float)
    return still_improving(np.fmin.accumulate(x)) if len(x) else False


def still_improving_note(convergence: dict, measure: str) -> str:
    """The answer's sentence on convergence: which conditions had runs still improving at the budget
    (flags from `best_still_improving` on `measure`, e.g. "validation loss"), or that none had."""
    late = {name: c for name, c in convergence.items() if c["still_improving"]}
    if not late:
        return (f"No run was still improving at the budget (its best {measure} fell by at most 1% over the last "
                "10% of epochs).")
    names = ", ".join(f"{name} {c['still_improving']} of {c['runs']}" for name, c in late.items())
    total, runs = sum(c["still_improving"] for c in late.values()), sum(c["runs"] for c in convergence.values())
    return (f"{total} of {runs} runs were still improving at the budget (best {measure} fell > 1% over the last "
            f"10% of epochs: {names}); for them the comparison measures speed as well as capacity.")


# ---- readings of one run's curves (METHOD.md §3) -----------------------------------------------

def epochs_to(curve: Sequence, target: float, below: bool = True) -> int | None:
    """Time to a target: the first epoch (1-based) whose value is at most (below) or at least
    `target`; None if none is."""
    x = np.asarray([np.nan if v is None else v for v in curve], dtype=float)
    hit = x <= target if below else x >= target
    return int(np.argmax(hit)) + 1 if hit.any() else None


def loss_auc(curve: Sequence) -> float | None:
    """Area under the mean-epoch-loss curve per epoch (the mean loss over the budget); None if any
    value is not finite."""
    x = np.asarray([np.nan if v is None else v for v in curve], dtype=float)
    return float(np.mean(x)) if len(x) and np.all(np.isfinite(x)) else None


def stop_epoch(loss: Sequence, tolerance: float) -> tuple[int, bool]:
    """Report A's stop rule read off a loss history that ran on: (index of the epoch the rule
    |Δ loss| < tolerance ends on, whether it fired). Exact for members trained independently."""
    x = np.asarray([np.nan if v is None else v for v in loss], dtype=float)
    hit = np.abs(np.diff(x)) < tolerance
    return (int(np.argmax(hit)) + 1, True) if hit.any() else (len(x) - 1, False)


def pairwise_display(conditions: dict, metric: str, what: str = "conditions") -> dict:
    """Every pair of conditions on one metric (stats.pairwise_table, Holm-adjusted within the table)
    as a results.json table; `pairs` keeps the rows' numbers for answers."""
    from dlstudies.analysis.measures import effect_text, interval_text

    rows = stats.pairwise_table(metric, {c: metric_values(conditions, c, metric) for c in conditions})
    op = "/" if any(r["log"] for r in rows) else "−"
    body = [[f"{r['a']} {op} {r['b']}", effect_text(metric, r["effect"], r["log"]),
             interval_text(metric, r["ci95"], effect=True, log=r["log"]), p_text(r["p_value"]), p_text(r["p_holm"]),
             r["n"]] for r in rows]
    return {"title": f"All pairs of {what} on {metric}, paired by seed; p Holm-adjusted within this table (exploratory)",
            "columns": ["pair", "effect", "95% CI", "p (sign-flip)", "p (Holm-adjusted)", "n"], "rows": body,
            "pairs": rows}


def p_text(p) -> str:
    """A p-value as tables and answers print it: two digits, '< 0.001' below that."""
    return "n/a" if p is None else ("< 0.001" if p < 1e-3 else f"{p:.2g}")
