"""One writer per output folder: a second run on the same --out waits for the first (and then
trains nothing the first stored) or, with --no-wait, exits 2 naming it; the lock of a dead run is
taken over; the lock is held from before the first unit trains until report.html is written."""

import fcntl
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import dlstudies.app
import dlstudies.runner
from dlstudies.cli import main
from dlstudies.lock import LOCK_NAME, holder_pid, output_lock
from hostile_inputs import clean
from test_resume import ARGS, no_drawing, spawn, wait_for_a_unit  # noqa: F401  (fixtures)

RUN = [*ARGS, "--workers", "1"]

HOLD = """
import sys, time
from pathlib import Path
from dlstudies.lock import output_lock
with output_lock(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


@pytest.fixture
def holder():
    """`holder(out, seconds)`: another process that holds the lock of `out` for `seconds`."""
    started = []

    def start(out: Path, seconds: float) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-c", HOLD, str(out), str(seconds)], stdout=subprocess.PIPE, text=True)
        started.append(proc)
        assert proc.stdout.readline() == "held\n"
        return proc

    yield start
    for proc in started:
        proc.kill()
        proc.communicate()


def is_locked(out: Path) -> bool:
    """Whether some open file description holds the lock (a new one of our own conflicts with it too)."""
    fd = os.open(out / LOCK_NAME, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def test_no_wait_exits_2_naming_the_other_run(tmp_path, capsys, holder, monkeypatch):
    monkeypatch.setattr(dlstudies.runner, "execute_unit", lambda unit: pytest.fail("trained while another run writes"))
    out = tmp_path / "out"
    other = holder(out, 60)
    assert main([*RUN, "--no-wait", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert clean(err), err
    assert err == (f"dlstudies: error: --out {out}: another dlstudies run (pid {other.pid}) is writing this folder; "
                   "wait for it to end (run without --no-wait), or use another --out\n")
    assert not (out / "optimizers").exists()


def test_a_second_run_waits_with_one_line_then_runs(tmp_path, capsys, no_drawing, holder):
    out = tmp_path / "out"
    other = holder(out, 2)
    assert main([*RUN, "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert err.count("waiting") == 1
    assert f"dlstudies: waiting for the other dlstudies run (pid {other.pid}) that writes {out} to end\n" in err
    assert other.wait(timeout=60) == 0 and "6 units, 0 resumed" in err


def test_two_runs_on_one_folder_train_each_unit_once(tmp_path, capsys, no_drawing, spawn):
    out = tmp_path / "out"
    first = spawn([*RUN, "--out", str(out)])
    wait_for_a_unit(first, out / "optimizers" / "units")  # the first run holds the lock and trains
    assert main([*RUN, "--out", str(out)]) == 0
    # Without the lock the second would train the units the first had not stored yet; with it,
    # it goes on only when the first has stored them all.
    assert "6 units, 6 resumed" in capsys.readouterr().err
    assert first.wait(timeout=60) == 0


def test_the_lock_of_a_dead_run_is_taken_over(tmp_path, capsys, no_drawing, holder):
    out = tmp_path / "out"
    dead = holder(out, 60)
    dead.kill()  # SIGKILL: no clean-up ran; the file still names it
    dead.wait()
    assert (out / LOCK_NAME).read_text().strip() == str(dead.pid)
    start = time.monotonic()
    assert main([*RUN, "--no-wait", "--out", str(out)]) == 0
    assert "waiting" not in capsys.readouterr().err and time.monotonic() - start < 120
    with output_lock(out, wait=False) as held:
        assert held.path.read_text().strip() == str(os.getpid())


def test_the_lock_is_held_from_the_first_unit_to_the_report(tmp_path, no_drawing, monkeypatch):
    out, seen = tmp_path / "out", []
    real_unit, real_report = dlstudies.runner.execute_unit, dlstudies.report.render_report

    def unit(u):
        seen.append(("unit", is_locked(out)))
        return real_unit(u)

    def report(folder):
        seen.append(("report", is_locked(out)))
        return real_report(folder)

    monkeypatch.setattr(dlstudies.runner, "execute_unit", unit)
    monkeypatch.setattr(dlstudies.report, "render_report", report)
    assert main([*RUN, "--out", str(out)]) == 0
    assert seen == [("unit", True)] * 6 + [("report", True)]
    assert not is_locked(out)  # and released at the end


def test_a_waiting_run_names_an_unknown_holder_without_failing(tmp_path):
    # The instant between a holder's lock and its pid being written: the file is empty.
    (tmp_path / LOCK_NAME).write_text("")
    fd = os.open(tmp_path / LOCK_NAME, os.O_RDONLY)
    try:
        assert holder_pid(fd) == "unknown"
    finally:
        os.close(fd)


def test_the_lock_file_is_not_taken_for_results(tmp_path, no_drawing, capsys):
    out = tmp_path / "out"
    assert main([*RUN, "--out", str(out)]) == 0
    assert main(["report", str(out)]) == 0  # the report finds the study, and nothing else, in OUT
    assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME, "optimizers", "report.html", "summary.md"]
