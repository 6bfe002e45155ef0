"""Hostile conditions: a full disk, a read-only or vanished output folder mid-run, SIGTERM, and a
request too large for memory. Each ends with exit 2 (143 for SIGTERM) and one line that says what
was kept; no temporary file is left; the units kept are whole, and the same command resumes them
to the numbers of an uninterrupted run."""

import errno
import json
import os
import shutil
import signal
from pathlib import Path

import pytest

import dlstudies.memory
import dlstudies.runner
from dlstudies.cli import main
from dlstudies.config import Runtime
from dlstudies.data import load_data
from dlstudies.errors import UsageError
from dlstudies.models.builders import count_params
from dlstudies.studies import STUDIES, load_studies
from dlstudies.executors import EXECUTORS
from hostile_inputs import clean, sigterm_first_attempt
from test_resume import ARGS, no_drawing, numbers, spawn, wait_for_a_unit  # noqa: F401  (fixtures)

RUN = [*ARGS, "--workers", "1"]  # six one-seed units of the optimizers study, in this process


class FaultyDisk:
    """From the `after`-th fsync on (or on the fsync of a file named `.NAME.*.tmp`), every fsync
    fails with `code`: the temporary file exists and holds data when the error comes, as when a
    real disk fills up between write and flush."""

    def __init__(self, code: int, after: int = 1, name: str | None = None):
        self.code, self.after, self.name, self.calls = code, after, name, 0

    def __call__(self, fd):
        if self.name is None or Path(os.readlink(f"/proc/self/fd/{fd}")).name.startswith(f".{self.name}."):
            self.calls += 1
        if self.calls >= self.after:
            raise OSError(self.code, os.strerror(self.code))
        return REAL_FSYNC(fd)


REAL_FSYNC = os.fsync


def leftovers(out: Path) -> list[Path]:
    return [p for p in out.rglob("*") if p.name.endswith(".tmp")]


def assert_units_whole(out: Path) -> int:
    files = list((out / "optimizers" / "units").glob("*.json"))
    for f in files:
        assert json.loads(f.read_text())["runs"], f
    return len(files)


@pytest.mark.parametrize("code, what, remedy", [
    (errno.ENOSPC, "no space left on the device", "free space"),
    (errno.EDQUOT, "disk quota exceeded", "free space"),
    (errno.EROFS, "the file system is read-only", "make it writable"),
])
def test_a_write_that_fails_mid_run_keeps_the_finished_units(tmp_path, capsys, no_drawing, monkeypatch, code, what,
                                                             remedy):
    out = tmp_path / "out"
    monkeypatch.setattr(os, "fsync", FaultyDisk(code, after=3))  # units 1 and 2 are stored, unit 3 fails
    assert main([*RUN, "--out", str(out)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[-1] == (f"dlstudies: error: --out {out}: {what}; 2 units kept; {remedy} and run the same command "
                       "to resume"), err
    assert not any("Traceback" in line for line in err)
    assert leftovers(out) == [] and assert_units_whole(out) == 2
    assert not (out / "optimizers" / "results.json").exists()


def test_after_a_full_disk_the_same_command_resumes_to_the_uninterrupted_numbers(tmp_path, capsys, no_drawing,
                                                                                 monkeypatch):
    out = tmp_path / "out"
    with monkeypatch.context() as m:
        m.setattr(os, "fsync", FaultyDisk(errno.ENOSPC, after=5))
        assert main([*RUN, "--out", str(out)]) == 2
    assert "4 units kept" in capsys.readouterr().err
    assert main([*RUN, "--out", str(out)]) == 0
    assert "6 units, 4 resumed" in capsys.readouterr().err
    assert main([*RUN, "--out", str(tmp_path / "uninterrupted")]) == 0
    assert numbers(out) == numbers(tmp_path / "uninterrupted")


def test_a_full_disk_while_the_report_is_written_keeps_every_unit(tmp_path, capsys, no_drawing, monkeypatch):
    out = tmp_path / "out"
    monkeypatch.setattr(os, "fsync", FaultyDisk(errno.ENOSPC, name="report.html"))
    assert main([*RUN, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.splitlines()[-1].endswith("no space left on the device; 6 units kept; free space and run the same "
                                         "command to resume")
    assert leftovers(out) == [] and not (out / "report.html").exists()
    json.loads((out / "optimizers" / "results.json").read_text())  # whole


def test_an_output_folder_that_vanishes_mid_run(tmp_path, capsys, no_drawing, monkeypatch):
    out, real, done = tmp_path / "out", dlstudies.runner.execute_unit, []

    def then_remove(unit):
        result = real(unit)
        done.append(unit)
        if len(done) == 2:  # while unit 2 is on its way to the store, the folder goes
            shutil.rmtree(out)
        return result

    monkeypatch.setattr(dlstudies.runner, "execute_unit", then_remove)
    assert main([*RUN, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert clean(err.splitlines()[-1] + "\n") and "Traceback" not in err
    assert err.splitlines()[-1] == (f"dlstudies: error: --out {out}: the folder vanished while the run wrote it; "
                                    "0 units kept; keep it in place and run the same command to resume")
    assert len(done) == 2, "the run went on training after its folder vanished"


def test_a_folder_that_vanishes_after_the_last_unit_is_reported_not_rebuilt_silently(tmp_path, capsys, no_drawing,
                                                                                     monkeypatch):
    import dlstudies.app
    out, real = tmp_path / "out", dlstudies.app.run_configs

    def then_remove(*args, **kwargs):
        result = real(*args, **kwargs)
        shutil.rmtree(out)
        return result

    monkeypatch.setattr(dlstudies.app, "run_configs", then_remove)
    assert main([*RUN, "--out", str(out)]) == 2
    assert "the folder vanished while the run wrote it; 0 units kept" in capsys.readouterr().err
    assert not (out / "report.html").exists()


def test_sigterm_mid_run_keeps_the_units_then_the_same_command_resumes(tmp_path, capsys, no_drawing, spawn):
    out, units = tmp_path / "out", tmp_path / "out" / "optimizers" / "units"
    proc = spawn([*RUN, "--out", str(out)])
    wait_for_a_unit(proc, units)
    proc.send_signal(signal.SIGTERM)  # as Slurm, PBS and dask-jobqueue stop a job
    err = proc.communicate(timeout=60)[1]
    assert proc.returncode == 143, err
    assert "Traceback" not in err and err.splitlines()[-1].startswith("dlstudies: interrupted")
    assert not (out / "optimizers" / "results.json").exists(), "SIGTERM came too late to test a resume"
    done = assert_units_whole(out)
    assert leftovers(out) == []
    assert main([*RUN, "--out", str(out)]) == 0
    assert f"6 units, {done} resumed" in capsys.readouterr().err
    assert main([*RUN, "--out", str(tmp_path / "uninterrupted")]) == 0
    assert numbers(out) == numbers(tmp_path / "uninterrupted")


def test_sigterm_to_a_process_pool_run_ends_it_cleanly(tmp_path, spawn):
    proc = spawn(["run", "optimizers", "--scale", "smoke", "--seeds", "2", "--set", "max_epochs=2000", "--set",
                  "tolerance=0", "--set", "n_train=60", "--set", "seed_chunk=1", "--workers", "2",
                  "--out", str(tmp_path / "out")])
    assert any("to run" in line for line in proc.stderr), "the run ended before its units started"
    os.killpg(proc.pid, signal.SIGTERM)  # to the whole job, workers included
    err = proc.communicate(timeout=60)[1]
    assert proc.returncode == 143 and "Traceback" not in err, err


def test_a_dask_worker_stopped_by_sigterm_loses_no_unit(tmp_path):
    # The scheduler gives the unit of a worker that died to another worker (or its restart).
    with EXECUTORS.get("dask")(workers=2) as execute:
        got = dict(execute(sigterm_first_attempt, [(str(tmp_path), i) for i in range(4)]))
    assert (tmp_path / "2.started").exists(), "the worker was never stopped"
    assert got == {(str(tmp_path), i): 10 * i for i in range(4)}


# ---- memory ----------------------------------------------------------------------------------

def test_a_network_that_cannot_fit_is_refused_before_it_starts(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["run", "optimizers", "--scale", "smoke", "--set", "hidden=100000,100000", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert clean(err) and "optimizers: this run needs at least" in err and "lower --set hidden (now 100000,100000)" in err
    assert not out.exists()


def test_every_study_is_held_to_the_memory_of_as_many_workers_as_the_run_keeps_busy(monkeypatch):
    import dlstudies.app
    from dlstudies.runner import study_config

    seen = {}
    monkeypatch.setattr(dlstudies.app, "check_memory", lambda name, cfg, shape, block, workers, dtype: seen.update({name: workers}))
    configs = {n: study_config(n, "smoke", []) for n in ("weight-trajectory", "optimizers")}
    dlstudies.app.check_fits(configs, "smoke", None, 2, Runtime())
    assert seen == {"weight-trajectory": 2, "optimizers": 2}  # its one unit may run beside one of optimizers'
    dlstudies.app.check_fits({"weight-trajectory": configs["weight-trajectory"]}, "smoke", None, 2, Runtime())
    assert seen["weight-trajectory"] == 1  # alone, its one unit keeps one worker busy


def test_the_estimate_is_held_against_the_memory_available(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(dlstudies.memory, "available_bytes", lambda: 10**6)  # a machine with 1 MB free
    out = tmp_path / "out"
    assert main(["run", "optimizers", "--scale", "smoke", "--workers", "2", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert clean(err) and "and 1.0 MB is available" in err and "or --workers (now 1)" not in err
    assert not out.exists()


def test_the_memory_of_a_remote_cluster_is_not_judged_here(monkeypatch):
    from dlstudies.app import plan
    monkeypatch.setattr(dlstudies.memory, "available_bytes", lambda: 10**6)
    with pytest.raises(UsageError, match="1.0 MB is available"):
        plan(["optimizers"], "smoke", None, None, [], Runtime(), backend="dask", workers=1)
    assert plan(["optimizers"], "smoke", None, None, [], Runtime(), backend="dask", workers=1,
                scheduler="tcp://127.0.0.1:9")  # planning never connects; the workers' memory is theirs


@pytest.mark.parametrize("study, builder", [("optimizers", "mlp"), ("random-labels", "cnn"), ("sensitivity", "cnn"),
                                            ("params-generalization", "mlp"), ("image-depth", "cnn")])
def test_planned_parameters_count_the_networks_the_study_builds(study, builder):
    # The oracle: the parameters of the network the study itself builds (its largest, where it builds several).
    from dlstudies.models.conv import cnn
    from dlstudies.studies.training import image_mlp
    load_studies()
    cfg = STUDIES.get(study).presets["smoke"]
    data = load_data(cfg.data)
    shape = dlstudies.memory.data_shape(data)
    if builder == "cnn":
        channels, head = (cfg.cnn_shallow, (cfg.cnn_fc,)) if hasattr(cfg, "cnn_shallow") else (cfg.channels, cfg.hidden)
        expected = count_params(cnn(data.input_shape, channels, head, data.n_classes))
    else:
        pairs = list(zip(cfg.h1, cfg.h2)) if hasattr(cfg, "h1") else [cfg.hidden]
        expected = max(count_params(image_mlp(data, h, act=lambda: None)()) for h in pairs)
    assert dlstudies.memory.parameters(cfg, shape) == expected


def test_planned_memory_grows_with_every_part_of_the_plan():
    cfg = STUDIES.get("optimizers").presets["smoke"]
    shape = dlstudies.memory.Shape((36,), 5, 1000)
    base = sum(dlstudies.memory.terms(cfg, shape, 3).values())
    import dataclasses
    for changes in [{"hidden": (200, 10)}, {"batch_size": 500}, {"rules": ("adam",) * 12}]:
        assert sum(dlstudies.memory.terms(dataclasses.replace(cfg, **changes), shape, 3).values()) > base, changes
    assert sum(dlstudies.memory.terms(cfg, shape, 3, "float64").values()) > base
    assert sum(dlstudies.memory.terms(cfg, dlstudies.memory.Shape((36,), 5, 10**6), 3).values()) > base
    assert Runtime().dtype in dlstudies.memory.DTYPE_BYTES
