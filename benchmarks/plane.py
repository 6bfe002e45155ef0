"""Loss-surface's planes at paper shapes: `loss_plane` as it is (each batch of samples evaluated at
every grid point while it is in the cache) against one pass over all the samples per grid point,
as it evaluated them before.

    python benchmarks/plane.py [--n 54000] [--grid 5] [--batch 4096] [--repeats 3]

The paper MLP of loss-surface (784-32-10, ReLU; untrained weights, random 28x28 images), two
filter-normalized directions, a grid x grid plane. CPU time of one thread (`time.process_time`),
the minimum of repeats interleaved across the two, per sample and grid point; the planes are checked
to agree to float32 rounding (the batches' means are summed in another grouping).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dlstudies.analysis import evaluate, filter_normalized_direction, loss_plane
from dlstudies.analysis.landscape import detached_params


def one_pass_per_point(model, x, y, d1, d2, axis, batch):
    """The plane as before: every grid point a pass over all the samples in batches of `batch`."""
    theta = detached_params(model)
    return np.array([[evaluate(model, {n: t + a * d1[n] + b * d2[n] for n, t in theta.items()}, F.cross_entropy, x, y,
                               batch)[0] for a in axis] for b in axis])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=54000)
    parser.add_argument("--grid", type=int, default=5)
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 10))
    x, y = torch.randn(args.n, 1, 28, 28), torch.randint(0, 10, (args.n,))
    gen = torch.Generator().manual_seed(1)
    d1, d2 = filter_normalized_direction(model, gen), filter_normalized_direction(model, gen)
    axis = np.linspace(-1.0, 1.0, args.grid)
    runs = {"one pass per point, one batch": lambda: one_pass_per_point(model, x, y, d1, d2, axis, None),
            f"one pass per point, batches of {args.batch}": lambda: one_pass_per_point(model, x, y, d1, d2, axis, args.batch),
            f"loss_plane, batches of {args.batch}": lambda: loss_plane(model, F.cross_entropy, x, y, d1, d2, axis, axis,
                                                                       args.batch).loss}
    best, planes = dict.fromkeys(runs, float("inf")), {}
    for _ in range(args.repeats):
        for name, run in runs.items():
            start = time.process_time()
            planes[name] = run()
            best[name] = min(best[name], time.process_time() - start)
    reference = next(iter(runs))
    per = args.n * args.grid ** 2 / 1e6
    print(f"{args.n} samples, {args.grid}x{args.grid} plane; CPU s of one thread, least of {args.repeats}")
    for name in runs:
        drift = float(np.max(np.abs(planes[name] - planes[reference]) / np.abs(planes[reference])))
        print(f"{name:<36} {best[name]:7.2f} s  {best[name] / per:.3f} µs per sample and point  "
              f"{best[reference] / best[name]:.2f}x  (largest relative difference {drift:.1e})")


if __name__ == "__main__":
    main()
