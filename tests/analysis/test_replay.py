"""Measures the plan replays: run as they are outside a plan, timed until known inside one."""

import numpy as np
import pytest
import torch
from torch import nn

from dlstudies.analysis import replay as replay_module
from dlstudies.analysis.replay import REAL_RUNS, cost_key, replayable, replaying


class Clock:
    """A CPU clock the measures advance by what they are said to cost."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    c = Clock()
    monkeypatch.setattr(replay_module.time, "process_time", c)
    return c


def counted(clock, costs):
    """A replayable measure costing costs[i] CPU seconds on its i-th real run; returns (measure, runs)."""
    runs = []

    @replayable
    def norm(model: nn.Module, x: torch.Tensor, steps: int = 1):
        clock.now += costs[len(runs)]
        runs.append(x.clone())
        return {"value": float(model(x).norm()) * steps, "per_sample": model(x).detach().numpy()}

    return norm, runs


def test_outside_a_plan_a_measure_always_runs(clock):
    norm, runs = counted(clock, [1.0] * 5)
    model = nn.Linear(3, 2)
    values = [norm(model, torch.full((4, 3), float(i))) for i in range(4)]
    assert len(runs) == 4
    assert len({v["value"] for v in values}) == 4  # each from its own inputs


def test_a_measure_runs_until_known_then_is_replayed_at_its_least_cost(clock):
    norm, runs = counted(clock, [3.0, 1.0, 2.0, 2.0])
    model, memo = nn.Linear(3, 2), {}
    with replaying(memo) as replay:
        values = [norm(model, torch.randn(4, 3)) for _ in range(5)]
    assert len(runs) == REAL_RUNS == 2
    assert replay.calls == 3 and replay.seconds == pytest.approx(3 * 1.0)  # the least of the real runs
    assert values[2]["value"] == values[1]["value"]  # the last real value
    values[2]["per_sample"][:] = np.nan  # a copy: the memo's value is untouched
    with replaying(memo) as later:  # the memo outlives the block: a later slice of the kind
        again = norm(model, torch.randn(4, 3))
    assert not np.isnan(again["per_sample"]).any()
    assert len(runs) == 2 and later.calls == 1 and later.seconds == pytest.approx(1.0)


def test_inputs_of_other_shapes_or_settings_are_measured_apart(clock):
    norm, runs = counted(clock, [1.0] * 20)
    memo = {}
    with replaying(memo) as replay:
        for _ in range(3):
            norm(nn.Linear(3, 2), torch.randn(4, 3))
            norm(nn.Linear(3, 2), torch.randn(8, 3))  # more samples
            norm(nn.Linear(3, 5), torch.randn(4, 3))  # another model
            norm(nn.Linear(3, 2), torch.randn(4, 3), steps=2)  # another setting
            norm(nn.Linear(3, 2), torch.randn(4, 3, dtype=torch.float64).float())  # same as the first
    assert len(runs) == 4 * REAL_RUNS
    assert replay.calls == 15 - len(runs)


def test_a_measure_inside_a_measure_is_part_of_its_cost(clock):
    inner, inner_runs = counted(clock, [1.0] * 10)

    @replayable
    def outer(model, x):
        clock.now += 0.5
        return [inner(model, x) for _ in range(3)]

    with replaying({}) as replay:
        for _ in range(4):
            outer(nn.Linear(3, 2), torch.randn(4, 3))
    assert len(inner_runs) == 3 * REAL_RUNS  # the inner calls run whenever the outer does
    assert replay.calls == 2 and replay.seconds == pytest.approx(2 * 3.5)


def test_cost_keys_see_shapes_and_settings_not_values():
    a, b = nn.Linear(3, 2), nn.Linear(3, 2)
    with torch.no_grad():
        b.weight += 1
    assert cost_key(a) == cost_key(b)
    assert cost_key(a) != cost_key(nn.Sequential(nn.Linear(3, 2)))
    assert cost_key((torch.zeros(2, 3), 0.5)) == cost_key((torch.ones(2, 3), 0.5))
    assert cost_key((torch.zeros(2, 3), 0.5)) != cost_key((torch.zeros(2, 3), 0.25))
    assert cost_key(np.zeros(5)) != cost_key(np.zeros(6))
    assert cost_key({"x": torch.zeros(2)}) != cost_key({"y": torch.zeros(2)})
    assert cost_key(torch.nn.functional.mse_loss) != cost_key(torch.nn.functional.cross_entropy)
