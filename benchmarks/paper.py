"""A timed slice of each CNN study at paper settings against what `dlstudies plan` estimates for it.

    python benchmarks/paper.py [--studies random-labels sensitivity interpolation] [--epochs 2]
                               [--n 2000] [--seeds 10] [--repeats 1] [--device cpu] [--set KEY=VALUE ...]

Each study's paper preset, with `epochs`, `n_train` and `n_test` cut (and sensitivity's step budget
`max_steps` by as much as its epochs and samples together; the rest as at paper: widths, batch sizes, measures, seeds
per stack), is planned as `dlstudies plan` plans it (a grid of slices of at most SLICE_SAMPLES
samples, extrapolated); then its longest unit is trained in full and timed. Printed per study: the
estimate, the measured CPU time of one thread (`time.process_time`, the least of `--repeats`; wall
time on CUDA), and their ratio. The plan is held to agree within 1.5x.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import torch

from dlstudies.config import Runtime
from dlstudies.data import load_data
from dlstudies.plan import estimate_study, hms
from dlstudies.runner import execute_unit, study_config

CNN_STUDIES = ("random-labels", "sensitivity", "interpolation")
AGREEMENT = 1.5


def clock(device: str):
    if device == "cuda":
        torch.cuda.synchronize()
        return time.perf_counter()
    return time.process_time()


def overrides(name: str, epochs: int, n: int) -> list[str]:
    fields = {f.name for f in dataclasses.fields(study_config(name, "paper", []))}
    cut = [f"epochs={epochs}"] + [f"{field}={n}" for field in ("n_train", "n_test") if field in fields]
    if name == "sensitivity":  # its matched-loss arm's step budget, cut as its epochs and samples are
        cfg = study_config(name, "paper", [])
        full = len(load_data(cfg.data).train)
        cut.append(f"max_steps={max(1, cfg.max_steps * epochs * min(n, full) // (cfg.epochs * full))}")
    return cut


def one_study(name: str, cut: list[str], seeds: tuple[int, ...], runtime: Runtime, repeats: int) -> tuple[float, float]:
    """(estimated seconds, measured seconds) of the study's longest unit at the cut paper config."""
    cfg = study_config(name, "paper", cut)
    with tempfile.TemporaryDirectory() as tmp:
        plan = estimate_study(name, cfg, seeds, runtime, Path(tmp))
    longest = max(plan.units, key=lambda u: u.seconds)
    measured = []
    for _ in range(repeats):
        start = clock(runtime.device)
        execute_unit(longest.unit)
        measured.append(clock(runtime.device) - start)
    return longest.seconds, min(measured)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--studies", nargs="+", default=list(CNN_STUDIES))
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--n", type=int, default=2000, help="training and test samples")
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="more settings, as `dlstudies run --set` (e.g. batch_sizes=256,512 to time fewer kinds of unit)")
    args = p.parse_args()
    torch.set_num_threads(1)
    runtime = Runtime(device=args.device)
    print(f"paper settings with epochs={args.epochs}, n_train=n_test={args.n}, {args.seeds} seeds, device {args.device}"
          + "".join(f", {kv}" for kv in args.set))
    print(f"{'study':<16} {'estimate':>10} {'measured':>10} {'ratio':>7}")
    worst = 1.0
    for name in args.studies:
        cut = overrides(name, args.epochs, args.n) + args.set
        predicted, measured = one_study(name, cut, tuple(range(args.seeds)), runtime, args.repeats)
        ratio = predicted / measured
        worst = max(worst, ratio, 1 / ratio)
        print(f"{name:<16} {predicted:>9.1f}s {measured:>9.1f}s {ratio:>7.2f}   ({hms(measured)} measured)", flush=True)
    print(f"worst disagreement {worst:.2f}x; target <= {AGREEMENT}x: {'met' if worst <= AGREEMENT else 'NOT met'}")


if __name__ == "__main__":
    main()
