"""Progress: the engines' epoch counts reach the parent's bar from every executor; the lines a log gets."""

import io
import threading
import time

import pytest
import torch

from dlstudies import progress
from dlstudies.engine import ENGINES, StopRule, TrainSpec
from dlstudies.executors import EXECUTORS
from dlstudies.models.builders import build_members, mlp
from dlstudies.optim import OptSpec
from dlstudies.progress import StudyProgress, done_line, first_sentence, verdict_counts


def _epochs(n: int) -> int:
    """A unit that plans n epochs and trains them one by one, slowly enough for the batcher to flush."""
    progress.planned(n)
    for _ in range(n):
        progress.trained(1)
        time.sleep(progress.FLUSH_S / 2)
    return n


class _Seen:
    def __init__(self):
        self.lock, self.planned, self.done, self.calls = threading.Lock(), {}, {}, 0

    def __call__(self, index, planned, done):
        with self.lock:
            self.planned[index] = self.planned.get(index, 0) + planned
            self.done[index] = self.done.get(index, 0) + done
            self.calls += 1


def _collect(execute, items):
    seen = _Seen()
    results = dict(execute(_epochs, items, seen))
    time.sleep(0.5)  # dask events may trail the results a little
    return seen, results


@pytest.mark.parametrize("backend, workers", [("local", 1), ("local", 2)])
def test_epoch_counts_reach_the_parent_from_process_and_pool(backend, workers):
    with EXECUTORS.get(backend)(workers=workers) as execute:
        seen, results = _collect(execute, [4, 6])
    assert results == {4: 4, 6: 6}
    assert seen.planned == {0: 4, 1: 6} and seen.done == {0: 4, 1: 6}
    assert seen.calls > 2, "counts arrive while a unit trains, not only when it ends"


def test_epoch_counts_reach_the_parent_from_dask_workers():
    pytest.importorskip("distributed")
    with EXECUTORS.get("dask")(workers=2) as execute:
        seen, _ = _collect(execute, [4, 6])
    assert seen.planned == {0: 4, 1: 6} and seen.done == {0: 4, 1: 6}


@pytest.mark.parametrize("engine", ["batched", "reference"])
def test_engine_reports_planned_and_trained_epochs_including_those_given_up(engine):
    # A huge tolerance stops every member at its second epoch: 2 x 5 planned, 2 x 2 trained, 2 x 3 given up.
    x, y = torch.randn(8, 3), torch.randint(0, 2, (8,))
    counts = []
    spec = TrainSpec(StopRule(max_epochs=5, tolerance=1e9), batch_size=4)
    with progress.reporting(lambda planned, done: counts.append((planned, done))):
        members = build_members(lambda: mlp([3, 4, 2]), [0, 1])
        fit = ENGINES.get(engine)(members, [OptSpec("delta", 0.1)] * 2, x, y, spec, [0, 1])
    assert fit.epochs.tolist() == [2, 2]
    assert sum(p for p, _ in counts) == 10 == sum(d for _, d in counts)


def test_study_progress_estimates_unstarted_units_and_completes_finished_ones():
    shown = StudyProgress("demo", 4, stream=io.StringIO())
    assert shown.totals() == (0, None)
    shown.update(0, 100, 30)
    assert shown.totals() == (30, 400)  # three more units of the same size
    shown.unit_done(0, 1.0)  # stopped early: its planned epochs count as done
    shown.update(0, 0, 5)  # a late message after the result is ignored
    assert shown.totals() == (100, 400)
    assert "demo: unit 1/4 done in 1.0 s" in shown.stream.getvalue()


def test_quiet_prints_nothing():
    stream = io.StringIO()
    shown = StudyProgress("demo", 1, quiet=True, stream=stream)
    shown.say("hello")
    shown.unit_done(0, 1.0)
    assert stream.getvalue() == ""


@pytest.mark.parametrize("text, first", [
    ("Yes — BatchNorm reached 99% 3.1x sooner [2.4x, 4.0x]. Then more.", "Yes — BatchNorm reached 99% 3.1x sooner [2.4x, 4.0x]"),
    ("No — adam (p = 0.03), e.g. on f1.", "No — adam (p = 0.03), e.g. on f1"),
    ("", "")])
def test_first_sentence(text, first):
    assert first_sentence(text) == first


def test_verdict_counts_and_done_line():
    checks = [{"verdict": "supported"}] * 3 + [{"verdict": "inconclusive"}]
    assert verdict_counts(checks) == "3 supported, 1 inconclusive"
    assert verdict_counts([{"passed": True}, {"passed": False}]) == "1 supported, 1 contradicted"
    assert verdict_counts([]) == ""
    line = done_line("normalization", 41.2, {"answer": "Yes — faster. More.", "checks": checks})
    assert line == "normalization: done in 41 s — Yes — faster — 3 supported, 1 inconclusive"


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_on_a_terminal_the_bar_counts_member_epochs_with_rate_and_eta():
    stream = _Terminal()
    shown = StudyProgress("demo", 2, stream=stream)
    shown.update(0, 50, 10)
    assert (shown.bar.n, shown.bar.total) == (10, 100)
    shown.unit_done(0)
    shown.update(1, 50, 25)
    assert (shown.bar.n, shown.bar.total) == (75, 100)
    shown.bar.refresh()
    text = stream.getvalue()
    assert "75/100 epochs" in text and "epoch/s" in text and "<" in text  # elapsed<remaining
    assert "unit 1/2 done" not in text  # no per-unit lines under a bar
    shown.close()


def test_a_plan_says_each_study_once_its_last_kind_is_timed_and_nothing_when_quiet():
    log = io.StringIO()
    plan = progress.PlanProgress({"a": 2, "b": 1}, stream=log)
    for study in ("a", "b", "a"):
        plan.kind_done(study)
    plan.study_done("a")
    plan.close()
    lines = log.getvalue().splitlines()
    assert [line.split(":")[1].strip() for line in lines] == ["b", "a"]
    assert "1 kind(s) of unit timed (1/2 studies" in lines[0] and "2 kind(s) of unit timed (2/2 studies" in lines[1]
    quiet = io.StringIO()
    plan = progress.PlanProgress({"a": 1}, quiet=True, stream=quiet)
    plan.kind_done("a")
    plan.study_done("a")
    assert quiet.getvalue() == ""
