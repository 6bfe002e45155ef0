"""The `dlstudies` command end to end: list, run, report, and a diverged run recorded."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import matplotlib.figure
import numpy as np
import pytest

import dlstudies
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


def _help(argv, capsys) -> str:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("command", ["list", "data", "run", "report"])
def test_every_command_has_help_with_examples(command, capsys):
    text = _help([command, "--help"], capsys)
    assert "Examples:" in text and f"dlstudies {command}" in text.split("Examples:")[1]


def test_run_help_describes_every_flag_and_ends_with_examples(capsys):
    text = _help(["run", "--help"], capsys)
    for flag in ("--scale", "--set", "--out", "--seeds", "--quiet", "--workers"):
        assert flag in text
    for described in ("preset size", "KEY=VALUE", "output folder"):
        assert described in text
    tail = text[text.rindex("Examples:"):]  # the last section: after every flag
    assert text.rindex("Examples:") > text.rindex("--quiet")  # the last flag listed
    assert tail.count("  dlstudies run ") >= 3


def test_top_level_help_and_no_arguments_show_the_run_flags(capsys):
    text = _help(["--help"], capsys)
    assert "--scale" in text and "Examples:" in text
    assert main([]) == 0
    assert capsys.readouterr().out == text


@pytest.mark.parametrize("argv, suggestion", [
    (["run", "optimizer"], "did you mean 'optimizers'?"),
    (["run", "normalisation"], "did you mean 'normalization'?"),
    (["run", "optimizers", "--data", "digits63"], "did you mean 'digits36'"),
    (["run", "optimizers", "--backend", "dsak"], "did you mean 'dask'?")])
def test_misspelt_names_get_did_you_mean(argv, suggestion, capsys, tmp_path):
    assert main([*argv, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert suggestion in err and len(err.strip().splitlines()) == 1


def test_a_log_gets_a_line_per_unit_a_done_line_per_study_and_the_report_url(tmp_path, capsys, no_drawing):
    out = tmp_path / "out"
    assert main(["run", "optimizers", *TINY, "--set", "seed_chunk=1", "--set", "separation_epochs=0",
                 "--out", str(out)]) == 0  # one unit per seed
    captured = capsys.readouterr()
    assert "optimizers: unit 1/2 done" in captured.err and "optimizers: unit 2/2 done" in captured.err
    answer = json.loads((out / "optimizers" / "results.json").read_text())["answer"]
    done = [line for line in captured.err.splitlines() if line.startswith("optimizers: done in ")]
    assert len(done) == 1 and answer.split(";")[0][:30] in done[0]
    last = captured.out.strip().splitlines()[-1]
    assert last.startswith(f"report: {(out / 'report.html').resolve().as_uri()} (") and last.endswith(" s)")


def test_quiet_prints_only_the_report_line(tmp_path, capsys, no_drawing):
    assert main(["run", "optimizers", *TINY, "--quiet", "--out", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out.startswith("report: file://")


def _interrupt(tmp_path, signum) -> tuple[int, str]:
    """A pool run stopped by `signum` once its first study is under way: (exit code, stderr)."""
    env = {**os.environ, "PYTHONPATH": str(Path(dlstudies.__file__).parents[1])}
    argv = [sys.executable, "-m", "dlstudies", "run", "normalization", "--workers", "2", "--estimate", "--out", str(tmp_path)]
    # As from a terminal: a test run started in the background may hold SIGINT ignored, which a child inherits.
    proc = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    first = ""  # the estimate's lines, then "normalization: 3 units, ... 3 to run": the pool is starting
    while not first.splitlines()[-1:] or not first.splitlines()[-1].startswith("normalization: "):
        line = proc.stderr.readline()
        if not line:
            break
        first += line
    time.sleep(1.0)
    os.killpg(proc.pid, signum)  # as Ctrl-C and `timeout` do: the whole process group
    rest = proc.communicate(timeout=180)[1]  # a hang, not a slow pool start on a loaded machine
    return proc.returncode, first + rest


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_an_interrupted_run_exits_with_the_signal_code_a_resume_line_and_no_warnings(tmp_path, signum, code):
    returncode, err = _interrupt(tmp_path, signum)
    assert returncode == code, err
    lines = err.strip().splitlines()
    plan = lines.index("estimate:")  # run prints its plan first, after its slices' progress
    assert all(x.startswith("plan: ") for x in lines[:plan]) and any(x.startswith("total: ") for x in lines[plan:])
    assert next(x for x in lines if x.startswith("normalization: ")).startswith("normalization: 3 units")
    assert lines[-1] == "dlstudies: interrupted — run the same command again to resume (0 units kept)"
    assert not [line for line in lines if "arning" in line or "Traceback" in line or "leaked" in line], err


def _blocked_signals(out):
    out.put(signal.pthread_sigmask(signal.SIG_BLOCK, []))


def test_a_ctrl_c_while_the_workers_start_still_interrupts_and_the_workers_are_born_deaf_to_it():
    """Workers start inside `_sigint_held`: they inherit SIGINT blocked (their initializer ignores
    it, then unblocks it), while a SIGINT sent to this process then is raised here, not lost."""
    import multiprocessing

    from dlstudies.executors import _sigint_held

    context = multiprocessing.get_context("spawn")
    seen = context.Queue()
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # as from a terminal, however pytest started
    try:
        with pytest.raises(KeyboardInterrupt):
            with _sigint_held():
                child = context.Process(target=_blocked_signals, args=(seen,))
                child.start()
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.2)  # held in this thread: delivered as the block lifts
            time.sleep(1.0)  # (a signal that reached another thread is raised here at once)
    finally:
        signal.signal(signal.SIGINT, previous)
    child.join(timeout=60)
    assert signal.SIGINT in seen.get(timeout=60)
    assert signal.SIGINT not in signal.pthread_sigmask(signal.SIG_BLOCK, [])  # the block lifted


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
    assert all(len(r["curves"]["loss"]) == 3 for name, r in runs if not r["diverged"])  # the others went on
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
    monkeypatch.setattr(app, "run_configs", lambda studies, *a, **k: seen.update({n: s for n, (_, s) in studies.items()}))
    monkeypatch.setattr("dlstudies.report.render_report", lambda out: out)
    assert main(["run", "minimal-ratio", "grad-norm", "--out", str(tmp_path)]) == 0
    assert seen == declared
    assert main(["run", "minimal-ratio", "grad-norm", "--seeds", "2", "--out", str(tmp_path)]) == 0
    assert seen == {"minimal-ratio": 2, "grad-norm": 2}
    assert main(["run", "weight-trajectory", "--scale", "paper", "--out", str(tmp_path)]) == 0
    assert seen["weight-trajectory"] == 8
