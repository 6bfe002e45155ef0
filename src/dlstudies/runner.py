"""Expands studies into work units, skips the stored ones, runs the rest as one queue, and writes
each study's results.json as its last unit is stored."""

from __future__ import annotations

import platform
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import torch
from dlstudies import __version__
from dlstudies.config import Runtime, apply_overrides, as_dict
from dlstudies.engine import paths_taken
from dlstudies.errors import UsageError
from dlstudies.executors import EXECUTORS, THREADS_PER_UNIT
from dlstudies.progress import StudyProgress, done_line
from dlstudies.store import UnitStore, unit_key, write_json
from dlstudies.studies import STUDIES, load_studies
from dlstudies.studies.base import Unit, finite
from dlstudies.studies.results import summarize_study


def execute_unit(unit: Unit) -> dict:
    """Top-level (picklable) entry point for any executor."""
    if unit.study not in STUDIES:  # unpickling the unit's Config has imported its study, mostly
        load_studies()  # importing all of them costs a fresh worker seconds
    start = time.perf_counter()
    with paths_taken() as paths:
        result = STUDIES.get(unit.study).run_unit(unit)
    return {**finite(result), "engine_path": "+".join(sorted(set(paths))) or None,
            "elapsed_s": time.perf_counter() - start}


def key_of(unit: Unit) -> str:
    """The unit's store key. It includes which engine paths this machine offers (the compiled kernel
    needs a compiler): a unit stored by the kernel is not reused where only the fallback runs."""
    return unit_key({"study": unit.study, "config": as_dict(unit.config), "seeds": list(unit.seeds),
                     "params": [list(p) for p in unit.params], "runtime": as_dict(unit.runtime),
                     "paths": engine_paths_offered(unit.runtime)})


def engine_paths_offered(runtime) -> str:
    if runtime.engine == "reference":
        return "reference"
    from dlstudies.engine import kernel
    return "kernel" if kernel.compiler() is not None else "fused"


def study_config(name: str, scale: str, overrides: list[str]):
    """The study's preset for `scale` with `--set` overrides; every error is a UsageError."""
    load_studies()  # callers outside the CLI need not have imported the study's module
    study = STUDIES.get(name)
    if scale not in study.presets:
        raise UsageError(f"unknown scale '{scale}' for {name}; valid: {', '.join(study.presets)}")
    return apply_overrides(study.presets[scale], overrides)


def run_study(name: str, scale: str, n_seeds: int, overrides: list[str], runtime: Runtime, out: Path,
              backend: str = "local", workers: int = 1, command: str = "", quiet: bool = False,
              **backend_options) -> dict:
    cfg = study_config(name, scale, overrides)
    with EXECUTORS.get(backend)(workers=workers, **backend_options) as execute:
        return run_config(name, cfg, scale, n_seeds, runtime, out, execute, command, quiet)


def run_config(name: str, cfg, scale: str, n_seeds: int | Sequence[int], runtime: Runtime, out: Path,
               execute: Callable, command: str = "", quiet: bool = False,
               cost: Mapping[Unit, float] | None = None) -> dict:
    """Run a study with a validated config on an open backend (`execute`, see executors.py):
    stored units are reused, the others run and are stored, longest first (`cost`: estimated
    seconds per unit, see dlstudies.plan). `n_seeds`: a count (seeds 0..n-1) or the seed ids."""
    return run_configs({name: (cfg, n_seeds)}, scale, runtime, out, execute, command, quiet, cost)[name]


def run_configs(studies: Mapping[str, tuple], scale: str, runtime: Runtime, out: Path, execute: Callable,
                command: str = "", quiet: bool = False, cost: Mapping[Unit, float] | None = None) -> dict[str, dict]:
    """Run studies {name: (validated config, seeds)} on one open backend as one queue: each study's
    units longest first, the studies in order, so that a worker freed while a study's last units run
    starts the next study's at once (none waits for a study's end). Each study is finished (its
    results.json written) as soon as its last unit is stored. Returns {name: results}."""
    runs = [StudyRun.open(name, cfg, scale, seeds, runtime, out, quiet, cost) for name, (cfg, seeds) in studies.items()]
    queue = [(run, i) for run in runs for i in range(len(run.todo))]
    place = {run.todo[i]: (run, i) for run, i in queue}  # a unit back from the executor: whose, where
    done: dict[str, dict] = {}

    def finish_complete() -> None:
        for run in runs:
            if run.name not in done and run.complete():
                done[run.name] = run.finish(command)

    def progress(i: int, planned: int, epochs: int) -> None:
        run, j = queue[i]
        run.begun()
        run.shown.update(j, planned, epochs)

    try:
        finish_complete()  # studies resumed whole
        for unit, result in execute(execute_unit, [run.todo[i] for run, i in queue], progress):
            run, i = place[unit]
            run.record(i, result)
            finish_complete()
    finally:
        for run in runs:
            run.shown.close()
    return {name: done[name] for name in studies}


class StudyRun:
    """One study of a run: its units, the results stored so far, its progress, and its finish."""

    def __init__(self, name, cfg, scale, seeds, runtime, out, quiet, cost):
        self.name, self.cfg, self.scale, self.seeds, self.runtime, self.out = name, cfg, scale, seeds, runtime, out
        self.study, self.start = STUDIES.get(name), None  # when its first unit starts (or it finishes)
        self.units = self.study.work_units(cfg, seeds, runtime)
        self.store = UnitStore(out / name / "units")
        self.keys = {u: key_of(u) for u in self.units}
        self.stored = {u: self.store.load(key) for u, key in self.keys.items()}
        self.todo = longest_first([u for u in self.units if self.stored[u] is None], cost)
        self.shown = StudyProgress(name, len(self.todo), quiet)

    @classmethod
    def open(cls, name, cfg, scale, n_seeds, runtime, out, quiet, cost) -> "StudyRun":
        seeds = tuple(range(n_seeds)) if isinstance(n_seeds, int) else tuple(n_seeds)
        run = cls(name, cfg, scale, seeds, runtime, out, quiet, cost)
        run.shown.say(f"{name}: {_count(len(run.units), 'unit')}, {len(run.units) - len(run.todo)} resumed from "
                      f"{run.store.folder}, {len(run.todo)} to run")
        return run

    def begun(self) -> None:
        self.start = self.start or time.perf_counter()

    def record(self, i: int, result: dict) -> None:
        """The result of the i-th unit to run (`todo[i]`)."""
        unit = self.todo[i]
        self.begun()
        self.store.save(self.keys[unit], result)  # at once: an interruption loses only running units
        self.stored[unit] = result
        self.shown.unit_done(i, result.get("elapsed_s"), _unit_label(unit))

    def complete(self) -> bool:
        return all(r is not None for r in self.stored.values())

    def finish(self, command: str) -> dict:
        self.begun()
        self.shown.close()
        results = _finish(self.study, self.cfg, self.scale, self.seeds, self.runtime,
                          [self.stored[u] for u in self.units], self.out, command, self.start)
        self.shown.say(done_line(self.name, time.perf_counter() - self.start, results))
        return results


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _unit_label(unit: Unit) -> str:
    """' (adam, seeds 0-2)': what a finished unit was, for the line a log gets."""
    params = ", ".join(str(v) for _, v in unit.params)
    seeds = unit.seeds
    span = "" if not seeds else f"seed {seeds[0]}" if len(seeds) == 1 else f"seeds {seeds[0]}-{seeds[-1]}"
    return f" ({', '.join(p for p in (params, span) if p)})" if params or span else ""


def longest_first(units: list[Unit], cost: Mapping[Unit, float] | None = None) -> list[Unit]:
    """Units in the order they start: longest first, so the last to finish is a short one and every
    worker stays busy to the end. Without an estimate a unit's cost is its seeds (a stack of 10
    trains longer than a stack of 1). Only the order changes: each unit's result does not."""
    known = cost or {}
    return sorted(units, key=lambda u: -known.get(u, len(u.seeds)))  # stable: ties keep the study's order


def _finish(study, cfg, scale, seeds, runtime, unit_results, out, command, start) -> dict:
    from dlstudies.tables import write_tables  # pandas: imported here, not in every worker process

    folder = out / study.name
    results = {"study": study.name, "question": study.question, "scale": scale, "config": as_dict(cfg),
               "seeds": list(seeds), "command": command, **summarize_study(study, cfg, unit_results)}
    results["figures"] = study.figures(results, folder)
    results["elapsed_s"] = time.perf_counter() - start
    results["compute_s"] = sum(r.get("elapsed_s", 0.0) for r in unit_results)
    results["environment"] = environment(runtime)
    results["engine_paths"] = engine_paths(unit_results)
    results = finite(results)
    write_tables(folder, results)  # runs.csv, claims.csv: the same tables as dlstudies.load(...)
    write_json(folder / "results.json", results)
    return results


def engine_paths(unit_results: list[dict]) -> dict[str, int]:
    """{engine path: units it trained}; a unit whose fits took several paths counts as "a+b"."""
    return dict(sorted(Counter(r["engine_path"] for r in unit_results if r.get("engine_path")).items()))


def environment(runtime: Runtime) -> dict:
    return {"dlstudies": __version__, "torch": torch.__version__, "python": platform.python_version(),
            "platform": platform.platform(), "device": runtime.device, "engine": runtime.engine,
            "dtype": runtime.dtype, "threads": THREADS_PER_UNIT}
