"""Tick labels: plain numbers on narrow log axes, none colliding, a caller's own ticks left alone."""

import re

import numpy as np
import pytest
from matplotlib.ticker import FixedLocator

from dlstudies.report import figures as F
from dlstudies.report.ticks import NiceLogLocator, _collide, plain_number, tidy_ticks

PLAIN = re.compile(r"^-?\d+(\.\d+)?(e[+-]\d+)?$")  # "0.6", "20", "2e-5"; never "6×10⁻¹" (mathtext)


@pytest.mark.parametrize("value, text", [(0.6, "0.6"), (2.0, "2"), (1500.0, "1500"), (0.001, "0.001"),
                                         (0.30000000000000004, "0.3"), (2e-5, "2e-5"), (3.0000000000000004e-05, "3e-5"),
                                         (2.0000000000000004, "2"), (1.25e-7, "1.25e-7"), (3e6, "3e+6"), (0.0, "0")])
def test_plain_number(value, text):
    assert plain_number(value) == text


def _log_axes(lo, hi, size=(4, 3)):
    fig, ax = F.new_figure(size=size)
    ax.plot(np.arange(50), np.geomspace(lo, hi, 50))
    ax.set_yscale("log")
    return fig, ax


def _labels(axis):
    return [t.get_text() for t in axis.get_ticklabels(which="both") if t.get_visible() and t.get_text()]


def _shown(ax):
    """(tick, label) of the labelled major ticks inside the view (as drawn, after tidy_ticks)."""
    lo, hi = ax.get_ylim()
    pairs = zip(ax.yaxis.get_majorticklocs(), ax.yaxis.get_majorticklabels())
    return [(v, t.get_text()) for v, t in pairs if lo <= v <= hi and t.get_text()]


@pytest.mark.parametrize("lo, hi", [(0.45, 1.8), (0.67, 1.74), (0.2, 0.8), (2e-5, 9e-5), (0.93, 1.06), (3.0, 150.0)])
def test_narrow_log_axis_reads_in_plain_numbers(lo, hi):
    fig, ax = _log_axes(lo, hi)
    tidy_ticks(fig)
    fig.draw_without_rendering()
    shown = _shown(ax)
    assert len(shown) >= 2 and all(PLAIN.match(t) for _, t in shown), shown
    assert all(float(t) == pytest.approx(v, rel=0.01) for v, t in shown)  # each label says its tick
    assert not any(ax.yaxis.get_ticklabels(minor=True)[i].get_text() for i in range(len(ax.yaxis.get_minorticklocs())))
    assert not _collide(ax.yaxis.get_ticklabels(which="both"), fig.canvas.get_renderer())


def test_narrow_log_ticks_are_the_coarsest_nice_set_with_three():
    locator = NiceLogLocator()
    np.testing.assert_allclose(locator.tick_values(0.45, 1.8), [0.5, 0.7, 1.0, 1.5])
    np.testing.assert_allclose(locator.tick_values(0.15, 6.0), [0.2, 0.5, 1.0, 2.0, 5.0])
    assert len(locator.tick_values(0.97, 1.02)) >= 2  # inside one tick step: evenly spaced instead


def test_wide_log_axis_plain_inside_the_readable_range_and_powers_outside():
    fig, ax = _log_axes(1e-3, 30.0)
    tidy_ticks(fig)
    fig.draw_without_rendering()
    assert {"0.001", "0.1", "10"} <= set(_labels(ax.yaxis))
    fig, ax = _log_axes(1e-9, 1.0)
    tidy_ticks(fig)
    fig.draw_without_rendering()
    assert any("10^" in t for t in _labels(ax.yaxis))  # eight decades: matplotlib's 10^k stays


def test_the_wide_log_panels_of_one_figure_read_alike():
    fig, (a, b) = F.new_figure(ncols=2)
    for ax, lo in ((a, 1e-6), (b, 1e-2)):
        ax.plot(np.arange(50), np.geomspace(lo, 1.0, 50))
        ax.set_yscale("log")
    tidy_ticks(fig)
    fig.draw_without_rendering()
    assert all(t.startswith("$") for ax in (a, b) for t in _labels(ax.yaxis))  # both 10^k, as the deep one needs


def test_a_callers_own_ticks_are_kept():
    fig, ax = _log_axes(0.5, 1.5)
    ax.yaxis.set_major_locator(FixedLocator([0.6, 1.2]))
    tidy_ticks(fig)
    assert list(ax.yaxis.get_major_locator().locs) == [0.6, 1.2]


def test_crowded_narrow_log_axis_is_thinned_to_coarser_nice_ticks():
    fig, ax = _log_axes(0.11, 9.5, size=(3, 1.0))  # 1-2-5 ticks on a one-inch axis collide
    tidy_ticks(fig)
    fig.draw_without_rendering()
    labels = _labels(ax.yaxis)
    assert 1 <= len(labels) < 8 and all(PLAIN.match(t) for t in labels)
    assert not _collide(ax.yaxis.get_ticklabels(which="both"), fig.canvas.get_renderer())
