"""The cost model of `dlstudies plan`: a unit's CPU seconds at its real budget and data size from
its timed slices, each at a budget fraction f and a data fraction g of the real unit's (dlstudies.plan
makes and times the slices).

A slice's time is split into its training (inside the engine's fits) and the rest (measures on the
trained models, checks, evaluations). Training costs a + f·(c + d·g), from three corners of the
slice grid; the rest a + b·g + f·(c + d·g), its growth with the budget counted only above the noise
(measures run once per trained model, whatever its epochs), from a fourth corner only where it grows.
"""

from __future__ import annotations

from dataclasses import dataclass

MIN_SLOPE_S = 0.1  # CPU seconds the larger budget must add to a slice: well above the noise of one thread's CPU time
REST_NOISE = 0.15  # the share by which a slice's measures (seconds of work) vary run to run beside other work

# The four corners of a unit's slices: (smaller or larger budget, smaller or larger data size).
CORNERS = (("lo", "top"), ("hi", "top"), ("hi", "small"), ("lo", "small"))


@dataclass(frozen=True)
class Timing:
    """CPU seconds of one slice: all of it, and the part inside the engine's fits (training)."""

    seconds: float
    fit_s: float = 0.0
    fits: int = 0

    def parts(self) -> tuple[float, float]:
        """(training, the rest): the rest (measures on the trained models, checks, evaluations) may
        not grow with the budget at all, so each part has its own model."""
        return self.fit_s, max(0.0, self.seconds - self.fit_s)

    def budgeted(self) -> float:
        """The seconds that the epoch budget drives: the fits' where the engine reported any."""
        return self.fit_s if self.fits else self.seconds


def _slope(y1: float, y2: float, x1: float, x2: float, floor: float = 0.0) -> float:
    """The growth of y per unit of x, at least 0 (noise never makes more work cost less) and 0 where
    y grows by less than `floor` (within the noise)."""
    return max(0.0, (y2 - y1) / (x2 - x1)) if x2 > x1 and y2 - y1 >= floor else 0.0


def training_seconds(t: dict, f: tuple[float, float], g: tuple[float, float]) -> tuple[float, float]:
    """Training of the real unit (budget 1, data 1) from three corners {corner: seconds}: it costs
    a + f·(c + d·g): work per fit (building the stack), per epoch on fixed sets (probes), per epoch
    and sample (the steps, and a step budget, cut with the data as an epoch of steps is). (a, c + d):
    the work per fit, and what the budget drives."""
    d = _slope(t["hi", "small"], t["hi", "top"], *g) / f[1]
    c = max(0.0, _slope(t["lo", "top"], t["hi", "top"], *f) - d * g[1])
    a = max(0.0, t["hi", "top"] - f[1] * (c + d * g[1]))
    return a, c + d


def rest_seconds(t: dict, f: tuple[float, float], g: tuple[float, float]) -> float:
    """The rest of the real unit (measures, evaluations) from the corners {corner: seconds}: it costs
    a + b·g + f·(c + d·g) where the fourth corner, ("lo", "small"), was timed (it is where `rest_grows`);
    else a + b·g, from the three corners of `training` (measures run once per trained model,
    whatever its epochs)."""
    b_hi = _slope(t["hi", "small"], t["hi", "top"], *g)
    if ("lo", "small") not in t:
        return max(0.0, t["hi", "top"] - b_hi * g[1]) + b_hi
    b_lo = _slope(t["lo", "small"], t["lo", "top"], *g)
    d = _slope(b_lo, b_hi, *f)  # how the growth with the samples grows with the budget
    b = max(0.0, b_hi - d * f[1])
    c = _slope(t["lo", "top"] - b_lo * g[1], t["hi", "top"] - b_hi * g[1], *f)
    a = max(0.0, t["hi", "top"] - b * g[1] - f[1] * (c + d * g[1]))
    return a + b + c + d


def rest_grows(timings: dict) -> bool:
    """Whether the rest of a unit grows with the budget above the noise (then its fourth corner is timed)."""
    lo, hi = timings["lo", "top"].parts()[1], timings["hi", "top"].parts()[1]
    return hi - lo >= rest_floor(timings)


def rest_floor(timings: dict) -> float:
    """The least growth of the rest with the budget that is not noise: MIN_SLOPE_S, or REST_NOISE of
    the rest where that is more (seconds of measures vary by that much beside other work), where the
    training was timed apart from the rest; else 0 (all of it may be training)."""
    if not any(t.fits for t in timings.values()):
        return 0.0
    return max(MIN_SLOPE_S, REST_NOISE * timings["hi", "top"].parts()[1])


def unit_seconds(grid: dict, timings: dict, parts: bool = False):
    """Seconds of a real unit from its slices {corner: Timing}: three corners of `grid`, and the
    fourth where its rest grows with the budget (`rest_grows`); with `parts`, (the training's work per
    fit, the training the budget drives, the rest)."""
    f = (grid["lo", "top"].budget, grid["hi", "top"].budget)
    g = (grid["hi", "small"].data, grid["hi", "top"].data)
    part = lambda i: {corner: t.parts()[i] for corner, t in timings.items()}  # noqa: E731
    split = (*training_seconds(part(0), f, g), rest_seconds(part(1), f, g))
    return split if parts else sum(split)
