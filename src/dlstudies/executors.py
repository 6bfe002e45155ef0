"""Executors: run work units in this process, in a pool of processes, or on a dask cluster.

A backend is opened once per command, `with EXECUTORS.get(name)(workers=N, **options) as execute:`,
so a process pool or a dask cluster is started (or reached) once for all the studies of a run,
and an unreachable scheduler fails before anything is written. `execute(fn, items)` yields
`(item, fn(item))` as units finish, in any order: the runner stores each result the moment it
arrives, so an interruption loses only the units still running.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import multiprocessing
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed

import torch

from dlstudies.errors import UsageError
from dlstudies.registry import Registry

EXECUTORS: Registry = Registry("backend")

# One thread per unit always: results then do not depend on how many workers share the cores,
# and tiny networks run fastest single-threaded anyway.
THREADS_PER_UNIT = 1


def _init_worker() -> None:
    torch.set_num_threads(THREADS_PER_UNIT)


def _init_pool_worker() -> None:
    _init_worker()
    # Ctrl-C reaches the whole process group; the parent alone handles it (by ending the pool),
    # so workers do not each print a KeyboardInterrupt traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextlib.contextmanager
def _sigint_ignored():
    """Workers started in here inherit SIGINT ignored from birth, so a Ctrl-C while they still
    import torch (before the initializer runs) cannot print their tracebacks either."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers belong to the main thread
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _call(fn: Callable, item):
    return item, fn(item)


def check_workers(workers: int) -> None:
    if workers < 1:
        raise UsageError(f"--workers must be >= 1, got {workers}")


# ---- local ---------------------------------------------------------------------------------

@EXECUTORS.register("local")
@contextlib.contextmanager
def local(workers: int = 1, **_) -> Iterator[Callable]:
    """In this process for one worker; else a spawn-started process pool, shared by all studies."""
    check_workers(workers)
    if workers == 1:
        yield _in_process
        return
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_init_pool_worker)
    try:
        yield functools.partial(_in_pool, pool)
    except BaseException:
        _abandon(pool)
        raise
    pool.shutdown()


def _in_process(fn: Callable, items: Sequence) -> Iterator:
    _init_worker()
    return (_call(fn, item) for item in items)


def _in_pool(pool: ProcessPoolExecutor, fn: Callable, items: Sequence) -> Iterator:
    if len(items) <= 1:  # starting a worker (it imports torch) costs more than one small unit
        yield from _in_process(fn, items)
        return
    with _sigint_ignored():  # submit starts the workers
        futures = [pool.submit(_call, fn, item) for item in items]
    for future in as_completed(futures):
        yield future.result()


def _abandon(pool: ProcessPoolExecutor) -> None:
    """End the pool now: after Ctrl-C or a failed unit, waiting for the running units (minutes,
    perhaps) helps nobody; the finished ones are stored already."""
    terminate = getattr(pool, "terminate_workers", None)  # Python >= 3.14
    if terminate is not None:
        terminate()
        return
    # Before 3.14 there is no public way; shutdown() forgets the processes, so take them first.
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.terminate()


# ---- dask ----------------------------------------------------------------------------------

@EXECUTORS.register("dask")
@contextlib.contextmanager
def dask(workers: int = 1, scheduler: str | None = None, **_) -> Iterator[Callable]:
    """dask.distributed: the cluster at `scheduler`, else a LocalCluster of `workers` processes."""
    check_workers(workers)
    with _dask_client(scheduler, workers) as client:
        yield functools.partial(_on_dask, client)


def _on_dask(client, fn: Callable, items: Sequence) -> Iterator:
    # dask is imported only when asked for: the local backend never pays for it.
    from dask.distributed import as_completed as dask_completed

    futures = {client.submit(_single_threaded, fn, item, pure=False): item for item in items}
    try:
        for future in dask_completed(futures):
            yield futures[future], future.result()
    finally:
        client.cancel(list(futures))  # a failed unit or Ctrl-C leaves no work queued on the cluster


def _single_threaded(fn: Callable, item):
    # Set per task, not per worker: workers that join later (an adaptive Slurm cluster) get it too.
    _init_worker()
    return fn(item)


@contextlib.contextmanager
def _dask_client(scheduler: str | None, workers: int):
    from dask.distributed import Client, LocalCluster

    with contextlib.ExitStack() as stack:
        if scheduler is None:
            # Port 0: any free port (the default, 8787, clashes with a second run or a notebook's cluster).
            cluster = stack.enter_context(LocalCluster(
                n_workers=workers, processes=True, threads_per_worker=1, dashboard_address=":0",
                silence_logs=logging.ERROR))
            scheduler = cluster.scheduler_address
        yield stack.enter_context(_connect(Client, scheduler))


def _connect(client_class, address: str):
    try:
        return client_class(address)
    except (OSError, ValueError, TypeError) as err:  # unreachable (OSError, TimeoutError) or not an address
        raise UsageError(f"--scheduler: cannot reach a dask scheduler at '{address}' ({err})") from None
