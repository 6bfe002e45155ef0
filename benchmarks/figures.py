"""What drawing a study's figures costs: `figures.save` as it is against the save it replaced, in
one process, on the results of a finished run.

    python benchmarks/figures.py RUNS [--studies a b ...] [--repeats 3]

RUNS is the output folder of `dlstudies run` (its STUDY/results.json). Per study, alternately, the
study's `figures(results, folder)` with the reference save (tick labels tidied with a draw before
and after the log axes are relabelled and one per round of thinning, then each format saved with
its constrained layout solved again) and with this tree's (`tidy_ticks` draws only when something
changed, and its last draw's layout is kept for both formats). Printed: the CPU time of one thread
(`time.process_time`), minimum of the interleaved repeats, the ratio, and how far the two place
their panels: the largest distance, in pixels of the saved PNG, between an edge of a panel (an
Axes, colour bars included) as the reference saved it and as this tree saved it.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg

from dlstudies.report import figures, ticks
from dlstudies.store import read_json, write_atomic
from dlstudies.studies import STUDIES, load_studies


def reference_tidy(fig, rounds: int = 3) -> None:
    """`tidy_ticks` before: a draw for the limits, one after relabelling, one per round of thinning."""
    for ax in fig.axes:
        ax.title.set_wrap(True)
    fig.draw_without_rendering()
    ticks.plain_log_labels(fig)
    for _ in range(rounds):
        fig.draw_without_rendering()
        renderer = fig.canvas.get_renderer()
        crowded = [axis for axis in ticks._axes_2d(fig) if ticks._collide(axis.get_ticklabels(which="both"), renderer)]
        if not crowded:
            return
        for axis in crowded:
            ticks._thin(axis)


def reference_save(fig, folder, name: str, svg: bool = True) -> list[str]:
    """`figures.save` before: every format drawn with its layout solved again."""
    formats = ("png", "svg") if svg else ("png",)
    if not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)
    reference_tidy(fig)
    Path(folder).mkdir(parents=True, exist_ok=True)
    for fmt in formats:
        write_atomic(Path(folder) / f"{name}.{fmt}", figures._render(fig, fmt))
    _closed(fig)
    return [f"{name}.{fmt}" for fmt in formats]


def drawn(study, results: dict, folder: Path, save) -> tuple[float, list]:
    """(CPU seconds of the study's figures drawn into `folder` with `save` as figures.save, the
    panels' edges of each figure as saved: pixels of the PNG)."""
    kept = figures.save, figures._close
    figures.save, figures._close = save, _closed
    _EDGES.clear()
    try:
        start = time.process_time()
        study.figures(results, folder)
        return time.process_time() - start, list(_EDGES)
    finally:
        figures.save, figures._close = kept


_EDGES: list = []


def _closed(fig) -> None:
    width, height = fig.get_size_inches() * figures.DPI
    _EDGES.append(np.array([ax.get_position().extents for ax in fig.axes]) * [width, height, width, height])
    _CLOSE(fig)


_CLOSE = figures._close


def main() -> None:
    load_studies()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", type=Path)
    p.add_argument("--studies", nargs="+", default=None)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    import torch

    torch.set_num_threads(1)
    print(f"CPU time of one thread, min of {args.repeats} interleaved repeats")
    print(f"{'study':<22} {'reference s':>11} {'now s':>7} {'ratio':>6} {'panels moved, px':>16}")
    total = [0.0, 0.0]
    for name in args.studies or [s for s in STUDIES if (args.runs / s / "results.json").exists()]:
        study, results = STUDIES.get(name), read_json(args.runs / name / "results.json")
        with tempfile.TemporaryDirectory() as tmp:
            ref, now = Path(tmp) / "reference", Path(tmp) / "now"
            times, edges = [[], []], [None, None]
            for _ in range(args.repeats):
                for i, save in enumerate((reference_save, figures.save)):
                    seconds, edges[i] = drawn(study, results, (ref, now)[i], save)
                    times[i].append(seconds)
        best = [min(t) for t in times]
        total = [a + b for a, b in zip(total, best)]
        moved = max((float(np.abs(a - b).max()) for a, b in zip(*edges) if a.size), default=0.0)
        print(f"{name:<22} {best[0]:>11.2f} {best[1]:>7.2f} {best[1] / best[0]:>6.2f} {moved:>16.1f}")
    print(f"{'all':<22} {total[0]:>11.2f} {total[1]:>7.2f} {total[1] / total[0]:>6.2f}")


if __name__ == "__main__":
    main()
