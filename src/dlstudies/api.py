"""The Python API: `dlstudies.run(...)` and `dlstudies.load(...)`, both returning `Results`.

`run` is what `dlstudies run` does (the CLI is a thin caller of it): the same validation before
anything trains, the same resume from stored units, the same files (results.json, runs.csv,
claims.csv, figures, report.html). `Results` reads a finished output folder back as pandas tables,
matplotlib figures and, in Jupyter, each study's report section inline.
"""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path
from typing import Mapping, Sequence

import pandas as pd
from matplotlib.figure import Figure

from dlstudies import tables
from dlstudies.config import Runtime
from dlstudies.errors import UsageError


def run(study_or_list, *, scale: str = "default", seeds: int | Sequence[int] | None = None, data: str | None = None,
        out: str | Path = "runs", overrides: Mapping[str, object] | None = None, engine: str = "batched",
        device: str = "cpu", workers: int | None = None, data_dir: str | None = None, backend: str = "local",
        scheduler: str | None = None, command: str | None = None, wait: bool = True,
        quiet: bool = False, estimate: bool = False) -> "Results":
    """Run one study or several (ids, or "all") into `out`; return their Results.

    - `scale`: "smoke", "default" or "paper"; `seeds`: a count (seeds 0..n-1) or a list of seed ids,
      None for each study's default at that scale;
    - `data`: a dataset name (e.g. "mnist", see `dlstudies data`) or a .csv/.npz path, for the studies
      that take one; `data_dir`: the folder of a dataset's files (MNIST's IDX files, when not fetched);
    - `overrides`: config fields, e.g. {"lr": 0.05, "hidden": (32, 16)} (the CLI's `--set lr=0.05`;
      a list of such "KEY=VALUE" strings is taken too);
    - `engine`: "batched" or "reference"; `device`: "cpu" or "cuda";
    - `workers`: processes (default 1: in this process). With workers > 1 the units run in
      spawn-started processes, which import the calling script again: in a plain script, call
      `run` under `if __name__ == "__main__":`; in a notebook, only studies defined in importable
      modules (not in a cell) can run in them.
    - `backend`: "local" or "dask" (with `scheduler`, a dask scheduler address).
    - `wait`: if another run is writing `out`, wait for it to end (False: raise UsageError at once).
    - `quiet`: no progress bar or per-study lines on stderr.
    - `estimate`: time a few steps of every unit first, print the estimate (as `dlstudies plan`) and
      keep it in `out`/plan.json. Off by default: the timed slices cost minutes at default scale;
      without it the estimate a `dlstudies plan` kept in `out` for these units is printed, if any.
      Units start longest first.
    Everything is checked before the first unit trains; bad input raises `dlstudies.UsageError`.
    Units already stored in `out` are reused, so an interrupted run resumes where it stopped.
    """
    from dlstudies.app import check_seeds, run_many

    names = [study_or_list] if isinstance(study_or_list, str) else [getattr(s, "name", s) for s in study_or_list]
    seeds = check_seeds(seeds)
    runtime = Runtime(engine=engine, device=device, data_dir=data_dir)
    command = command or _call_text(names, scale=scale, seeds=seeds, data=data, out=str(out), overrides=overrides,
                                    engine=engine, device=device, workers=workers)
    ran, report = run_many(names, scale, seeds, data, override_pairs(overrides), runtime, Path(out), backend,
                           1 if workers is None else workers, command, wait=wait, quiet=quiet, scheduler=scheduler,
                           estimate=estimate)
    return Results([Path(out) / name for name in ran], report=report)


def load(path: str | Path) -> "Results":
    """The Results of a finished output folder (every study in it), or of one study's folder."""
    path = Path(path)
    if (path / "results.json").is_file():
        return Results([path])
    if not path.is_dir():
        raise UsageError(f"'{path}' is not a folder of dlstudies results (no such folder)")
    from dlstudies.report.html import load_results

    report = path / "report.html"
    return Results([folder for folder, _ in load_results(path)], report=report if report.is_file() else None)


def override_pairs(overrides: Mapping[str, object] | Sequence[str] | None) -> list[str]:
    """{"lr": 0.05, "hidden": (32, 16), "n_train": None} as the CLI's KEY=VALUE strings (which pass as they are)."""
    if overrides is None:
        return []
    if isinstance(overrides, (list, tuple)) and all(isinstance(o, str) for o in overrides):
        return list(overrides)
    if not isinstance(overrides, Mapping):
        raise UsageError(f"overrides must be a dict of config fields, got {type(overrides).__name__}")
    return [f"{key}={_written(value)}" for key, value in overrides.items()]


def _written(value) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return ",".join(_written(v) for v in value)
    return str(value)


def _call_text(names: list[str], **kwargs) -> str:
    """How to repeat this run: the call itself, without the arguments left at their defaults."""
    defaults = {"scale": "default", "out": "runs", "engine": "batched", "device": "cpu"}
    given = [f"{k}={v!r}" for k, v in kwargs.items() if v is not None and defaults.get(k) != v]
    target = repr(names[0]) if len(names) == 1 else repr(names)
    return f"dlstudies.run({', '.join([target, *given])})"


class Results:
    """The saved results of one or more studies, in order: tables, curves, figures, report sections."""

    def __init__(self, folders: Sequence[str | Path], report: Path | None = None):
        self.folders = [Path(f) for f in folders]
        self.report = report  # the output folder's report.html, where there is one

    @functools.cached_property
    def results(self) -> list[dict]:
        """Each study's results.json, as saved."""
        from dlstudies.report.html import _read_json

        missing = [str(f) for f in self.folders if not (f / "results.json").is_file()]
        if missing:
            raise UsageError(f"no results.json in {', '.join(missing)}; run the study first")
        return [_read_json(f / "results.json") for f in self.folders]

    @property
    def studies(self) -> list[str]:
        return [r.get("study", f.name) for f, r in zip(self.folders, self.results)]

    @property
    def answers(self) -> dict[str, str]:
        """{study: its one-sentence answer}."""
        return {s: r.get("answer", "") for s, r in zip(self.studies, self.results)}

    @functools.cached_property
    def runs(self) -> pd.DataFrame:
        """One row per run and metric: study, condition, seed, metric, value, converged, diverged."""
        return tables.concat([tables.runs_frame(r) for r in self.results], tables.RUN_COLUMNS)

    @functools.cached_property
    def claims(self) -> pd.DataFrame:
        """One row per claim: study, claim, source, kind, metric, verdict, effect, ci_low, ci_high,
        p_value, n, evidence (a field a study does not record is missing: None or NaN)."""
        return tables.concat([tables.claims_frame(r) for r in self.results], tables.CLAIM_COLUMNS)

    def curve_names(self) -> list[str]:
        return list(dict.fromkeys(n for r in self.results for n in tables.curve_names(r)))

    def curves(self, name: str) -> pd.DataFrame:
        """Curve `name` (e.g. "loss") of every run, long format: study, condition, seed, step, value."""
        if name not in self.curve_names():
            raise UsageError(f"unknown curve '{name}'; valid: {', '.join(self.curve_names()) or '(none recorded)'}")
        return tables.concat([tables.curves_frame(r, name) for r in self.results], tables.CURVE_COLUMNS)

    def figure(self, name: str) -> Figure:
        """A study's figure (e.g. "loss_curves", or "optimizers/loss_curves" among several studies),
        drawn again from the saved results as a matplotlib Figure."""
        folder, results, stem = self._figure_source(name)
        from dlstudies.report.figures import kept_figures
        from dlstudies.studies import STUDIES, load_studies

        load_studies()
        with kept_figures() as drawn, tempfile.TemporaryDirectory() as scratch:
            STUDIES.get(results["study"]).figures(results, scratch)
        return drawn[stem]

    def _figure_source(self, name: str) -> tuple[Path, dict, str]:
        study, _, stem = name.rpartition("/")
        stem = Path(stem).stem
        for folder, r, s in zip(self.folders, self.results, self.studies):
            if study in ("", s) and stem in {Path(f).stem for f in r.get("figures", [])}:
                return folder, r, stem
        valid = [f"{s}/{Path(f).stem}" for s, r in zip(self.studies, self.results) for f in r.get("figures", [])]
        raise UsageError(f"unknown figure '{name}'; valid: {', '.join(dict.fromkeys(valid)) or '(none drawn)'}")

    def __getitem__(self, study: str) -> "Results":
        """One study's Results."""
        if study not in self.studies:
            raise UsageError(f"no study '{study}' in these results; valid: {', '.join(self.studies)}")
        return Results([self.folders[self.studies.index(study)]], self.report)

    def __len__(self) -> int:
        return len(self.folders)

    def __repr__(self) -> str:
        lines = [f"{s}: {a}" for s, a in self.answers.items()]
        return "Results(\n  " + "\n  ".join(lines) + "\n)"

    def _repr_html_(self) -> str:
        """Each study's section of the report (answer, claims, figures, tables), in order."""
        from dlstudies.report.html import study_sections

        return "\n".join(study_sections(list(zip(self.folders, self.results))))
