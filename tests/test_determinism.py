"""Determinism: the same command gives the same results.json, and the number of local workers
changes nothing but the wall-clock time."""

import json
import shutil
from pathlib import Path

import matplotlib.figure
import pytest

from dlstudies.cli import main

# Two one-seed units: with --workers 2 each goes to its own process.
ARGS = ["run", "optimizers", "--scale", "smoke", "--seeds", "2", "--set", "max_epochs=3", "--set", "n_train=60",
        "--set", "seed_chunk=1"]
TIMES = {"elapsed_s", "compute_s"}  # wall-clock, never equal between runs


@pytest.fixture
def no_drawing(monkeypatch):
    """Rendering PNG and SVG costs seconds a run; these tests compare numbers, not pictures."""
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", lambda self, *a, **k: None)


def results(out: Path, ignore: set = frozenset()) -> dict:
    data = json.loads((out / "optimizers" / "results.json").read_text())
    return {k: v for k, v in data.items() if k not in TIMES | ignore}


def test_the_same_command_twice_gives_identical_results(tmp_path, capsys, no_drawing):
    argv = [*ARGS, "--workers", "1", "--out", str(tmp_path / "out")]
    assert main(argv) == 0
    first = results(tmp_path / "out")
    shutil.rmtree(tmp_path / "out")  # else the second run would only resume the first
    assert main(argv) == 0
    assert "0 resumed" in capsys.readouterr().err
    assert results(tmp_path / "out") == first
    assert first["conditions"]["adam"]["runs"][0]["metrics"]["final_loss"] is not None  # numbers, not nulls


def test_two_local_workers_give_the_results_of_one(tmp_path, no_drawing):
    # The command differs (--workers, --out); every number must not.
    assert main([*ARGS, "--workers", "1", "--out", str(tmp_path / "one")]) == 0
    assert main([*ARGS, "--workers", "2", "--out", str(tmp_path / "two")]) == 0
    assert results(tmp_path / "two", {"command"}) == results(tmp_path / "one", {"command"})


def test_reference_engine_gives_the_same_per_seed_results(tmp_path, capsys, no_drawing):
    # The batched engine (fused path here) and one nn.Module + torch.optim per member, in float32:
    # the same epochs and, to float32 rounding, the same losses and accuracies for every rule and seed.
    runs = {}
    for engine in ("batched", "reference"):
        assert main([*ARGS, "--engine", engine, "--workers", "1", "--out", str(tmp_path / engine)]) == 0
        data = results(tmp_path / engine)
        runs[engine] = {(c, r["seed"]): r["metrics"] for c, v in data["conditions"].items() for r in v["runs"]}
    assert runs["batched"].keys() == runs["reference"].keys() and len(runs["batched"]) == 10
    for key, ours in runs["batched"].items():
        ref = runs["reference"][key]
        assert ours["stop_rule_epochs"] == ref["stop_rule_epochs"], key
        assert ours["final_loss"] == pytest.approx(ref["final_loss"], rel=1e-4), key
        for split in ("train_acc", "val_acc", "test_acc"):
            assert ours[split] == pytest.approx(ref[split], abs=0.02), (key, split)
