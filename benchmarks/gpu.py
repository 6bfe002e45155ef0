"""One epoch of each CNN study's paper setting on a CUDA device: training, and its probes.

    python benchmarks/gpu.py [--studies random-labels sensitivity interpolation] [--members 10]

For random-labels (batch 100), sensitivity (every batch size of its paper preset) and
interpolation (its small and large batch), a stack of `--members` paper CNNs trains one epoch
over the paper training set (Fashion-MNIST where it is on disk, else the loader's stand-in) on
`cuda`, as the engine's autograd path runs it (`batched._epoch`: data on the device, no host read
per step), then evaluates the stack on the training and test sets as a probe does
(`stacked_predict`). A first epoch is a warm-up (cuDNN's algorithm choice, the allocator) and is
not timed; the timed region is bracketed by torch.cuda.synchronize(). Wall time, seconds.
Without a CUDA device it exits with one line saying so.
"""

from __future__ import annotations

import argparse
import time

import torch

from dlstudies.config import Runtime
from dlstudies.engine import TrainSpec, fixed_epochs
from dlstudies.engine.batched import _epoch, micro_size, path_name, stacked_predict
from dlstudies.engine.schedule import member_order
from dlstudies.models.builders import build_members
from dlstudies.models.stacked import StackedNet
from dlstudies.optim import OptSpec, StackedOptimizer
from dlstudies.runner import study_config
from dlstudies.studies.image_nets import NETS, load_split_data


def settings(study: str) -> list[tuple[str, object, int, OptSpec]]:
    """(label, config, batch size, optimizer) of each paper setting a study trains."""
    cfg = study_config(study, "paper", [])
    momentum = getattr(cfg, "momentum", 0.0)
    opt = OptSpec(cfg.optimizer, cfg.lr, momentum)
    batches = {"random-labels": lambda: [cfg.batch_size], "sensitivity": lambda: list(cfg.batch_sizes),
               "interpolation": lambda: [cfg.small_batch, cfg.large_batch]}[study]()
    return [(f"{study} batch {b}", cfg, b, opt) for b in batches]


def _sync_time(fn) -> float:
    torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    return time.perf_counter() - start


def epoch_times(cfg, batch: int, opt: OptSpec, members: int) -> tuple[str, float, float]:
    data = load_split_data(cfg, Runtime())
    net = StackedNet([m.to("cuda") for m in build_members(NETS.get(cfg.model)(cfg, data), range(members))])
    x, y = data.train.x.to("cuda"), data.train.y.to("cuda")  # once, as fit_batched puts them
    spec = TrainSpec(fixed_epochs(2), batch, device="cuda")
    order, optimizer = member_order("shuffle", y, list(range(members))), StackedOptimizer([opt] * members, net.flat)
    micro = micro_size(net, spec)
    train = lambda epoch: _epoch(net, optimizer, x, y, order(epoch).to("cuda"), spec, False, micro)  # noqa: E731
    probe = lambda: [stacked_predict(net, s.x) for s in (data.train, data.test)]  # noqa: E731
    train(0), probe()  # warm-up, not timed
    return path_name("autograd", micro, net), _sync_time(lambda: train(1)), _sync_time(probe)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--studies", nargs="+", default=["random-labels", "sensitivity", "interpolation"])
    p.add_argument("--members", type=int, default=10)
    args = p.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("benchmarks/gpu.py: no CUDA device here (torch.cuda.is_available() is False); nothing timed")
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}, {args.members} members, wall s\n")
    print("| setting | engine path | train epoch s | probes (train + test) s |")
    print("|---|---|---:|---:|")
    for study in args.studies:
        for label, cfg, batch, opt in settings(study):
            path, train_s, probe_s = epoch_times(cfg, batch, opt, args.members)
            print(f"| {label} | {path} | {train_s:.2f} | {probe_s:.2f} |", flush=True)


if __name__ == "__main__":
    main()
