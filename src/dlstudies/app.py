"""What `dlstudies run` does, apart from parsing: validate the request, run each study, render.

Everything the user typed is checked before the first unit trains: a typo in the last study's
`--set` must not surface after an hour of the first study's training, and bad input must leave
nothing half-written behind.
"""

from __future__ import annotations

import contextlib
import dataclasses
import numbers
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import torch

from dlstudies.config import MAX_SEEDS, SCALES, Runtime
from dlstudies.errors import UsageError
from dlstudies.executors import EXECUTORS, check_workers
from dlstudies.lock import Held, output_lock
from dlstudies.memory import FUNCTION_DATA, check_memory, data_shape
from dlstudies.runner import run_configs, study_config
from dlstudies.store import output_faults
from dlstudies.studies import STUDIES, load_studies, ordered_studies

MAX_WORKERS = 1024  # processes of one machine's pool or LocalCluster; more is a typo


def resolve_studies(names: list[str]) -> list[str]:
    load_studies()
    if "all" in names:
        return [s.name for s in ordered_studies()]
    for n in names:
        STUDIES.get(n)
    return list(dict.fromkeys(names))


DEVICES = ("cpu", "cuda")


def check_seeds(seeds) -> int | tuple[int, ...] | None:
    """None (each study's default), a count >= 1, or distinct seed ids >= 0 (as a tuple of ints)."""
    if seeds is None:
        return None
    if _is_int(seeds):
        if seeds < 1:
            raise UsageError(f"--seeds must be >= 1, got {seeds}")
        return int(seeds)
    ids = tuple(seeds) if hasattr(seeds, "__len__") and not isinstance(seeds, (str, bytes, dict)) else None  # list, array
    if not ids or not all(_is_int(s) and s >= 0 for s in ids) or len(set(ids)) < len(ids):
        raise UsageError(f"seeds must be a count >= 1 or a list of distinct seed ids >= 0, got {seeds!r}")
    return tuple(int(s) for s in ids)


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_runtime(runtime: Runtime, seeds, backend: str = "local", workers: int = 1, **opts) -> None:
    from dlstudies.engine import ENGINES

    ENGINES.get(runtime.engine)
    if runtime.device not in DEVICES:
        raise UsageError(f"unknown device '{runtime.device}'; valid: {', '.join(DEVICES)}")
    if runtime.device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is available to PyTorch; valid here: cpu")
    seeds = check_seeds(seeds)
    count = seeds if isinstance(seeds, int) else len(seeds or ())
    if count > MAX_SEEDS:
        ids = "" if isinstance(seeds, int) else " seed ids"
        raise UsageError(f"--seeds must be >= 1 and <= {MAX_SEEDS}, got {count}{ids}")
    check_workers(workers)
    if workers > MAX_WORKERS:
        raise UsageError(f"--workers must be <= {MAX_WORKERS}, got {workers}")
    EXECUTORS.get(backend)
    if opts.get("scheduler") and backend != "dask":
        raise UsageError(f"--scheduler needs --backend dask (got --backend {backend})")


def check_writable(out: Path, names: list[str]) -> None:
    """Create each study's unit folder and write a probe file there: an output folder that cannot
    be written fails now, not when the first unit finishes."""
    for name in names:
        folder = out / name / "units"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=folder):
                pass
        except OSError as err:
            raise UsageError(f"--out {out}: cannot write to '{folder}': {err.strerror or err}") from None


def with_data(names: list[str], data: str | None, overrides: list[str]) -> dict[str, list[str]]:
    """Per study overrides; `--data` becomes `data=...` for the studies whose config has a data field."""
    per_study = {}
    for n in names:
        fields = {f.name for f in dataclasses.fields(STUDIES.get(n).presets["default"])}
        extra = [f"data={data}"] if data is not None and "data" in fields else []
        per_study[n] = extra + list(overrides)
    return per_study


def check_data(configs: dict, data: str | None, data_dir: str | None) -> None:
    """Load every dataset the configs name (and `--data`), so a bad one fails before training.
    Loads are cached: the in-process executor reuses them."""
    from dlstudies.data import load_data

    specs = {getattr(cfg, "data", None) for cfg in configs.values()} | {data}
    for spec in sorted(s for s in specs if isinstance(s, str)):
        try:
            load_data(spec, data_dir)
        except OSError as err:  # a path the system cannot look up or read: too long, no permission
            raise UsageError(f"dataset '{spec}': {err.strerror or err}") from None


def plan(names, scale, seeds, data, overrides, runtime: Runtime, backend="local", workers=1, **opts) -> dict:
    """{study: validated config}, or a UsageError for anything wrong; writes nothing."""
    if scale not in SCALES:
        raise UsageError(f"unknown scale '{scale}'; valid: {', '.join(SCALES)}")
    names = resolve_studies(names)
    check_runtime(runtime, seeds, backend, workers, **opts)
    configs = {n: study_config(n, scale, o) for n, o in with_data(names, data, overrides).items()}
    check_data(configs, data, runtime.data_dir)
    if not opts.get("scheduler"):  # a remote cluster's memory is not this machine's to judge
        check_fits(configs, scale, seeds, workers, runtime)
    return configs


def seeds_of(name: str, scale: str, seeds):
    """What run_configs takes per study: its default count for `scale` when `seeds` is None."""
    return STUDIES.get(name).default_seeds(scale) if seeds is None else seeds


def check_fits(configs: dict, scale: str, seeds, workers: int, runtime: Runtime) -> None:
    """Refuse, before anything trains, a study whose planned memory exceeds what is available: its
    largest stack on each busy worker (the run is one queue, so a study's units run beside another's)."""
    from dlstudies.data import load_data

    units = {name: STUDIES.get(name).work_units(cfg, seed_ids(name, scale, seeds), runtime) for name, cfg in configs.items()}
    busy = min(workers, sum(map(len, units.values())))
    for name, cfg in configs.items():
        if isinstance(getattr(cfg, "data", None), str):
            shape = data_shape(load_data(cfg.data, runtime.data_dir))  # cached: check_data loaded it
        else:
            samples = (getattr(cfg, "n_train", 0) or 0) + (getattr(cfg, "n_test", 0) or 0)
            shape = dataclasses.replace(FUNCTION_DATA, n_samples=samples)
        block = max((len(u.seeds) for u in units[name]), default=1)  # the seeds of the largest stack
        check_memory(name, cfg, shape, block, busy, runtime.dtype)


def seed_ids(name: str, scale: str, seeds) -> tuple[int, ...]:
    n = seeds_of(name, scale, seeds)
    return tuple(range(n)) if isinstance(n, int) else tuple(n)


def estimate_run(names, scale, seeds, data, overrides, runtime: Runtime, backend="local", workers=1, configs=None,
                 quiet: bool = True, **opts):
    """The Plan (dlstudies.plan) of a run: its units, timed as slices on this machine (its progress on
    stderr unless `quiet`); writes nothing."""
    from dlstudies.executors import THREADS_PER_UNIT
    from dlstudies.plan import estimate

    configs = configs or plan(names, scale, seeds, data, overrides, runtime, backend, workers, **opts)
    torch.set_num_threads(THREADS_PER_UNIT)  # as every unit runs
    return estimate(configs, lambda name: seed_ids(name, scale, seeds), runtime, workers, quiet)


def announce_plan(configs: dict, scale: str, seeds, runtime: Runtime, workers: int, quiet: bool = False,
                  out: Path | None = None, fresh: bool = True) -> dict | None:
    """Print the run's estimate (as `dlstudies plan`; not when `quiet`) before it starts; {unit:
    seconds} for the runner's order, or None without one. `fresh`: time it now (not at smoke, where
    the timed slices would cost about as much as the run) and keep it in `out`; else the one a
    `dlstudies plan` kept in `out` for exactly these units, if any."""
    from dlstudies.plan import PLAN_FILE, keep, kept_plan, plan_lines

    seeds_of = lambda name: seed_ids(name, scale, seeds)  # noqa: E731
    if fresh:
        if scale == "smoke":
            return None
        estimate = estimate_run([], scale, seeds, None, [], runtime, workers=workers, configs=configs, quiet=quiet)
        header = "estimate:"
        if out is not None:
            keep(estimate, configs, seeds_of, out)
    else:
        kept = kept_plan(configs, seeds_of, runtime, workers, out)
        if kept is None:
            if not quiet:
                print(f"estimate: none kept in {out / PLAN_FILE} for this run; `dlstudies plan` with the same "
                      "arguments makes one (or add --estimate)", file=sys.stderr, flush=True)
            return None
        estimate, header = kept[0], f"estimate (from `dlstudies plan`, {kept[1]}):"
    if not quiet:
        print("\n".join([header, *plan_lines(estimate)]), file=sys.stderr, flush=True)
    return estimate.unit_seconds()


@contextlib.contextmanager
def writing(out: Path, wait: bool = True) -> Iterator[Held]:
    """The output folder's lock held, and a failed write there turned into one line that says what
    was kept: wrap everything from the first unit to report.html in it."""
    with output_lock(out, wait) as held, output_faults(out):
        yield held


def run_many(names, scale, seeds, data, overrides, runtime: Runtime, out: Path, backend, workers, command,
             wait: bool = True, quiet: bool = False, estimate: bool = False, **opts):
    """Run the studies into `out` and render its report; returns (the studies run, in order, report path).
    `seeds`: None (each study's default), a count, or seed ids. `wait`: for another run writing `out`
    to end (else UsageError)."""
    from dlstudies.report import render_report

    configs = plan(names, scale, seeds, data, overrides, runtime, backend, workers, **opts)
    # Opened once for all studies, and before the first write: an unreachable scheduler is bad input too.
    with EXECUTORS.get(backend)(workers=workers, **opts) as execute, writing(out, wait) as held:
        check_writable(out, list(configs))
        # After the checks: bad input is reported before minutes of timing, and plan.json is this run's to keep.
        cost = announce_plan(configs, scale, seeds, runtime, workers, quiet, out, fresh=estimate)
        studies = {name: (cfg, seeds_of(name, scale, seeds)) for name, cfg in configs.items()}
        run_configs(studies, scale, runtime, out, execute, command, quiet, cost)
        held.check()
        return list(configs), render_report(out)


def redraw_figures(out: Path) -> None:
    """Each study's figures drawn again from its saved results.json alone: no training, and the
    figure list in results.json stays as it is (the same study draws the same files)."""
    from dlstudies.report.html import load_results

    load_studies()
    for folder, results in load_results(out):
        if results.get("study") in STUDIES:
            STUDIES.get(results["study"]).figures(results, folder)
