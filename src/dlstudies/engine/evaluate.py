"""Measurements of trained members: accuracy, loss, confusion matrices, and per-epoch probes."""

from __future__ import annotations

import torch

from dlstudies.engine.losses import LOSSES


def accuracy(outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(M, N, C) logits and (N,) labels (or (M, N), each member's own) -> (M,) fraction correct, on the host."""
    return _accuracy(outputs, y).cpu()


def mean_loss(outputs: torch.Tensor, y: torch.Tensor, loss: str) -> torch.Tensor:
    return _mean_loss(outputs, y, loss).cpu()


# Where the outputs are: a probe's values stay on the device until the epoch's one read (EpochLog).
def _accuracy(outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (outputs.argmax(-1) == y.to(outputs.device)).double().mean(1)


def _mean_loss(outputs: torch.Tensor, y: torch.Tensor, loss: str) -> torch.Tensor:
    return LOSSES.get(loss).stacked(outputs, member_targets(outputs, y)).double()


def member_targets(outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Each member's targets for (M, N, ...) outputs: y shared by all, or y already one row per
    member (labels (M, N) beside (M, N, C) logits, float targets of the outputs' shape)."""
    y = y.to(outputs.device)
    own = y.dim() == outputs.dim() - (0 if y.is_floating_point() else 1)
    return y if own else y.expand(outputs.shape[0], *y.shape)


def confusion(outputs: torch.Tensor, y: torch.Tensor, n_classes: int) -> torch.Tensor:
    """(M, C, C) counts: row = true class, column = predicted class."""
    pred = outputs.argmax(-1).cpu()
    flat = y.cpu() * n_classes + pred  # (M, N)
    counts = [torch.bincount(row, minlength=n_classes * n_classes) for row in flat]
    return torch.stack(counts).view(-1, n_classes, n_classes)


def accuracy_probe(name: str, x: torch.Tensor, y: torch.Tensor):
    """A probe recording `name` = accuracy on (x, y) after every epoch."""
    return lambda predict: {name: accuracy(predict(x), y)}


def loss_probe(name: str, x: torch.Tensor, y: torch.Tensor, loss: str):
    return lambda predict: {name: mean_loss(predict(x), y, loss)}


# Samples per forward when members are evaluated on the CPU (engine.batched.stacked_predict). Measured
# (benchmarks/probes.py, random-labels' paper CNN, 10 members, 2048 Fashion-MNIST images, one thread):
# chunks of 16 / 64 / 256 / 1024 run 2.09 / 2.44 / 1.28 / 1.08x the speed of 4096: small chunks keep
# each layer's activations in the cache. A sample's outputs do not depend on the chunk it is in.
PROBE_CHUNK = 64


def chunked_predict(predict, x: torch.Tensor, chunk: int = PROBE_CHUNK) -> torch.Tensor:
    """(M, N, ...) outputs of `predict` on `x`, `chunk` samples per call."""
    return torch.cat([predict(x[i:i + chunk]) for i in range(0, len(x), chunk)], 1)


def loss_accuracy_probe(split: str, x: torch.Tensor, y: torch.Tensor, loss: str, chunk: int | None = None):
    """A probe recording `{split}_loss` and `{split}_acc` on (x, y) from one forward pass (as
    loss_probe and accuracy_probe give them, bitwise, from two). `chunk`: samples per call of
    predict (default: all; the engine's predict chunks them as suits the device)."""
    def probe(predict):
        outputs = chunked_predict(predict, x, chunk) if chunk else predict(x)
        return {f"{split}_loss": _mean_loss(outputs, y, loss), f"{split}_acc": _accuracy(outputs, y)}
    return probe


def probe_interval(epochs: int, points: int = 100) -> int:
    """Every how many epochs a probe runs so that a curve has about `points` points: more draw the same curve."""
    return max(1, -(-epochs // points))


def every(k: int, probe, epochs: int):
    """`probe` run after epochs 1, k, 2k, ... and the last (`epochs`), NaN after the others (NaN is
    what a history holds where nothing was measured). Counts its calls: one per fit."""
    calls, last = [0], {}

    def sparse(predict):
        calls[0] += 1
        if calls[0] == 1 or calls[0] % k == 0 or calls[0] == epochs:
            last.update(probe(predict))
            return dict(last)
        return {name: torch.full_like(v, float("nan"), dtype=torch.float64) for name, v in last.items()}
    return sparse
