"""Executors: run work units in this process, in a pool of processes, or on a dask cluster.

A backend is opened once per command, `with EXECUTORS.get(name)(workers=N, **options) as execute:`,
so a process pool or a dask cluster is started (or reached) once for all the studies of a run,
and an unreachable scheduler fails before anything is written. `execute(fn, items)` yields
`(item, fn(item))` as units finish, in any order: the runner stores each result the moment it
arrives, so an interruption loses only the units still running.

`execute(fn, items, progress)` also forwards the engines' epoch counts (dlstudies.progress) to
`progress(index, planned, done)` in this process, index being the item's position: directly in
process, through a queue from pool workers, as dask events from a cluster's workers.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import multiprocessing
import queue
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed

import torch

from dlstudies import progress as _progress
from dlstudies.errors import UsageError
from dlstudies.registry import Registry

EXECUTORS: Registry = Registry("backend")

# One thread per unit always: results then do not depend on how many workers share the cores,
# and tiny networks run fastest single-threaded anyway.
THREADS_PER_UNIT = 1


def _init_worker() -> None:
    torch.set_num_threads(THREADS_PER_UNIT)


Progress = Callable[[int, int, int], None]  # (item index, planned, done) member-epochs

# A pool worker's end of the progress queue (set by its initializer).
_QUEUE = None


def _init_pool_worker(channel=None) -> None:
    global _QUEUE
    _init_worker()
    _QUEUE = channel
    # Ctrl-C reaches the whole process group; the parent alone handles it (by ending the pool),
    # so workers do not each print a KeyboardInterrupt traceback. Born with SIGINT blocked
    # (_sigint_held), a worker ignores it before unblocking it: one sent meanwhile is dropped.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


@contextlib.contextmanager
def _sigint_held():
    """Workers started in here are born with SIGINT blocked (a process inherits its parent's
    signal mask), so a Ctrl-C while they still import torch, before their initializer runs, cannot
    print their tracebacks. This process is interrupted still: a SIGINT that arrives meanwhile
    reaches another of its threads at once, or this one as the block lifts (ignoring it here, as
    before, lost a Ctrl-C sent while a loaded machine started the workers)."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _call(fn: Callable, item, send: Callable[[int, int], None] | None = None):
    if send is None:
        return item, fn(item)
    with _progress.reporting(send):
        return item, fn(item)


def _to_queue(token: str, index: int, planned: int, done: int) -> None:
    _QUEUE.put((token, index, planned, done))


def _call_in_pool(fn: Callable, item, token: str | None, index: int):
    send = functools.partial(_to_queue, token, index) if token and _QUEUE is not None else None
    return _call(fn, item, send)


class _Relay:
    """The parent's end of the pool's progress queue: a thread hands each message to the callback
    of the execute() call it belongs to."""

    def __init__(self, context):
        self.queue, self.callbacks, self.stop = context.Queue(), {}, threading.Event()
        self.busy = threading.Lock()  # held while a message is taken and handed on
        self.thread = threading.Thread(target=self._drain, name="dlstudies-progress", daemon=True)
        self.thread.start()

    def _drain(self) -> None:
        # Polled, never ended by a message: a worker terminated while writing may hold the queue's
        # write lock for good, and the parent must still be able to stop.
        while not self.stop.is_set():
            with self.busy:
                try:
                    token, index, planned, done = self.queue.get(timeout=0.1)
                except queue.Empty:
                    continue
                except (EOFError, OSError):  # the pool is gone
                    return
                callback = self.callbacks.get(token)
                if callback is not None:
                    callback(index, planned, done)

    def settle(self, timeout: float = 1.0) -> None:
        """Wait (a little) until the messages already sent are handed on: a unit's last count may
        trail its result."""
        end = time.monotonic() + timeout
        while not self.queue.empty() and time.monotonic() < end:
            time.sleep(0.01)
        with self.busy:
            pass

    @contextlib.contextmanager
    def channel(self, progress: Progress | None):
        if progress is None:
            yield None
            return
        token = uuid.uuid4().hex
        self.callbacks[token] = progress
        try:
            yield token
            self.settle()
        finally:
            self.callbacks.pop(token, None)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        self.queue.close()
        self.queue.cancel_join_thread()  # this end never writes


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
    context = multiprocessing.get_context("spawn")
    relay = _Relay(context)
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_init_pool_worker, initargs=(relay.queue,))
    try:
        yield functools.partial(_in_pool, pool, relay)
    except BaseException:
        _abandon(pool)
        raise
    finally:
        relay.close()
    pool.shutdown()


def _in_process(fn: Callable, items: Sequence, progress: Progress | None = None) -> Iterator:
    _init_worker()
    for index, item in enumerate(items):
        yield _call(fn, item, functools.partial(progress, index) if progress else None)


def _in_pool(pool: ProcessPoolExecutor, relay: _Relay, fn: Callable, items: Sequence,
             progress: Progress | None = None) -> Iterator:
    if len(items) <= 1:  # starting a worker (it imports torch) costs more than one small unit
        yield from _in_process(fn, items, progress)
        return
    with relay.channel(progress) as token:
        with _sigint_held():  # submit starts the workers
            futures = [pool.submit(_call_in_pool, fn, item, token, i) for i, item in enumerate(items)]
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


def _on_dask(client, fn: Callable, items: Sequence, progress: Progress | None = None) -> Iterator:
    # dask is imported only when asked for: the local backend never pays for it.
    from dask.distributed import as_completed as dask_completed

    topic = f"dlstudies-progress-{uuid.uuid4().hex}" if progress else None
    if topic:  # the handler runs in the client's thread as each worker's event arrives
        client.subscribe_topic(topic, lambda event: progress(*event[1]))
    futures = {client.submit(_single_threaded, fn, item, topic, i, pure=False): item for i, item in enumerate(items)}
    try:
        for future in dask_completed(futures):
            yield futures[future], future.result()
    finally:
        client.cancel(list(futures))  # a failed unit or Ctrl-C leaves no work queued on the cluster
        if topic:
            client.unsubscribe_topic(topic)


def _single_threaded(fn: Callable, item, topic: str | None = None, index: int = 0):
    # Set per task, not per worker: workers that join later (an adaptive Slurm cluster) get it too.
    _init_worker()
    if topic is None:
        return fn(item)
    from dask.distributed import get_worker

    worker = get_worker()
    return _call(fn, item, lambda planned, done: worker.log_event(topic, [index, planned, done]))[1]


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
