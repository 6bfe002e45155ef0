"""Cost of one member's sample-step, reference engine vs batched engine, in one process.

    python benchmarks/engine.py [--steps N]

Pattern mode (batch size 1), a 36-20-10-5 tanh MLP, SGD (delta) and Adam, M members trained at
once by the batched engine. The reference engine trains one nn.Module with a stock torch.optim
optimizer; its cost per member-step does not depend on M, so it is measured once per rule.
Printed: microseconds per member per sample-step, and reference / batched.
"""

from __future__ import annotations

import argparse
import time

import torch

from dlstudies.engine import ENGINES, StopRule, TrainSpec
from dlstudies.models.builders import build_members, mlp
from dlstudies.optim import OptSpec

SIZES = [36, 20, 10, 5]


def per_member_step_us(engine: str, rule: str, M: int, steps: int) -> float:
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(steps, SIZES[0], generator=g), torch.randint(0, SIZES[-1], (steps,), generator=g)
    members = build_members(lambda: mlp(SIZES), range(M))
    spec = TrainSpec(StopRule(1), batch_size=1)
    fit = ENGINES.get(engine)
    fit(members, [OptSpec(rule, 0.01)] * M, x[:20], y[:20], spec, list(range(M)))  # warm-up
    start = time.perf_counter()
    fit(members, [OptSpec(rule, 0.01)] * M, x, y, spec, list(range(M)))
    return (time.perf_counter() - start) / (steps * M) * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--members", type=int, nargs="+", default=[1, 8, 64, 256])
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(f"{'rule':<6} {'M':>5} {'reference us':>13} {'batched us':>11} {'ratio':>8}")
    for rule in ("delta", "adam"):
        ref = per_member_step_us("reference", rule, 1, args.steps // 2)
        for M in args.members:
            ours = per_member_step_us("batched", rule, M, args.steps)
            print(f"{rule:<6} {M:>5} {ref:>13.1f} {ours:>11.2f} {ref / ours:>7.0f}x", flush=True)


if __name__ == "__main__":
    main()
