"""The `dlstudies` command end to end: list, run, report, and a diverged run recorded."""

import json

import matplotlib.figure
import numpy as np
import pytest

import dlstudies.runner
from dlstudies.cli import main

# A run of seconds: the smoke preset cut to 3 epochs on 60 training examples, in this process.
TINY = ["--scale", "smoke", "--seeds", "2", "--set", "max_epochs=3", "--set", "n_train=60", "--workers", "1"]


@pytest.fixture
def no_drawing(monkeypatch):
    """Rendering PNG and SVG costs seconds a run; these tests check what is recorded, not pictures."""
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", lambda self, *a, **k: None)


def test_list_names_every_registered_study(capsys):
    from dlstudies.studies import STUDIES, load_studies
    assert main(["list"]) == 0
    load_studies()
    listed = {line.split()[0] for line in capsys.readouterr().out.splitlines()}
    assert listed == set(STUDIES.names())


def test_help_exits_zero():
    with pytest.raises(SystemExit) as exit_:
        main(["run", "--help"])
    assert exit_.value.code == 0


def test_run_writes_results_and_report_which_rebuilds_without_training(tmp_path, capsys, no_drawing, monkeypatch):
    out = tmp_path / "out"
    assert main(["run", "optimizers", *TINY, "--out", str(out)]) == 0
    results = json.loads((out / "optimizers" / "results.json").read_text())
    assert results["seeds"] == [0, 1] and results["command"].startswith("dlstudies run optimizers")
    assert (out / "summary.md").is_file()
    (out / "report.html").unlink()
    monkeypatch.setattr(dlstudies.runner, "execute_unit", lambda unit: pytest.fail("report trained a unit"))
    assert main(["report", str(out)]) == 0
    assert (out / "report.html").is_file()


def test_report_redraw_draws_the_figures_again_from_results_alone(tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    assert main(["run", "optimizers", *TINY, "--out", str(out)]) == 0
    figures = json.loads((out / "optimizers" / "results.json").read_text())["figures"]
    for name in figures:
        (out / "optimizers" / name).unlink()
    monkeypatch.setattr(dlstudies.runner, "execute_unit", lambda unit: pytest.fail("report trained a unit"))
    assert main(["report", str(out), "--redraw"]) == 0
    assert figures and all((out / "optimizers" / name).stat().st_size > 0 for name in figures)


def test_diverged_run_is_recorded_with_its_epoch_and_the_study_finishes(tmp_path, capsys, no_drawing):
    # Features of size 1e15 through ReLU layers: plain delta's first step overflows float32 (loss
    # inf/NaN); RMSprop's steps are of size lr whatever the gradient, so it stays finite. (A huge
    # learning rate would do it too, but the declared bounds refuse one above 1e3.)
    x = np.random.default_rng(0).normal(size=(80, 4))
    np.savetxt(tmp_path / "big.csv", np.c_[x * 1e15, x[:, 0] > 0], delimiter=",", fmt="%.6g")
    out = tmp_path / "out"
    argv = ["run", "optimizers", *TINY, "--data", str(tmp_path / "big.csv"), "--set", "activation=relu",
            "--set", "rules=delta,rmsprop", "--out", str(out)]
    assert main(argv) == 0
    results = json.loads((out / "optimizers" / "results.json").read_text())
    runs = [(name, r) for name, c in results["conditions"].items() for r in c["runs"]]
    diverged = [(name, r) for name, r in runs if r["diverged"]]
    assert diverged and len(diverged) < len(runs), "expected some, not all, runs to diverge"
    for name, r in diverged:
        assert isinstance(r["diverged_epoch"], int) and r["diverged_epoch"] >= 0
        assert len(r["curves"]["loss"]) == r["diverged_epoch"] + 1  # frozen at the epoch it diverged
        assert set(r["metrics"].values()) == {None}  # broken weights measure nothing
    assert [(d["condition"], d["seed"], d["epoch"]) for d in results["diverged"]] == \
           [(name, r["seed"], r["diverged_epoch"]) for name, r in diverged]
    assert all(r["metrics"]["epochs"] == 3 for name, r in runs if not r["diverged"])  # the others went on
    assert "Diverged runs" in (out / "report.html").read_text()


def test_seeds_default_per_study_and_scale(tmp_path, monkeypatch):
    # Each study declares its own seed count per scale (weight-trajectory: 8 at paper, as report B
    # trained it; minimal-ratio: 20 runs at default); --seeds overrides them all.
    import dlstudies.app as app
    from dlstudies.studies import STUDIES, load_studies

    load_studies()
    declared = {n: STUDIES.get(n).default_seeds("default") for n in ("minimal-ratio", "grad-norm")}
    assert declared == {"minimal-ratio": 20, "grad-norm": 10}

    seen = {}
    monkeypatch.setattr(app, "run_config", lambda name, cfg, scale, n, *a, **k: seen.update({name: n}))
    monkeypatch.setattr("dlstudies.report.render_report", lambda out: out)
    assert main(["run", "minimal-ratio", "grad-norm", "--out", str(tmp_path)]) == 0
    assert seen == declared
    assert main(["run", "minimal-ratio", "grad-norm", "--seeds", "2", "--out", str(tmp_path)]) == 0
    assert seen == {"minimal-ratio": 2, "grad-norm": 2}
    assert main(["run", "weight-trajectory", "--scale", "paper", "--out", str(tmp_path)]) == 0
    assert seen["weight-trajectory"] == 8
