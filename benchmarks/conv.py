"""Stacked convolutions at the studies' paper shapes: each alternative's rate, and a training step.

    python benchmarks/conv.py [--repeats 5] [--steps-only | --layers-only | --gradients-only]

Part 1, per convolution layer of the CNNs of random-labels (Fashion-MNIST 28x28, channels (8, 16),
batch 100, M = 10, 5 and 1) and sensitivity / interpolation (channels (8, 32), M = 10, micro-batches
of 64 and batches of 32), forward + backward (weight and bias gradients; the input's too past the
first layer) of each alternative, in GFLOP/s (2 flops per multiply-add) and as a ratio to
"grouped" (the engine's layout before this benchmark):
- grouped: members folded into channels, one grouped convolution (CONV_LAYOUTS "grouped");
- grouped-cl: the same, channels-last;
- loop: one ungrouped convolution per member, NCHW;
- members: one per member, each member's images channels-last (CONV_LAYOUTS "members");
- im2col: unfold + one batched matrix product per member (torch.matmul);
- shared (forward only, where every member sees the same images, as in a probe): one ungrouped
  convolution with M x C_out output channels; its forward is set beside grouped's forward.

Part 2, one training step as the engine takes it (`_batch_grad`: forward + backward of the whole
stack, micro-batches as `micro_size` sets them) of each study's paper CNN, the engine's layout
before ("grouped", ReLU before max-pooling) against now ("members", max-pooling first).

Part 3, the same step with the gradient taken as before ("gathered": torch.autograd.grad of each
layer, one cat into an (M, P) tensor; the whole network per micro-batch, the micro-batches' (M, P)
gradients summed) against now (`_batch_grad`: each layer's gradient added in place into the stack's
one buffer; the convolutions per micro-batch, the dense head on the whole batch); the gradients are
checked to agree (bitwise without micro-batches, to float32 rounding with them).

CPU time of one thread (`time.process_time`), minimum of repeats interleaved across the alternatives.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from dlstudies.engine import TrainSpec, fixed_epochs
from dlstudies.engine.spec import batches
from dlstudies.engine.batched import _batch_grad, micro_size, target_rows
from dlstudies.engine.losses import LOSSES
from dlstudies.models import conv, stacked
from dlstudies.models.builders import build_members
from dlstudies.models.conv import CONV_LAYOUTS, cnn
from dlstudies.models.stacked import StackedNet


@dataclass(frozen=True)
class Layer:
    name: str
    M: int
    B: int
    c_in: int
    c_out: int
    size: int  # H = W

    def flops(self, backward: bool = True) -> float:
        fwd = 2 * self.M * self.B * self.c_out * self.c_in * 9 * self.size ** 2
        return fwd * (1 + (2 if self.c_in > 1 else 1)) if backward else fwd


def layers() -> list[Layer]:
    out = []
    for M in (10, 5, 1):
        out += [Layer("random-labels conv1", M, 100, 1, 8, 28), Layer("random-labels conv2", M, 100, 8, 16, 14)]
    for B in (64, 32):
        out += [Layer(f"sensitivity/interpolation conv1, batch {B}", 10, B, 1, 8, 28),
                Layer(f"sensitivity/interpolation conv2, batch {B}", 10, B, 8, 32, 14)]
    return out


def _grouped_cl(layer, w, b, x):
    M, B = x.shape[:2]
    xf = x.transpose(0, 1).reshape(B, M * x.shape[2], *x.shape[3:]).contiguous(memory_format=torch.channels_last)
    y = F.conv2d(xf, w.reshape(-1, *w.shape[2:]), b.reshape(-1), 1, 1, 1, M)
    return y.reshape(B, M, -1, *y.shape[2:]).transpose(0, 1)


def _loop(layer, w, b, x):
    return torch.stack([F.conv2d(xi, wi, bi, 1, 1) for xi, wi, bi in zip(x.unbind(0), w.unbind(0), b.unbind(0))])


def _im2col(layer, w, b, x):
    M, B, C, H, W = x.shape
    cols = F.unfold(x.reshape(M * B, C, H, W), 3, padding=1).view(M, B, C * 9, H * W)
    y = torch.matmul(w.reshape(M, 1, -1, C * 9), cols) + b.view(M, 1, -1, 1)
    return y.view(M, B, -1, H, W)


ALTERNATIVES = {"grouped": CONV_LAYOUTS.get("grouped"), "grouped-cl": _grouped_cl, "loop": _loop,
                "members": CONV_LAYOUTS.get("members"), "im2col": _im2col}


def _cpu(fn) -> float:
    start = time.process_time()
    fn()
    return time.process_time() - start


def _layer_runs(spec: Layer) -> dict:
    g = torch.Generator().manual_seed(0)
    module = nn.Conv2d(spec.c_in, spec.c_out, 3, padding=1)
    x = torch.randn(spec.M, spec.B, spec.c_in, spec.size, spec.size, generator=g, requires_grad=spec.c_in > 1)
    w = torch.randn(spec.M, spec.c_out, spec.c_in, 3, 3, generator=g, requires_grad=True)
    b = torch.randn(spec.M, spec.c_out, generator=g, requires_grad=True)
    grad = torch.randn(spec.M, spec.B, spec.c_out, spec.size, spec.size, generator=g)
    wrt = (w, b, x) if spec.c_in > 1 else (w, b)
    expected = ALTERNATIVES["grouped"](module, w, b, x)
    runs = {}
    for name, fn in ALTERNATIVES.items():
        torch.testing.assert_close(fn(module, w, b, x), expected, rtol=1e-4, atol=1e-4)
        runs[name] = lambda fn=fn: torch.autograd.grad(fn(module, w, b, x), wrt, grad)
    with torch.no_grad():
        shared = x[:1].expand_as(x).detach()
        runs["grouped forward"] = lambda: ALTERNATIVES["grouped"](module, w, b, shared)
        runs["shared forward"] = lambda: F.conv2d(shared[0], w.reshape(-1, *w.shape[2:]), b.reshape(-1), 1, 1)
    return runs


def _best(runs: dict, repeats: int) -> dict[str, float]:
    for fn in runs.values():
        fn()  # warm-up: oneDNN primitives, allocator
    best = {k: float("inf") for k in runs}
    for _ in range(repeats):
        for k, fn in runs.items():
            with torch.no_grad() if k.endswith("forward") else contextlib.nullcontext():
                best[k] = min(best[k], _cpu(fn))
    return best


def layer_table(repeats: int) -> None:
    names = [*ALTERNATIVES]
    print("| layer | M | batch | " + " | ".join(f"{n} GFLOP/s" for n in names) + " | best / grouped | shared / grouped forward |")
    print("|---|---:|---:|" + "---:|" * (len(names) + 2))
    for spec in layers():
        t = _best(_layer_runs(spec), repeats)
        rates = {n: spec.flops() / t[n] / 1e9 for n in names}
        top = max(names, key=rates.get)
        print(f"| {spec.name} | {spec.M} | {spec.B} | " + " | ".join(f"{rates[n]:.0f}" for n in names)
              + f" | {top} {rates[top] / rates['grouped']:.2f}x | {t['grouped forward'] / t['shared forward']:.2f}x |",
              flush=True)


PAPER, DEFAULT = (1, 28, 28), (1, 8, 8)  # Fashion-MNIST at paper, digits at default
STEPS = [  # (study, image shape, channels, hidden, batch, members)
    ("random-labels", PAPER, (8, 16), (100, 80), 100, 10), ("random-labels", PAPER, (8, 16), (100, 80), 100, 5),
    ("random-labels", PAPER, (8, 16), (100, 80), 100, 1),
    *[("sensitivity", PAPER, (8, 32), (256, 128), b, 10) for b in (32, 64, 128, 256, 512)],
    ("interpolation", PAPER, (8, 32), (256, 128), 75, 10), ("interpolation", PAPER, (8, 32), (256, 128), 500, 10),
    # the paper presets' stacks: 5 seeds (seed_chunk)
    *[("sensitivity", PAPER, (8, 32), (256, 128), b, 5) for b in (32, 64, 128, 256, 512)],
    ("interpolation", PAPER, (8, 32), (256, 128), 75, 5), ("interpolation", PAPER, (8, 32), (256, 128), 500, 5),
    # default scale: the studies' CNNs on 8x8 digits, which `run all` trains
    ("random-labels", DEFAULT, (16, 32), (256, 256), 50, 10), ("random-labels", DEFAULT, (16, 32), (256, 256), 50, 1),
    *[("sensitivity", DEFAULT, (8, 32), (256, 128), b, 10) for b in (32, 512)],
    ("image-depth", DEFAULT, (8, 16, 32), (32,), 32, 10), ("image-depth", DEFAULT, (16,), (32,), 32, 10),
]


@contextlib.contextmanager
def layout(name: str):
    """The engine's stacked CNN as it ran before ("grouped": grouped convolution, ReLU before the
    max-pooling) or as it runs now ("members")."""
    saved = conv.conv_layout, set(stacked.COMMUTING)
    conv.conv_layout = lambda device, image: name
    if name == "grouped":
        stacked.COMMUTING.clear()
    try:
        yield
    finally:
        conv.conv_layout = saved[0]
        stacked.COMMUTING.update(saved[1])


def _step(shape, channels, hidden, batch: int, M: int, name: str, batch_grad=_batch_grad):
    with layout(name):
        net = StackedNet(build_members(lambda: cnn(shape, channels, hidden, 10), range(M)))
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(2048, *shape, generator=g), torch.randint(0, 10, (2048,), generator=g)
    rows = torch.stack([torch.randperm(2048, generator=g)[:batch] for _ in range(M)])
    micro = micro_size(net, TrainSpec(fixed_epochs(1), batch))
    loss_fn, targets = LOSSES.get("cross_entropy").stacked, target_rows(y, False)

    def run():
        with layout(name):
            return batch_grad(net, loss_fn, x, targets, rows, micro)
    return run, micro


def _gathered(net: StackedNet, loss_fn, x, targets, rows, micro: int):
    """The engine's step before its gradient buffer: whole network per micro-batch, gathered and summed."""
    total, grad = 0.0, 0.0
    for part in [slice(0, rows.shape[1])] if not micro else batches(rows.shape[1], micro):
        r = rows[:, part]
        losses = loss_fn(net.forward(x[r], training=True), targets(r)) * ((part.stop - part.start) / rows.shape[1])
        grads = torch.autograd.grad(losses.sum(), [net.params[n] for n in net.names])
        total, grad = total + losses.detach(), grad + torch.cat([g.reshape(net.M, -1) for g in grads], 1)
    return total, grad


def gradient_table(repeats: int) -> None:
    print("| study | image | batch | M | micro-batch | gathered ms | buffer ms | speedup |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for study, shape, channels, hidden, batch, M in STEPS:
        now, micro = _step(shape, channels, hidden, batch, M, "members")
        before, _ = _step(shape, channels, hidden, batch, M, "members", _gathered)
        expected = before()[1]
        if micro:
            torch.testing.assert_close(now()[1], expected, rtol=1e-3, atol=1e-5)
        else:
            assert torch.equal(now()[1], expected)
        t = _best({"before": lambda: before()[1].sum(), "now": lambda: now()[1].sum()}, repeats)
        print(f"| {study} | {shape[1]}x{shape[2]} | {batch} | {M} | {micro or '-'} | {t['before'] * 1e3:.1f} | {t['now'] * 1e3:.1f} "
              f"| {t['before'] / t['now']:.2f}x |", flush=True)


def step_table(repeats: int) -> None:
    print("| study | image | batch | M | micro-batch | before (grouped) ms | now (members) ms | speedup |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for study, shape, channels, hidden, batch, M in STEPS:
        case = (shape, channels, hidden, batch, M)
        (before, micro), (now, _) = _step(*case, "grouped"), _step(*case, "members")
        torch.testing.assert_close(before()[1], now()[1], rtol=1e-3, atol=1e-5)  # the same gradient, to float32 rounding
        t = _best({"before": before, "now": now}, repeats)
        print(f"| {study} | {shape[1]}x{shape[2]} | {batch} | {M} | {micro or '-'} | {t['before'] * 1e3:.1f} | {t['now'] * 1e3:.1f} "
              f"| {t['before'] / t['now']:.2f}x |", flush=True)


PARTS = {"layers": layer_table, "steps": step_table, "gradients": gradient_table}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    which = p.add_mutually_exclusive_group()
    for part in PARTS:
        which.add_argument(f"--{part}-only", dest="only", action="store_const", const=part)
    args = p.parse_args()
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, 1 thread, float32, CPU time, min of {args.repeats} interleaved repeats\n")
    for part, table in PARTS.items():
        if args.only in (None, part):
            table(args.repeats)
            print()

if __name__ == "__main__":
    main()
