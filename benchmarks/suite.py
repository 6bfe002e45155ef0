"""Wall time and peak memory of every registered study, each run as `dlstudies run` in a child process.

    python benchmarks/suite.py [--scale default] [--studies a b ...] [--workers N] [--together]
                               [--out DIR] [--run-args "--set key=value ..."] [--against TREE]

Each study runs as `python -m dlstudies run STUDY --scale SCALE --out DIR/STUDY` (plus `--workers`
and `--run-args` when given) in a fresh output folder, so nothing is resumed from an earlier run.
Printed per study: wall time, the peak of the summed resident memory of the child and its worker
processes (sampled every 0.1 s with psutil, where installed), the largest resident memory of any
one process and the CPU time of the child and its workers (both from the rusage that wait4
returns; CPU time is the steadier figure on a shared machine). `--together` also times the whole
suite as the single command `dlstudies run all`, which shares one worker pool across studies. The last lines compare
the totals with the targets of the performance issue: 20 minutes and 2 GB on 2 cores.

`--against TREE` (e.g. `git worktree add /tmp/before <commit>`) is "no slower than before": each
study runs with TREE's code and then with this tree's, alternately, and the table gives both CPU
times and their ratio.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_S, TARGET_MB = 20 * 60, 2048


def _tree_rss_mb(proc) -> float:
    """Resident memory of a process and all its descendants, in MB (0 where psutil is missing)."""
    try:
        import psutil
    except ImportError:
        return 0.0
    try:
        root = psutil.Process(proc.pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0.0
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total / 2 ** 20


def run_one(args: list[str], log: Path, source: Path | None = None) -> dict:
    """Run `python -m dlstudies ARGS` (with `source`/src first on the path, when given): wall time,
    CPU time, peak summed RSS of its process tree (sampled), largest RSS of any one of its
    processes (wait4's rusage), exit status."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(source / "src"), os.environ.get("PYTHONPATH", "")])) \
        if source else None
    start = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "dlstudies", *args], stdout=out, stderr=subprocess.STDOUT,
                                env=env)
        peak = 0.0
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            peak = max(peak, _tree_rss_mb(proc))
            time.sleep(0.1)
    proc.returncode = os.waitstatus_to_exitcode(status)
    # ru_maxrss (KB on Linux): the child's own peak, or that of a worker process it waited for
    # ru_utime + ru_stime: CPU time of the child and every worker it waited for, steadier than wall
    # time on a shared machine
    return {"wall_s": time.perf_counter() - start, "cpu_s": usage.ru_utime + usage.ru_stime, "tree_mb": peak,
            "largest_mb": usage.ru_maxrss / 1024, "rc": proc.returncode}


def _registered() -> list[str]:
    from dlstudies.studies import ordered_studies
    return [s.name for s in ordered_studies()]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", default="default", choices=("smoke", "default", "paper"))
    ap.add_argument("--studies", nargs="+", default=None, help="study ids (default: every registered study)")
    ap.add_argument("--workers", type=int, default=None, help="passed to dlstudies run (default: its own)")
    ap.add_argument("--out", type=Path, default=None, help="where results go (default: a new temporary folder)")
    ap.add_argument("--run-args", default="", help="more arguments for dlstudies run, as one string")
    ap.add_argument("--together", action="store_true", help="also time `dlstudies run all` as one command")
    ap.add_argument("--against", type=Path, default=None,
                    help="another dlstudies source tree (e.g. a worktree of an earlier commit): every study runs "
                         "with it and with this one, alternately, and their CPU times are compared")
    args = ap.parse_args()
    if args.against:
        return compare(args)
    studies = args.studies or _registered()
    root = args.out or Path(tempfile.mkdtemp(prefix="dlstudies-suite-"))
    root = root / time.strftime("%Y%m%d-%H%M%S")
    root.mkdir(parents=True)
    extra = shlex.split(args.run_args) + ([] if args.workers is None else ["--workers", str(args.workers)])
    print(f"scale {args.scale}, {os.cpu_count()} cores, workers {args.workers or 'default'}, "
          f"{len(studies)} studies; results and logs in {root}")
    print()
    print("| study | wall s | CPU s | peak memory MB (all processes) | largest process MB | status |")
    print("|---|---:|---:|---:|---:|---|")
    rows = {}
    for name in studies:
        r = run_one(["run", name, "--scale", args.scale, "--out", str(root / name), *extra], root / f"{name}.log")
        rows[name] = r
        status = "ok" if r["rc"] == 0 else f"exit {r['rc']} (see {name}.log)"
        print(f"| {name} | {r['wall_s']:.0f} | {r['cpu_s']:.0f} | {r['tree_mb']:.0f} | {r['largest_mb']:.0f} | {status} |", flush=True)
    total = sum(r["wall_s"] for r in rows.values())
    cpu = sum(r["cpu_s"] for r in rows.values())
    peak = max(r["tree_mb"] for r in rows.values())
    print(f"| **all, one after another** | **{total:.0f}** | **{cpu:.0f}** | **{peak:.0f}** | "
          f"{max(r['largest_mb'] for r in rows.values()):.0f} | "
          f"{sum(r['rc'] == 0 for r in rows.values())}/{len(rows)} ok |")
    if args.together:
        r = run_one(["run", *studies, "--scale", args.scale, "--out", str(root / "all"), *extra], root / "all.log")
        total, peak = r["wall_s"], r["tree_mb"]
        print(f"| **`dlstudies run` of all, one command** | **{total:.0f}** | **{r['cpu_s']:.0f}** | **{peak:.0f}** | "
              f"{r['largest_mb']:.0f} | {'ok' if r['rc'] == 0 else 'exit ' + str(r['rc'])} |")
    print()
    print(f"Targets (scale {args.scale}): whole suite {total / 60:.1f} min (target <= 20 min): "
          f"{'met' if total <= TARGET_S else 'NOT met'}; peak memory {peak:.0f} MB (target < 2048 MB): "
          f"{'met' if peak < TARGET_MB else 'NOT met'}"
          + ("" if peak else " (psutil not installed: memory not sampled)"))


def compare(args) -> None:
    """Before (the `--against` tree) and after (this tree), study by study, alternately, in one
    sitting: what else loads the machine loads both alike."""
    here = Path(__file__).resolve().parents[1]
    studies = args.studies or _registered()
    root = (args.out or Path(tempfile.mkdtemp(prefix="dlstudies-compare-"))) / time.strftime("%Y%m%d-%H%M%S")
    extra = shlex.split(args.run_args) + ([] if args.workers is None else ["--workers", str(args.workers)])
    print(f"scale {args.scale}, {os.cpu_count()} cores; before: {args.against}, after: {here}; CPU time of each "
          f"study's process tree, runs alternating; results and logs in {root}")
    print()
    print("| study | before CPU s | after CPU s | after / before | before wall s | after wall s |")
    print("|---|---:|---:|---:|---:|---:|")
    totals = {"before": 0.0, "after": 0.0}
    for name in studies:
        r = {}
        for side, source in (("before", args.against.resolve()), ("after", here)):
            (root / side).mkdir(parents=True, exist_ok=True)
            r[side] = run_one(["run", name, "--scale", args.scale, "--out", str(root / side / name), *extra],
                              root / side / f"{name}.log", source)
            totals[side] += r[side]["cpu_s"]
        bad = [side for side in r if r[side]["rc"] != 0]
        print(f"| {name} | {r['before']['cpu_s']:.0f} | {r['after']['cpu_s']:.0f} | "
              f"{r['after']['cpu_s'] / r['before']['cpu_s']:.2f}x | {r['before']['wall_s']:.0f} | "
              f"{r['after']['wall_s']:.0f} |" + (f" failed: {', '.join(bad)}" if bad else ""), flush=True)
    print(f"| **all** | **{totals['before']:.0f}** | **{totals['after']:.0f}** | "
          f"**{totals['after'] / totals['before']:.2f}x** | | |")


if __name__ == "__main__":
    main()
