"""Training progress, from wherever a unit runs to the terminal of the process that started it.

The engines call `planned(n)` when a fit starts (members x max epochs) and `trained(n, skipped)`
after every epoch (members that trained it; epochs given up by members that stopped now). Those
calls go to the sink the executor installed around the unit (`reporting`): a callback in this
process, a queue to the parent from a pool worker, a dask event from a cluster worker. Messages
are batched (at most one per FLUSH_S a unit) so that thousands of tiny epochs cost nothing.

In the parent, `StudyProgress` turns them into one tqdm bar per study on a terminal, or into one
line per finished unit and a done line per study when stderr is not a terminal (a log file, CI).
"""

from __future__ import annotations

import contextlib
import re
import sys
import threading
import time
from collections.abc import Callable

from tqdm import tqdm

FLUSH_S = 0.25

# The sink of this process: None outside a unit, so a fit run from a notebook reports nothing.
_sink: "_Batcher | None" = None


class _Batcher:
    """Sums (planned, done) epochs and hands them to `send` at most every FLUSH_S, and at the end."""

    def __init__(self, send: Callable[[int, int], None]):
        self.send, self.planned, self.done, self.last = send, 0, 0, time.monotonic()

    def add(self, planned: int = 0, done: int = 0) -> None:
        self.planned, self.done = self.planned + planned, self.done + done
        if time.monotonic() - self.last >= FLUSH_S:
            self.flush()

    def flush(self) -> None:
        if self.planned or self.done:
            self.send(self.planned, self.done)
        self.planned = self.done = 0
        self.last = time.monotonic()


@contextlib.contextmanager
def reporting(send: Callable[[int, int], None]):
    """Within the block, the engines' epoch counts reach send(planned, done)."""
    global _sink
    previous, _sink = _sink, _Batcher(send)
    try:
        yield
    finally:
        _sink.flush()
        _sink = previous


def planned(epochs: int) -> None:
    """A fit will train at most `epochs` member-epochs."""
    if _sink is not None:
        _sink.add(planned=int(epochs))


def trained(epochs: int, skipped: int = 0) -> None:
    """`epochs` member-epochs are trained; `skipped` planned ones will not be (members stopped early)."""
    if _sink is not None:
        _sink.add(done=int(epochs) + int(skipped))


# ---- the parent's view ---------------------------------------------------------------------

def first_sentence(text: str) -> str:
    """Up to the first full stop that ends a sentence (not the one in '3.1x' or 'e.g.')."""
    match = re.search(r"(?<=[.!?])\s+(?=[A-Z(\"'])", text or "")
    return (text[: match.start()] if match else text or "").strip().rstrip(".")


def verdict_counts(checks: list[dict]) -> str:
    """'3 supported, 1 inconclusive' (an older check's `passed` reads as supported or contradicted)."""
    verdicts = [c.get("verdict") or ("supported" if c.get("passed") else "contradicted") for c in checks]
    return ", ".join(f"{verdicts.count(v)} {v}" for v in ("supported", "contradicted", "inconclusive") if v in verdicts)


def done_line(name: str, seconds: float, results: dict) -> str:
    parts = [first_sentence(results.get("answer", "")), verdict_counts(results.get("checks", []))]
    return " — ".join([f"{name}: done in {seconds:.0f} s", *[p for p in parts if p]])


def _is_terminal(stream) -> bool:
    return bool(getattr(stream, "isatty", lambda: False)())


class StudyProgress:
    """One study's progress: a bar in member-epochs on a terminal, lines otherwise, nothing when quiet.

    Units not started yet are counted at the mean size of those started, so the bar's total (and
    its ETA) is an estimate that firms up as units start; a unit that finishes is complete.
    """

    def __init__(self, name: str, n_units: int, quiet: bool = False, stream=None):
        self.name, self.n_units, self.quiet = name, n_units, quiet
        self.stream = stream or sys.stderr
        self.planned: dict[int, int] = {}
        self.done: dict[int, int] = {}
        self.finished: set[int] = set()
        self.lock = threading.Lock()  # dask calls back from its own thread
        self.terminal = not quiet and _is_terminal(self.stream)
        self.bar, self.closed = None, False  # the bar is made as the study's first unit reports: studies overlap

    def _bar(self):
        if self.bar is None and not self.closed:
            self.bar = tqdm(total=None, desc=self.name, unit="epoch", file=self.stream, dynamic_ncols=True,
                            bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} epochs [{elapsed}<{remaining}, {rate_fmt}]")
        return self.bar

    def say(self, message: str) -> None:
        if self.quiet:
            return
        if self.terminal:  # above every open bar, this study's or another's
            tqdm.write(message, file=self.stream)
        else:
            print(message, file=self.stream, flush=True)

    def update(self, index: int, planned: int, done: int) -> None:
        """Unit `index` reports more planned and done member-epochs (any thread)."""
        with self.lock:
            if index in self.finished:  # a late message: the unit's count is complete already
                return
            self.planned[index] = self.planned.get(index, 0) + planned
            self.done[index] = self.done.get(index, 0) + done
            self._refresh()

    def unit_done(self, index: int, seconds: float | None = None, label: str = "") -> None:
        with self.lock:
            self.planned[index] = max(self.planned.get(index, 0), self.done.get(index, 0))
            self.done[index] = self.planned[index]
            self.finished.add(index)
            self._refresh()
        if not self.terminal:
            took = f" in {seconds:.1f} s" if seconds is not None else ""
            self.say(f"{self.name}: unit {len(self.finished)}/{self.n_units} done{took}{label}")

    def totals(self) -> tuple[int, int | None]:
        """(member-epochs done, estimated total or None before any unit has started)."""
        done = sum(self.done.values())
        if not self.planned:
            return done, None
        mean = sum(self.planned.values()) / len(self.planned)
        unstarted = max(self.n_units - len(self.planned), 0)
        return done, max(done, round(sum(self.planned.values()) + unstarted * mean))

    def _refresh(self) -> None:
        bar = self._bar() if self.terminal else None
        if bar is None:
            return
        done, total = self.totals()
        bar.total = total
        bar.update(done - bar.n)

    def close(self) -> None:
        self.closed = True
        if self.bar is not None:
            self.bar.close()


class PlanProgress:
    """What `dlstudies plan` has timed, as it goes (its slices take minutes): one bar over the kinds of
    unit and the studies' analyses on a terminal; otherwise a line per study as its last kind of unit
    is timed; nothing when quiet. `kinds`: {study: how many kinds of unit it times}."""

    def __init__(self, kinds: dict[str, int], quiet: bool = False, stream=None):
        self.kinds, self.left, self.quiet = dict(kinds), dict(kinds), quiet
        self.stream = stream or sys.stderr
        self.terminal = not quiet and _is_terminal(self.stream)
        self.bar = tqdm(total=sum(kinds.values()) + len(kinds), desc="plan: timing slices", unit="step",
                        file=self.stream, dynamic_ncols=True) if self.terminal else None
        self.start = time.monotonic()

    def kind_done(self, study: str) -> None:
        self.left[study] -= 1
        if self.bar is not None:
            self.bar.update(1)
        elif not self.quiet and self.left[study] == 0:
            finished = sum(not n for n in self.left.values())
            print(f"plan: {study}: {self.kinds[study]} kind(s) of unit timed ({finished}/{len(self.left)} studies, "
                  f"{time.monotonic() - self.start:.0f} s)", file=self.stream, flush=True)

    def study_done(self, study: str) -> None:
        """The study's analysis is timed too."""
        if self.bar is not None:
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
