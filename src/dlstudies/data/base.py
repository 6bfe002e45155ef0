"""The data every study trains on: three splits of tensors and where they came from."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from sklearn.model_selection import train_test_split

from dlstudies.registry import Registry

DATASETS: Registry = Registry("dataset")

# Splits are made with a fixed seed so every training seed sees the same data: the variation
# across seeds is then initialisation and sample order, which is what the studies compare.
SPLIT_SEED = 0


@dataclass(frozen=True)
class Split:
    x: torch.Tensor  # (N, *input_shape), float32
    y: torch.Tensor  # (N,) int64 class labels, or (N, k) float32 regression targets

    def __len__(self) -> int:
        return int(self.x.shape[0])


@dataclass(frozen=True)
class Dataset:
    name: str
    train: Split
    val: Split | None
    test: Split
    n_classes: int  # 0 for regression
    source: str
    meta: dict = field(default_factory=dict)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train.x.shape[1:])

    def describe(self) -> str:
        sizes = "/".join(str(len(s)) if s is not None else "-" for s in (self.train, self.val, self.test))
        kind = f"{self.n_classes} classes" if self.n_classes else "regression"
        return f"{self.name}: input {self.input_shape}, {kind}, train/val/test {sizes}; {self.source}"


def as_split(x: np.ndarray, y: np.ndarray) -> Split:
    labels = torch.as_tensor(np.asarray(y), dtype=torch.int64 if np.asarray(y).ndim == 1 else torch.float32)
    return Split(torch.as_tensor(np.asarray(x), dtype=torch.float32), labels)


def stratified_splits(x: np.ndarray, y: np.ndarray, val: float = 0.2, test: float = 0.2):
    """Train/val/test split that keeps class proportions; fixed seed so it never varies."""
    x_rest, x_test, y_rest, y_test = train_test_split(x, y, test_size=test, stratify=y, random_state=SPLIT_SEED)
    x_train, x_val, y_train, y_val = train_test_split(
        x_rest, y_rest, test_size=val / (1 - test), stratify=y_rest, random_state=SPLIT_SEED
    )
    return as_split(x_train, y_train), as_split(x_val, y_val), as_split(x_test, y_test)


def subsample(data: Dataset, n_train: int | None = None, n_test: int | None = None) -> Dataset:
    """The first n examples of a stratified-shuffled order, so a small run keeps class balance."""
    return Dataset(
        data.name, _first(data.train, n_train), _first(data.val, n_test), _first(data.test, n_test),
        data.n_classes, data.source, data.meta,
    )


def _first(split: Split | None, n: int | None) -> Split | None:
    if split is None or n is None or n >= len(split):
        return split
    order = _balanced_order(split.y)
    keep = order[:n]
    return Split(split.x[keep], split.y[keep])


def _balanced_order(y: torch.Tensor) -> torch.Tensor:
    # Round-robin over classes in a seeded shuffle, so any prefix is as balanced as it can be.
    g = torch.Generator().manual_seed(SPLIT_SEED)
    shuffled = torch.randperm(len(y), generator=g)
    if y.dtype != torch.int64:
        return shuffled
    labels = y[shuffled]
    rank = torch.zeros_like(labels)
    for c in labels.unique():
        idx = (labels == c).nonzero().squeeze(1)
        rank[idx] = torch.arange(len(idx))
    return shuffled[torch.argsort(rank * (int(labels.max()) + 1) + labels, stable=True)]
