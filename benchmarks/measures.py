"""Sensitivity's per-model measures at paper shapes: the input sensitivity and Jacobian norm as
`dlstudies.analysis.sensitivity` computes them now (one forward and 1 + K backward passes per
batch) against a vmap over the samples (torch.func: grad and jacrev of each sample alone, how it
computed them before), and the sharpness ascent beside them.

    python benchmarks/measures.py [--n 1000] [--repeats 3]

The paper CNN of sensitivity (conv8-conv32-fc256-fc128-10, 28x28 inputs, untrained weights, random
images), batches of 250 (the paper preset's eval_batch). CPU time of one thread, minimum of repeats
interleaved across the two; the per-sample values are checked to agree to float32 rounding.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, jacrev, vmap

from dlstudies.analysis import sharpness
from dlstudies.analysis.landscape import eval_mode
from dlstudies.analysis.sensitivity import sensitivity
from dlstudies.models.conv import cnn

BATCH = 250


def vmapped(model, x, y):
    """The per-sample norms as a vmap over one-sample batches (the earlier implementation)."""
    state = {**{n: p.detach() for n, p in model.named_parameters()}, **dict(model.named_buffers())}

    def forward(xi):
        return functional_call(model, state, (xi.unsqueeze(0),))

    def loss(xi, yi):
        return F.cross_entropy(forward(xi), yi.unsqueeze(0))

    def probs(xi):
        return torch.softmax(forward(xi), -1).squeeze(0)

    grads, jacs = [], []
    with eval_mode(model):
        for i in range(0, len(x), BATCH):
            grads.append(vmap(grad(loss))(x[i:i + BATCH], y[i:i + BATCH]).flatten(1).norm(dim=1))
            jacs.append(vmap(jacrev(probs))(x[i:i + BATCH]).flatten(1).norm(dim=1))
    return torch.cat(grads).numpy(), torch.cat(jacs).numpy()


def _cpu(fn):
    start = time.process_time()
    out = fn()
    return time.process_time() - start, out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    torch.set_num_threads(1)
    model = cnn((1, 28, 28), (8, 32), (256, 128), 10)
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(args.n, 1, 28, 28, generator=g), torch.randint(0, 10, (args.n,), generator=g)
    runs = {"vmap": lambda: vmapped(model, x, y),
            "now": lambda: sensitivity(model, F.cross_entropy, x, y, batch_size=BATCH),
            "sharpness": lambda: sharpness(model, F.cross_entropy, x, y, epsilon=1e-3, steps=10, batch_size=BATCH,
                                           starts=5, generator=torch.Generator().manual_seed(1))}
    best, outs = {k: float("inf") for k in runs}, {}
    for _ in range(args.repeats):
        for k, fn in runs.items():
            t, outs[k] = _cpu(fn)
            best[k] = min(best[k], t)
    np.testing.assert_allclose(outs["now"].per_sample, outs["vmap"][0], rtol=1e-5)
    np.testing.assert_allclose(outs["now"].jacobian_per_sample, outs["vmap"][1], rtol=1e-5)
    print(f"{args.n} samples, batches of {BATCH}, CPU s (min of {args.repeats}, interleaved), one thread")
    print("| measure | CPU s | per sample ms |")
    print("|---|---:|---:|")
    for label, k in (("sensitivity + Jacobian, vmap over samples (before)", "vmap"),
                     ("sensitivity + Jacobian, batched backward passes (now)", "now"),
                     ("sharpness, 5 starts x 10 ascent steps", "sharpness")):
        print(f"| {label} | {best[k]:.2f} | {best[k] / args.n * 1e3:.2f} |")
    print(f"speedup of the sensitivity measures: {best['vmap'] / best['now']:.2f}x")


if __name__ == "__main__":
    main()
