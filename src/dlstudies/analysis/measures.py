"""What kind of number a metric is, read from its name: its bounds, its scale and its reader's unit.

One table serves every summary, interval, claim, table and sentence, so a metric is shown in one
unit everywhere (METHOD.md §2): accuracies as percent (differences of them as percent points),
positive skewed quantities (losses, epochs, sharpness, ratios of positive quantities) as geometric
means and ratios, everything else as plain numbers. results.json keeps the raw values (fractions).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Measure:
    """bounds: the values a metric can take; log: compared as ratios (positive, skewed);
    percent: shown in percent (its differences in percent points)."""

    name: str
    bounds: tuple[float, float]
    log: bool = False
    percent: bool = False


FRACTION = Measure("fraction", (0.0, 1.0), percent=True)
SIGNED_FRACTION = Measure("difference of fractions", (-1.0, 1.0), percent=True)
CORRELATION = Measure("correlation", (-1.0, 1.0))
POSITIVE = Measure("positive", (0.0, math.inf), log=True)
COUNT = Measure("count", (0.0, math.inf))
REAL = Measure("real", (-math.inf, math.inf))

# First match wins. Names follow the convention of results.json: fractions end in _acc, accuracy,
# minimal_ratio, fraction or share; ratios of positive quantities end in _ratio or _factor.
RULES: tuple[tuple[str, Measure], ...] = (
    (r"(_gap|^gap)$", SIGNED_FRACTION),
    (r"(_acc|accuracy|minimal_ratio|fraction|share|index|^reached|^collapsed|^fits)$", FRACTION),
    (r"(^rho|_rho|correlation)$", CORRELATION),
    (r"(loss|mse|sharpness|epochs|steps|samples|_ratio|_factor|auc|_norm|sensitivity|slowdown|distance|rate)$", POSITIVE),
    (r"(^n_|_count$|^dead)", COUNT),
)


def measure(metric: str) -> Measure:
    for pattern, kind in RULES:
        if re.search(pattern, metric):
            return kind
    return REAL


def clip(metric: str, lo, hi):
    """An interval cut to the metric's bounds (None stays None)."""
    b_lo, b_hi = measure(metric).bounds
    return (None if lo is None else max(lo, b_lo), None if hi is None else min(hi, b_hi))


# ---- the reader's units ------------------------------------------------------------------------

def sig(x: float, digits: int = 3) -> str:
    """x to `digits` significant digits, no exponent between 1e-3 and 1e6; an exact 0 is '0'."""
    if x is None or not math.isfinite(x):
        return "n/a"
    if x == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(x)))
    if -3 <= magnitude < 6:
        return f"{x:.{max(0, digits - 1 - magnitude)}f}"
    return f"{x:.{digits - 1}e}"


def value_text(metric: str, x) -> str:
    """A value of the metric in its unit: '85.4%', '0.0123', '64'."""
    if x is None:
        return "n/a"
    return f"{sig(100 * x)}%" if measure(metric).percent else sig(x)


def effect_text(metric: str, x, log: bool | None = None) -> str:
    """An effect on the metric: a signed difference ('+8.0 pp', '-0.012') or a ratio ('3.1x')."""
    if x is None:
        return "n/a"
    kind = measure(metric)
    if kind.log if log is None else log:
        return f"{sig(x)}x"
    if kind.percent:
        return f"{_signed(100 * x, 1)} pp"
    return _signed(x)


def _signed(x: float, decimals: int | None = None) -> str:
    # Differences below display precision are exactly what they are: zero. A tie that floating
    # point leaves at 2e-15 must not print as "-2.22e-15%".
    if abs(x) < 1e-12:
        return "0"
    text = f"{x:.{decimals}f}" if decimals is not None else sig(abs(x))
    text = text.lstrip("-")
    return ("-" if x < 0 else "+") + text


def interval_text(metric: str, ci, effect: bool = False, log: bool | None = None) -> str:
    """'[lo, hi]' in the metric's unit (an effect's interval: signed, percent points or ratios)."""
    lo, hi = (list(ci) if ci else [None, None])[:2]
    if lo is None or hi is None:
        return "[n/a]"
    if effect:
        fmt = (lambda v: effect_text(metric, v, log))
    else:
        fmt = (lambda v: value_text(metric, v))
    return f"[{fmt(lo)}, {fmt(hi)}]"
