"""A study's results.json as tidy tables: one row per run and metric, one row per claim.

The same functions build the runs.csv and claims.csv every study writes beside its results.json
and the frames `dlstudies.load(...)` returns, so the files and the frames always agree.
"""

from __future__ import annotations

import math
from numbers import Number
from typing import Iterator

import pandas as pd

from dlstudies.errors import UsageError
from dlstudies.store import write_atomic

RUN_COLUMNS = ["study", "condition", "seed", "metric", "value", "converged", "diverged"]
CLAIM_COLUMNS = ["study", "claim", "source", "kind", "metric", "verdict", "effect", "ci_low", "ci_high",
                 "p_value", "n", "evidence"]
CURVE_COLUMNS = ["study", "condition", "seed", "step", "value"]
# pandas' nullable types: a flag or count a study did not record is <NA>, not False or 0.
RUN_TYPES = {"seed": "Int64", "value": "float64", "converged": "boolean", "diverged": "boolean"}
CLAIM_TYPES = {"effect": "float64", "ci_low": "float64", "ci_high": "float64", "p_value": "float64", "n": "Int64"}
CURVE_TYPES = {"seed": "Int64", "step": "int64", "value": "float64"}


def _runs(results: dict) -> Iterator[tuple[str, dict]]:
    for condition, c in (results.get("conditions") or {}).items():
        for run in c.get("runs", []):
            yield condition, run


def _number(value) -> float:
    return float(value) if isinstance(value, Number) and value is not None else math.nan


def _is_scalar(value) -> bool:
    return value is None or isinstance(value, (Number, bool))


def runs_frame(results: dict) -> pd.DataFrame:
    """study, condition, seed, metric, value, converged, diverged: one row per run and scalar metric."""
    rows = [(results.get("study"), condition, run.get("seed"), metric, _number(value),
             run.get("converged"), run.get("diverged"))
            for condition, run in _runs(results)
            for metric, value in (run.get("metrics") or {}).items() if _is_scalar(value)]
    return _frame(rows, RUN_COLUMNS, RUN_TYPES)


def claims_frame(results: dict) -> pd.DataFrame:
    """One row per claim in results.json's checks; a field a study does not record yet is missing."""
    rows = []
    for check in results.get("checks") or []:
        lo, hi = (list(check.get("ci95") or []) + [None, None])[:2]
        rows.append((results.get("study"), check.get("claim"), check.get("source"), check.get("kind"),
                     check.get("metric"), check.get("verdict"), _number(check.get("effect")), _number(lo),
                     _number(hi), _number(check.get("p_value")), check.get("n"), check.get("evidence")))
    return _frame(rows, CLAIM_COLUMNS, CLAIM_TYPES)


def curve_names(results: dict) -> list[str]:
    return list(dict.fromkeys(name for _, run in _runs(results) for name in run.get("curves") or {}))


def curves_frame(results: dict, name: str) -> pd.DataFrame:
    """study, condition, seed, step, value of one per-epoch (or per-step) curve of every run."""
    rows = [(results.get("study"), condition, run.get("seed"), step, _number(value))
            for condition, run in _runs(results)
            for step, value in enumerate((run.get("curves") or {}).get(name) or []) if _is_scalar(value)]
    return _frame(rows, CURVE_COLUMNS, CURVE_TYPES)


def _frame(rows: list[tuple], columns: list[str], types: dict) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=columns)
    frame = frame.astype({c: t for c, t in types.items()})
    text = [c for c in columns if c not in types]
    frame[text] = frame[text].astype(object).where(frame[text].notna(), None)
    return frame


def concat(frames: list[pd.DataFrame], columns: list[str]) -> pd.DataFrame:
    """Frames of several studies, in order, as one with a fresh index."""
    frames = [f for f in frames if len(f)] or frames[:1]
    if not frames:
        raise UsageError("no results to tabulate")
    return pd.concat(frames, ignore_index=True)[columns]


def write_tables(folder, results: dict) -> list[str]:
    """runs.csv and claims.csv of one study, written atomically beside its results.json."""
    written = []
    for name, frame in (("runs.csv", runs_frame(results)), ("claims.csv", claims_frame(results))):
        write_atomic(folder / name, frame.to_csv(index=False))
        written.append(name)
    return written


def read_table(path, kind: str) -> pd.DataFrame:
    """A runs.csv or claims.csv read back with the frame's types (kind: "runs" or "claims")."""
    columns, types = {"runs": (RUN_COLUMNS, RUN_TYPES), "claims": (CLAIM_COLUMNS, CLAIM_TYPES)}[kind]
    frame = pd.read_csv(path, dtype={c: t for c, t in types.items()}, keep_default_na=False,
                        na_values={c: [""] for c in columns})
    return _frame(list(frame.itertuples(index=False, name=None)), columns, types)


__all__ = ["CLAIM_COLUMNS", "RUN_COLUMNS", "claims_frame", "concat", "curves_frame", "runs_frame", "read_table",
           "write_tables"]
