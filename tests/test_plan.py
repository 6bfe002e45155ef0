"""`dlstudies plan`: the output format, the schedule it assumes, and an estimate held against a measured run."""

from __future__ import annotations

import collections
import contextlib
import itertools
import math
import re
from dataclasses import replace

import pytest
import torch

from dlstudies import plan as plan_module
from dlstudies.app import announce_plan, seed_ids
from dlstudies.cli import main
from dlstudies.config import Runtime
from dlstudies.executors import EXECUTORS
from dlstudies.costs import CORNERS, MIN_SLOPE_S, Timing, unit_seconds
from dlstudies.plan import Slice, estimate_study, hms, is_upper_bound, makespan, slice_config, slices, timed, with_seeds
from dlstudies.runner import execute_unit, longest_first, run_config, run_configs, study_config
from dlstudies.studies import STUDIES, sensitivity

TOTAL = re.compile(r"^total: \d+:\d{2}:\d{2} wall with (\d+) workers$")
FACTOR = 3.0  # the stated agreement of an estimate with a measured run, either way (a shared, loaded machine)


def test_hms():
    assert hms(0) == "0:00:00"
    assert hms(3725.4) == "1:02:05"
    assert hms(36000) == "10:00:00"


@pytest.mark.parametrize("costs, workers", [([5, 1, 1, 1, 1, 1], 2), ([3, 3, 2, 2, 2], 2), ([4, 2, 7, 1], 3), ([2, 2], 1)])
def test_makespan_is_longest_first_on_the_first_free_worker(costs, workers):
    # Oracle: simulate the pool directly, time step by time step, with units taken longest first.
    queue, busy, clock = sorted(costs, reverse=True), [0] * workers, 0
    while queue or any(busy):
        for w in range(workers):
            if busy[w] == 0 and queue:
                busy[w] = queue.pop(0)
        clock += 1
        busy = [max(0, b - 1) for b in busy]
    assert makespan(costs, workers) == clock
    assert max(costs) <= makespan(costs, workers) <= sum(costs)


def test_plan_command_prints_units_and_the_total_last(capsys, tmp_path):
    code = main(["plan", "grad-norm", "optimizers", "--scale", "smoke", "--seeds", "2", "--workers", "1", "--out", str(tmp_path)])
    lines = capsys.readouterr().out.strip().splitlines()
    assert code == 0
    assert lines[-2] == f"kept in {tmp_path / 'plan.json'}" and (tmp_path / "plan.json").exists()
    assert TOTAL.match(lines[-1]) and TOTAL.match(lines[-1]).group(1) == "1"
    study_lines = {line.split()[0]: line for line in lines[:2]}
    assert set(study_lines) == {"grad-norm", "optimizers"}
    assert re.search(r"\b1 units\b", study_lines["grad-norm"])
    assert "≤" in study_lines["optimizers"] and "≤" not in study_lines["grad-norm"]  # a stop rule: upper bound
    assert any(line.startswith("≤: an upper bound") for line in lines)


def test_plan_times_studies_on_its_workers(capsys, tmp_path):
    """With --workers 2 the studies are timed in two processes, as the run's units would be; the
    lines come back in the order asked for."""
    code = main(["plan", "weight-trajectory", "grad-norm", "--scale", "smoke", "--seeds", "2", "--workers", "2",
                 "--out", str(tmp_path)])
    lines = capsys.readouterr().out.strip().splitlines()
    assert code == 0 and TOTAL.match(lines[-1]).group(1) == "2"
    assert [line.split()[0] for line in lines[:2]] == ["weight-trajectory", "grad-norm"]


def test_each_kind_of_unit_is_a_job_for_the_workers(monkeypatch):
    """A study's kinds are timed one per job (its 6 kinds share two workers, not one), then each
    study's analysis; the plan holds every unit of the run."""
    calls = []

    @contextlib.contextmanager
    def recording(workers=1, **_):
        def execute(fn, items, progress=None):
            calls.append([item[0] for item in items])
            return [(item, fn(item)) for item in items]
        yield execute

    monkeypatch.setitem(EXECUTORS._items, "local", recording)
    runtime = Runtime()
    configs = {n: study_config(n, "smoke", []) for n in ("function-fit", "grad-norm")}
    plan = plan_module.estimate(configs, lambda name: (0, 1), runtime, workers=2)
    assert calls == [["function-fit"] * 6 + ["grad-norm"], ["function-fit", "grad-norm"]]
    for s in plan.studies:
        assert [u.unit for u in s.units] == STUDIES.get(s.name).work_units(configs[s.name], (0, 1), runtime)


def test_plan_takes_runs_arguments_and_refuses_bad_ones(capsys):
    assert main(["plan", "grad-norm", "--scale", "smoke", "--set", "no_such_key=1"]) == 2
    err = capsys.readouterr().err
    assert "no_such_key" in err and len(err.strip().splitlines()) == 1


def test_slices_cut_budgets_and_data():
    cfg = study_config("sensitivity", "paper", [])
    assert not is_upper_bound(study_config("random-labels", "paper", [])) and is_upper_bound(cfg)
    assert is_upper_bound(study_config("minimal-ratio", "paper", []))  # L-BFGS stops at its tolerance
    sizes = {"n_train": 54000, "n_test": 10000}
    epochs, grid = slices(cfg, sizes)
    assert epochs == (1, 2) and set(grid) == set(CORNERS)
    assert len({(s.budget, s.data) for s in grid.values()}) == 4 and grid["hi", "top"].data > grid["hi", "small"].data
    top = grid["hi", "top"].config
    # The smaller data size holds the largest batch (512) whole: an epoch there costs half the larger's.
    assert grid["hi", "small"].config.n_train == 512 and top.n_train == 1024 > plan_module.SLICE_SAMPLES
    assert top.n_test == math.ceil(10000 * grid["hi", "top"].data)
    assert slices(study_config("random-labels", "paper", []), sizes)[1]["hi", "top"].config.n_train == \
        plan_module.SLICE_SAMPLES  # batches of 128
    # Mini-batch steps are cut with the epochs and the samples: the slice stops at the real unit's
    # share of its epochs (at batch 512: 283 real epochs, 2/50 of them ~ 11 slice epochs of two steps).
    assert top.epochs == 2 and top.max_steps == round(cfg.max_steps * 2 / cfg.epochs * 1024 / 54000)
    real_epochs = math.ceil(cfg.max_steps / math.ceil(54000 / 512))
    assert top.max_steps / 2 == pytest.approx(real_epochs * 2 / cfg.epochs, abs=1)
    ratio = study_config("minimal-ratio", "default", [])  # full-batch L-BFGS iterations: cut by the budget alone
    assert slice_config(ratio, 0.5, 1.0, {"n_train": 720}).gn_steps == math.ceil(ratio.gn_steps * 0.5)
    assert top.sharpness_steps == cfg.sharpness_steps  # a measure's own steps are not a training budget
    # matched-loss's epoch cap is a whole multiple of `epochs`: cut exactly with them (not rounded up)
    capped = replace(cfg, max_epochs_factor=2)
    for corner, s in slices(capped, sizes)[1].items():
        n = s.config.n_train
        expected = min(math.ceil(s.config.max_steps / math.ceil(n / 512)), 2 * s.config.epochs)
        assert sensitivity.ARMS.get("matched-loss")(s.config, 512, n).epochs == expected, corner
    assert slices(cfg, {})[1]["hi", "small"].config.n_train == cfg.n_train  # nothing to cut


@pytest.mark.parametrize("a, b, c, d", [(0.3, 5.0, 2.0, 100.0), (1.0, 0.0, 0.0, 40.0), (0.0, 0.0, 9.0, 0.0)])
def test_unit_seconds_recover_the_cost_models(a, b, c, d):
    f, g = (0.01, 0.02), (0.005, 0.01)
    grid = {(bud, dat): Slice(f[bud == "hi"], g[dat == "top"], None) for bud, dat in CORNERS}
    at = lambda corner: (grid[corner].budget, grid[corner].data)  # noqa: E731
    training = lambda x, y: a + x * (c + d * y)  # noqa: E731
    rest = lambda x, y: a + b * y + x * (c + d * y)  # noqa: E731
    three = {corner: Timing(training(*at(corner)) + a + b * at(corner)[1], training(*at(corner)), 1)
             for corner in CORNERS[:3]}  # training timed apart; a rest that does not grow with the budget
    assert unit_seconds(grid, three) == pytest.approx(training(1, 1) + a + b)
    four = {corner: Timing(rest(*at(corner))) for corner in CORNERS}  # all of it the rest, growing with both
    assert unit_seconds(grid, four) == pytest.approx(rest(1, 1))
    noisy = {corner: Timing(5.0 - at(corner)[0], 5.0 - at(corner)[0], 1) for corner in CORNERS[:3]}
    assert unit_seconds(grid, noisy) == pytest.approx(4.98)  # noise never makes more work cost less


def synthetic_cost(unit) -> float:
    """A known cost per unit: fixed work, plus work that grows with epochs × samples and with its seeds."""
    cfg = unit.config
    return 0.2 + 1e-3 * cfg.epochs * cfg.n_train * len(unit.seeds) * (1 + unit.param("corruption", 0.0))


@pytest.fixture
def synthetic_timing(monkeypatch):
    """Units cost synthetic_cost (nothing trains); every unit timed is counted."""
    counted = []

    def timed(fn, *args):
        if fn is not plan_module.execute_unit:
            return fn(*args), 0.0
        counted.append(args[0])
        return {"runs": []}, synthetic_cost(args[0])

    monkeypatch.setattr(plan_module, "timed", timed)
    monkeypatch.setattr(plan_module, "_analysis_s", lambda *args: 0.0)
    return counted


def test_a_unit_with_twice_the_epochs_is_estimated_twice_as_long(synthetic_timing, tmp_path):
    seeds, runtime = tuple(range(20)), Runtime()  # two stacks of 10 per level: units alike but for their seeds
    for epochs in (100, 200):
        cfg = study_config("random-labels", "default", [f"epochs={epochs}"])
        study = STUDIES.get("random-labels")
        est = estimate_study("random-labels", cfg, seeds, runtime, tmp_path)
        real = study.work_units(cfg, seeds, runtime)
        assert [u.unit for u in est.units] == real
        first = est.units[0]
        assert first.seconds == pytest.approx(synthetic_cost(first.unit))  # the timed unit: exact
        for u in est.units:  # the others scale as the first one does: within their fixed work
            assert u.seconds == pytest.approx(synthetic_cost(u.unit), rel=0.05)
    shapes = {(u.params, len(u.seeds)) for u in real}
    # One unit per shape: its first slice on SLICE_SEEDS and one more (its whole stack would cost over
    # FEWER_SEEDS_ABOVE), the larger slice on both twice (what a seed adds), then all four corners
    # (its synthetic rest grows with the budget) on SLICE_SEEDS, each timed twice (the least counts:
    # growth of the rest is multiplied by 1/budget); no other unit timed, and no stack of 10.
    few = plan_module.SLICE_SEEDS
    assert len(real) > len(shapes) and len(synthetic_timing) == 2 * (4 * 2 + 3) * len(shapes)
    assert collections.Counter(len(u.seeds) for u in synthetic_timing) == {few: 2 * 8 * len(shapes),
                                                                           few + 1: 2 * 3 * len(shapes)}


def test_noise_that_looks_like_growth_of_the_rest_is_timed_away(monkeypatch, tmp_path):
    """A slice slowed once by other work (its rest seems to grow with the budget, which 1/budget
    would multiply) is timed again; the least timing gives the estimate of the quiet machine."""
    calls = {}

    def timed(fn, *args):
        if fn is not plan_module.execute_unit:
            return fn(*args), 0.0
        unit = args[0]
        calls[unit] = calls.get(unit, 0) + 1
        noise = 0.5 if calls[unit] == 1 and unit.config.epochs > 1 else 0.0  # the larger budget, first time
        return {"runs": []}, 1.0 + noise

    monkeypatch.setattr(plan_module, "timed", timed)
    monkeypatch.setattr(plan_module, "_analysis_s", lambda *args: 0.0)
    cfg = study_config("grad-norm", "default", [])
    (unit,) = estimate_study("grad-norm", cfg, (0,), Runtime(), tmp_path).units
    assert unit.seconds == pytest.approx(1.0)  # not 0.5 s per epoch of its real budget


def test_a_unit_scaled_far_beyond_its_slices_is_timed_twice(monkeypatch, tmp_path):
    """The noise of one timing is multiplied by as much as a slice is scaled up: a unit estimated
    at more than REPEAT_ABOVE times its larger slice has its corners timed twice, the least kept.
    Here every slice's first timing is slowed by half (all of it training, so nothing else repeats)."""
    calls = collections.Counter()

    def time_slice(unit, measures):
        calls[unit] += 1
        cost = synthetic_cost(unit) * (1.5 if calls[unit] == 1 else 1.0)
        return Timing(cost, cost, 1), {"runs": []}

    monkeypatch.setattr(plan_module, "_time_slice", time_slice)
    monkeypatch.setattr(plan_module, "_analysis_s", lambda *args: 0.0)
    cfg = study_config("random-labels", "default", ["epochs=5000"])
    estimate = estimate_study("random-labels", cfg, tuple(range(20)), Runtime(), tmp_path)
    largest_slice = max(synthetic_cost(unit) for unit in calls)
    assert min(u.seconds for u in estimate.units) > plan_module.REPEAT_ABOVE * largest_slice  # scaled far
    for u in estimate.units:
        assert u.seconds == pytest.approx(synthetic_cost(u.unit), rel=0.05)  # the quiet timings, not 1.5x


def test_estimate_agrees_with_a_measured_run(monkeypatch, tmp_path):
    """A unit is estimated from slices of 1 and 2 epochs on 1/4 of its data, then trained in full:
    the estimate is within FACTOR of the measured CPU time."""
    monkeypatch.setattr(plan_module, "SLICE_SAMPLES", 200)
    torch.set_num_threads(1)
    runtime, seeds = Runtime(), (0, 1)
    cfg = study_config("grad-norm", "smoke", ["epochs=8", "n_train=800"])
    estimate = estimate_study("grad-norm", cfg, seeds, runtime, tmp_path)
    (unit,) = STUDIES.get("grad-norm").work_units(cfg, seeds, runtime)
    measured = min(timed(execute_unit, unit)[1] for _ in range(2))  # the quieter of two runs
    (predicted,) = [u.seconds for u in estimate.units]
    assert estimate.units[0].unit == unit
    assert 1 / FACTOR <= predicted / measured <= FACTOR, (predicted, measured)


def test_runner_starts_the_longest_unit_first(tmp_path):
    cfg = study_config("function-fit", "smoke", [])
    units = STUDIES.get("function-fit").work_units(cfg, (0,), Runtime())
    cost = {u: float(i) for i, u in enumerate(units)}  # the last unit is the longest
    started = []

    def execute(fn, items, *progress):
        started.extend(items)
        return ((item, fn(item)) for item in items)

    run_config("function-fit", cfg, "smoke", 1, Runtime(), tmp_path, execute, cost=cost)
    assert started == units[::-1]
    assert longest_first(units) == units  # no estimate: by seeds, ties in the study's order
    mixed = [units[0], *STUDIES.get("function-fit").work_units(cfg, (0, 1, 2), Runtime())[:1]]
    assert longest_first(mixed)[0].seeds == (0, 1, 2)


def test_a_run_is_one_queue_and_each_study_finishes_at_its_last_unit(tmp_path):
    """Studies in order, each's units longest first, handed out as one queue (a worker freed at a
    study's end starts the next's); a study's results.json is written as its last unit is stored."""
    configs = {name: study_config(name, "smoke", []) for name in ("function-fit", "grad-norm")}
    units = {name: STUDIES.get(name).work_units(cfg, (0,), Runtime()) for name, cfg in configs.items()}
    cost = {u: float(i) for us in units.values() for i, u in enumerate(us)}
    handed, written_before = [], []

    def execute(fn, items, *progress):
        handed.extend(items)
        for item in items:
            written_before.append((tmp_path / "function-fit" / "results.json").exists())
            yield item, fn(item)

    run_configs({name: (cfg, 1) for name, cfg in configs.items()}, "smoke", Runtime(), tmp_path, execute, cost=cost)
    assert handed == units["function-fit"][::-1] + units["grad-norm"][::-1]
    first = len(units["function-fit"])
    assert written_before == [False] * first + [True] * (len(handed) - first)
    assert (tmp_path / "grad-norm" / "results.json").exists()


def test_the_plans_total_is_the_runs_queue_on_its_workers():
    from dlstudies.plan import Plan, StudyEstimate, UnitEstimate

    cfg = study_config("function-fit", "smoke", [])
    unit = STUDIES.get("function-fit").work_units(cfg, (0,), Runtime())[0]
    study = lambda name, *costs: StudyEstimate(name, tuple(UnitEstimate(unit, c, False) for c in costs), 1.0)  # noqa: E731
    plan = Plan((study("a", 4, 10), study("b", 6, 1, 1)), 2.0, 0.5, 2)
    # Worker 1: a's 10; worker 2: a's 4, then b's 6 at 4 and 1 at 10; worker 1 takes b's last 1 at 10.
    assert plan.wall_s() == 2.0 + 0.5 + 11 + 2 * 1.0
    assert sum(s.wall_s(2) for s in plan.studies) + 2.5 == 10 + 1 + 6 + 1 + 2.5  # study after study: 20.5, not 15.5


def test_run_announces_the_estimate_and_its_units_are_the_runs(capsys):
    cfg = study_config("grad-norm", "smoke", [])
    cost = announce_plan({"grad-norm": cfg}, "default", 1, Runtime(), 2)
    err = capsys.readouterr().err.strip().splitlines()
    assert err[:2] == ["plan: grad-norm: 1 kind(s) of unit timed (1/1 studies, " + err[0].split(", ")[-1], "estimate:"]
    assert TOTAL.match(err[-1]).group(1) == "2"  # the progress of its slices, then the estimate
    assert list(cost) == STUDIES.get("grad-norm").work_units(cfg, seed_ids("grad-norm", "default", 1), Runtime())
    assert announce_plan({"grad-norm": cfg}, "smoke", 1, Runtime(), 2) is None


def test_unit_partition_is_the_configs_alone():
    """A seed stays a seed: the units do not depend on workers, device or engine."""
    cfg = study_config("random-labels", "smoke", [])
    study = STUDIES.get("random-labels")
    parts = [[(u.seeds, u.params) for u in study.work_units(cfg, (0, 1, 2), Runtime(device=d, engine=e))]
             for d, e in itertools.product(("cpu", "cuda"), ("batched", "reference"))]
    assert all(p == parts[0] for p in parts)


def test_slices_grow_until_the_budget_stands_above_the_noise(monkeypatch, tmp_path):
    """A unit whose epochs cost little next to its fixed work is timed at more epochs, and still
    estimated right; the epochs stop growing once the larger budget adds MIN_SLOPE_S."""
    epochs, sliced = [], []

    def timed(fn, *args):
        if fn is not plan_module.execute_unit:
            return fn(*args), 0.0
        epochs.append(args[0].config.epochs)
        sliced.append((args[0].config.epochs, args[0].config.n_train))
        return {"runs": []}, 0.3 + 0.01 * args[0].config.epochs

    monkeypatch.setattr(plan_module, "timed", timed)
    monkeypatch.setattr(plan_module, "_analysis_s", lambda *args: 0.0)
    cfg = study_config("grad-norm", "default", ["epochs=1000"])
    est = estimate_study("grad-norm", cfg, (0,), Runtime(), tmp_path)
    assert est.units[0].seconds == pytest.approx(0.3 + 0.01 * 1000)
    top = sorted(set(epochs))
    assert epochs[0] <= 2 and top[-1] - top[-2] >= MIN_SLOPE_S / 0.01  # grown to 25+ epochs added
    counts = collections.Counter(sliced)  # each growth timed one new slice; the settled grid's corners
    assert all(n <= 2 for n in counts.values())  # twice, as all of this unit's time is a rest that grows
    assert {e for (e, _), n in counts.items() if n == 2} <= set(top[-2:])
    assert max(epochs) <= 2 * plan_module.MAX_SLICE_EPOCHS


def test_a_shape_whose_training_does_not_grow_with_its_data_is_scaled_by_its_own_slices(monkeypatch, tmp_path):
    """Sensitivity's matched-loss units train a step budget (cost independent of the samples), its
    fixed-budget ones epochs (cost ∝ samples): each shape is estimated as it grows, not as the first."""
    def cost(unit):
        cfg = unit.config
        grows = cfg.n_train * cfg.epochs if unit.param("group") == "fixed-budget" else 10 * cfg.max_steps
        return 0.5 + 1e-4 * grows

    def timed(fn, *args):
        if fn is not plan_module.execute_unit:
            return fn(*args), 0.0
        return {"runs": []}, cost(args[0])

    monkeypatch.setattr(plan_module, "timed", timed)
    monkeypatch.setattr(plan_module, "_analysis_s", lambda *args: 0.0)
    cfg = replace(study_config("sensitivity", "paper", ["epochs=10", "max_steps=20000", "n_train=20000"]),
                  max_epochs_factor=2)  # matched-loss may outlast equal-epochs: units of its own
    est = estimate_study("sensitivity", cfg, (0, 1), Runtime(), tmp_path)
    assert {u.unit.param("group") for u in est.units} == {"fixed-budget", "matched-loss"}
    for u in est.units:
        assert u.seconds == pytest.approx(cost(u.unit), rel=0.05), u.unit.params


def test_the_engine_reports_each_fits_cpu_seconds():
    from dlstudies.engine import fit, fit_seconds

    from dlstudies.models.builders import build_members, mlp
    from dlstudies.optim import OptSpec

    x, y = torch.randn(32, 3, dtype=torch.float64), torch.randint(0, 2, (32,))
    with fit_seconds() as seconds:
        for epochs in (1, 2):
            fit(build_members(lambda: mlp([3, 4, 2]), [0, 1], torch.float64), OptSpec("delta", 0.1), x, y, epochs=epochs,
                batch_size=8)
    assert len(seconds) == 2 and all(s > 0 for s in seconds)
    with fit_seconds() as outer:
        pass
    assert outer == []



def test_a_replica_for_fewer_seeds_keeps_their_runs_alone():
    result = {"runs": [{"seed": s, "condition": c, "metrics": {"x": s}} for c in ("a", "b") for s in (7, 8, 9)],
              "per_unit": [1.0, 2.0]}
    copy = with_seeds(result, (0, 1))
    assert [(r["condition"], r["seed"]) for r in copy["runs"]] == [("a", 0), ("a", 1), ("b", 0), ("b", 1)]
    assert copy["per_unit"] == [1.0, 2.0] and result["runs"][0]["seed"] == 7  # the rest as it was; no change in place


def test_a_replica_for_more_seeds_repeats_each_seeds_runs_in_turn():
    result = {"runs": [{"seed": s, "condition": c, "curves": {"loss": [s, c]}, "probe": {"seed": s}}
                       for c in ("a", "b") for s in (7, 8)], "order": [3, 1], "best": {"seed": 8, "x": 1},
              "gaps": [None, 2.0, None]}
    copy = with_seeds(result, (0, 1, 2, 3, 4))
    assert [(r["condition"], r["seed"]) for r in copy["runs"]] == [(c, s) for c in "ab" for s in range(5)]
    assert [r["curves"]["loss"][0] for r in copy["runs"][:5]] == [7, 8, 7, 8, 7]  # the runs of seed 7, 8, 7, ...
    assert all(r["probe"]["seed"] == r["seed"] for r in copy["runs"]) and copy["order"] == [3, 1]
    assert copy["best"] == {"seed": 1, "x": 1}  # a run outside a list: its seed's first stand-in
    assert copy["gaps"] == [None, 2.0, None]  # a list's None values are values, kept
    assert result["runs"][0]["seed"] == 7 and copy["runs"][2] is not copy["runs"][0]


def test_units_of_one_params_with_fewer_seeds_are_estimated_per_seed(monkeypatch, tmp_path):
    """Sensitivity at paper trains blocks of 5, 3 and 2 seeds: the largest of each params is timed, the others by seeds."""
    timed_seeds = []

    def timed(fn, *args):
        if fn is not plan_module.execute_unit:
            return fn(*args), 0.0
        timed_seeds.append(args[0].seeds)
        return {"runs": []}, 0.01 * len(args[0].seeds) * args[0].config.epochs

    monkeypatch.setattr(plan_module, "timed", timed)
    monkeypatch.setattr(plan_module, "_analysis_s", lambda *args: 0.0)
    cfg = replace(study_config("sensitivity", "paper", ["epochs=10", "max_steps=20000", "n_train=20000"]),
                  max_epochs_factor=2)  # matched-loss may outlast equal-epochs: units of its own
    est = estimate_study("sensitivity", cfg, tuple(range(10)), Runtime(), tmp_path)
    assert {len(u.unit.seeds) for u in est.units} == {2, 3, 5}
    leaders = {u.unit.seeds for u in est.units if len(u.unit.seeds) == max(len(v.unit.seeds) for v in est.units
                                                                             if v.unit.params == u.unit.params)}
    # Each params' largest block (5 seeds, or 3 where it has no other), or its first seeds: (3, 4) by the block of 5.
    assert all(any(seeds == block[:len(seeds)] for block in leaders) for seeds in timed_seeds)
    for u in est.units:
        assert u.seconds == pytest.approx(0.01 * len(u.unit.seeds) * cfg.epochs, rel=0.05)


def test_each_shape_is_timed_at_budgets_that_train_it_alike(monkeypatch, tmp_path):
    """Sensitivity's three-arm units below the largest batch train two recipes at one epoch
    (equal-steps is equal-epochs there) and three from two on; the first unit (the largest batch)
    trains two at any budget: each shape whose slices train different numbers of fits is timed at
    larger budgets, or the extra fit would read as per-epoch cost."""
    def fits(unit) -> int:  # at the largest batch equal-steps is equal-epochs whatever the epochs
        if len(unit.param("arms")) < 3:
            return 1
        return 3 if unit.config.epochs >= 2 and unit.param("batch_size") < max(unit.config.batch_sizes) else 2

    def cost(unit) -> tuple[float, float, int]:
        cfg = unit.config
        training = 1e-4 * fits(unit) * cfg.epochs * cfg.n_train * len(unit.seeds)
        return training + 0.3, training, fits(unit)

    timed_epochs = []

    def time_slice(unit, measures):
        timed_epochs.append((len(unit.param("arms")), unit.config.epochs))
        return Timing(*cost(unit)), {"runs": [], "epochs": unit.config.epochs}

    analysed = []
    monkeypatch.setattr(plan_module, "_time_slice", time_slice)
    monkeypatch.setattr(plan_module, "_analysis_s", lambda study, cfg, seeds, runtime, results, folder:
                        analysed.extend(r["epochs"] for r in results) or 0.0)
    cfg = study_config("sensitivity", "paper", ["epochs=10", "max_steps=20000", "n_train=20000",
                                                "arms=equal-epochs,equal-steps,linear-lr"])
    est = estimate_study("sensitivity", cfg, tuple(range(5)), Runtime(), tmp_path)
    for u in est.units:
        assert u.seconds == pytest.approx(cost(u.unit)[0], rel=0.05), u.unit.params
    assert min(e for arms, e in timed_epochs if arms == 3) >= 1 and max(e for arms, e in timed_epochs if arms == 3) >= 4
    assert len(set(analysed)) == 1  # the analysis sees every kind at one budget, however far a kind grew


def _synthetic_plan(cfg, seeds):
    from dlstudies.plan import Plan, StudyEstimate, UnitEstimate

    units = STUDIES.get("optimizers").work_units(cfg, seeds, Runtime())
    study = StudyEstimate("optimizers", tuple(UnitEstimate(u, 10.0 + i, i == 0) for i, u in enumerate(units)), 3.0)
    return Plan((study,), 2.0, 1.0, 2)


def test_a_kept_plan_is_what_run_prints_for_exactly_its_units(tmp_path, monkeypatch, capsys):
    from dlstudies.plan import PLAN_FILE, keep, kept_plan, plan_lines

    cfg, seeds_of = study_config("optimizers", "smoke", []), lambda name: (0, 1)
    made = _synthetic_plan(cfg, (0, 1))
    keep(made, {"optimizers": cfg}, seeds_of, tmp_path)
    found, _ = kept_plan({"optimizers": cfg}, seeds_of, Runtime(), 2, tmp_path)
    assert found.unit_seconds() == made.unit_seconds() and plan_lines(found) == plan_lines(made)
    cost = announce_plan({"optimizers": cfg}, "smoke", 2, Runtime(), 2, out=tmp_path, fresh=False)
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("estimate (from `dlstudies plan`") and err[1:] == plan_lines(made)
    assert cost == made.unit_seconds()
    # Other seeds, another setting, another machine, a damaged file: none of it is this run's.
    assert kept_plan({"optimizers": cfg}, lambda name: (0, 1, 2), Runtime(), 2, tmp_path) is None
    other = study_config("optimizers", "smoke", ["max_epochs=7"])
    assert kept_plan({"optimizers": other}, seeds_of, Runtime(), 2, tmp_path) is None
    assert announce_plan({"optimizers": other}, "smoke", 2, Runtime(), 2, out=tmp_path, fresh=False) is None
    assert capsys.readouterr().err.startswith("estimate: none kept in ")
    monkeypatch.setattr(plan_module, "machine", lambda: {"host": "elsewhere"})
    assert kept_plan({"optimizers": cfg}, seeds_of, Runtime(), 2, tmp_path) is None
    monkeypatch.undo()
    (tmp_path / PLAN_FILE).write_text('{"machine": ' + __import__("json").dumps(plan_module.machine()) + ', "units": 3}')
    assert kept_plan({"optimizers": cfg}, seeds_of, Runtime(), 2, tmp_path) is None


def test_plans_of_several_commands_are_merged(tmp_path):
    from dlstudies.plan import keep, kept_plan

    cfg = study_config("optimizers", "smoke", [])
    keep(_synthetic_plan(cfg, (0,)), {"optimizers": cfg}, lambda name: (0,), tmp_path)
    keep(_synthetic_plan(cfg, (0, 1)), {"optimizers": cfg}, lambda name: (0, 1), tmp_path)
    assert kept_plan({"optimizers": cfg}, lambda name: (0,), Runtime(), 1, tmp_path) is not None
    assert kept_plan({"optimizers": cfg}, lambda name: (0, 1), Runtime(), 1, tmp_path) is not None


def test_a_plan_that_cannot_be_kept_is_still_printed(capsys, tmp_path):
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    assert main(["plan", "grad-norm", "--scale", "smoke", "--seeds", "1", "--workers", "1", "--out", str(blocked)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-2].startswith(f"not kept in {blocked}: ") and TOTAL.match(lines[-1])
    assert blocked.read_text() == "not a folder"


def test_a_damaged_plan_file_is_replaced(tmp_path):
    from dlstudies.plan import PLAN_FILE, keep, kept_plan

    cfg = study_config("optimizers", "smoke", [])
    for damaged in ("[1, 2]", '{"machine": %s, "units": 3, "studies": null}' % __import__("json").dumps(plan_module.machine())):
        (tmp_path / PLAN_FILE).write_text(damaged)
        keep(_synthetic_plan(cfg, (0,)), {"optimizers": cfg}, lambda name: (0,), tmp_path)
        assert kept_plan({"optimizers": cfg}, lambda name: (0,), Runtime(), 1, tmp_path) is not None


@pytest.mark.parametrize("per_sample", [1e-3, 1e-6])
def test_a_costly_stack_is_timed_on_fewer_seeds_and_scaled_part_by_part(monkeypatch, tmp_path, per_sample):
    """Training of a part per fit (shared by the stack) and steps that cost a part shared by the
    stack and a part per member, and a rest of fixed work and work per seed: where the stack's first
    slice would cost over FEWER_SEEDS_ABOVE (read off it on SLICE_SEEDS and one seed more), its
    corners train SLICE_SEEDS, no slice trains the whole stack, and the whole stack is estimated
    exactly from its larger slice on one seed more; where it is cheap, every corner trains the whole
    stack."""
    timed_seeds = []

    def parts(unit):
        cfg, m = unit.config, len(unit.seeds)
        return 0.05 + per_sample * cfg.epochs * cfg.n_train * (1 + m), 0.2 + 1e3 * per_sample * m

    def time_slice(unit, measures):
        timed_seeds.append(len(unit.seeds))
        fit, rest = parts(unit)
        return Timing(fit + rest, fit, 1), {"runs": []}

    monkeypatch.setattr(plan_module, "_time_slice", time_slice)
    monkeypatch.setattr(plan_module, "_analysis_s", lambda *args: 0.0)
    cfg = study_config("random-labels", "default", ["epochs=300"])
    est = estimate_study("random-labels", cfg, tuple(range(10)), Runtime(), tmp_path)
    for u in est.units:
        assert u.seconds == pytest.approx(sum(parts(u.unit)), rel=1e-6)
    kinds = len(est.units)  # one stack of 10 per corruption level
    # Each kind's first slice on one seed first (one-off work lands there), then on two; a costly
    # stack's larger slice on both, twice.
    few = plan_module.SLICE_SEEDS
    counts = collections.Counter(timed_seeds)
    if per_sample == 1e-3:
        assert 10 not in counts and counts[few + 1] == 3 * kinds and counts[few] > 3 * kinds
    else:
        assert counts[few] == counts[few + 1] == kinds and counts[10] == len(timed_seeds) - 2 * kinds


def test_a_slice_counts_its_replayed_measures_at_their_cost(monkeypatch):
    """A measure on trained models runs in a kind's slices until known (its first run may carry
    one-off work), then is replayed at the least it cost: each slice's time still holds every call."""
    from dlstudies.analysis.replay import replayable

    now, costs = [0.0], iter([1.5, 1.0])  # the first real run pays one-off work

    @replayable
    def measure(x):
        now[0] += next(costs)
        return float(x.sum())

    monkeypatch.setattr(plan_module.time, "process_time", lambda: now[0])
    monkeypatch.setattr(plan_module, "execute_unit", lambda unit: {"runs": [measure(torch.ones(3)) for _ in range(4)]})
    memo, unit = {}, plan_module.Unit("toy", None, (0,), Runtime())
    first, result = plan_module._time_slice(unit, memo)
    assert first.seconds == pytest.approx(1.5 + 1.0 + 2 * 1.0) and result == {"runs": [3.0] * 4}
    later, _ = plan_module._time_slice(unit, memo)  # nothing runs: the clock stands still
    assert later.seconds == pytest.approx(4 * 1.0) and now[0] == pytest.approx(2.5)


def test_a_kind_runs_each_measure_until_known_and_replays_it_after(monkeypatch):
    from dlstudies.analysis.replay import REAL_RUNS

    replays = []
    real = plan_module.replaying

    @contextlib.contextmanager
    def watched(memo):
        with real(memo) as replay:
            replays.append(replay)
            yield replay

    monkeypatch.setattr(plan_module, "replaying", watched)
    cfg, seeds, memo = study_config("sensitivity", "smoke", []), (0, 1, 2), {}
    params = next(iter(plan_module.leaders(plan_module._real_units("sensitivity", cfg, seeds, Runtime()))))
    plan_module.estimate_kind("sensitivity", cfg, seeds, Runtime(), params, measures=memo)
    measured = {key[1] for key in memo}
    assert {"sharpness", "sensitivity", "split_metrics"} <= measured
    assert all(seen.runs <= REAL_RUNS for seen in memo.values())
    assert len(replays) > REAL_RUNS and sum(r.calls for r in replays) > len(memo)
