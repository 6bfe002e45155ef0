"""Interruption: kill -9 or Ctrl-C at any moment, then the same command again, resumes from the
stored units and ends with the results of an uninterrupted run."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import matplotlib.figure
import pytest

from dlstudies.cli import main
from dlstudies.store import UnitStore

# Six one-seed units of a fraction of a second each: a kill lands between units, not after all.
ARGS = ["run", "optimizers", "--scale", "smoke", "--seeds", "6", "--set", "max_epochs=3", "--set", "n_train=60",
        "--set", "seed_chunk=1", "--set", "separation_epochs=0"]  # one unit per seed
TIMES = {"elapsed_s", "compute_s"}  # wall-clock, never equal between runs


@pytest.fixture
def no_drawing(monkeypatch):
    """Rendering PNG and SVG costs seconds a run; these tests compare numbers, not pictures."""
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", lambda self, *a, **k: None)


def numbers(out: Path) -> dict:
    """results.json without wall-clock times, and without the command (it names the --out folder)."""
    results = json.loads((out / "optimizers" / "results.json").read_text())
    return {k: v for k, v in results.items() if k not in TIMES | {"command"}}


@pytest.fixture
def spawn():
    """Start `python -m dlstudies ARGV` in a session of its own (a signal to the group reaches the run
    and its workers, as a terminal's Ctrl-C does); whatever is left of it is killed at the end."""
    started = []

    def start(argv: list[str]) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-m", "dlstudies", *argv], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()


def wait_for_a_unit(proc: subprocess.Popen, units: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not any(units.glob("*.json")):
        assert proc.poll() is None, f"the run ended before a unit was stored: {proc.communicate()[1]}"
        assert time.monotonic() < deadline, "no unit stored in time"
        time.sleep(0.02)


def rerun(out: Path, capsys) -> str:
    assert main([*ARGS, "--workers", "1", "--out", str(out)]) == 0
    return capsys.readouterr().err


def test_kill_9_mid_run_then_the_same_command_resumes_to_the_same_results(tmp_path, capsys, no_drawing, spawn):
    out, units = tmp_path / "out", tmp_path / "out" / "optimizers" / "units"
    proc = spawn([*ARGS, "--workers", "1", "--out", str(out)])
    wait_for_a_unit(proc, units)
    proc.kill()  # SIGKILL: no handler runs, no clean-up
    proc.wait()
    assert not (out / "optimizers" / "results.json").exists(), "the kill came too late to test a resume"
    done = len(list(units.glob("*.json")))
    err = rerun(out, capsys)
    assert f"6 units, {done} resumed from {units}, {6 - done} to run" in err
    assert main([*ARGS, "--workers", "1", "--out", str(tmp_path / "uninterrupted")]) == 0
    assert numbers(out) == numbers(tmp_path / "uninterrupted")


def test_ctrl_c_stops_a_process_pool_run_at_once_without_traceback(tmp_path, spawn):
    # Units of many seconds (no tolerance stop), interrupted while the workers start or train:
    # the run must end now, not when they finish, and print one line, not a traceback per worker.
    proc = spawn(["run", "optimizers", "--scale", "smoke", "--seeds", "2", "--set", "max_epochs=2000",
                  "--set", "tolerance=0", "--set", "n_train=60", "--set", "seed_chunk=1", "--workers", "2",
                  "--out", str(tmp_path / "out")])
    assert any("to run" in line for line in proc.stderr), "the run ended before its units started"
    time.sleep(1.0)
    os.killpg(proc.pid, signal.SIGINT)
    sent = time.monotonic()
    err = proc.communicate(timeout=60)[1]
    assert proc.returncode == 130, err
    assert time.monotonic() - sent < 10, "Ctrl-C waited for the running units"
    assert "Traceback" not in err and "run the same command again to resume" in err


def test_a_damaged_unit_file_is_recomputed_not_trusted(tmp_path):
    store = UnitStore(tmp_path)
    store.save("k", {"runs": [1.5]})
    assert store.load("k") == {"runs": [1.5]}
    store.path("k").write_text('{"runs": [1.')  # as a crash outside dlstudies' atomic write might leave it
    assert store.load("k") is None
    assert store.load("absent") is None


def test_a_unit_key_names_the_engine_paths_this_machine_offers(monkeypatch):
    from dlstudies.config import Runtime
    from dlstudies.engine import kernel
    from dlstudies.runner import key_of
    from dlstudies.studies import STUDIES, load_studies

    load_studies()
    study = STUDIES.get("grad-norm")
    unit = study.work_units(study.presets["smoke"], (0,), Runtime())[0]
    with_kernel = key_of(unit)
    monkeypatch.setattr(kernel, "compiler", lambda: None)  # no compiler: only the fallback path runs
    assert key_of(unit) != with_kernel
