"""Tick labels a reader can read: none colliding, and plain numbers on a narrow log axis.

`tidy_ticks` runs on every figure before it is saved. A log axis spanning fewer than
PLAIN_LOG_DECADES decades gets ticks at 1-2-5 multiples of powers of ten (finer, up to 1-1.5-2-3-4-5-7
and beyond, only when that gives fewer than three) labelled as plain numbers ("0.6", "2", "30"), because matplotlib's default
there labels minor ticks "6×10⁻¹", which collide and read slowly. Wider log axes are labelled at
their decades in plain numbers too when all of a figure's are within 0.001 to 10000 (else 10^k), so
that a figure's panels read alike. Then any axis whose labels
overlap, measured on the drawn figure, is thinned until none do.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import (FixedLocator, FuncFormatter, Locator, LogLocator, MaxNLocator, NullFormatter)

PLAIN_LOG_DECADES = 2.0  # a log axis spanning fewer decades than this is labelled in plain numbers
# Multiples of each power of ten a narrow log axis may tick at, coarsest first.
NICE_MULTIPLES = ((1,), (1, 2, 5), (1, 2, 3, 5), (1, 1.5, 2, 3, 4, 5, 7), (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 7, 8, 9))
LEAST_TICKS = 3
PLAIN_LOW, PLAIN_HIGH = 1e-3, 1e5  # numbers in this range are written out in full ("0.001", "20000")


def plain_number(value: float, pos=None) -> str:
    """A tick value as a person writes it: 0.6, 2, 1500; 2e-5 or 3e+6 far from 1 (no ×10^ notation)."""
    if value == 0:
        return "0"
    value = float(f"{value:.3g}")  # a tick at 3.0000000000000004e-05 reads "3e-5", not numpy's "3.e-5"
    if PLAIN_LOW <= abs(value) < PLAIN_HIGH:
        return np.format_float_positional(value, precision=3, fractional=False, trim="-")
    return np.format_float_scientific(value, precision=2, trim="-", exp_digits=1)


class NiceLogLocator(Locator):
    """Ticks at 1-2-5 (or finer) multiples of powers of ten inside the view, for a narrow log axis:
    the coarsest set of NICE_MULTIPLES with at least LEAST_TICKS ticks, or `level` when given (a
    thinned axis); past the finest set (a view under a factor of about 1.3) evenly spaced ticks."""

    def __init__(self, level: int | None = None):
        self.level = level

    def __call__(self):
        vmin, vmax = sorted(self.axis.get_view_interval())
        return self.tick_values(vmin, vmax)

    def chosen_level(self, vmin: float, vmax: float) -> int:
        if self.level is not None:
            return self.level
        counts = [len(self._multiples(vmin, vmax, m)) for m in NICE_MULTIPLES]
        return next((i for i, n in enumerate(counts) if n >= LEAST_TICKS), len(NICE_MULTIPLES))

    def tick_values(self, vmin, vmax):
        if not (vmin > 0 and vmax > vmin):
            return np.array([])
        level = self.chosen_level(vmin, vmax)
        if level >= len(NICE_MULTIPLES):
            ticks = MaxNLocator(nbins=LEAST_TICKS).tick_values(vmin, vmax)
            return ticks[(ticks >= vmin) & (ticks <= vmax)]
        return self._multiples(vmin, vmax, NICE_MULTIPLES[level])

    @staticmethod
    def _multiples(vmin: float, vmax: float, multiples) -> np.ndarray:
        powers = 10.0 ** np.arange(np.floor(np.log10(vmin)), np.ceil(np.log10(vmax)) + 1)
        ticks = np.sort(np.outer(powers, multiples).ravel())
        return ticks[(ticks >= vmin * (1 - 1e-9)) & (ticks <= vmax * (1 + 1e-9))]

    def coarser(self) -> "NiceLogLocator":
        vmin, vmax = sorted(self.axis.get_view_interval())
        return NiceLogLocator(max(0, min(self.chosen_level(vmin, vmax), len(NICE_MULTIPLES)) - 1))


def _log_axes(fig: Figure) -> list:
    """The figure's log axes with matplotlib's own locator (a caller's own ticks are left alone)."""
    return [axis for axis in _axes_2d(fig) if axis.get_scale() == "log" and axis.get_view_interval().min() > 0
            and type(axis.get_major_locator()) is LogLocator]


def _narrow(axis) -> bool:
    vmin, vmax = sorted(axis.get_view_interval())
    return bool(np.log10(vmax / vmin) < PLAIN_LOG_DECADES)


def _short_decades(axis) -> bool:
    """Every decade the axis labels is short in plain numbers (0.001 to 10000)."""
    vmin, vmax = sorted(axis.get_view_interval())
    return all(PLAIN_LOW <= t < PLAIN_HIGH for t in axis.get_majorticklocs() if vmin <= t <= vmax)


def plain_log_labels(fig: Figure) -> bool:
    """Log axes in plain numbers where they stay short: a narrow one ticked at 1-2-5 multiples
    (minor ticks unlabelled); the wider ones at their decades (0.001, 0.1, 10) when every wider one
    of the figure can be, so that the panels of a figure read alike. Whether any axis changed."""
    axes = _log_axes(fig)
    wide = [axis for axis in axes if not _narrow(axis)]
    plain_wide = all(_short_decades(axis) for axis in wide)
    changed = [axis for axis in axes if axis not in wide or plain_wide]
    for axis in changed:
        if axis not in wide:
            axis.set_major_locator(NiceLogLocator())
            axis.set_minor_formatter(NullFormatter())
        axis.set_major_formatter(FuncFormatter(plain_number))
    return bool(changed)


def _collide(labels, renderer, pad: float = 4.0) -> bool:
    """Whether any two visible, non-empty tick labels overlap or nearly touch (closer than `pad` pixels)."""
    boxes = [t.get_window_extent(renderer).expanded(1.0, 1.0).padded(pad / 2)
             for t in labels if t.get_visible() and t.get_text()]
    return any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])


def _thin(axis) -> None:
    """Fewer ticks on an axis: minor labels off first, then half the major ticks."""
    if axis.get_scale() == "log" and any(t.get_text() for t in axis.get_ticklabels(minor=True)):
        axis.set_minor_formatter(NullFormatter())
        return
    locator = axis.get_major_locator()
    if isinstance(locator, NiceLogLocator):
        axis.set_major_locator(locator.coarser())
    elif isinstance(locator, FixedLocator):
        axis.set_major_locator(FixedLocator(locator.locs[::2]))
    elif axis.get_scale() == "log":
        axis.set_major_locator(LogLocator(numticks=max(2, len(axis.get_majorticklocs()) // 2)))
    else:
        integer = isinstance(locator, MaxNLocator) and locator._integer
        axis.set_major_locator(MaxNLocator(nbins=max(2, len(axis.get_majorticklocs()) // 2), integer=integer))


def _axes_2d(fig: Figure):
    return [axis for ax in fig.axes if ax.name != "3d" for axis in (ax.xaxis, ax.yaxis)]


def tidy_ticks(fig: Figure, rounds: int = 3) -> None:
    """Plain labels on narrow log axes, then thin every axis whose tick labels collide, measured on
    the drawn figure (3-D axes aside); titles wrap rather than run off the figure's edge. The figure's
    last draw is of it as it leaves (`save` keeps that draw's layout)."""
    for ax in fig.axes:
        ax.title.set_wrap(True)
    fig.draw_without_rendering()  # autoscaled limits first: how narrow an axis is depends on them
    if plain_log_labels(fig):
        fig.draw_without_rendering()
    for _ in range(rounds):
        renderer = fig.canvas.get_renderer()
        crowded = [axis for axis in _axes_2d(fig) if _collide(axis.get_ticklabels(which="both"), renderer)]
        if not crowded:
            return
        for axis in crowded:
            _thin(axis)
        fig.draw_without_rendering()
