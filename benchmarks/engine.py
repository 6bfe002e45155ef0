"""Cost of one member's sample-step: the reference engine, the batched engine's paths, and JAX.

    python benchmarks/engine.py [--steps N] [--members 1 5 8 64 256] [--rules delta adam] [--repeats R]

Pattern mode (batch size 1), a 36-20-10-5 tanh MLP, cross-entropy, SGD (delta) and Adam at lr 0.01,
float32, one thread. M members are trained at once by the batched engine's compiled kernel (what
`dlstudies run` takes for such a model where a C++ compiler is found) and its hand-fused path (the
fallback without one). The reference engine trains one nn.Module with a stock torch.optim
optimizer; its cost per member-step does not depend on M, so it is measured once per rule. Where
JAX is installed (`pip install -e .[bench]`) the same training written as
`jit(vmap(lax.scan(step)))` is timed too, compile time excluded.

Every cost is the CPU time of one thread (`time.process_time`) of one epoch, steady state (each
path's trainer runs whole epochs; the reference engine's as a 3-epoch minus a 1-epoch fit), the
minimum of R repeats, interleaved across the paths, since the machine is shared. The arithmetic
floor is the work of a step (2 flops per multiply-add; an update 2 flops per parameter for SGD, 12
for Adam) at this core's float32 matrix-product rate, measured here. Printed: a Markdown table in
microseconds per member per sample-step, then the targets, each marked met or not met.
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import time

import numpy as np
import torch

from dlstudies.engine import ENGINES, StopRule, TrainSpec, fused, kernel
from dlstudies.engine.schedule import ORDERS
from dlstudies.models.builders import build_members, mlp
from dlstudies.models.stacked import StackedNet
from dlstudies.optim import OptSpec, StackedOptimizer

SIZES = [36, 20, 10, 5]
LR = 0.01
UPDATE_FLOPS = {"delta": 2, "adam": 12}


def _data(n: int):
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, SIZES[0], generator=g), torch.randint(0, SIZES[-1], (n,), generator=g)


def _cpu(run) -> float:
    start = time.process_time()
    run()
    return time.process_time() - start


def reference_cost(rule: str, n: int, repeats: int) -> float:
    """Steady-state microseconds per member-step of the reference engine: (3 epochs - 1 epoch) / 2N."""
    x, y = _data(n)
    members = build_members(lambda: mlp(SIZES), range(1))
    fit = lambda epochs: ENGINES.get("reference")(members, [OptSpec(rule, LR)], x, y,  # noqa: E731
                                                  TrainSpec(StopRule(epochs)), [0])
    one, three = [], []
    for _ in range(repeats):
        one.append(_cpu(lambda: fit(1)))
        three.append(_cpu(lambda: fit(3)))
    return (min(three) - min(one)) / (2 * n) * 1e6


def trainer_epoch(path: str, rule: str, M: int, n: int):
    """One epoch of the batched engine's `path` ("kernel" or "fused") over M members, as a call."""
    x, y = _data(n)
    net = StackedNet(build_members(lambda: mlp(SIZES), range(M)))
    opts, spec = [OptSpec(rule, LR)] * M, TrainSpec(StopRule(1))
    trainer = (kernel.KernelTrainer(net, opts, x, y, spec) if path == "kernel"
               else fused.FusedTrainer(net, StackedOptimizer(opts, net.flat), x, y, spec))
    order = ORDERS.get("shuffle")(y, list(range(M)))
    return lambda: trainer.epoch(order(0), False)


def jax_epoch(rule: str, M: int, n: int):
    """The same training in JAX, jit(vmap(lax.scan(step))): one epoch as a call, or None."""
    try:
        import jax
        import jax.numpy as jnp
        from jax import lax
    except ImportError:
        return None

    def init(key):
        params = []
        for n_in, n_out in itertools.pairwise(SIZES):
            key, kw, kb = jax.random.split(key, 3)
            bound = 1 / np.sqrt(n_in)
            params.append((jax.random.uniform(kw, (n_out, n_in), minval=-bound, maxval=bound),
                           jax.random.uniform(kb, (n_out,), minval=-bound, maxval=bound)))
        return params

    def loss_fn(params, x, y):
        for i, (W, b) in enumerate(params):
            x = x @ W.T + b
            x = jnp.tanh(x) if i < len(params) - 1 else x
        return -jnp.mean(jax.nn.log_softmax(x)[jnp.arange(x.shape[0]), y])

    tree = jax.tree_util.tree_map

    def update(params, grads, state, correction):
        if rule == "delta":
            return tree(lambda p, g: p - LR * g, params, grads), state
        m, v = state
        m = tree(lambda m, g: 0.9 * m + 0.1 * g, m, grads)
        v = tree(lambda v, g: 0.999 * v + 0.001 * g * g, v, grads)
        bc1, bc2 = correction[0], correction[1]  # the bias corrections of this step, shared by all members
        params = tree(lambda p, m, v: p - LR * (m / bc1) / (jnp.sqrt(v / bc2) + 1e-8), params, m, v)
        return params, (m, v)

    def member_epoch(params, state, xs, ys, corrections):
        def step(carry, batch):
            params, state = carry
            x, y, correction = batch
            loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
            return update(params, grads, state, correction), loss
        (params, state), losses = lax.scan(step, (params, state), (xs, ys, corrections))
        return params, state, losses

    epoch = jax.jit(jax.vmap(member_epoch, in_axes=(0, 0, 0, 0, None)))
    params = jax.vmap(init)(jax.random.split(jax.random.PRNGKey(0), M))
    zeros = tree(jnp.zeros_like, params)
    state = (zeros, zeros)
    x, y = (t.numpy() for t in _data(n))
    rng = np.random.default_rng(0)
    order = np.stack([rng.permutation(n) for _ in range(M)])
    xs, ys = jnp.asarray(x[order][:, :, None, :]), jnp.asarray(y[order][:, :, None])
    t = np.arange(1, n + 1)
    corrections = jnp.asarray(np.stack([1 - 0.9 ** t, 1 - 0.999 ** t], 1), dtype=jnp.float32)
    run = lambda: jax.block_until_ready(epoch(params, state, xs, ys, corrections))  # noqa: E731
    run()  # compile
    return run




def sgemm_rate(repeats: int) -> float:
    """This core's float32 matrix-product rate, flop/s (one thread)."""
    a, b = torch.rand(1024, 1024), torch.rand(1024, 1024)
    a @ b
    return 2 * 1024 ** 3 / min(_cpu(lambda: a @ b) for _ in range(repeats + 2))


def floor_us(rule: str, rate: float) -> float:
    macs = sum(i * o for i, o in itertools.pairwise(SIZES))
    input_grads = macs - SIZES[0] * SIZES[1]  # no gradient w.r.t. the data
    params = sum((i + 1) * o for i, o in itertools.pairwise(SIZES))
    return (2 * (2 * macs + input_grads) + UPDATE_FLOPS[rule] * params) / rate * 1e6


def costs(rule: str, M: int, n: int, repeats: int, with_jax: bool) -> dict[str, float]:
    """Microseconds per member-step of each path, min of interleaved repeats."""
    runs = {"kernel": trainer_epoch("kernel", rule, M, n), "fused": trainer_epoch("fused", rule, M, n)}
    jx = jax_epoch(rule, M, n) if with_jax else None
    if jx is not None:
        runs["JAX"] = jx
    best = {k: np.inf for k in runs}
    for _ in range(repeats):
        for k, run in runs.items():
            best[k] = min(best[k], _cpu(run))
    return {k: v / (n * M) * 1e6 for k, v in best.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=1000, help="samples per epoch (N)")
    ap.add_argument("--members", type=int, nargs="+", default=[1, 5, 8, 64, 256])
    ap.add_argument("--rules", nargs="+", default=["delta", "adam"])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--no-jax", action="store_true")
    args = ap.parse_args()
    # One thread for torch and for XLA: a per-core cost, as each worker process of a study runs.
    os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
    torch.set_num_threads(1)
    if kernel.library() is None:
        raise SystemExit("no compiled kernel on this machine (see the line above)")
    rate = sgemm_rate(args.repeats)
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"1 thread, sgemm {rate / 1e9:.0f} GFLOP/s; N = {args.steps} samples per epoch, min of {args.repeats} "
          "interleaved repeats, CPU time")
    print()
    print("| rule | M | reference µs | fused µs | kernel µs | JAX µs | kernel / JAX | floor µs | kernel / floor |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    results = {}
    for rule in args.rules:
        ref = reference_cost(rule, max(100, args.steps // 4), args.repeats)
        floor = floor_us(rule, rate)
        for M in args.members:
            c = costs(rule, M, args.steps, args.repeats, not args.no_jax)
            jx = c.get("JAX")
            results[rule, M] = (c["kernel"], jx, floor)
            ours = c["kernel"]
            vs_jax = "–" if jx is None else f"{ours / jx:.2f}x"
            print(f"| {rule} | {M} | {ref:.0f} | {c['fused']:.2f} | {ours:.3f} | {'–' if jx is None else f'{jx:.3f}'} "
                  f"| {vs_jax} | {floor:.3f} | {ours / floor:.1f}x |", flush=True)
    print()
    _targets(results)


def _targets(results: dict) -> None:
    print("Targets (pattern mode, 36-20-10-5 tanh MLP, float32):")
    for (rule, M), (ours, jx, floor) in results.items():
        if jx is not None:
            print(f"- {rule}, M = {M}: kernel / JAX = {ours / jx:.2f}x (target <= 1): {'met' if ours <= jx else 'NOT met'}")
        if M >= 64:
            print(f"- {rule}, M = {M}: kernel / floor = {ours / floor:.1f}x (target <= 3): "
                  f"{'met' if ours <= 3 * floor else 'NOT met'}")


if __name__ == "__main__":
    main()
