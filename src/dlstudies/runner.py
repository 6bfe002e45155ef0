"""Expands a study into work units, skips the stored ones, runs the rest, and writes results.json."""

from __future__ import annotations

import platform
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

from dlstudies import __version__
from dlstudies.config import Runtime, apply_overrides, as_dict
from dlstudies.executors import EXECUTORS, THREADS_PER_UNIT
from dlstudies.store import UnitStore, unit_key, write_json
from dlstudies.studies import STUDIES, load_studies
from dlstudies.studies.base import Unit, finite


def execute_unit(unit: Unit) -> dict:
    """Top-level (picklable) entry point for any executor."""
    load_studies()
    start = time.perf_counter()
    result = STUDIES.get(unit.study).run_unit(unit)
    return {**finite(result), "elapsed_s": time.perf_counter() - start}


def key_of(unit: Unit) -> str:
    return unit_key({"study": unit.study, "config": as_dict(unit.config), "seeds": list(unit.seeds),
                     "params": [list(p) for p in unit.params], "runtime": as_dict(unit.runtime)})


def run_study(name: str, scale: str, n_seeds: int, overrides: list[str], runtime: Runtime, out: Path,
              backend: str = "local", workers: int = 1, command: str = "", **backend_options) -> dict:
    study = STUDIES.get(name)
    cfg = apply_overrides(study.presets[scale], overrides)
    seeds = tuple(range(n_seeds))
    start = time.perf_counter()
    units = study.units(cfg, seeds, runtime)
    store = UnitStore(out / name / "units")
    stored = {key_of(u): store.load(key_of(u)) for u in units}
    todo = [u for u in units if stored[key_of(u)] is None]
    _say(f"{name}: {len(units)} units, {len(units) - len(todo)} resumed from {store.folder}, {len(todo)} to run")
    bar = tqdm(total=len(todo), desc=name, disable=None, leave=False)
    for unit, result in EXECUTORS.get(backend)(execute_unit, todo, workers=workers, **backend_options):
        store.save(key_of(unit), result)
        stored[key_of(unit)] = result
        bar.update()
    bar.close()
    return _finish(study, cfg, scale, seeds, runtime, [stored[key_of(u)] for u in units], out, command, start)


def _finish(study, cfg, scale, seeds, runtime, unit_results, out, command, start) -> dict:
    folder = out / study.name
    results = {"study": study.name, "question": study.question, "scale": scale, "config": as_dict(cfg),
               "seeds": list(seeds), "command": command, **study.summarize(cfg, unit_results)}
    results["figures"] = study.figures(results, folder)
    results["elapsed_s"] = time.perf_counter() - start
    results["compute_s"] = sum(r.get("elapsed_s", 0.0) for r in unit_results)
    results["environment"] = environment(runtime)
    write_json(folder / "results.json", finite(results))
    return results


def environment(runtime: Runtime) -> dict:
    return {"dlstudies": __version__, "torch": torch.__version__, "python": platform.python_version(),
            "platform": platform.platform(), "device": runtime.device, "engine": runtime.engine,
            "dtype": runtime.dtype, "threads": THREADS_PER_UNIT}


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
