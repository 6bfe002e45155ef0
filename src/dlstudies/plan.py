"""`dlstudies plan`: the work units of a run and an estimate of its time on this machine, from
a few timed steps, so a user knows before starting whether it is a coffee or a night.

Every study's time is dominated by its units (engine fits). Of the units that differ only by their
seeds, the one with the most seeds is timed and the others scaled by their seeds. It is timed, on one
thread (`time.process_time`), as *slices*: the same Config with its training budgets (every field
named `*epochs`, and TRAINING_STEPS) cut to a smaller and a larger number of epochs' worth and its
data (n_train, n_test, every `*_n` sample count) cut to SLICE_SAMPLES (or twice the largest training
batch) and half as many; dlstudies.costs turns three or four such slices into the real unit's
seconds. For each kind the larger budget grows until both budgets train it as the same fits and
what it adds to the training stands above the noise; a unit whose training or rest is estimated at
over REPEAT_ABOVE times the larger slice's has its corners timed twice, the least kept. The
measures on trained models (`dlstudies.analysis.replay`) are timed until known, then replayed at
their cost in the process's later slices. A kind's first slice is timed on SLICE_SEEDS of its
stack's seeds and one more; where the whole stack's first slice would cost more than
FEWER_SEEDS_ABOVE, its grid trains SLICE_SEEDS and its larger slice, timed on one seed more too,
tells what each part gains per seed; else the grid trains the whole stack. A stop-rule study (a
`max_*` or step budget) may stop earlier: its estimate is an upper bound, marked `≤`. The analysis
and figures of each study are timed on the first slices' results (their seeds' runs repeated for
the stack's others where fewer were trained) replicated to every unit, the report once, and
start-up is what this process spent importing and loading data. The kinds, then the analyses, are
timed on as many processes as the run has workers, one at a time per worker. Wall time with N
workers: the run's one queue on N workers (each study's units longest first, the studies in order,
as the runner hands them out: a worker freed at a study's end starts the next study's units), and
the analyses.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import datetime
import heapq
import math
import os
import platform
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from dlstudies.analysis.replay import replaying
from dlstudies.config import Runtime, as_dict
from dlstudies.costs import CORNERS, MIN_SLOPE_S, Timing, rest_grows, unit_seconds
from dlstudies.engine import fit_seconds
from dlstudies.errors import UsageError
from dlstudies.studies import STUDIES
from dlstudies.runner import execute_unit, key_of
from dlstudies.store import read_json, unit_key, write_json
from dlstudies.studies.base import Unit

# The mini-batch sizes a unit trains with (fields of some study's Config).
TRAINING_BATCHES = ("batch_size", "batch_sizes", "ae_batch_size", "small_batch", "large_batch")
SLICE_SAMPLES = 512  # samples of the largest data set in the larger timed slice (the other: half as many)
MAX_SLICE_EPOCHS = 64  # the most epochs a slice's smaller budget grows to
MAX_SLICE_S = 0.5  # nor past a slice that trains this many CPU seconds
# Step budgets of a training phase, cut with the epochs. Mini-batch steps are cut by the data
# fraction too: an epoch of them shrinks with the samples, so the slice then stops at the share of
# its epochs the real unit stops at (a step budget of 30000 at batch 512 on 54,000 samples is 283
# epochs; cut by the budget alone it would be 600 epochs of a 512-sample slice). Full-batch
# iterations (L-BFGS) cost more with more samples, as epochs do: cut by the budget alone.
TRAINING_STEPS = {"max_steps": "mini-batch", "gn_steps": "full-batch"}
# A unit estimated at more than this many times its larger slice has its corners timed twice (the
# least kept): the noise of one timing is scaled up with the slice. One timing had moved paper
# units of 100-1000x their slices by up to 2.9x between plans.
REPEAT_ABOVE = 100


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
        """The run's one queue (each study's units longest first, the studies in order, as the runner
        hands them out) on its workers, and each study's analysis after it."""
        queue = [c for s in self.studies for c in sorted((u.seconds for u in s.units), reverse=True)]
        analysis = sum(s.analysis_s for s in self.studies)
        return self.startup_s + self.report_s + queue_end(queue, self.workers) + analysis

    def unit_seconds(self) -> dict:
        """{unit: estimated seconds}, what the runner orders units by."""
        return {u.unit: u.seconds for s in self.studies for u in s.units}


def makespan(costs: list[float], workers: int) -> float:
    """Finish time of `costs` handed longest first to the first free of `workers` (the runner's order)."""
    return queue_end(sorted(costs, reverse=True), workers)


def queue_end(costs: list[float], workers: int) -> float:
    """Finish time of `costs` handed in this order to the first free of `workers`."""
    if len(costs) <= 1 or workers <= 1:
        return sum(costs)
    free = [0.0] * workers
    for cost in costs:
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
    """A stop rule ends training at most at its `max_*` budget or step budget (TRAINING_STEPS: L-BFGS
    stops at its tolerance); a fixed budget runs exactly `epochs`."""
    return any(name.startswith("max_") or name in TRAINING_STEPS for name in budget_fields(cfg))


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
    # Rounded, not ceiled: a few steps rounded up would bias the line through them upwards.
    changes.update({name: max(1, round(getattr(cfg, name) * budget * data)) for name, kind in TRAINING_STEPS.items()
                    if kind == "mini-batch" and name in changes and getattr(cfg, name) > 0})
    changes.update({name: cut(n, data) for name, n in sizes.items()})
    return dataclasses.replace(cfg, **changes)


def budget_fractions(cfg, epochs: tuple[int, int]) -> tuple[float, float]:
    """The two `epochs` of the longest epoch budget as fractions of it (both 1 where the smaller reaches it)."""
    longest = max((getattr(cfg, name) for name in epoch_fields(cfg)), default=0)
    lo, hi = epochs
    if longest <= lo:
        return 1.0, 1.0
    return lo / longest, min(1.0, hi / longest)


def largest_batch(cfg) -> int:
    """The largest mini-batch any TRAINING_BATCHES field of `cfg` trains with (0: none)."""
    values = [getattr(cfg, name, None) for name in TRAINING_BATCHES]
    return max((v for value in values if value for v in (value if isinstance(value, tuple) else (value,))), default=0)


def data_fractions(sizes: dict[str, int], batch: int = 0) -> tuple[float, float]:
    """Half of SLICE_SAMPLES and SLICE_SAMPLES of the largest data size, as fractions of it; more
    where the smaller would not hold a whole `batch` (a batch cut to the samples there would make
    an epoch cost less than in proportion to them)."""
    largest = max(sizes.values(), default=0)
    if largest <= 1:
        return 1.0, 1.0
    top = min(1.0, max(SLICE_SAMPLES, 2 * batch) / largest)
    return top / 2, top


def slices(cfg, sizes: dict[str, int], epochs: tuple[int, int] = (1, 2)) -> tuple[tuple[int, int], dict]:
    """(epochs, {corner: Slice}) for the budgets of the two `epochs` and two data sizes, from the first
    `epochs` on (each shifted by s and 2s) that the study's rules accept (some need >= 2 epochs or a
    multiple of a snapshot interval; some a minimum of samples per parameter, and their data is then
    not cut: both data sizes are all of it)."""
    for data in (data_fractions(sizes, largest_batch(cfg)), (1.0, 1.0)):
        for shift in range(10):
            pair = (epochs[0] + shift, epochs[1] + 2 * shift)
            budgets = dict(zip(("lo", "hi"), budget_fractions(cfg, pair)))
            try:
                return pair, {(b, d): Slice(budgets[b], data[d == "top"], slice_config(cfg, budgets[b], data[d == "top"],
                                                                                     sizes)) for b, d in CORNERS}
            except UsageError:
                continue
    raise UsageError(f"{type(cfg).__module__}: no timed slice of this config is valid; cannot estimate it")


# ---- timing ----------------------------------------------------------------------------------

def timed(fn, *args):
    start = time.process_time()
    value = fn(*args)
    return value, time.process_time() - start


def leaders(units: list[Unit]) -> dict[tuple, int]:
    """{params: index of the unit with the most seeds among those with these params}: units alike
    but for their seeds cost alike per seed (a stack's work, and the measures per trained model, grow
    with its members), so one of each is timed."""
    out: dict[tuple, int] = {}
    for i, unit in enumerate(units):
        if unit.params not in out or len(unit.seeds) > len(units[out[unit.params]].seeds):
            out[unit.params] = i
    return out


def estimate_study(name: str, cfg, seeds: tuple[int, ...], runtime: Runtime, folder: Path) -> StudyEstimate:
    """Time one unit of each kind (params) with `estimate_kind`, the others of its kind by their
    seeds, then the analysis on the results of every kind's first slice."""
    kinds = dict(estimate_kind(name, cfg, seeds, runtime, p) for p in leaders(_real_units(name, cfg, seeds, runtime)))
    return study_estimate(name, cfg, seeds, runtime, kinds, folder)


def _real_units(name: str, cfg, seeds, runtime: Runtime) -> list[Unit]:
    return STUDIES.get(name).work_units(cfg, seeds, runtime)


def estimate_kind(name: str, cfg, seeds: tuple[int, ...], runtime: Runtime, params: tuple,
                  measures: dict | None = None) -> tuple[tuple, tuple]:
    """(params, (CPU seconds per seed, a result)) of the kind `params` of the study's units: its unit
    with the most seeds timed as three corners of its slice grid (four where its rest grows with the
    budget), on fewer seeds where a slice of its whole stack would be costly (`seed_scale`); the result
    is of its first slice, as of all its seeds (the same budget for every kind: the figures draw their
    curves side by side)."""
    study, real = STUDIES.get(name), _real_units(name, cfg, seeds, runtime)
    i, timer = leaders(real)[params], SliceTimer({} if measures is None else measures)
    start, first = first_slices(cfg, runtime)
    scale, result = seed_scale(timer, _sliced_units(study, first, seeds, runtime, len(real))["lo", "top"][i])
    grid, stacks = _settled_grid(study, cfg, seeds, runtime, len(real), timer, scale, i, start)
    scale = seed_growth(timer, scale, stacks["hi", "top"])
    units = {corner: scale.unit(stack) for corner, stack in stacks.items()}
    corners = [units[c] for c in CORNERS[:3]]
    mine = dict(zip(CORNERS[:3], timer.time(corners)))
    if rest_grows(_timings(mine)) or _scaled_far(grid, mine):
        # Growth of the rest is multiplied by 1/budget, and all of a slice's noise by the scale of
        # a unit far beyond it: noise must not pass for work. Least of two timings.
        mine = dict(zip(CORNERS[:3], timer.time(corners, repeats=2)))
    if rest_grows(_timings(mine)):
        mine["lo", "small"] = timer.time([units["lo", "small"]], repeats=2)[0]
    return params, (scale.whole(unit_seconds(grid, _timings(mine), parts=True)) / len(real[i].seeds), result)


def study_estimate(name: str, cfg, seeds: tuple[int, ...], runtime: Runtime, kinds: dict, folder: Path) -> StudyEstimate:
    """The study's estimate from {params: (seconds per seed, result)} of every kind of its units, its
    analysis and figures timed on the results replicated to every unit."""
    real = _real_units(name, cfg, seeds, runtime)
    bound = is_upper_bound(cfg)
    estimates = tuple(UnitEstimate(u, kinds[u.params][0] * len(u.seeds), bound) for u in real)
    replicas = [with_seeds(kinds[u.params][1], u.seeds) for u in real]
    first = first_slices(cfg, runtime)[1]["lo", "top"].config  # the config of every kind's result
    return StudyEstimate(name, estimates, _analysis_s(STUDIES.get(name), first, seeds, runtime, replicas, folder))


def first_slices(cfg, runtime: Runtime) -> tuple[tuple[int, int], dict]:
    """(epochs, {corner: Slice}) every kind's grid starts from, and its results are taken at."""
    return slices(cfg, data_sizes(cfg, runtime))


def _timings(timed_corners: dict) -> dict:
    return {c: t for c, (t, _) in timed_corners.items()}


def _scaled_far(grid: dict, timed_corners: dict) -> bool:
    """Whether the training or the rest of the unit these corners {corner: (Timing, result)} estimate
    is over REPEAT_ABOVE times its part of the larger slice: a slice long with measures may hold a
    training that the estimate scales a thousandfold."""
    timings = _timings(timed_corners)
    per_fit, budgeted, rest = unit_seconds(grid, timings, parts=True)
    training, slice_rest = timings["hi", "top"].parts()
    return per_fit + budgeted > REPEAT_ABOVE * training or rest > REPEAT_ABOVE * slice_rest


# ---- slices on fewer seeds -----------------------------------------------------------------------
# A kind's stack of M seeds costs about M times one seed's where it matters (a CPU convolves each
# member apart; measures run per trained model): a kind's first slice is timed on SLICE_SEEDS and
# one seed more, which tell what the whole stack would cost; where its first slice would cost more
# than FEWER_SEEDS_ABOVE, its grid is timed on SLICE_SEEDS, and its larger slice on one seed more
# tells what each part gains per seed (else the grid is timed on the whole stack, as it is).

SLICE_SEEDS = 1
# CPU seconds. With what a seed adds read off the larger slice, one seed and two estimate a stack as
# timing it whole does (image-depth's CNN stacks of 10 at paper, whose first slice costs about 0.6 s:
# 147-158 s either way); below this a stack's two extra timings cost more than they save.
FEWER_SEEDS_ABOVE = 0.5


@dataclass(frozen=True)
class SeedScale:
    """Slices of `seeds` of a stack's `members`, and how each part of a slice grows to the whole
    stack: the training the budget drives by what a member adds to it (a stack's steps share work
    among its members: launches, the update of one flat tensor), the training's work per fit not at
    all, the rest as its fixed part (loading data) and a part per seed (measures and evaluations run
    per trained model); from the settled grid's larger slice timed on `seeds` and on one seed more
    (`seed_growth`)."""

    seeds: int
    members: int
    training: float = 0.0  # training seconds of the slice it was read on, on `seeds`
    member: float = 0.0  # what one member more adds to them
    fixed: float = 0.0  # seconds of the rest that do not grow with the seeds

    def unit(self, unit: Unit, seeds: int | None = None) -> Unit:
        """`unit` on its first `seeds` (this scale's) seeds."""
        n = seeds or self.seeds
        return unit if n >= len(unit.seeds) else dataclasses.replace(unit, seeds=unit.seeds[:n])

    @property
    def grow(self) -> float:
        return self.members / self.seeds

    def whole(self, parts: tuple[float, float, float]) -> float:
        """Seconds of the whole stack from (training per fit, training the budget drives, the rest)
        of its estimate on `seeds`. More seeds never cost less, and a stack no more than its members
        apart: noise (which only adds time) moves an estimate by no more than proportion would."""
        per_fit, budgeted, rest = parts
        stepped = self.training - per_fit  # the first slice's training the budget drives
        ratio = 1 + self.member * (self.members - self.seeds) / stepped if stepped > 0 else self.grow
        return per_fit + budgeted * min(self.grow, max(1.0, ratio)) + self.fixed + max(0.0, rest - self.fixed) * self.grow

    def from_pair(self, few: Timing, more: Timing) -> "SeedScale":
        """This scale with what a seed adds read off its first slice timed on `seeds` and on one seed more."""
        (train_f, rest_f), (train_m, rest_m) = few.parts(), more.parts()
        per_seed = min(max(0.0, rest_m - rest_f), rest_f / self.seeds)
        return dataclasses.replace(self, training=train_f, member=max(0.0, train_m - train_f),
                                   fixed=max(0.0, rest_f - self.seeds * per_seed))


def seed_scale(timer: "SliceTimer", unit: Unit) -> tuple[SeedScale, dict]:
    """(SeedScale, a result of all its seeds) of a kind's first slice `unit`: timed on SLICE_SEEDS and
    one seed more, and on all its seeds where that would cost no more than FEWER_SEEDS_ABOVE (the
    grid is then timed there); else the grid is timed on SLICE_SEEDS (what a seed adds is read later,
    by `seed_growth`) and the result of one seed more, repeated over the stack's seeds, stands for
    the whole stack's."""
    members = len(unit.seeds)
    scale = SeedScale(min(SLICE_SEEDS, members), members)
    few, more = scale.unit(unit), scale.unit(unit, scale.seeds + 1)
    # The fewer seeds first: a process's first slice of a study pays one-off work (imports, the first
    # call of a kernel), which the timing of more seeds must not carry into the growth.
    timer.time([few])
    (f, _), (m, result) = timer.time([few, more])
    if more == unit or f.seconds + (m.seconds - f.seconds) * (members - scale.seeds) <= FEWER_SEEDS_ABOVE:
        ((_, result),) = timer.time([unit])
        return SeedScale(members, members), result
    return scale, with_seeds(result, unit.seeds)


def seed_growth(timer: "SliceTimer", scale: SeedScale, unit: Unit) -> SeedScale:
    """`scale` with what a seed adds read off `unit`, the settled grid's larger slice of the whole
    stack, on the scale's seeds and one seed more (the least of two timings each): there the training
    stands above the noise, where a first slice's (hundredths of a second) does not."""
    if scale.seeds >= scale.members:
        return scale
    (f, _), (m, _) = timer.time([scale.unit(unit), scale.unit(unit, scale.seeds + 1)], repeats=2)
    return scale.from_pair(f, m)


def _sliced_units(study, grid: dict, seeds, runtime, n_units: int) -> dict:
    """{corner: the study's units at that slice}; a UsageError where they are not the real run's units."""
    sliced = {corner: study.work_units(s.config, seeds, runtime) for corner, s in grid.items()}
    if any(len(units) != n_units for units in sliced.values()):
        raise UsageError(f"{study.name}: its units change with the epoch budget or data size; cannot estimate it")
    return sliced


def _settled_grid(study, cfg, seeds, runtime, n_units: int, timer: "SliceTimer", scale: SeedScale, index: int,
                  epochs: tuple[int, int]) -> tuple[dict, dict]:
    """({corner: Slice}, {corner: the unit at `index` there, of the whole stack; timed on the seeds of
    `scale`}), from `epochs` on: the larger budget grown until both budgets train the unit as the same number of
    fits (a study may train one recipe for two arms when a short budget makes them alike) and what it
    adds to the smaller one's training stands MIN_SLOPE_S above the timing noise or trains MAX_SLICE_S
    (a stop rule that ends a slice early adds nothing however many epochs it is given), or the
    budget is whole, or MAX_SLICE_EPOCHS. Each growth times one new slice: the smaller budget is the
    last one's larger (its timing kept)."""
    sizes = data_sizes(cfg, runtime)
    while True:
        epochs, grid = slices(cfg, sizes, epochs)
        stacks = {c: u[index] for c, u in _sliced_units(study, grid, seeds, runtime, n_units).items()}
        (small, _), (large, _) = timer.time([scale.unit(stacks["lo", "top"]), scale.unit(stacks["hi", "top"])])
        added, alike = large.budgeted() - small.budgeted(), small.fits == large.fits
        whole = grid["hi", "top"].budget >= 1.0 or epochs[1] > MAX_SLICE_EPOCHS
        if (alike and (added >= MIN_SLOPE_S or large.budgeted() >= MAX_SLICE_S)) or whole:
            return grid, stacks
        epochs = (epochs[1], grown(epochs, added if alike else 0.0))


def grown(epochs: tuple[int, int], added: float) -> int:
    """The next larger budget: enough to add MIN_SLOPE_S to the last larger one if the training grows
    as it did (a power of 2 times it, at most MAX_SLICE_EPOCHS), at least doubled."""
    lo, hi = epochs
    per_epoch = added / (hi - lo) if added > 0 and hi > lo else 0.0
    need = hi + (MIN_SLOPE_S / per_epoch if per_epoch > 0 else hi)
    return min(max(2 * hi, hi * 2 ** math.ceil(math.log2(need / hi))), max(MAX_SLICE_EPOCHS, 2 * hi))


class SliceTimer:
    """Times slices (units): a growing grid, and a grid whose budgets or data sizes coincide, meet
    the same slice again, which keeps its timings. The measures on the trained models
    (`dlstudies.analysis.replay`) are timed until they are known, then replayed in later slices."""

    def __init__(self, measures: dict):
        self.memo: dict[Unit, tuple[Timing, dict]] = {}
        self.count: dict[Unit, int] = {}
        self.measures = measures

    def time(self, units: list[Unit], repeats: int = 1) -> list[tuple[Timing, dict]]:
        """(Timing, result) of each slice: the least of at least `repeats` timings (noise only adds time)."""
        for unit in units:
            while self.count.get(unit, 0) < repeats:
                timing = _time_slice(unit, self.measures)
                if unit not in self.memo or timing[0].seconds < self.memo[unit][0].seconds:
                    self.memo[unit] = timing
                self.count[unit] = self.count.get(unit, 0) + 1
        return [self.memo[unit] for unit in units]


def _time_slice(unit: Unit, measures: dict) -> tuple[Timing, dict]:
    """(Timing, result) of one slice, its replayed measures (`measures`: their memo) counted at their cost."""
    with fit_seconds() as fits, replaying(measures) as replay:
        result, seconds = timed(execute_unit, unit)
    return Timing(seconds + replay.seconds, sum(fits), len(fits)), result


def with_seeds(result, seeds: tuple[int, ...]):
    """A copy of one unit's result as the unit of its params with `seeds` would give it: the i-th seed
    met is seeds[i]. The runs of seeds beyond them are left out (a unit with fewer seeds); where the
    result has fewer seeds (k) than `seeds`, seeds[j] gets the runs of its (j mod k)-th seed. A list's
    runs are taken in blocks of rising seeds (a condition's runs), each block given every seed."""
    order: dict = {}
    _seeds_met(result, order)

    def copy(value, seed):
        if isinstance(value, dict):
            return {k: (seed if k == "seed" else copy(v, seed)) for k, v in value.items()}
        return [copy(v, seed) for v in value] if isinstance(value, list) else value

    def relabel(value):
        if _is_run(value):  # a run outside a list (a study's pick of one seed)
            return copy(value, seeds[order[value["seed"]] % len(seeds)])
        if isinstance(value, dict):
            return {k: relabel(v) for k, v in value.items()}
        if not isinstance(value, list):
            return value
        out, block = [], {}
        for v in [*value, _END]:  # _END closes the last block (a list may hold None)
            i = order[v["seed"]] if _is_run(v) else None
            if block and (i is None or i <= max(block)):
                out += [copy(block[j % len(order)], s) for j, s in enumerate(seeds) if j % len(order) in block]
                block = {}
            if i is not None:
                block[i] = v
            elif v is not _END:
                out.append(relabel(v))
        return out

    return relabel(result)


_END = object()


def _is_run(value) -> bool:
    return isinstance(value, dict) and "seed" in value


def _seeds_met(value, order: dict) -> None:
    """Number each seed of a result's runs in the order met."""
    if _is_run(value):
        order.setdefault(value["seed"], len(order))
    values = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    for v in values:
        _seeds_met(v, order)


def _analysis_s(study, cfg, seeds, runtime, results, folder: Path) -> float:
    from dlstudies.runner import _finish

    _, seconds = timed(_finish, study, cfg, "plan", seeds, runtime, results, folder, "", time.perf_counter())
    return seconds


# The measures a plan's process has timed (`dlstudies.analysis.replay`), kept across the kinds it
# times: a study's kinds train different recipes of one model and measure it on the same samples.
_MEASURES: dict = {}


def _kind_job(job: tuple) -> tuple[tuple, tuple]:
    return estimate_kind(*job, measures=_MEASURES)


def _study_job(job: tuple) -> StudyEstimate:
    return study_estimate(*job)


def estimate(configs: dict, seeds_of, runtime: Runtime, workers: int, quiet: bool = True) -> Plan:
    """The Plan of running `configs` ({study: config}); `seeds_of(name)`: the seeds of a study. The
    kinds of unit, then the studies' analyses, are timed on `workers` processes, as the run's units
    will be (each on one thread, its own CPU time; beside another, as in the run): one kind at a time
    per worker, so that no study's kinds wait on one worker while the other is idle. Unless `quiet`,
    progress goes to stderr (`PlanProgress`)."""
    from dlstudies.executors import EXECUTORS
    from dlstudies.progress import PlanProgress
    from dlstudies.report import render_report

    startup = time.process_time()  # imports and data loads of this process: what every run pays first
    _MEASURES.clear()  # measured by another plan, maybe on another machine's data or under other load
    seeds = {n: tuple(seeds_of(n)) for n in configs}
    kinds = [(n, cfg, seeds[n], runtime, params) for n, cfg in configs.items()
             for params in leaders(_real_units(n, cfg, seeds[n], runtime))]
    progress = PlanProgress(collections.Counter(job[0] for job in kinds), quiet)
    with tempfile.TemporaryDirectory(prefix="dlstudies-plan-") as tmp:
        with contextlib.closing(progress), EXECUTORS.get("local")(workers=min(workers, len(kinds))) as execute:
            timed_kinds = {}
            for job, (params, kind) in execute(_kind_job, kinds):
                timed_kinds[job[0], params] = kind
                progress.kind_done(job[0])
            jobs = [(n, cfg, seeds[n], runtime, {p: k for (m, p), k in timed_kinds.items() if m == n}, Path(tmp))
                    for n, cfg in configs.items()]
            done = {}
            for job, study in execute(_study_job, jobs):
                done[job[0]] = study
                progress.study_done(job[0])
        _, report = timed(render_report, Path(tmp))
    studies = tuple(done[name] for name in configs)
    return Plan(studies, startup * (1 + (workers > 1)), report, workers)  # pool workers import once more


# ---- a plan kept in the output folder -----------------------------------------------------------
# `dlstudies plan --out OUT` keeps its estimates in OUT/plan.json, each unit under its store key (which
# changes with its config, seeds, runtime and the code's version), so that `dlstudies run` with the
# same arguments prints the estimate as it starts without timing anything again.

PLAN_FILE = "plan.json"


def machine() -> dict:
    """What the kept estimates were timed on: estimates of another machine are not this one's."""
    return {"host": platform.node(), "cpus": os.cpu_count(), "processor": platform.processor() or platform.machine()}


def study_key(name: str, cfg, seeds) -> str:
    return unit_key({"study": name, "config": as_dict(cfg), "seeds": list(seeds)})


def _kept_here(out: Path) -> dict:
    """OUT/plan.json's object where it was timed on this machine; else {} (absent, damaged, or
    another machine's: its estimates are not this one's)."""
    kept = read_json(out / PLAN_FILE)
    return kept if isinstance(kept, dict) and kept.get("machine") == machine() else {}


def keep(plan: Plan, configs: dict, seeds_of, out: Path) -> Path:
    """Merge the plan's estimates into OUT/plan.json (written atomically); estimates kept there from
    another machine are dropped."""
    kept = _kept_here(out)
    units, studies = (kept.get(part) if isinstance(kept.get(part), dict) else {} for part in ("units", "studies"))
    for s in plan.studies:
        units.update({key_of(u.unit): [u.seconds, u.upper_bound] for u in s.units})
        studies[study_key(s.name, configs[s.name], seeds_of(s.name))] = s.analysis_s
    made = datetime.datetime.now().isoformat(timespec="minutes")
    write_json(out / PLAN_FILE, {"machine": machine(), "made": made, "startup_s": plan.startup_s,
                                 "report_s": plan.report_s, "units": units, "studies": studies})
    return out / PLAN_FILE


def kept_plan(configs: dict, seeds_of, runtime: Runtime, workers: int, out: Path) -> tuple[Plan, str] | None:
    """(the Plan of running `configs` from OUT/plan.json, when it was made), or None unless every
    unit and study of the run was planned there, on this machine."""
    kept = _kept_here(out)
    try:
        studies = []
        for name, cfg in configs.items():
            units = STUDIES.get(name).work_units(cfg, tuple(seeds_of(name)), runtime)
            found = [kept["units"].get(key_of(u)) for u in units]
            analysis = kept["studies"].get(study_key(name, cfg, seeds_of(name)))
            if analysis is None or None in found:
                return None
            studies.append(StudyEstimate(name, tuple(UnitEstimate(u, float(s), bool(b)) for u, (s, b) in zip(units, found)),
                                         float(analysis)))
        return Plan(tuple(studies), float(kept["startup_s"]), float(kept["report_s"]), workers), str(kept["made"])
    except (AttributeError, KeyError, TypeError, ValueError):  # absent, or parts damaged outside dlstudies: no estimate
        return None


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
