"""A timed slice of each CNN study at paper settings against what `dlstudies plan` estimates for it.

    python benchmarks/paper.py [--studies random-labels sensitivity interpolation] [--epochs 1]
                               [--n-train 6000] [--seeds 10] [--device cpu]

Each study's paper preset, with `epochs` and `n_train` cut (the rest as at paper: the test set,
widths, batch sizes, seeds per stack), is planned as `dlstudies plan` plans it (two slices of
SLICE_SAMPLES samples, extrapolated); then its longest unit is trained in full and timed. Printed
per study: the estimate, the measured CPU time of one thread (`time.process_time`, or wall time on
CUDA), and their ratio. The plan is held to agree within 1.5x.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from dlstudies.config import Runtime
from dlstudies.plan import estimate_study, hms
from dlstudies.runner import execute_unit, study_config

CNN_STUDIES = ("random-labels", "sensitivity", "interpolation")
AGREEMENT = 1.5


def clock(device: str):
    if device == "cuda":
        torch.cuda.synchronize()
        return time.perf_counter()
    return time.process_time()


def one_study(name: str, overrides: list[str], seeds: tuple[int, ...], runtime: Runtime) -> tuple[float, float]:
    """(estimated seconds, measured seconds) of the study's longest unit at the cut paper config."""
    cfg = study_config(name, "paper", overrides)
    with tempfile.TemporaryDirectory() as tmp:
        plan = estimate_study(name, cfg, seeds, runtime, Path(tmp))
    longest = max(plan.units, key=lambda u: u.seconds)
    start = clock(runtime.device)
    execute_unit(longest.unit)
    return longest.seconds, clock(runtime.device) - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--studies", nargs="+", default=list(CNN_STUDIES))
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--n-train", type=int, default=6000)
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    args = p.parse_args()
    torch.set_num_threads(1)
    runtime = Runtime(device=args.device)
    overrides = [f"epochs={args.epochs}", f"n_train={args.n_train}"]
    print(f"paper settings with {' '.join(overrides)}, {args.seeds} seeds, device {args.device}")
    print(f"{'study':<16} {'estimate':>10} {'measured':>10} {'ratio':>7}")
    worst = 1.0
    for name in args.studies:
        predicted, measured = one_study(name, overrides, tuple(range(args.seeds)), runtime)
        ratio = predicted / measured
        worst = max(worst, ratio, 1 / ratio)
        print(f"{name:<16} {predicted:>9.1f}s {measured:>9.1f}s {ratio:>7.2f}   ({hms(measured)} measured)")
    print(f"worst disagreement {worst:.2f}x; target <= {AGREEMENT}x: {'met' if worst <= AGREEMENT else 'NOT met'}")


if __name__ == "__main__":
    main()
