"""Executors: run work units in this process or in a pool of processes, yielding as they finish."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Callable, Iterator, Sequence

import torch

from dlstudies.errors import UsageError
from dlstudies.registry import Registry

EXECUTORS: Registry = Registry("backend")

# One thread per unit always: results then do not depend on how many workers share the cores,
# and tiny networks run fastest single-threaded anyway.
THREADS_PER_UNIT = 1


def _init_worker() -> None:
    torch.set_num_threads(THREADS_PER_UNIT)


def _call(fn: Callable, item):
    return item, fn(item)


@EXECUTORS.register("local")
def local(fn: Callable, items: Sequence, workers: int = 1, **_) -> Iterator:
    """In-process for one worker; a spawn-started process pool for more."""
    if workers < 1:
        raise UsageError(f"--workers must be >= 1, got {workers}")
    if workers == 1 or len(items) <= 1:
        _init_worker()
        yield from (_call(fn, item) for item in items)
        return
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker) as pool:
        futures = [pool.submit(_call, fn, item) for item in items]
        for future in as_completed(futures):
            yield future.result()
