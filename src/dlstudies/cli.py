"""The `dlstudies` command: parse, call, exit codes. No logic lives here."""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import signal
import sys
import threading
from pathlib import Path

from dlstudies.config import SCALES, Runtime
from dlstudies.errors import UsageError

EXIT_USAGE = 2


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


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="dlstudies", description="Classic deep-learning experiments as multi-seed studies.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    sub.add_parser("list", help="the available studies")
    data = sub.add_parser("data", help="the available datasets; `data fetch mnist` downloads MNIST")
    data_sub = data.add_subparsers(dest="data_command", parser_class=_Parser)
    fetch = data_sub.add_parser("fetch", help="download a dataset's files (only on this request), checksums verified")
    fetch.add_argument("dataset", choices=("mnist",))
    fetch.add_argument("--to", default=None, type=Path, metavar="DIR", help="folder to write the files to (default: $DLSTUDIES_DATA/DATASET, "
                       "$DLSTUDIES_DATA defaulting to ~/.cache/dlstudies; --data mnist then finds them)")
    fetch.add_argument("--mirror", default=None, metavar="URL", help="base URL serving the files under their published .gz names")
    run = sub.add_parser("run", help="run studies and write results, figures and report.html")
    _run_arguments(run)
    plan = sub.add_parser("plan", help="the units of a run and an estimate of its time here, from a few timed steps")
    _run_arguments(plan)
    rep = sub.add_parser("report", help="rebuild report.html from saved results, without training")
    rep.add_argument("out", type=Path)
    rep.add_argument("--redraw", action="store_true", help="also redraw every study's figures from its results.json")
    return p


def _run_arguments(run: argparse.ArgumentParser) -> None:
    """What `run` and `plan` both take: a plan is of exactly the run the same arguments start."""
    run.add_argument("studies", nargs="+", metavar="STUDY", help="study ids, or 'all'")
    run.add_argument("--scale", default="default", choices=SCALES)
    run.add_argument("--seeds", type=int, default=None, help="number of seeds (default: 3/5/10 by scale; weight-trajectory 8)")
    run.add_argument("--data", default=None, help="dataset name, or a .csv/.npz file or folder")
    run.add_argument("--data-dir", default=None, help="folder of a dataset's files (e.g. MNIST's IDX files)")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    run.add_argument("--out", default="runs", type=Path)
    run.add_argument("--engine", default="batched", choices=("batched", "reference"))
    run.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    run.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1),
                     help="processes: the local pool, or the dask LocalCluster when no --scheduler is given")
    run.add_argument("--backend", default="local", help="where units run: local (this machine) or dask")
    run.add_argument("--no-wait", action="store_true",
                     help="if another run is writing --out, exit 2 at once instead of waiting for it")
    run.add_argument("--scheduler", default=None,
                     help="address of a running dask scheduler, e.g. tcp://host:8786 (with --backend dask; docs/cluster.md)")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        with _sigterm_as_interrupt():
            args = _parser().parse_args(argv)
            return COMMANDS[args.command](args, argv)
    except UsageError as err:
        print(f"dlstudies: error: {one_line(str(err))}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt as err:
        print("dlstudies: interrupted; finished units are saved, run the same command to resume", file=sys.stderr)
        return 143 if isinstance(err, Terminated) else 130


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
    command = "dlstudies " + " ".join(shlex.quote(a) for a in argv)
    results = run(args.studies, scale=args.scale, seeds=args.seeds, data=args.data, out=args.out,  # seeds None: per study
                  overrides=args.overrides, engine=args.engine, device=args.device,
                  workers=args.workers, data_dir=args.data_dir, backend=args.backend, scheduler=args.scheduler,
                  command=command, wait=not args.no_wait)
    print(results.report)
    return 0


def _plan(args, argv) -> int:
    from dlstudies.app import estimate_run
    from dlstudies.plan import plan_lines

    runtime = Runtime(engine=args.engine, device=args.device, data_dir=args.data_dir)
    estimate = estimate_run(args.studies, args.scale, args.seeds, args.data, args.overrides, runtime, args.backend,
                            args.workers, scheduler=args.scheduler)
    print("\n".join(plan_lines(estimate)))
    return 0


def _report(args, argv) -> int:
    from dlstudies.app import redraw_figures
    from dlstudies.report import render_report
    try:
        if args.redraw:
            redraw_figures(args.out)
        print(render_report(args.out))
    except OSError as err:
        raise UsageError(f"report '{args.out}': {err.strerror or err}") from None
    return 0


COMMANDS = {"list": _list, "data": _data, "run": _run, "plan": _plan, "report": _report}
