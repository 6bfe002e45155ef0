"""What `dlstudies plan` costs per study, and what timing a costly kind's slices on fewer seeds does
to its estimate, against the same plan with every slice on the whole stack, in one process.

    python benchmarks/plan.py [--scale default] [--studies a b ...] [--set KEY=VALUE ...]

Per study, alternately: the plan as it is (a kind whose whole stack's first slice would cost more
than FEWER_SEEDS_ABOVE, read off it on SLICE_SEEDS and one seed more, has its grid timed on
SLICE_SEEDS and never trains its whole stack), and the reference, the same plan with
FEWER_SEEDS_ABOVE infinite (every slice on the whole stack). Printed: each one's estimate of the
study's units (CPU seconds, all units summed) and the CPU time of one thread it took to make it
(`time.process_time`; the estimates are themselves timings on a shared machine, so two plans of the
same code differ by their noise), and the ratios. The first plan of the process also pays one-off
work (imports, first kernel calls): its study's first ratio of plan times reads high.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import torch

from dlstudies import plan as plan_module
from dlstudies.app import plan as validated, seed_ids
from dlstudies.config import Runtime
from dlstudies.studies import STUDIES, load_studies


def planned(name: str, cfg, seeds, runtime: Runtime, threshold: float) -> tuple[float, float]:
    """(estimated CPU seconds of the study's units, CPU seconds the plan took) with `threshold` as FEWER_SEEDS_ABOVE."""
    kept, plan_module.FEWER_SEEDS_ABOVE = plan_module.FEWER_SEEDS_ABOVE, threshold
    try:
        start = time.process_time()
        with tempfile.TemporaryDirectory() as tmp:
            study = plan_module.estimate_study(name, cfg, seeds, runtime, Path(tmp))
        return sum(u.seconds for u in study.units), time.process_time() - start
    finally:
        plan_module.FEWER_SEEDS_ABOVE = kept


def main() -> None:
    load_studies()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scale", default="default", choices=("default", "paper"))
    p.add_argument("--studies", nargs="+", default=None, help="study ids (default: every registered study)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="settings, as `dlstudies run --set`")
    args = p.parse_args()
    torch.set_num_threads(1)
    runtime = Runtime()
    print(f"scale {args.scale}; FEWER_SEEDS_ABOVE {plan_module.FEWER_SEEDS_ABOVE} s, SLICE_SEEDS "
          f"{plan_module.SLICE_SEEDS}; reference: every slice on the whole stack")
    print(f"{'study':<22} {'estimate s':>11} {'reference':>10} {'ratio':>6} {'plan s':>8} {'reference':>10} {'ratio':>6}")
    totals = [0.0] * 4
    for name in args.studies or list(STUDIES):
        cfg = validated([name], args.scale, None, None, args.set, runtime)[name]
        seeds = tuple(seed_ids(name, args.scale, None))
        (est, took), (ref, ref_took) = (planned(name, cfg, seeds, runtime, t) for t in (plan_module.FEWER_SEEDS_ABOVE, math.inf))
        totals = [a + b for a, b in zip(totals, (est, ref, took, ref_took))]
        print(f"{name:<22} {est:>11.1f} {ref:>10.1f} {est / ref:>6.2f} {took:>8.1f} {ref_took:>10.1f} {took / ref_took:>6.2f}",
              flush=True)
    est, ref, took, ref_took = totals
    print(f"{'all':<22} {est:>11.1f} {ref:>10.1f} {est / ref:>6.2f} {took:>8.1f} {ref_took:>10.1f} {took / ref_took:>6.2f}")


if __name__ == "__main__":
    main()
