"""Probe cost per chunk size, one forward for loss + accuracy against two, and a training step of a
large batch whole against micro-batches.

    python benchmarks/probes.py [--n 2048] [--members 10] [--repeats 3]

A stack of random-labels' paper CNN (10 members by default) evaluates N Fashion-MNIST images
(random images where the dataset is missing) in chunks of 64 ... 4096 samples: CPU time of one thread,
minimum of interleaved repeats, printed as a ratio against chunks of 4096 (the engine's former
`stacked_predict` default). Then `loss_accuracy_probe` (one forward) against loss_probe + accuracy_probe,
and one epoch of batches of 512 on the autograd path, whole against micro-batches of MICRO_BATCH.
"""

from __future__ import annotations

import argparse
import time

import torch

from dlstudies.engine import TrainSpec, fixed_epochs
from dlstudies.engine.batched import MICRO_BATCH, fit_batched, stacked_predict
from dlstudies.optim import OptSpec
from dlstudies.engine.evaluate import PROBE_CHUNK, accuracy_probe, chunked_predict, loss_probe, loss_accuracy_probe
from dlstudies.models.builders import build_members
from dlstudies.models.stacked import StackedNet
from dlstudies.runner import study_config
from dlstudies.studies.image_nets import NETS, load_split_data
from dlstudies.config import Runtime

CHUNKS = (16, 64, 256, 1024, 4096)


def best_of(fn, repeats_log: list[float]) -> None:
    start = time.process_time()
    fn()
    repeats_log.append(time.process_time() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=2048)
    p.add_argument("--members", type=int, default=10)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    torch.set_num_threads(1)
    cfg = study_config("random-labels", "paper", [f"n_train={args.n}", f"n_test={args.n}"])
    data = load_split_data(cfg, Runtime())
    members = build_members(NETS.get(cfg.model)(cfg, data), list(range(args.members)))
    x, y = data.train.x, data.train.y
    net = StackedNet(members)  # as the engine probes a stack during training
    predict = lambda inputs: stacked_predict(net, inputs, chunk=len(inputs))  # noqa: E731
    times = {c: [] for c in CHUNKS}
    for _ in range(args.repeats):  # interleaved: a slow moment of the machine hits every size alike
        for c in CHUNKS:
            best_of(lambda: chunked_predict(predict, x, c), times[c])
    base = min(times[4096])
    print(f"{args.members} members of random-labels' paper CNN, {len(x)} images, CPU s of one thread (min of {args.repeats})")
    for c in CHUNKS:
        print(f"chunk {c:>5}: {min(times[c]):7.3f} s   {base / min(times[c]):5.2f}x the speed of 4096")
    one, two = [], []
    for _ in range(args.repeats):
        best_of(lambda: loss_accuracy_probe("train", x, y, "cross_entropy")(predict), one)
        best_of(lambda: (loss_probe("l", x, y, "cross_entropy")(predict), accuracy_probe("a", x, y)(predict)), two)
    print(f"loss + accuracy, chunk {PROBE_CHUNK}: one forward {min(one):.3f} s, two forwards (chunk 4096) "
          f"{min(two):.3f} s: {min(two) / min(one):.2f}x")

    step = lambda micro: fit_batched(members, [OptSpec("nesterov", 0.01, 0.9)] * len(members), x, y,  # noqa: E731
                                     TrainSpec(fixed_epochs(1), 512, micro_batch=micro), list(range(len(members))),
                                     path="autograd")
    whole, parts = [], []
    for _ in range(args.repeats):
        best_of(lambda: step(0), whole)
        best_of(lambda: step(MICRO_BATCH), parts)
    steps = -(-len(x) // 512)
    print(f"batch 512, one epoch ({steps} steps): whole {min(whole) / steps:.3f} s per step, "
          f"{512 // MICRO_BATCH} micro-batches of {MICRO_BATCH} {min(parts) / steps:.3f} s: {min(whole) / min(parts):.2f}x")


if __name__ == "__main__":
    main()
