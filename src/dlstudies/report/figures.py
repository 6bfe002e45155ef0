"""Shared drawing for every study: matplotlib's object-oriented API only, never pyplot's state.

Figures are `matplotlib.figure.Figure` objects drawn on the Agg canvas, so nothing here needs a
display or touches global state, and studies can draw in worker processes.

One palette everywhere: Okabe & Ito (2008), distinguishable under the common colour-vision
deficiencies. Yellow is last because it is faint on white.

Bands over seeds (`mean_band`): at each step, the runs still running give the mean and a 95%
t-interval of that mean. With only two runs the t quantile is 12.7 and the band would swamp the
plot, so with two runs the band is their min-max range instead (a percentile band, labelled as
such in the docstring, not a CI); with one run there is no band.
"""

from __future__ import annotations

import contextlib
import io
import sys
import warnings
from contextvars import ContextVar
from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from scipy import stats as sps

from dlstudies.store import write_atomic

OKABE_ITO = ("#E69F00", "#56B4E9", "#009E73", "#0072B2", "#D55E00", "#CC79A7", "#000000", "#F0E442")
CONFUSION_CMAP = "Blues"  # sequential, monotone in lightness: readable in grey and by all viewers
DPI = 120
DECADES_FOR_LOG = 2.0  # data spanning at least this many decades gets a log axis


def color(i: int) -> str:
    """The i-th colour of the palette, cycling."""
    return OKABE_ITO[i % len(OKABE_ITO)]


def new_figure(ncols: int = 1, nrows: int = 1, size: tuple[float, float] | None = None):
    """(fig, axes): one Axes for a 1x1 grid, else a flat (row-major) array of Axes."""
    size = size or (4.8 * ncols, 3.6 * nrows)
    fig = Figure(figsize=size, layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes:
        ax.set_prop_cycle(color=OKABE_ITO)
        ax.grid(True, alpha=0.3)
        ax.set_axisbelow(True)  # grid lines behind bars and bands
    return fig, (axes[0] if len(axes) == 1 else axes)


def _ragged(runs: Sequence[Sequence[float | None]]) -> np.ndarray:
    """Runs of different lengths as one (runs, steps) array, NaN where a run had stopped."""
    steps = max((len(r) for r in runs), default=0)
    out = np.full((len(runs), steps), np.nan)
    for i, run in enumerate(runs):
        out[i, : len(run)] = [np.nan if v is None else v for v in run]
    out[~np.isfinite(out)] = np.nan  # a diverged value (inf) counts as missing, not as data
    return out


# Axes that count whole things: ticks at fractions of an epoch would mislead.
INTEGER_AXES = {"epoch", "iteration", "step"}


def mean_band(runs: Sequence[Sequence[float | None]]):
    """(mean, lo, hi, count) per step over the runs still running; see the module docstring."""
    x = _ragged(runs)
    count = np.sum(~np.isnan(x), axis=0)
    with warnings.catch_warnings():  # steps with 0 or 1 finite runs: NaN / no band, by design
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(x, axis=0)
        sem = np.nanstd(x, axis=0, ddof=1) / np.sqrt(count)
        half = np.where(count >= 3, sps.t.ppf(0.975, np.maximum(count - 1, 1)) * sem, 0.0)
        lo, hi = mean - half, mean + half
        # The band stays inside the range the runs span: a t interval of a positive loss can
        # otherwise dip below zero, which a log axis cannot draw; with two runs it is that range.
        lo, hi = np.fmax(lo, np.nanmin(x, axis=0)), np.fmin(hi, np.nanmax(x, axis=0))
        two = count == 2
        if two.any():
            lo[two], hi[two] = np.nanmin(x[:, two], axis=0), np.nanmax(x[:, two], axis=0)
    return mean, lo, hi, count


def spans_decades(values) -> bool:
    """True when the positive finite values span at least DECADES_FOR_LOG decades."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    return v.size > 0 and bool(np.all(v > 0)) and np.log10(v.max() / v.min()) >= DECADES_FOR_LOG


def _label(ax: Axes, xlabel: str | None, ylabel: str | None) -> None:
    """Set axis labels the caller gave, without erasing ones already there."""
    if xlabel and not ax.get_xlabel():
        ax.set_xlabel(xlabel)
    if ylabel and not ax.get_ylabel():
        ax.set_ylabel(ylabel)


def curve_band(ax: Axes, runs, label: str, color: str | None = None, x=None, log_y: bool | None = None,
               xlabel: str = "epoch", ylabel: str | None = None):
    """Mean over seeds with its 95% band; log_y=None switches to log when the mean spans decades."""
    mean, lo, hi, _ = mean_band(runs)
    x = np.arange(1, len(mean) + 1) if x is None else np.asarray(x, dtype=float)[: len(mean)]
    (line,) = ax.plot(x, mean, label=label, color=color, lw=1.5)
    ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.2, lw=0)
    if xlabel in INTEGER_AXES:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if log_y or (log_y is None and spans_decades(mean)):
        ax.set_yscale("log", nonpositive="clip")  # switch on only: an earlier curve may need it
    _label(ax, xlabel, ylabel)
    return line


def row_normalise(matrix) -> np.ndarray:
    """Each row divided by its sum (a row with no samples stays zero)."""
    m = np.asarray(matrix, dtype=float)
    sums = m.sum(axis=1, keepdims=True)
    return np.divide(m, sums, out=np.zeros_like(m), where=sums > 0)


def confusion(ax: Axes, matrix, class_names=None, title: str = "", colorbar: bool = False):
    """Row-normalised confusion matrix (rows: true class) with each cell's fraction written in."""
    m = row_normalise(matrix)
    names = [str(c) for c in (class_names if class_names is not None else range(len(m)))]
    image = ax.imshow(m, cmap=CONFUSION_CMAP, vmin=0.0, vmax=1.0)
    for (i, j), v in np.ndenumerate(m):
        ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=8,
                color="white" if v > 0.6 else "black")  # dark cells need light text
    ax.set(xticks=range(len(names)), yticks=range(len(names)), xticklabels=names, yticklabels=names,
           xlabel="predicted", ylabel="true", title=title)
    ax.grid(False)
    if colorbar:
        ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    return image


def _mean_err(summaries: Sequence[dict]) -> tuple[np.ndarray, np.ndarray]:
    """Means and asymmetric error bars (2, n) from summary dicts; None becomes NaN (not drawn)."""
    def num(v):
        return np.nan if v is None else float(v)

    mean = np.array([num(s.get("mean")) for s in summaries])
    lo = np.array([num((s.get("ci95") or [None, None])[0]) for s in summaries])
    hi = np.array([num((s.get("ci95") or [None, None])[1]) for s in summaries])
    return mean, np.vstack([mean - lo, hi - mean])


def bar_ci(ax: Axes, names: Sequence[str], summaries: Sequence[dict], ylabel: str | None = None,
           colors: Sequence[str] | None = None):
    """One bar per condition at its mean, with its 95% CI as the error bar."""
    mean, err = _mean_err(summaries)
    colors = colors or [color(i) for i in range(len(names))]
    bars = ax.bar(range(len(names)), np.nan_to_num(mean), yerr=err, color=colors, capsize=4,
                  error_kw={"elinewidth": 1})
    ax.set_xticks(range(len(names)), [str(n) for n in names], rotation=30 if len(names) > 4 else 0)
    _label(ax, None, ylabel)
    return bars


def errorbar_x(ax: Axes, x, summaries: Sequence[dict], label: str | None = None, color: str | None = None,
               log_x: bool | None = None, xlabel: str | None = None, ylabel: str | None = None):
    """Metric (mean, 95% CI) against a parameter; log_x=None switches to log when x spans decades."""
    mean, err = _mean_err(summaries)
    handle = ax.errorbar(x, mean, yerr=err, label=label, color=color, marker="o", ms=4, capsize=3)
    if log_x or (log_x is None and spans_decades(x)):
        ax.set_xscale("log")
    _label(ax, xlabel, ylabel)
    return handle


def condition_bands(ax: Axes, conditions: dict, curve: str, label=None, **band):
    """One curve_band per condition of results.json, over its runs' curves[curve], in palette order;
    label(name) makes a condition's legend entry (default: its name)."""
    for j, (name, c) in enumerate(conditions.items()):
        curve_band(ax, [r["curves"][curve] for r in c["runs"]], label=label(name) if label else name, color=color(j),
                   **band)


def training_loss_figure(conditions: dict, folder, title: str, **legend) -> list[str]:
    """The training loss per epoch of every condition (mean and band over seeds), saved as training_loss."""
    fig, ax = new_figure(size=(6, 4))
    condition_bands(ax, conditions, "loss", ylabel="mean training loss in the epoch")
    ax.set_title(title)
    ax.legend(**legend)
    return save(fig, folder, "training_loss")


def confusion_grid(conditions: dict, folder, name: str = "confusion", width: float = 2.9, height: float = 3.0,
                   svg: bool = False) -> list[str]:
    """Train (top row) and test (bottom row) confusion matrices of each condition, summed over its seeds
    and row-normalised; width x height inches a panel. SVG off by default: a number in every cell makes it
    large and slow."""
    fig, axes = new_figure(ncols=len(conditions), nrows=2, size=(width * len(conditions), 2 * height))
    axes = np.asarray(axes).reshape(2, -1)
    for j, (label, c) in enumerate(conditions.items()):
        for i, split in enumerate(("train", "test")):
            total = np.sum([np.asarray(r["confusion"][split], dtype=float) for r in c["runs"]], axis=0)
            confusion(axes[i, j], total, title=f"{label}, {split}")
    return save(fig, folder, name, svg=svg)


def _render(fig: Figure, fmt: str) -> bytes:
    """The figure as bytes; SVG without its date so that the same data gives the same file."""
    buf = io.BytesIO()
    metadata = {"Date": None} if fmt == "svg" else {"Software": None}
    fig.savefig(buf, format=fmt, dpi=DPI, metadata=metadata)
    return buf.getvalue()


# Inside `kept_figures()`, `save` hands each figure over instead of writing and releasing it (Results.figure).
_KEPT: ContextVar[dict | None] = ContextVar("kept_figures", default=None)


@contextlib.contextmanager
def kept_figures():
    """{name: Figure} of every figure saved inside the block, kept open for the caller."""
    kept: dict[str, Figure] = {}
    token = _KEPT.set(kept)
    try:
        yield kept
    finally:
        _KEPT.reset(token)


def save(fig: Figure, folder, name: str, svg: bool = True) -> list[str]:
    """Write name.png (and name.svg) atomically into folder, release the figure, return the names."""
    formats = ("png", "svg") if svg else ("png",)
    kept = _KEPT.get()
    if kept is not None:  # the caller wants the Figure itself: no file, no rendering
        kept[name] = fig
        return [f"{name}.{fmt}" for fmt in formats]
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for fmt in formats:
        write_atomic(folder / f"{name}.{fmt}", _render(fig, fmt))
    _close(fig)
    return [f"{name}.{fmt}" for fmt in formats]


def _close(fig: Figure) -> None:
    """Free the figure; only a figure made through pyplot (not ours) is in pyplot's registry."""
    if "matplotlib.pyplot" in sys.modules:
        sys.modules["matplotlib.pyplot"].close(fig)
    fig.clear()


__all__ = ["OKABE_ITO", "bar_ci", "color", "condition_bands", "confusion", "confusion_grid", "curve_band", "errorbar_x",
           "kept_figures", "mean_band", "new_figure", "row_normalise", "save", "spans_decades", "training_loss_figure"]
