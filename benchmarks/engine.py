"""Cost of one member's sample-step: reference engine, batched engine (both paths), and JAX.

    python benchmarks/engine.py [--steps N] [--members 1 8 64 256] [--rules delta adam] [--repeats R]

Pattern mode (batch size 1), a 36-20-10-5 tanh MLP, cross-entropy, SGD (delta) and Adam at lr 0.01,
float32, one thread. M members are trained at once by the batched engine: its hand-fused path
(what `dlstudies run` takes for such a model) and, for comparison, its autograd path. The reference
engine trains one nn.Module with a stock torch.optim optimizer; its cost per member-step does not
depend on M, so it is measured once per rule. Where JAX is installed (`pip install -e .[bench]`)
the same training written as `jit(vmap(lax.scan(step)))` is timed too, compile time excluded.

Every cost is a steady-state cost: the time of a 3-epoch fit minus that of a 1-epoch fit, over the
2 * N * M member-steps between them, so the one-off setup of a fit (copying M modules in and out)
is left out. Each time is the minimum of R repeats, interleaved, since the machine is shared.
Printed: a Markdown table in microseconds per member per sample-step, then the targets of the
performance issue, each marked met or not met.
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import time

import numpy as np
import torch

from dlstudies.engine import ENGINES, StopRule, TrainSpec
from dlstudies.models.builders import build_members, mlp
from dlstudies.optim import OptSpec

SIZES = [36, 20, 10, 5]
LR = 0.01


def _data(n: int):
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, SIZES[0], generator=g), torch.randint(0, SIZES[-1], (n,), generator=g)


def _fit_seconds(engine: str, rule: str, M: int, n: int, epochs: int, path: str | None, members) -> float:
    x, y = _data(n)
    kwargs = {} if path is None else {"path": path}
    start = time.perf_counter()
    ENGINES.get(engine)(members, [OptSpec(rule, LR)] * M, x, y, TrainSpec(StopRule(epochs)), list(range(M)), **kwargs)
    return time.perf_counter() - start


def torch_cost(engine: str, rule: str, M: int, n: int, repeats: int, path: str | None = None) -> float:
    """Steady-state microseconds per member-step."""
    members = build_members(lambda: mlp(SIZES), range(M))
    _fit_seconds(engine, rule, M, min(n, 50), 1, path, members)  # warm-up
    one, three = [], []
    for _ in range(repeats):
        one.append(_fit_seconds(engine, rule, M, n, 1, path, members))
        three.append(_fit_seconds(engine, rule, M, n, 3, path, members))
    return (min(three) - min(one)) / (2 * n * M) * 1e6


def jax_cost(rule: str, M: int, n: int, repeats: int) -> float | None:
    """The same training in JAX, jit(vmap(lax.scan(step))): microseconds per member-step, or None."""
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
    jax.block_until_ready(epoch(params, state, xs, ys, corrections))  # compile
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(epoch(params, state, xs, ys, corrections))
        best = min(best, time.perf_counter() - start)
    return best / (n * M) * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=1000, help="samples per epoch (N)")
    ap.add_argument("--members", type=int, nargs="+", default=[1, 8, 64, 256])
    ap.add_argument("--rules", nargs="+", default=["delta", "adam"])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-autograd", action="store_true", help="skip timing the autograd path")
    ap.add_argument("--no-jax", action="store_true")
    args = ap.parse_args()
    # One thread for torch and for XLA: a per-core cost, as each worker process of a study runs.
    os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
    torch.set_num_threads(1)
    jax_version = None
    if not args.no_jax:
        try:
            import jax
            jax_version = jax.__version__
        except ImportError:
            pass
    print(f"torch {torch.__version__}, jax {jax_version or 'not installed'}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, 1 thread; N = {args.steps} samples per epoch, min of {args.repeats} repeats")
    print()
    print("| rule | M | reference µs | autograd µs | fused µs | JAX µs | reference / fused | fused / JAX |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    results = {}
    for rule in args.rules:
        ref = torch_cost("reference", rule, 1, max(100, args.steps // 4), args.repeats)
        for M in args.members:
            fused = torch_cost("batched", rule, M, args.steps, args.repeats, path="fused")
            auto = None if args.no_autograd else torch_cost("batched", rule, M, args.steps, args.repeats, "autograd")
            jx = None if args.no_jax else jax_cost(rule, M, args.steps, args.repeats)
            results[rule, M] = (ref, fused, jx)
            fmt = lambda v, p=2: "–" if v is None else f"{v:.{p}f}"
            print(f"| {rule} | {M} | {ref:.0f} | {fmt(auto)} | {fused:.2f} | {fmt(jx)} | {ref / fused:.0f}x | "
                  f"{'–' if jx is None else f'{fused / jx:.2f}x'} |", flush=True)
    print()
    _targets(results)


def _targets(results: dict) -> None:
    print("Targets (pattern mode, 36-20-10-5 tanh MLP):")
    for (rule, M), (ref, fused, jx) in results.items():
        if M == 64:
            print(f"- {rule}, M = 64: reference / fused = {ref / fused:.0f}x (target >= 100x): "
                  f"{'met' if ref / fused >= 100 else 'NOT met'}")
        if M == 256:
            print(f"- {rule}, M = 256: fused = {fused:.2f} µs per member-step (target <= 3): "
                  f"{'met' if fused <= 3 else 'NOT met'}")
        if jx is not None and M >= 64:
            print(f"- {rule}, M = {M}: fused / JAX = {fused / jx:.2f}x (aim <= 1.5x): "
                  f"{'met' if fused / jx <= 1.5 else 'NOT met'}")


if __name__ == "__main__":
    main()
