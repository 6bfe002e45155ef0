"""Shared drawing for every study: matplotlib's object-oriented API only, never pyplot's state.

Figures are `matplotlib.figure.Figure` objects drawn on the Agg canvas, so nothing here needs a
display or touches global state, and studies can draw in worker processes.

One palette everywhere: Okabe & Ito (2008), distinguishable under the common colour-vision
deficiencies, ordered so that neighbours differ most (the two blues far apart); yellow is last
because it is faint on white. A study with more conditions than the palette has colours takes
them from viridis instead, in condition order (its conditions are then a sequence: sizes, rates).
`condition_colors` gives each condition its colour once, so every figure of a study agrees.

Curves over seeds (`curve_band`): the mean and its band are drawn only while every seed still
runs; past the step where the first seed stopped, each remaining seed is a thin line of its own,
so a mean never jumps when a seed drops out. Seeds that end more than SPREAD_FOR_SEEDS apart (a
bimodal result) are drawn each as a thin line throughout, with no band between them.

`save` writes PNG and SVG, after `tidy_ticks` (report.ticks) has given narrow log axes plain
numbers and thinned any axis whose tick labels collide, both with the layout of its last draw.

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

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_hex, to_rgba
from matplotlib.figure import Figure
from matplotlib.markers import MarkerStyle
from matplotlib.ticker import MaxNLocator
from scipy import stats as sps

from dlstudies.report.ticks import tidy_ticks
from dlstudies.store import write_atomic

OKABE_ITO = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#D55E00", "#56B4E9", "#000000", "#F0E442")
CONFUSION_CMAP = "Blues"  # sequential, monotone in lightness: readable in grey and by all viewers
DPI = 120
DECADES_FOR_LOG = 2.0  # data spanning at least this many decades gets a log axis
SPREAD_FOR_SEEDS = 10.0  # final values of the seeds further apart than this factor: one line per seed
MAX_ANNOTATED_CLASSES = 8  # larger confusion matrices get a colour bar instead of numbers in cells


def color(i: int) -> str:
    """The i-th colour of the palette, cycling."""
    return OKABE_ITO[i % len(OKABE_ITO)]


def condition_colors(names, sequence: bool = False) -> dict[str, str]:
    """{name: colour} for a study's conditions in order: the palette, or viridis past its length or for
    a sequence (sequence=True: corruption levels, sizes), where dark to light reads as low to high."""
    names = list(dict.fromkeys(names))
    if len(names) <= len(OKABE_ITO) and not (sequence and len(names) > 2):
        return {n: color(i) for i, n in enumerate(names)}
    cmap = matplotlib.colormaps["viridis"]
    return {n: to_hex(cmap(0.9 * i / (len(names) - 1))) for i, n in enumerate(names)}


def new_figure(ncols: int = 1, nrows: int = 1, size: tuple[float, float] | None = None, sharey: bool = False):
    """(fig, axes): one Axes for a 1x1 grid, else a flat (row-major) array of Axes. sharey: one y
    scale and range for every panel, so panels compare at a glance."""
    size = size or (4.8 * ncols, 3.6 * nrows)
    fig = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(fig)  # a renderer for tidy_ticks' measurements, without pyplot
    axes = fig.subplots(nrows, ncols, squeeze=False, sharey=sharey).ravel()
    for ax in axes:
        ax.set_prop_cycle(color=OKABE_ITO)
        ax.grid(True, alpha=0.3)
        ax.set_axisbelow(True)  # grid lines behind bars and bands
    return fig, (axes[0] if len(axes) == 1 else axes)


PANELS_PER_ROW = 3  # more side by side and the page (1100 px) shrinks their text below reading size


def panels(n: int, panel: tuple[float, float] = (3.8, 3.0), sharey: bool = False, per_row: int = PANELS_PER_ROW):
    """(fig, [n Axes]) in rows of at most `per_row` panels of `panel` inches; the grid's spare cells hidden."""
    rows, cols = -(-n // per_row), min(n, per_row)
    f, axes = new_figure(ncols=cols, nrows=rows, size=(panel[0] * cols, panel[1] * rows), sharey=sharey)
    axes = list(np.atleast_1d(axes))
    for ax in axes[n:]:
        ax.set_visible(False)
    return f, axes[:n]


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


def _first_partial(count: np.ndarray) -> int:
    """The first step at which some seed that ran has stopped (len(count) if none has)."""
    short = np.flatnonzero(count < count.max(initial=0))
    return int(short[0]) if short.size else len(count)


def _spread(x: np.ndarray) -> float:
    """How far apart the seeds' last finite values are (max / min), 1 when it cannot be said."""
    last = np.array([row[np.isfinite(row)][-1] for row in x if np.isfinite(row).any()])
    return float(last.max() / last.min()) if last.size > 1 and np.all(last > 0) else 1.0


def curve_band(ax: Axes, runs, label: str, color: str | None = None, x=None, log_y: bool | None = None,
               xlabel: str = "epoch", ylabel: str | None = None):
    """Mean over seeds with its 95% band while every seed runs, then thin per-seed lines (see the
    module docstring); log_y=None switches to log when the values span decades."""
    values = _ragged(runs)
    mean, lo, hi, count = mean_band(runs)
    x = np.arange(1, len(mean) + 1) if x is None else np.asarray(x, dtype=float)[: len(mean)]
    apart = _spread(values) > SPREAD_FOR_SEEDS
    end = 0 if apart else _first_partial(count)
    (line,) = ax.plot(x[:end], mean[:end], label=None if apart else label, color=color, lw=1.6)
    color = line.get_color()
    _band(ax, x[:end], lo[:end], hi[:end], color)
    first = _seed_lines(ax, x, values, 0 if apart else max(end - 1, 0), color, label if apart else None)
    if xlabel in INTEGER_AXES:
        ax.xaxis.set_major_locator(MaxNLocator(nbins="auto", integer=True))
    if log_y or (log_y is None and spans_decades(values[np.isfinite(values)])):
        ax.set_yscale("log", nonpositive="clip")  # switch on only: an earlier curve may need it
    _label(ax, xlabel, ylabel)
    return first if apart and first is not None else line


BAND = "band"


def _band(ax: Axes, x, lo, hi, color) -> None:
    """A 95% band, outlined; the first on an axes filled, later ones hatched over a fainter fill:
    two translucent fills blend into a third colour (orange over blue reads olive) where they overlap."""
    first = not any(c.get_gid() == BAND for c in ax.collections)
    band = ax.fill_between(x, lo, hi, facecolor=to_rgba(color, 0.15 if first else 0.05),
                           edgecolor=to_rgba(color, 0.7), lw=0.6, hatch=None if first else "////")
    band.set_gid(BAND)  # also names the band in the SVG
    if not first:
        band.set_hatch_linewidth(0.4)  # fine hatching: a figure of ten bands stays calm


def _seed_lines(ax: Axes, x, values: np.ndarray, start: int, color: str, label: str | None):
    """Each seed from `start` to its end as a thin line (from start = 0: every seed whole, the first
    one labelled; else the continuation after the mean's last point). Returns the labelled line."""
    labelled = None
    for row in values:
        part = row[start:]
        if np.isfinite(part).sum() >= (1 if start == 0 else 2):
            (seed_line,) = ax.plot(x[start:], part, color=color, lw=0.7, alpha=0.75, label=label)
            labelled, label = labelled or seed_line, None
    return labelled


def share_y(axes, ranges: bool = True) -> None:
    """One y scale and range over panels drawn separately (log if any is log): equal heights compare.
    ranges=False: the scale only, for panels of different quantities (each keeps its own range)."""
    axes = list(np.ravel(axes))
    if any(ax.get_yscale() == "log" for ax in axes):
        for ax in axes:
            ax.set_yscale("log", nonpositive="clip")
    if not ranges:
        return
    lo = min(ax.get_ylim()[0] for ax in axes)
    hi = max(ax.get_ylim()[1] for ax in axes)
    for ax in axes:
        ax.set_ylim(lo, hi)


def scatter_runs(ax: Axes, x, y, jitter: float = 0.006, seed: int = 0, **style):
    """One point per run, with a little deterministic jitter (a fraction of the data's span) and
    transparency, so that runs at the same value (train accuracy 1.0) stay countable."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    rng = np.random.default_rng(seed)

    def shake(v):
        span = np.ptp(v) if v.size and np.ptp(v) > 0 else max(abs(float(v.max(initial=1.0))), 1.0) * 0.05
        return v + rng.uniform(-jitter, jitter, v.size) * span if v.size else v

    style = {"alpha": 0.6, "s": 22, **style}
    if MarkerStyle(style.get("marker", "o")).is_filled():  # an "x" or "+" has no edge to outline
        style = {"edgecolors": "white", "linewidths": 0.4, **style}
    return ax.scatter(shake(x), shake(y), **style)


def thinned(n: int, most: int = 6) -> list[int]:
    """Indices to label among n points: the first, the last and every k-th, at most about `most`."""
    if n <= most:
        return list(range(n))
    step = int(np.ceil((n - 1) / (most - 1)))
    return sorted(set(range(0, n, step)) | {n - 1})


LABEL_BOX = (0.06, 0.035)  # a short label's width and height as fractions of an axes: closer labels collide
EDGE = 0.85  # past this fraction of the axes a label goes to the left of (or below) its point


def label_points(ax: Axes, labels) -> list:
    """Write (x, y, text, colour) labels beside their points, in the order given (most wanted first),
    skipping any that would land on one already written, each on the side of its point that keeps it
    inside the axes (left of a point near the right edge, below one near the top). Call it after
    everything is plotted: it reads the axes' final limits."""
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    placed, written = [], []
    for x, y, text, c in labels:
        u, v = (x - x0) / (x1 - x0), (y - y0) / (y1 - y0)
        if any(abs(u - pu) < LABEL_BOX[0] and abs(v - pv) < LABEL_BOX[1] for pu, pv in placed):
            continue
        placed.append((u, v))
        left, below = u > EDGE, v > EDGE
        written.append(ax.annotate(text, (x, y), xytext=(-5 if left else 5, -4 if below else 3), textcoords="offset points",
                                   ha="right" if left else "left", va="top" if below else "bottom", fontsize=7, color=c))
    return written


def row_normalise(matrix) -> np.ndarray:
    """Each row divided by its sum (a row with no samples stays zero)."""
    m = np.asarray(matrix, dtype=float)
    sums = m.sum(axis=1, keepdims=True)
    return np.divide(m, sums, out=np.zeros_like(m), where=sums > 0)


def confusion(ax: Axes, matrix, class_names=None, title: str = "", colorbar: bool = False):
    """Row-normalised confusion matrix (rows: true class); each cell's percentage written in, in a
    font sized to the matrix, up to MAX_ANNOTATED_CLASSES classes (larger: the colour bar reads it)."""
    m = row_normalise(matrix)
    names = [str(c) for c in (class_names if class_names is not None else range(len(m)))]
    image = ax.imshow(m, cmap=CONFUSION_CMAP, vmin=0.0, vmax=1.0)
    if len(m) <= MAX_ANNOTATED_CLASSES:
        size = min(9.0, 40.0 / len(m) + 2.0)
        for (i, j), v in np.ndenumerate(m):
            ax.text(j, i, f"{100 * v:.0f}", ha="center", va="center", fontsize=size,
                    color="white" if v > 0.6 else "black")  # dark cells need light text
    step = 1 if len(names) <= 10 else 2
    ticks = list(range(0, len(names), step))
    ax.set(xticks=ticks, yticks=ticks, xticklabels=names[::step], yticklabels=names[::step],
           xlabel="predicted", ylabel="true", title=title)
    ax.grid(False)
    if colorbar:
        ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
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


def dots_ci(ax: Axes, names: Sequence[str], summaries: Sequence[dict], ylabel: str | None = None,
            colors: Sequence[str] | None = None):
    """One point per condition at its mean with its 95% CI, on an axis fitted to the intervals: where
    bars from zero would squash differences of a few points near 100% into one height."""
    mean, err = _mean_err(summaries)
    colors = colors or [color(i) for i in range(len(names))]
    for i, (m, c) in enumerate(zip(mean, colors)):
        ax.errorbar([i], [m], yerr=err[:, i:i + 1], color=c, marker="o", ms=7, capsize=5, elinewidth=1.5)
    ax.set_xticks(range(len(names)), [str(n) for n in names], rotation=30 if len(names) > 4 else 0)
    ax.set_xlim(-0.5, len(names) - 0.5)
    _label(ax, None, ylabel)


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
    """One curve_band per condition of results.json, over its runs' curves[curve], in the study's
    colours (condition_colors); label(name) makes a condition's legend entry (default: its name)."""
    colors = condition_colors(conditions)
    for name, c in conditions.items():
        curve_band(ax, [r["curves"][curve] for r in c["runs"]], label=label(name) if label else name,
                   color=colors[name], **band)


def training_loss_figure(conditions: dict, folder, title: str, **legend) -> list[str]:
    """The training loss per epoch of every condition (mean and band over seeds), saved as training_loss."""
    fig, ax = new_figure(size=(6, 4))
    condition_bands(ax, conditions, "loss", ylabel="mean training loss in the epoch")
    ax.set_title(title)
    ax.legend(**legend)
    return save(fig, folder, "training_loss")


def confusion_grid(conditions: dict, folder, name: str = "confusion", width: float = 2.9, height: float = 3.0,
                   svg: bool = True) -> list[str]:
    """Train (top row) and test (bottom row) confusion matrices of each condition, summed over its seeds
    and row-normalised, in percent, PANELS_PER_ROW conditions a pair of rows; width x height inches a panel. Past MAX_ANNOTATED_CLASSES classes the
    cells carry no numbers and one colour bar reads them all."""
    n, per_row = len(conditions), PANELS_PER_ROW
    cols, groups = min(n, per_row), -(-n // per_row)  # a pair of rows (train over test) per group of conditions
    fig, axes = new_figure(ncols=cols, nrows=2 * groups, size=(width * cols, 2 * height * groups))
    axes = np.asarray(axes).reshape(2 * groups, cols)
    image = None
    for k, (label, c) in enumerate(conditions.items()):
        for i, split in enumerate(("train", "test")):
            total = np.sum([np.asarray(r["confusion"][split], dtype=float) for r in c["runs"]], axis=0)
            image = confusion(axes[2 * (k // per_row) + i, k % per_row], total, title=f"{label}, {split}")
    for k in range(n, groups * cols):
        for i in (0, 1):
            axes[2 * (k // per_row) + i, k % per_row].set_visible(False)
    if image is not None and image.get_array().shape[0] > MAX_ANNOTATED_CLASSES:
        fig.colorbar(image, ax=[ax for ax in axes.ravel() if ax.get_visible()], shrink=0.6, label="fraction of the true class")
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
    """Write name.png and name.svg atomically into folder (ticks tidied first), release the figure,
    return the names. svg=False is for callers that know better; every study draws both."""
    formats = ("png", "svg") if svg else ("png",)
    kept = _KEPT.get()
    if kept is not None:  # the caller wants the Figure itself: no file, no rendering
        kept[name] = fig
        return [f"{name}.{fmt}" for fmt in formats]
    if not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)
    tidy_ticks(fig)
    # Its last draw laid the figure out as it is saved: keep that layout rather than solve it again
    # for each format (constrained layout measures every text of the figure; most of a save).
    fig.set_layout_engine("none")
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


__all__ = ["OKABE_ITO", "PANELS_PER_ROW", "bar_ci", "color", "condition_bands", "condition_colors", "confusion",
           "confusion_grid", "curve_band", "dots_ci", "errorbar_x", "kept_figures", "label_points", "mean_band",
           "new_figure", "panels", "row_normalise", "save", "scatter_runs", "share_y", "spans_decades", "thinned",
           "tidy_ticks", "training_loss_figure"]
