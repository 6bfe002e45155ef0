"""`dlstudies plan`: the work units of a run and an estimate of its time on this machine, from
a few timed steps, so a user knows before starting whether it is a coffee or a night.

Every study's time is dominated by its units (engine fits). Each unit is timed, in this process on
one thread (`time.process_time`), as a *slice*: the same Config with its epoch budgets (every
field named `*epochs`) cut to `short` and `long` epochs and its data cut to `SLICE_SAMPLES`
training and test samples. Two slices give a line, cost = fixed + per_epoch × epochs; the line
is evaluated at the unit's real budget and scaled by the data the slice left out (all of a
unit's passes over data scale with its samples; its fixed work, e.g. building the model, does
too in this estimate, which errs high). A stop-rule study (a `max_epochs` budget) may stop
earlier: its estimate is an upper bound, marked `≤`. The analysis and figures of each study are
timed on the long slices' results, the report once, and start-up is what this process spent
importing and loading data. Wall time with N workers: each study's units scheduled longest
first on N workers (as the runner does), studies one after another.
"""

from __future__ import annotations

import dataclasses
import heapq
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from dlstudies.config import Runtime, as_dict
from dlstudies.errors import UsageError
from dlstudies.studies import STUDIES
from dlstudies.studies.base import Unit

SLICE_SAMPLES = 512  # training (and test) samples of a timed slice: large enough for every batch size
SLICES = tuple((k, 2 * k) for k in range(1, 11))  # (short, long) epochs: the first pair a study's rules accept
# (some need >= 2 epochs, or a multiple of a snapshot interval)


@dataclass(frozen=True)
class UnitEstimate:
    unit: Unit
    seconds: float
    upper_bound: bool


@dataclass(frozen=True)
class StudyEstimate:
    name: str
    units: tuple[UnitEstimate, ...]
    analysis_s: float  # summary, tables and figures

    @property
    def upper_bound(self) -> bool:
        return any(u.upper_bound for u in self.units)

    def compute_s(self) -> float:
        return sum(u.seconds for u in self.units) + self.analysis_s

    def wall_s(self, workers: int) -> float:
        return makespan([u.seconds for u in self.units], workers) + self.analysis_s


@dataclass(frozen=True)
class Plan:
    studies: tuple[StudyEstimate, ...]
    startup_s: float
    report_s: float
    workers: int

    def wall_s(self) -> float:
        return self.startup_s + self.report_s + sum(s.wall_s(self.workers) for s in self.studies)

    def unit_seconds(self) -> dict:
        """{unit: estimated seconds}, what the runner orders units by."""
        return {u.unit: u.seconds for s in self.studies for u in s.units}


def makespan(costs: list[float], workers: int) -> float:
    """Finish time of `costs` handed longest first to the first free of `workers` (the runner's order)."""
    if len(costs) <= 1 or workers <= 1:
        return sum(costs)
    free = [0.0] * workers
    for cost in sorted(costs, reverse=True):
        heapq.heappush(free, heapq.heappop(free) + cost)
    return max(free)


# ---- slices of a config ----------------------------------------------------------------------

def epoch_fields(cfg) -> list[str]:
    return [f.name for f in dataclasses.fields(cfg) if f.name.endswith("epochs") and isinstance(getattr(cfg, f.name), int)]


def is_upper_bound(cfg) -> bool:
    """A stop rule ends training at most at `max_epochs`; a fixed budget runs exactly `epochs`."""
    return any("max_epochs" in name for name in epoch_fields(cfg))


def data_sizes(cfg, runtime: Runtime) -> dict[str, int]:
    """{n_train, n_test: samples the unit really uses} for the fields the config has."""
    full = _dataset_sizes(cfg, runtime)
    sizes = {}
    for name in ("n_train", "n_test"):
        if any(f.name == name for f in dataclasses.fields(cfg)):
            value = getattr(cfg, name)
            sizes[name] = min(value, full.get(name, value)) if value is not None else full.get(name)
    return {k: v for k, v in sizes.items() if v is not None}


def _dataset_sizes(cfg, runtime: Runtime) -> dict[str, int]:
    if not isinstance(getattr(cfg, "data", None), str):
        return {}
    from dlstudies.data import load_data

    data = load_data(cfg.data, runtime.data_dir)  # cached: the run's checks loaded it
    return {"n_train": len(data.train), "n_test": len(data.test)}


def slice_config(cfg, epochs: int, sizes: dict[str, int]):
    """`cfg` with every epoch budget at `epochs` and its data cut to SLICE_SAMPLES (a UsageError
    when the study's rules refuse it)."""
    changes = {name: min(epochs, getattr(cfg, name)) for name in epoch_fields(cfg)}
    changes.update({name: min(n, SLICE_SAMPLES) for name, n in sizes.items()})
    return dataclasses.replace(cfg, **changes)


def data_factor(sizes: dict[str, int]) -> float:
    """Samples of the real unit per sample of its slice."""
    cut = sum(min(n, SLICE_SAMPLES) for n in sizes.values())
    return sum(sizes.values()) / cut if cut else 1.0


# ---- timing ----------------------------------------------------------------------------------

def timed(fn, *args):
    start = time.process_time()
    value = fn(*args)
    return value, time.process_time() - start


def _slices(cfg, sizes: dict[str, int]):
    """(short, long, short config, long config, data sizes cut): the first pair of slices the study
    accepts, with its data cut where its rules allow (a minimum of samples per parameter may not)."""
    for cut in (sizes, {}):
        for short, long in SLICES:
            try:
                return short, long, slice_config(cfg, short, cut), slice_config(cfg, long, cut), cut
            except UsageError:
                continue
    raise UsageError(f"{type(cfg).__module__}: no timed slice of this config is valid; cannot estimate it")


def _line(t_short: float, t_long: float, short: int, long: int) -> tuple[float, float]:
    """(fixed seconds, seconds per epoch) through two timed slices."""
    per_epoch = max(0.0, (t_long - t_short) / (long - short))
    return max(0.0, t_long - per_epoch * long), per_epoch


def estimate_study(name: str, cfg, seeds: tuple[int, ...], runtime: Runtime, folder: Path) -> StudyEstimate:
    """Time every unit of the study as two slices, then its analysis on the long slices' results."""
    from dlstudies.runner import execute_unit

    study = STUDIES.get(name)
    sizes = data_sizes(cfg, runtime)
    short, long, cfg_short, cfg_long, sizes = _slices(cfg, sizes)
    epochs = max((getattr(cfg, f) for f in epoch_fields(cfg)), default=long)
    factor, bound = data_factor(sizes), is_upper_bound(cfg)
    real = study.work_units(cfg, seeds, runtime)
    pairs = zip(study.work_units(cfg_short, seeds, runtime), study.work_units(cfg_long, seeds, runtime))
    estimates, results, lines = [], [], {}
    for unit, (a, b) in zip(real, pairs):
        shape = (unit.params, len(unit.seeds))  # units alike but for their seeds cost alike
        t_short = timed(execute_unit, a)[1] if shape not in lines else None
        result, t_long = timed(execute_unit, b)  # every unit's long slice: the analysis reads them all
        if t_short is not None:
            lines[shape] = _line(t_short, t_long, short, long)
        fixed, per_epoch = lines[shape]
        estimates.append(UnitEstimate(unit, (fixed + per_epoch * epochs) * factor, bound))
        results.append(result)
    analysis = _analysis_s(study, cfg_long, seeds, runtime, results, folder)
    return StudyEstimate(name, tuple(estimates), analysis)


def _analysis_s(study, cfg, seeds, runtime, results, folder: Path) -> float:
    from dlstudies.runner import _finish

    _, seconds = timed(_finish, study, cfg, "plan", seeds, runtime, results, folder, "", time.perf_counter())
    return seconds


def estimate(configs: dict, seeds_of, runtime: Runtime, workers: int) -> Plan:
    """The Plan of running `configs` ({study: config}); `seeds_of(name)`: the seeds of a study."""
    from dlstudies.report import render_report

    startup = time.process_time()  # imports and data loads of this process: what every run pays first
    with tempfile.TemporaryDirectory(prefix="dlstudies-plan-") as tmp:
        studies = tuple(estimate_study(n, cfg, seeds_of(n), runtime, Path(tmp)) for n, cfg in configs.items())
        _, report = timed(render_report, Path(tmp))
    return Plan(studies, startup * (1 + (workers > 1)), report, workers)  # pool workers import once more


# ---- printing ----------------------------------------------------------------------------------

def hms(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def plan_lines(plan: Plan) -> list[str]:
    """Per study its units and estimate; the last line `total: H:MM:SS wall with N workers`."""
    lines = []
    for s in plan.studies:
        mark = "≤" if s.upper_bound else ""
        longest = max((u.seconds for u in s.units), default=0.0)
        lines.append(f"{s.name:<22} {len(s.units):>3} units  longest {mark}{hms(longest)}  "
                     f"compute {mark}{hms(s.compute_s())}  wall {mark}{hms(s.wall_s(plan.workers))}")
    if any(s.upper_bound for s in plan.studies):
        lines.append("≤: an upper bound (a stop rule may end training before max_epochs)")
    lines.append(f"start-up {hms(plan.startup_s)}, report {hms(plan.report_s)}")
    lines.append(f"total: {hms(plan.wall_s())} wall with {plan.workers} workers")
    return lines


def unit_table(plan: Plan) -> list[dict]:
    """Plain data per unit (for results and tests): study, params, seeds, estimated seconds."""
    return [{"study": s.name, "params": dict(u.unit.params), "seeds": list(u.unit.seeds), "seconds": u.seconds,
             "upper_bound": u.upper_bound, "config": as_dict(u.unit.config)} for s in plan.studies for u in s.units]
