"""functions: the 1-D regression targets of study B1 (deep vs shallow), x in (0, 1].

    f1(x) = sin(5πx) / (5πx)        f2(x) = sign(sin(5πx))

Train x is the evenly spaced grid k/n (k = 1..n, so 0 is excluded and 1 included); test x is the
grid shifted by half a step, (k - 1/2)/n, so every test point lies between training points and
measures interpolation rather than memorisation. x and y are (N, 1) float32; y is computed in
float64 from the stored float32 x, so y = f(x) holds for exactly the x a model sees. There is
no validation split (val = None): the studies fit a fixed budget and look at the curves.
"""

from __future__ import annotations

import numpy as np

from dlstudies.data.base import DATASETS, Dataset, Split, as_split
from dlstudies.registry import Registry

TARGETS: Registry = Registry("target function")
N_TRAIN = 500
N_TEST = 500
# float32 rounding moves a zero of sin(5πx) such as x = 0.2 by ~1e-8; within this distance of a
# zero, f2 is 0 instead of a sign decided by rounding noise.
ZERO_TOL = 1e-6


@TARGETS.register("f1")
def f1(x: np.ndarray) -> np.ndarray:
    # np.sinc(t) = sin(πt)/(πt), with the limit 1 at t = 0, so f1(0) needs no special case.
    return np.sinc(5.0 * np.asarray(x, dtype=np.float64))


@TARGETS.register("f2")
def f2(x: np.ndarray) -> np.ndarray:
    z = 5.0 * np.asarray(x, dtype=np.float64)
    at_zero = np.abs(z - np.round(z)) < 5.0 * ZERO_TOL
    return np.where(at_zero, 0.0, np.sign(np.sin(np.pi * z)))


def function_dataset(target: str, n_train: int = N_TRAIN, n_test: int = N_TEST) -> Dataset:
    """Train on the grid k/n_train, test on the half-step-shifted grid (module docstring)."""
    f = TARGETS.get(target)  # an unknown name is a UsageError listing the valid ones
    train = _sampled(f, np.arange(1, n_train + 1) / n_train)
    test = _sampled(f, (np.arange(1, n_test + 1) - 0.5) / n_test)
    source = f"target {target} on a grid in (0, 1]: {n_train} train points k/n, {n_test} test points between them"
    return Dataset(target, train, None, test, 0, source, {"target": target})


def _sampled(f, grid: np.ndarray) -> Split:
    x = grid.astype(np.float32)[:, None]
    return as_split(x, f(x).astype(np.float32))


def _loader(target: str):
    def load(data_dir: str | None = None) -> Dataset:
        return function_dataset(target)

    return load


# `functions` is B1's default (f1); `f1` and `f2` name each target directly.
DATASETS.register("functions")(_loader("f1"))
for _name in TARGETS:
    DATASETS.register(_name)(_loader(_name))
