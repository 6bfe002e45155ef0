"""`dlstudies plan`: the work units of a run and an estimate of its time on this machine, from
a few timed steps, so a user knows before starting whether it is a coffee or a night.

Every study's time is dominated by its units (engine fits). Each unit is timed, in this process on
one thread (`time.process_time`), as *slices*: the same Config with its training budgets (every
field named `*epochs`, and TRAINING_STEPS) cut to k and 2k epochs' worth and its data (n_train,
n_test, every `*_n` sample count) cut to SLICE_SAMPLES and half as many. A slice's time is split
into its training (the engine reports each fit's CPU time) and the rest (measures on the trained
models, checks, evaluations): each part has a bilinear line, cost = a + b·data + budget·(c + d·data),
evaluated at the real unit; the rest counts as growing with the budget only where it grows by more
than MIN_SLOPE_S between the slices (measures run once per trained model, whatever its epochs). k
grows until both budgets train the unit as the same number of fits and the training the larger one
adds stands above the noise. The first unit is timed on the whole grid; one unit of each other
shape at the larger data size and at the smaller data size's larger budget, so that a shape whose
training does not grow with its samples (a step budget) scales as it does. A stop-rule study (a
`max_*` budget) may stop earlier: its estimate is an upper bound, marked `≤`. The analysis and
figures of each study are timed on the largest slices' results replicated to every unit, the
report once, and start-up is what this process spent importing and loading data. Wall time with N
workers: each study's units scheduled longest first on N workers (as the runner does), studies one
after another.
"""

from __future__ import annotations

import dataclasses
import heapq
import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from dlstudies.config import Runtime, as_dict
from dlstudies.engine import fit_seconds
from dlstudies.errors import UsageError
from dlstudies.studies import STUDIES
from dlstudies.runner import execute_unit
from dlstudies.studies.base import Unit

SLICE_SAMPLES = 512  # samples of the largest data set in the larger timed slice (the other: half as many)
MIN_SLOPE_S = 0.25  # CPU seconds the larger budget must add to a slice: well above the noise of a shared machine
MAX_SLICE_EPOCHS = 64  # the most epochs a slice's smaller budget grows to
MAX_SLICE_S = 1.0  # nor past a slice of this many CPU seconds
TRAINING_STEPS = ("max_steps", "gn_steps")  # step budgets of a training phase, cut with the epochs


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

def budget_fields(cfg) -> list[str]:
    """The int fields that set how long a unit trains: every `*epochs`, and TRAINING_STEPS."""
    return [f.name for f in dataclasses.fields(cfg) if isinstance(getattr(cfg, f.name), int)
            and (f.name.endswith("epochs") or f.name in TRAINING_STEPS)]


def epoch_fields(cfg) -> list[str]:
    return [name for name in budget_fields(cfg) if name.endswith("epochs")]


def is_upper_bound(cfg) -> bool:
    """A stop rule ends training at most at its `max_*` budget; a fixed budget runs exactly `epochs`."""
    return any(name.startswith("max_") for name in budget_fields(cfg))


def data_sizes(cfg, runtime: Runtime) -> dict[str, int]:
    """{n_train, n_test: samples the unit really uses} for the fields the config has, and every set
    `*_n` field (samples of the training set a measure is taken on, at most all of them)."""
    full = _dataset_sizes(cfg, runtime)
    sizes = {}
    for name in ("n_train", "n_test"):
        if any(f.name == name for f in dataclasses.fields(cfg)):
            value = getattr(cfg, name)
            sizes[name] = min(value, full.get(name, value)) if value is not None else full.get(name)
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if f.name.endswith("_n") and isinstance(value, int):
            sizes[f.name] = min(value, sizes.get("n_train") or value)
    return {k: v for k, v in sizes.items() if v is not None}


def _dataset_sizes(cfg, runtime: Runtime) -> dict[str, int]:
    if not isinstance(getattr(cfg, "data", None), str):
        return {}
    from dlstudies.data import load_data

    data = load_data(cfg.data, runtime.data_dir)  # cached: the run's checks loaded it
    return {"n_train": len(data.train), "n_test": len(data.test)}


@dataclass(frozen=True)
class Slice:
    """`config` with its training budgets at `budget` and its samples at `data` (fractions of the real unit's)."""

    budget: float
    data: float
    config: object


def cut(value: int, fraction: float) -> int:
    return value if value == 0 else min(value, max(1, math.ceil(value * fraction - 1e-9)))


def slice_config(cfg, budget: float, data: float, sizes: dict[str, int]):
    """`cfg` with every training budget and data size cut to the fractions (a UsageError when the
    study's rules refuse it)."""
    changes = {name: cut(getattr(cfg, name), budget) for name in budget_fields(cfg)}
    changes.update({name: cut(n, data) for name, n in sizes.items()})
    return dataclasses.replace(cfg, **changes)


def budget_fractions(cfg, k: int) -> tuple[float, ...]:
    """k and 2k epochs of the longest epoch budget, as fractions of it (one fraction where 2k reaches it)."""
    longest = max((getattr(cfg, name) for name in epoch_fields(cfg)), default=0)
    if longest <= k:
        return (1.0,)
    return tuple(sorted({k / longest, min(1.0, 2 * k / longest)}))


def data_fractions(sizes: dict[str, int]) -> tuple[float, ...]:
    """SLICE_SAMPLES and half as many of the largest data size, as fractions of it."""
    largest = max(sizes.values(), default=0)
    if largest <= 1:
        return (1.0,)
    top = min(1.0, SLICE_SAMPLES / largest)
    return (top / 2, top)


def slices(cfg, sizes: dict[str, int], epochs: int = 1) -> tuple[int, list[Slice]]:
    """(k, grid): budgets of k and 2k epochs × two data sizes, the first grid from `epochs` on that
    the study's rules accept (some need >= 2 epochs or a multiple of a snapshot interval; some a
    minimum of samples per parameter, and their data is then not cut)."""
    for data in (data_fractions(sizes), (1.0,)):
        for k in range(epochs, epochs + 10):
            try:
                return k, [Slice(f, g, slice_config(cfg, f, g, sizes)) for g in data for f in budget_fractions(cfg, k)]
            except UsageError:
                continue
    raise UsageError(f"{type(cfg).__module__}: no timed slice of this config is valid; cannot estimate it")


def line(points: dict[float, float], floor: float = 0.0) -> tuple[float, float]:
    """(value at 0, slope) of the line through two points {x: y}, its slope at least 0 (cost never
    falls as work grows, whatever the timing noise) and 0 where y grows by less than `floor` (within
    the noise: flat at the larger budget's y); one point: a flat line."""
    (x1, y1), *rest = sorted(points.items())
    if not rest:
        return y1, 0.0
    x2, y2 = rest[-1]
    if floor > 0 and y2 - y1 < floor:
        return y2, 0.0
    slope = max(0.0, (y2 - y1) / (x2 - x1))
    return y2 - slope * x2, slope


def at_one(points: dict[float, float]) -> float:
    value, slope = line(points)
    return max(value + slope, max(points.values()))


@dataclass(frozen=True)
class Scaling:
    """How a unit's budget line at the sliced data size grows to all of its data: the line's value
    at budget 0 (work done once per unit) and its slope (work per unit of budget) each by its factor."""

    fixed: float
    per_budget: float
    floor: float = 0.0  # the least growth with the budget that is not noise (see `line`)

    def real_seconds(self, times: dict[float, float]) -> float:
        """Seconds of the real unit from {budget: seconds} of its slices at the sliced data size."""
        value, slope = line(times, self.floor)
        return max(0.0, value) * self.fixed + slope * self.per_budget


def scaling(times: dict[tuple[float, float], float], floor: float = 0.0) -> Scaling:
    """The Scaling of a unit timed at {(budget, data): seconds}: cost = a + b·data + budget·(c + d·data)
    (bilinear), so the work that grows with epochs × samples (the fits), with epochs alone (a step
    budget), with samples alone (final evaluations) and with neither (building models, measures on
    fixed sample counts) each scale as they do."""
    by_data: dict[float, dict[float, float]] = {}
    for (f, g), t in times.items():
        by_data.setdefault(g, {})[f] = t
    lines = {g: line(points, floor) for g, points in by_data.items()}
    top = lines[max(lines)]
    fixed = at_one({g: max(0.0, v) for g, (v, _) in lines.items()})
    per_budget = at_one({g: s for g, (_, s) in lines.items()})
    return Scaling(fixed / top[0] if top[0] > 0 else 1.0, per_budget / top[1] if top[1] > 0 else 1.0, floor)


def real_seconds(times: dict[tuple[float, float], float], floor: float = 0.0) -> float:
    """Seconds of the real unit (budget 1, data 1) from its slices {(budget, data): seconds}."""
    top = max(g for _, g in times)
    return scaling(times, floor).real_seconds({f: t for (f, g), t in times.items() if g == top})


@dataclass(frozen=True)
class Timing:
    """CPU seconds of one slice: all of it, and the part inside the engine's fits (training)."""

    seconds: float
    fit_s: float = 0.0
    fits: int = 0

    def parts(self) -> tuple[float, float]:
        """(training, the rest): the rest (measures on the trained models, checks, evaluations) may
        not grow with the budget at all, so each part has its own line."""
        return self.fit_s, max(0.0, self.seconds - self.fit_s)

    def budgeted(self) -> float:
        """The seconds that the epoch budget drives: the fits' where the engine reported any."""
        return self.fit_s if self.fits else self.seconds


def other_floor(times) -> float:
    """The floor of the other work's line: MIN_SLOPE_S where the training was timed apart from it."""
    return MIN_SLOPE_S if any(t.fits for t in times) else 0.0


class UnitScaling:
    """The Scalings of a unit's training and of its other work (the latter's growth with the budget
    counted only above MIN_SLOPE_S where the engine reported the training apart: a unit's measures
    run once per trained model, whatever its epochs)."""

    def __init__(self, times: dict[tuple[float, float], Timing]):
        parts = [{key: t.parts()[i] for key, t in times.items()} for i in (0, 1)]
        self.parts = (scaling(parts[0]), scaling(parts[1], other_floor(times.values())))

    def real_seconds(self, times: dict[float, Timing]) -> float:
        return sum(s.real_seconds({f: t.parts()[i] for f, t in times.items()}) for i, s in enumerate(self.parts))


def shape_seconds(top: dict[float, Timing], small: Timing, small_data: float, top_data: float) -> float:
    """Seconds of a real unit from its slices {budget: Timing} at the larger data size and one at the
    smaller data size and the largest budget: per part, its budget line at budget 1 times how that
    part grows from the larger data size to all of it (at the largest budget, linearly)."""
    seconds = 0.0
    for i, floor in ((0, 0.0), (1, other_floor([*top.values(), small]))):
        value, slope = line({f: t.parts()[i] for f, t in top.items()}, floor)
        at_top = top[max(top)].parts()[i]
        whole = at_one({small_data: small.parts()[i], top_data: at_top})
        seconds += max(0.0, value + slope) * (whole / at_top if at_top > 0 else 1.0)
    return seconds


# ---- timing ----------------------------------------------------------------------------------

def timed(fn, *args):
    start = time.process_time()
    value = fn(*args)
    return value, time.process_time() - start


def shape_of(unit: Unit) -> tuple:
    """Units alike but for their seeds cost alike: one of each shape is timed."""
    return unit.params, len(unit.seeds)


def estimate_study(name: str, cfg, seeds: tuple[int, ...], runtime: Runtime, folder: Path) -> StudyEstimate:
    """Time the study's first unit as every slice, one unit of each other shape as the slices of the
    largest data size and the largest budget at the smaller data size (a shape's training may not
    grow with its data as the first one's does: a step budget), then the analysis on the largest
    slice's results."""
    study = STUDIES.get(name)
    real = study.work_units(cfg, seeds, runtime)
    grid, sliced, top, timings = _settled_grid(study, cfg, seeds, runtime, len(real))
    rest = [j for j in range(len(grid)) if j not in top]  # the first unit at the smaller data size
    lead = dict(zip(top, timings)) | dict(zip(rest, _time_slices([sliced[j][0] for j in rest])))
    scale = UnitScaling({(grid[j].budget, grid[j].data): t for j, (t, _) in lead.items()})
    seconds, results = {}, {}
    for i, unit in enumerate(real):
        if shape_of(unit) in seconds:
            continue
        if i == 0:
            seconds[shape_of(unit)] = scale.real_seconds({grid[j].budget: t for j, (t, _) in zip(top, timings)})
            results[shape_of(unit)] = timings[-1][1]
            continue
        mine = _time_slices([sliced[j][i] for j in [*top, rest[-1]]])
        *big, (small, _) = mine
        seconds[shape_of(unit)] = shape_seconds({grid[j].budget: t for j, (t, _) in zip(top, big)}, small,
                                                grid[rest[-1]].data, grid[-1].data)
        results[shape_of(unit)] = big[-1][1]
    bound = is_upper_bound(cfg)
    estimates = tuple(UnitEstimate(u, seconds[shape_of(u)], bound) for u in real)
    replicas = [with_seeds(results[shape_of(u)], u.seeds) for u in real]
    return StudyEstimate(name, estimates, _analysis_s(study, grid[-1].config, seeds, runtime, replicas, folder))


def _settled_grid(study, cfg, seeds, runtime, n_units: int):
    """(grid, its units per slice, the indices of the largest data size's slices, the first unit's
    timings there): epochs grown until both budgets train the first unit as the same number of fits
    (a study may train one recipe for two arms when a short budget makes them alike) and what the
    larger budget adds to its training stands MIN_SLOPE_S above the timing noise, or the budget is
    whole, or MAX_SLICE_EPOCHS, or a slice trains MAX_SLICE_S (a stop rule that ends a slice early
    adds nothing however many epochs it is given)."""
    sizes, k = data_sizes(cfg, runtime), 1
    while True:
        k, grid = slices(cfg, sizes, k)
        sliced = [study.work_units(s.config, seeds, runtime) for s in grid]
        if any(len(units) != n_units for units in sliced):
            raise UsageError(f"{study.name}: its units change with the epoch budget or data size; cannot estimate it")
        top = [j for j, s in enumerate(grid) if s.data == grid[-1].data]  # grid: by data, then budget
        timings = _time_slices([sliced[j][0] for j in top])
        (small, _), (large, _) = timings[0], timings[-1]
        added = large.budgeted() - small.budgeted()
        whole = grid[-1].budget >= 1.0 or 2 * k > MAX_SLICE_EPOCHS or large.budgeted() >= MAX_SLICE_S
        if len(top) < 2 or (added >= MIN_SLOPE_S and small.fits == large.fits) or whole:
            return grid, sliced, top, timings
        k = grown(k, added if small.fits == large.fits else 0.0)


def grown(k: int, added: float) -> int:
    """The next k: enough to add MIN_SLOPE_S if the training grows as it did (a power of 2, at most
    MAX_SLICE_EPOCHS), at least doubled."""
    factor = MIN_SLOPE_S / added if added > 0 else 2.0
    return min(max(2 * k, k * 2 ** math.ceil(math.log2(factor))), max(MAX_SLICE_EPOCHS, 2 * k))


def _time_slices(units: list[Unit]) -> list[tuple[Timing, dict]]:
    """(Timing, result) of each of the slices of one real unit."""
    return [_time_slice(unit) for unit in units]


def _time_slice(unit: Unit) -> tuple[Timing, dict]:
    with fit_seconds() as fits:
        result, seconds = timed(execute_unit, unit)
    return Timing(seconds, sum(fits), len(fits)), result


def with_seeds(result, seeds: tuple[int, ...]):
    """A copy of one unit's result as another unit of its shape gives it: the i-th seed met is seeds[i]."""
    found: dict = {}

    def relabel(value):
        if isinstance(value, dict):
            return {k: (seeds[found.setdefault(v, len(found)) % len(seeds)] if k == "seed" else relabel(v))
                    for k, v in value.items()}
        return [relabel(v) for v in value] if isinstance(value, list) else value

    return relabel(result)


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
