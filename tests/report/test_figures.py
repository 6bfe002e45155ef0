"""Figures: each helper writes a real PNG; the band statistics are held to numpy/scipy."""

import subprocess
import sys

import numpy as np
from scipy import stats as sps

from dlstudies.report import figures as F, ticks
from dlstudies.report.ticks import _collide

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _assert_png(folder, names, stem):
    assert names == [f"{stem}.png", f"{stem}.svg"]
    data = (folder / f"{stem}.png").read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 2000
    assert (folder / f"{stem}.svg").read_text().lstrip().startswith("<?xml")
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_mean_band_ragged_runs_against_numpy():
    runs = [[4.0, 3.0, 2.0, 1.0], [5.0, 3.5, 2.5], [6.0, 2.0, 3.0, 0.5, 0.25], [5.5]]
    mean, lo, hi, count = F.mean_band(runs)
    assert count.tolist() == [4, 3, 3, 2, 1]
    expected_mean = [np.mean([4, 5, 6, 5.5]), np.mean([3, 3.5, 2]), np.mean([2, 2.5, 3]), 0.75, 0.25]
    np.testing.assert_allclose(mean, expected_mean)
    col = np.array([4, 5, 6, 5.5])
    t_lo, t_hi = sps.t.interval(0.95, 3, loc=col.mean(), scale=sps.sem(col))
    np.testing.assert_allclose([lo[0], hi[0]], [max(t_lo, col.min()), min(t_hi, col.max())])
    assert t_lo < col.min() and lo[0] == col.min()  # clipped to the runs' range
    assert (lo[3], hi[3]) == (0.5, 1.0)  # two runs: min-max range
    assert lo[4] == hi[4] == 0.25  # one run: no band


def test_mean_band_inside_the_runs_range_and_t_interval_otherwise():
    col = np.arange(11.0)
    _, lo, hi, _ = F.mean_band([[v] for v in col])
    t_lo, t_hi = sps.t.interval(0.95, len(col) - 1, loc=col.mean(), scale=sps.sem(col))
    np.testing.assert_allclose([lo[0], hi[0]], [t_lo, t_hi])


def test_mean_band_ignores_missing_and_non_finite():
    mean, _, _, count = F.mean_band([[1.0, None, 3.0], [3.0, float("inf"), 5.0]])
    assert count.tolist() == [2, 0, 2]
    assert mean[0] == 2.0 and np.isnan(mean[1]) and mean[2] == 4.0


def test_row_normalise_keeps_empty_rows_zero():
    m = F.row_normalise([[2, 2], [0, 0]])
    np.testing.assert_array_equal(m, [[0.5, 0.5], [0.0, 0.0]])


def test_spans_decades():
    assert F.spans_decades([1.0, 0.5, 0.001]) and not F.spans_decades([1.0, 0.5])
    assert not F.spans_decades([1.0, 0.0, 1e-5])  # zero cannot go on a log axis


def test_curve_band_png(tmp_path):
    fig, ax = F.new_figure()
    rng = np.random.default_rng(0)
    runs = [list(np.exp(-np.arange(n) / 10) * (1 + 0.1 * rng.random(n))) for n in (50, 40, 30)]
    line = F.curve_band(ax, runs, label="adam", ylabel="loss")
    F.curve_band(ax, [[1.0, 0.9], [1.1, 0.8]], label="sgd")
    assert ax.get_yscale() == "log" and ax.get_ylabel() == "loss"
    assert line.get_color().lower() == F.OKABE_ITO[0].lower()
    _assert_png(tmp_path, F.save(fig, tmp_path, "curves"), "curves")


def test_confusion_png(tmp_path):
    fig, axes = F.new_figure(ncols=2)
    F.confusion(axes[0], [[5, 1], [2, 8]], ["a", "b"], title="train", colorbar=True)
    F.confusion(axes[1], np.eye(3) * 4, title="test")
    assert len(axes[1].texts) == 9
    _assert_png(tmp_path, F.save(fig, tmp_path, "confusion"), "confusion")


def test_bar_ci_and_errorbar_x_png(tmp_path):
    summaries = [{"mean": 0.4, "ci95": [0.35, 0.45]}, {"mean": 0.5, "ci95": [0.48, 0.52]},
                 {"mean": None, "ci95": [None, None]}]
    fig, axes = F.new_figure(ncols=2)
    F.bar_ci(axes[0], ["x", "y", "z"], summaries, ylabel="test accuracy")
    F.errorbar_x(axes[1], [100, 1000, 100000], summaries, label="test", xlabel="parameters")
    assert axes[1].get_xscale() == "log"
    _assert_png(tmp_path, F.save(fig, tmp_path, "bars"), "bars")


def test_save_png_only_and_deterministic(tmp_path):
    def draw():
        fig, ax = F.new_figure()
        F.curve_band(ax, [[1, 2, 3], [2, 3, 4], [3, 4, 5]], label="a")
        return fig

    assert F.save(draw(), tmp_path / "a", "f", svg=False) == ["f.png"]
    F.save(draw(), tmp_path / "b", "f", svg=False)
    assert (tmp_path / "a" / "f.png").read_bytes() == (tmp_path / "b" / "f.png").read_bytes()


def _layouts_solved(monkeypatch) -> list:
    from matplotlib.layout_engine import ConstrainedLayoutEngine

    solved, execute = [], ConstrainedLayoutEngine.execute
    monkeypatch.setattr(ConstrainedLayoutEngine, "execute", lambda self, fig: solved.append(fig) or execute(self, fig))
    return solved


def test_save_solves_the_layout_once_for_both_formats_unless_ticks_are_thinned(tmp_path, monkeypatch):
    from matplotlib.ticker import MaxNLocator

    solved = _layouts_solved(monkeypatch)
    fig, ax = F.new_figure()
    F.curve_band(ax, [[1, 2, 3], [2, 3, 4]], label="a")
    _assert_png(tmp_path, F.save(fig, tmp_path, "plain"), "plain")
    assert len(solved) == 1  # the draw that tidies the ticks; both formats keep its layout
    solved.clear()
    rounds, thin = set(), ticks._thin
    monkeypatch.setattr(ticks, "_thin", lambda axis: rounds.add(len(solved)) or thin(axis))
    fig, ax = F.new_figure(size=(2, 2))
    ax.plot(np.arange(100, 200), np.arange(100) * 1e-4)
    ax.xaxis.set_major_locator(MaxNLocator(nbins=20, integer=True))  # crowded: thinned, then drawn again
    F.save(fig, tmp_path, "crowded")
    assert rounds and len(solved) == 1 + len(rounds)


def test_new_figure_shapes():
    _, ax = F.new_figure()
    _, axes = F.new_figure(ncols=3, nrows=2)
    assert hasattr(ax, "plot") and axes.shape == (6,)


def test_drawing_never_imports_pyplot(tmp_path):
    """pyplot's global figure registry is what we avoid; drawing and saving must not load it."""
    code = ("import sys; from dlstudies.report import figures as F; fig, ax = F.new_figure(); "
            "F.curve_band(ax, [[1, 2], [2, 3]], label='a'); F.save(fig, sys.argv[1], 'f'); "
            "assert 'matplotlib.pyplot' not in sys.modules")
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True)


def test_condition_colors_are_distinct_and_stable():
    few = F.condition_colors(["a", "b", "c"])
    assert list(few.values()) == list(F.OKABE_ITO[:3])
    many = F.condition_colors([f"m{i}" for i in range(11)])
    assert len(set(many.values())) == 11  # no palette repeats past eight conditions
    assert F.condition_colors(["a", "b", "a"]) == {"a": F.OKABE_ITO[0], "b": F.OKABE_ITO[1]}


def _xy(line):
    return line.get_xdata(), line.get_ydata()


def test_curve_band_draws_the_mean_only_while_every_seed_runs():
    fig, ax = F.new_figure()
    runs = [list(np.linspace(1.0, 0.5, 10)), list(np.linspace(1.1, 0.6, 10)), list(np.linspace(0.9, 0.7, 6))]
    line = F.curve_band(ax, runs, label="a", log_y=False)
    x, y = _xy(line)
    assert list(x) == [1, 2, 3, 4, 5, 6] and np.allclose(y, np.mean([r[:6] for r in runs], axis=0))
    seeds = [ln for ln in ax.get_lines() if ln is not line]
    assert len(seeds) == 2  # the two seeds that went on, each from the mean's last step to its end
    for seed_line, run in zip(seeds, runs[:2]):
        sx, sy = _xy(seed_line)
        assert list(sx) == list(range(6, 11)) and np.allclose(sy, run[5:])
    assert all(ln.get_color() == line.get_color() for ln in seeds)


def test_curve_band_draws_seeds_far_apart_one_line_each_without_a_band():
    fig, ax = F.new_figure()
    runs = [list(np.geomspace(1, 1e-1, 20)), list(np.geomspace(1, 1e-4, 20)), list(np.geomspace(1, 2e-4, 20))]
    handle = F.curve_band(ax, runs, label="deep")
    lines = [ln for ln in ax.get_lines() if len(ln.get_xdata())]
    assert len(lines) == 3 and handle.get_label() == "deep"
    assert all(len(c.get_paths()) == 0 or len(c.get_paths()[0].vertices) <= 3 for c in ax.collections)  # no band
    assert ax.get_yscale() == "log"


def test_band_has_an_outline_of_its_colour():
    fig, ax = F.new_figure()
    F.curve_band(ax, [[3, 2, 1], [3.5, 2.5, 1.2], [2.5, 1.5, 0.8]], label="a", color="#0072B2", log_y=False)
    band = ax.collections[0]
    assert band.get_linewidth()[0] > 0 and np.allclose(band.get_edgecolor()[0][:3], band.get_facecolor()[0][:3])


def test_confusion_numbers_fit_the_matrix_and_large_ones_use_a_colour_bar():
    _, (small, large) = F.new_figure(ncols=2)
    F.confusion(small, np.eye(5) * 3 + 1)
    F.confusion(large, np.eye(10) * 3 + 1)
    assert len(small.texts) == 25 and max(t.get_fontsize() for t in small.texts) <= 9
    assert small.texts[0].get_text() == "50"  # percent of the true class (4 of 8), not "0.50"
    assert len(large.texts) == 0


def test_tidy_ticks_leaves_no_colliding_labels():
    from matplotlib.ticker import MaxNLocator

    fig, axes = F.new_figure(ncols=4, size=(6, 2))
    for ax in axes:
        ax.plot(np.arange(100, 200), np.arange(100) * 1e-4)
        ax.xaxis.set_major_locator(MaxNLocator(nbins=20, integer=True))  # crowded on purpose
    fig.draw_without_rendering()
    renderer = fig.canvas.get_renderer()
    assert any(_collide(ax.xaxis.get_ticklabels(), renderer) for ax in axes)
    F.tidy_ticks(fig)
    fig.draw_without_rendering()
    assert not any(_collide(axis.get_ticklabels(which="both"), renderer) for ax in axes for axis in (ax.xaxis, ax.yaxis))
    assert all(len(ax.xaxis.get_majorticklocs()) >= 2 for ax in axes)


def test_share_y_gives_panels_one_scale_and_range():
    _, (a, b) = F.new_figure(ncols=2)
    a.plot([1, 2], [1.0, 100.0])
    a.set_yscale("log")
    b.plot([1, 2], [0.01, 0.5])
    F.share_y([a, b])
    assert b.get_yscale() == "log" and a.get_ylim() == b.get_ylim()
    assert a.get_ylim()[0] <= 0.01 and a.get_ylim()[1] >= 100


def test_scatter_runs_separates_identical_points_by_a_little():
    _, ax = F.new_figure()
    points = F.scatter_runs(ax, [1.0] * 10, [0.9] * 10).get_offsets()
    assert len({tuple(p) for p in np.asarray(points)}) == 10
    assert np.all(np.abs(np.asarray(points) - [1.0, 0.9]) < 0.01)


def test_thinned_labels_keep_first_last_and_every_kth():
    assert F.thinned(4) == [0, 1, 2, 3]
    picked = F.thinned(21, most=6)
    assert picked[0] == 0 and picked[-1] == 20 and len(picked) <= 7
    assert len(set(np.diff(picked[:-1]))) == 1  # evenly spaced before the last


def test_confusion_grid_writes_png_and_svg(tmp_path):
    runs = [{"confusion": {"train": np.eye(3).tolist(), "test": np.eye(3).tolist()}}]
    assert F.confusion_grid({"a": {"runs": runs}}, tmp_path) == ["confusion.png", "confusion.svg"]


def test_label_points_stay_inside_the_axes_and_never_on_each_other():
    fig, ax = F.new_figure(size=(4, 3))
    ax.plot([0, 10], [0, 10], "o")
    ax.set(xlim=(0, 10), ylim=(0, 10))
    labels = [(10, 5, "0.97", "k"), (9.9, 9.9, "0.98", "k"), (5, 5, "0.10", "k"), (5.1, 5.05, "0.11", "k"), (0, 0, "0.09", "k")]
    written = F.label_points(ax, labels)
    assert [t.get_text() for t in written] == ["0.97", "0.98", "0.10", "0.09"]  # 0.11 would land on 0.10
    fig.draw_without_rendering()
    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    boxes = [t.get_window_extent(renderer) for t in written]
    assert all(frame.x0 <= b.x0 and b.x1 <= frame.x1 and frame.y0 <= b.y0 and b.y1 <= frame.y1 for b in boxes)
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])


def test_dots_ci_fits_the_axis_to_the_intervals():
    _, ax = F.new_figure()
    F.dots_ci(ax, ["a", "b"], [{"mean": 0.97, "ci95": [0.965, 0.975]}, {"mean": 0.93, "ci95": [0.92, 0.94]}])
    lo, hi = ax.get_ylim()
    assert 0.9 < lo < 0.92 and 0.975 < hi < 1.0  # bars from zero would have squashed the 4-point gap
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b"]


def test_many_panels_wrap_into_rows_the_page_can_show(tmp_path):
    fig, axes = F.panels(5, sharey=True)
    assert len(axes) == 5 and fig.get_size_inches()[0] <= 3 * 3.8 + 1e-9
    assert sum(ax.get_visible() for ax in fig.axes) == 5
    runs = [{"confusion": {"train": np.eye(3).tolist(), "test": np.eye(3).tolist()}}]
    with F.kept_figures() as kept:
        F.confusion_grid({f"c{i}": {"runs": runs} for i in range(5)}, tmp_path)
    grid = kept["confusion"]
    shown = [ax for ax in grid.axes if ax.get_visible()]
    assert len(shown) == 10 and grid.get_size_inches()[0] <= 3 * 2.9 + 1e-9
    assert {ax.get_title() for ax in shown} == {f"c{i}, {s}" for i in range(5) for s in ("train", "test")}


def test_a_sequence_of_conditions_reads_dark_to_light():
    from matplotlib.colors import to_rgb

    colors = list(F.condition_colors(["p=0", "p=0.5", "p=1"], sequence=True).values())
    lightness = [sum(to_rgb(c)) for c in colors]
    assert lightness == sorted(lightness) and len(set(colors)) == 3
    assert list(F.condition_colors(["a", "b"], sequence=True).values()) == list(F.OKABE_ITO[:2])


def test_a_second_band_on_the_same_axes_is_hatched_so_overlaps_do_not_blend():
    f, ax = F.new_figure()
    runs = [[1.0, 2.0, 3.0], [1.2, 2.2, 3.1], [0.9, 1.9, 2.8]]
    F.curve_band(ax, runs, "a")
    F.curve_band(ax, [[v + 0.1 for v in r] for r in runs], "b")
    first, second = [c for c in ax.collections if c.get_gid() == F.BAND]
    assert first.get_hatch() is None and second.get_hatch()
    assert first.get_facecolor()[0][3] > second.get_facecolor()[0][3]  # the fill under a hatch is fainter
