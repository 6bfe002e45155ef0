"""Measurements of trained members: accuracy, loss, confusion matrices, and per-epoch probes."""

from __future__ import annotations

import torch

from dlstudies.engine.losses import LOSSES


def accuracy(outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(M, N, C) logits and (N,) labels -> (M,) fraction correct."""
    return (outputs.argmax(-1) == y.to(outputs.device)).double().mean(1).cpu()


def mean_loss(outputs: torch.Tensor, y: torch.Tensor, loss: str) -> torch.Tensor:
    targets = y.to(outputs.device).expand(outputs.shape[0], *y.shape)
    return LOSSES.get(loss).stacked(outputs, targets).double().cpu()


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
