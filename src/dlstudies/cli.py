"""The `dlstudies` command: parse, call, exit codes. No logic lives here."""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import signal
import sys
import threading
import time
from pathlib import Path

from dlstudies.config import SCALES, Runtime
from dlstudies.errors import UsageError

EXIT_USAGE = 2
EXIT_SIGINT, EXIT_SIGTERM = 130, 143  # 128 + the signal's number, as shells report it

RUN_EXAMPLES = """\
Examples:
  dlstudies run all --scale smoke --out runs/smoke        every study in minutes, to see the whole report
  dlstudies run optimizers normalization --seeds 10       two studies, 10 seeds each, into runs/
  dlstudies run pretraining --set max_epochs=200 --workers 4   one preset field changed, 4 processes
  dlstudies run image-depth --data mnist --data-dir ~/mnist   MNIST from its IDX files
  dlstudies run all --backend dask --scheduler tcp://host:8786   on a running dask cluster

An interrupted run (Ctrl-C, a timeout) keeps every finished unit: the same command resumes it."""

EXAMPLES = {
    "list": "Examples:\n  dlstudies list\n  dlstudies list | grep loss",
    "data": "Examples:\n  dlstudies data\n  dlstudies data fetch mnist\n  dlstudies run normalization --data digits36",
    "run": RUN_EXAMPLES,
    "plan": "Examples:\n  dlstudies plan all --scale paper --workers 2   a coffee or a night?\n"
            "  dlstudies plan random-labels --scale paper --set epochs=20",
    "report": "Examples:\n  dlstudies report runs\n  dlstudies report runs --redraw   figures drawn again too",
}


class Terminated(KeyboardInterrupt):
    """SIGTERM (kill, Slurm, PBS, dask-jobqueue) stops a run as Ctrl-C does; exit 128 + 15."""


def _terminate(signum, frame):
    raise Terminated


@contextlib.contextmanager
def _sigterm_as_interrupt():
    if threading.current_thread() is not threading.main_thread():  # handlers belong to the main thread
        yield
        return
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not argparse's usage block
        raise UsageError(message)


def _command(sub, name: str, help_text: str) -> argparse.ArgumentParser:
    return sub.add_parser(name, help=help_text, description=help_text[:1].upper() + help_text[1:] + ".",
                          epilog=EXAMPLES[name], formatter_class=argparse.RawDescriptionHelpFormatter)


def _run_flags(run: argparse.ArgumentParser) -> None:
    run.add_argument("studies", nargs="+", metavar="STUDY", help="study ids (see `dlstudies list`), or 'all'")
    run.add_argument("--scale", default="default", choices=SCALES,
                     help="preset size: smoke (minutes, to try things), default (the studies as reported), "
                          "paper (the source reports' budgets); default: %(default)s")
    run.add_argument("--seeds", type=int, default=None, help="number of seeds (default: 3/5/10 by scale; weight-trajectory 8)")
    run.add_argument("--data", default=None, help="dataset name (see `dlstudies data`), or a .csv/.npz file or folder")
    run.add_argument("--data-dir", default=None, help="folder of a dataset's files (e.g. MNIST's IDX files)")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="change one field of each study's preset, e.g. --set lr=0.01 --set fractions=0.1,1 "
                          "(repeatable; a misspelt key lists the valid ones)")
    run.add_argument("--out", default="runs", type=Path,
                     help="output folder: STUDY/results.json, figures, units/ (for resuming), report.html; "
                          "default: %(default)s")
    run.add_argument("--engine", default="batched", choices=("batched", "reference"),
                     help="batched (all seeds as one stack) or reference (one torch.optim loop per seed)")
    run.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    run.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1),
                     help="processes: the local pool, or the dask LocalCluster when no --scheduler is given")
    run.add_argument("--backend", default="local", help="where units run: local (this machine) or dask")
    run.add_argument("--no-wait", action="store_true",
                     help="if another run is writing --out, exit 2 at once instead of waiting for it")
    run.add_argument("--scheduler", default=None,
                     help="address of a running dask scheduler, e.g. tcp://host:8786 (with --backend dask; docs/cluster.md)")
    run.add_argument("--quiet", action="store_true", help="no progress bar or per-study lines; only the report line")
    run.add_argument("--estimate", action="store_true",
                     help="first time a few steps of every unit and print the estimate (as `dlstudies plan`, and "
                          "keep it in OUT/plan.json); without it, run prints the estimate a `dlstudies plan` kept "
                          "there for these units. Units start longest first")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="dlstudies", description="Classic deep-learning experiments as multi-seed studies.",
                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="COMMAND")
    _command(sub, "list", "the available studies")
    data = _command(sub, "data", "the available datasets; `data fetch mnist` downloads MNIST")
    data_sub = data.add_subparsers(dest="data_command", parser_class=_Parser)
    fetch = data_sub.add_parser("fetch", help="download a dataset's files (only on this request), checksums verified")
    fetch.add_argument("dataset", choices=("mnist",))
    fetch.add_argument("--to", default=None, type=Path, metavar="DIR", help="folder to write the files to (default: $DLSTUDIES_DATA/DATASET, "
                       "$DLSTUDIES_DATA defaulting to ~/.cache/dlstudies; --data mnist then finds them)")
    fetch.add_argument("--mirror", default=None, metavar="URL", help="base URL serving the files under their published .gz names")
    run = _command(sub, "run", "run studies and write results, figures and report.html")
    _run_flags(run)
    plan = _command(sub, "plan", "the units of a run and an estimate of its time here, from a few timed steps; "
                                 "kept in OUT/plan.json, which `run` prints as it starts")
    _run_flags(plan)  # a plan is of exactly the run the same arguments start
    rep = _command(sub, "report", "rebuild report.html from saved results, without training")
    rep.add_argument("out", type=Path, help="an output folder of `dlstudies run` (its --out)")
    rep.add_argument("--redraw", action="store_true", help="also redraw every study's figures from its results.json")
    # The top-level help shows what most people came for: run's flags and examples.
    flags = run.format_help().split("\n\n", 1)[1]
    p.epilog = f"`dlstudies COMMAND --help` shows a command's flags. `dlstudies run`:\n\n{flags}"
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = None
    try:
        if not argv:
            _parser().print_help()
            return 0
        with _sigterm_as_interrupt():
            args = _parser().parse_args(argv)
            return COMMANDS[args.command](args, argv)
    except UsageError as err:
        print(f"dlstudies: error: {one_line(str(err))}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt as err:  # Ctrl-C, or SIGTERM as Terminated
        return _interrupted(args, EXIT_SIGTERM if isinstance(err, Terminated) else EXIT_SIGINT)


def _interrupted(args, code: int) -> int:
    kept = _kept_units(getattr(args, "out", None)) if getattr(args, "command", None) == "run" else 0
    print(f"dlstudies: interrupted — run the same command again to resume ({kept} units kept)", file=sys.stderr)
    return code


def _kept_units(out) -> int:
    """Finished units stored under the output folder: what the same command will not train again."""
    return sum(1 for _ in Path(out).glob("*/units/*.json")) if out else 0


def one_line(text: str) -> str:
    # Messages quote what the user gave (a CSV row, a --set value), which may hold line breaks;
    # the error stays one line so scripts and logs can rely on it.
    return " ".join(text.split())


def _list(args, argv) -> int:
    from dlstudies.studies import ordered_studies
    for study in ordered_studies():
        print(f"{study.name:<22} {study.question}")
    return 0


def _data(args, argv) -> int:
    from dlstudies.data import describe_datasets
    if args.data_command == "fetch":
        from dlstudies.data.fetch import fetch
        print(fetch(args.dataset, args.to, args.mirror))
        return 0
    for line in describe_datasets():
        print(line)
    return 0


def _run(args, argv) -> int:
    from dlstudies.api import run
    start = time.perf_counter()
    command = "dlstudies " + " ".join(shlex.quote(a) for a in argv)
    results = run(args.studies, scale=args.scale, seeds=args.seeds, data=args.data, out=args.out,  # seeds None: per study
                  overrides=args.overrides, engine=args.engine, device=args.device,
                  workers=args.workers, data_dir=args.data_dir, backend=args.backend, scheduler=args.scheduler,
                  command=command, wait=not args.no_wait, quiet=args.quiet,
                  estimate=args.estimate)
    # The last line: where the report is, as a link a terminal can open, and how long it all took.
    print(f"report: {Path(results.report).resolve().as_uri()} ({time.perf_counter() - start:.0f} s)", flush=True)
    return 0


def _plan(args, argv) -> int:
    from dlstudies.app import estimate_run, plan, seed_ids
    from dlstudies.plan import keep, plan_lines

    runtime = Runtime(engine=args.engine, device=args.device, data_dir=args.data_dir)
    configs = plan(args.studies, args.scale, args.seeds, args.data, args.overrides, runtime, args.backend,
                   args.workers, scheduler=args.scheduler)
    estimate = estimate_run([], args.scale, args.seeds, None, [], runtime, workers=args.workers, configs=configs,
                            quiet=args.quiet)
    try:  # for `run` with the same arguments to print as it starts
        kept = f"kept in {keep(estimate, configs, lambda name: seed_ids(name, args.scale, args.seeds), args.out)}"
    except OSError as err:
        kept = f"not kept in {args.out}: {err.strerror or err}"
    *per_study, total = plan_lines(estimate)
    print("\n".join([*per_study, kept, total]))
    return 0


def _report(args, argv) -> int:
    from dlstudies.app import redraw_figures
    from dlstudies.report import render_report
    try:
        if args.redraw:
            redraw_figures(args.out)
        print(f"report: {render_report(args.out).resolve().as_uri()}")
    except OSError as err:
        raise UsageError(f"report '{args.out}': {err.strerror or err}") from None
    return 0


COMMANDS = {"list": _list, "data": _data, "run": _run, "plan": _plan, "report": _report}
