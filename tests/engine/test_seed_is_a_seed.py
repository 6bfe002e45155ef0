"""Through the CLI: a seed's numbers do not depend on how many seeds or which other rules are asked for."""

import json

import matplotlib.figure
import pytest

from dlstudies.cli import main

BASE = ["run", "optimizers", "--scale", "smoke", "--set", "max_epochs=4", "--set", "n_train=60", "--workers", "1"]


@pytest.fixture
def no_drawing(monkeypatch):
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", lambda self, *a, **k: None)


def _runs(out, *extra) -> dict:
    assert main([*BASE, *extra, "--out", str(out)]) == 0
    data = json.loads((out / "optimizers" / "results.json").read_text())
    return {(rule, r["seed"]): r for rule, c in data["conditions"].items() for r in c["runs"]}


def test_seeds_0_and_1_alike_with_2_or_4_seeds_and_with_or_without_other_rules(tmp_path, no_drawing):
    two = _runs(tmp_path / "two", "--seeds", "2")
    four = _runs(tmp_path / "four", "--seeds", "4")
    alone = _runs(tmp_path / "adam", "--seeds", "2", "--set", "rules=adam")
    assert len(four) == 2 * len(two) == 20
    for key, run in two.items():
        assert four[key] == run, key
    assert alone.keys() == {("adam", 0), ("adam", 1)}
    for key, run in alone.items():
        assert two[key] == run, key
    assert two[("adam", 0)]["metrics"]["final_loss"] is not None
