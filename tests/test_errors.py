"""Bad input: exit code 2, one line on stderr that names the problem (and the valid choices), no
traceback, and nothing written — checked before any training starts."""

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import dlstudies.runner
from dlstudies.cli import main
from dlstudies.studies import STUDIES, load_studies

RUN = ["run", "optimizers", "--scale", "smoke", "--seeds", "2", "--workers", "1"]

def _npy_bytes() -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.eye(4))
    return buf.getvalue()


# name -> file contents (bytes); folders are dicts of name -> contents.
DATA_FILES = {
    "ragged.csv": b"1,2,0\n3,4\n5,6,1\n",
    "text.csv": b"1,2,0\n3,abc,1\n5,6,1\n",
    "text_first_row.csv": b"1,abc,0\n3,4,1\n5,6,1\n",  # not a header: it has numbers
    "nan.csv": b"1,2,0\n3,nan,1\n5,6,1\n",
    "inf.csv": b"1,2,0\n3,-inf,1\n5,6,1\n",
    "fraction_label.csv": b"1,2,0\n3,4,1.5\n5,6,1\n",
    "negative_label.csv": b"1,2,0\n3,4,-1\n5,6,1\n",
    "one_class.csv": b"1,2,0\n3,4,0\n5,6,0\n",
    "empty.csv": b"",
    "header_only.csv": b"a,b,label\n",
    "corrupt.npz": bytes(range(256)) * 4,
    "truncated.npz": b"PK\x03\x04" + b"\x00" * 40,
    "plain_npy.npz": _npy_bytes(),  # np.save under an .npz name
    "table.txt": b"1,2,0\n3,4,1\n",
    "widths": {"train.csv": b"1,2,0\n3,4,1\n", "test.csv": b"1,2,3,0\n4,5,6,1\n"},
    "no_test": {"train.csv": b"1,2,0\n3,4,1\n"},
    "bad_idx": {name: b"\x01\x02\x03 not idx" for name in
                ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")},
}


def _write(folder: Path, name: str, contents) -> Path:
    path = folder / name
    if isinstance(contents, dict):
        path.mkdir()
        for child, data in contents.items():
            (path / child).write_bytes(data)
    else:
        path.write_bytes(contents)
    return path


def _npz(folder: Path, name: str, **arrays) -> Path:
    np.savez(folder / name, **arrays)
    return folder / name


@pytest.fixture
def no_training(monkeypatch):
    # Every case here must fail during validation: a unit that starts to train is a test failure.
    monkeypatch.setattr(dlstudies.runner, "execute_unit", lambda unit: pytest.fail(f"trained {unit.study}"))


def run_fails(argv, capsys, out: Path, *fragments: str) -> str:
    """Assert exit 2, one 'dlstudies: error:' line naming `fragments`, no traceback, nothing written."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("dlstudies: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, (fragment, err)
    assert not out.exists(), "a rejected command wrote its output folder"
    return err


@pytest.mark.parametrize("name, fragment", [
    ("ragged.csv", "ragged rows"), ("text.csv", "line 2 has a non-numeric value"),
    ("text_first_row.csv", "line 1 has a non-numeric value"), ("nan.csv", "NaN or infinite"),
    ("inf.csv", "NaN or infinite"), ("fraction_label.csv", "class indices"), ("negative_label.csv", "class indices"),
    ("one_class.csv", "single class"), ("empty.csv", "is empty"), ("header_only.csv", "no rows"),
    ("corrupt.npz", "not a readable NPZ"), ("truncated.npz", "not a readable NPZ"),
    ("plain_npy.npz", "not an NPZ archive"), ("table.txt", "unsupported type; valid: .csv, .npz"),
    ("widths", "feature counts differ"), ("no_test", "no test file"), ("missing.csv", "does not exist"),
])
def test_malformed_data_file(tmp_path, capsys, no_training, name, fragment):
    path = _write(tmp_path, name, DATA_FILES[name]) if name in DATA_FILES else tmp_path / name
    run_fails([*RUN, "--data", str(path), "--out", str(tmp_path / "out")], capsys, tmp_path / "out", fragment, name)


@pytest.mark.parametrize("arrays, fragment", [
    ({"x": np.zeros((4, 2)), "y": np.array([0, 1, 0])}, "one class label per row"),
    ({"x": np.zeros(4), "y": np.array([0, 1, 0, 1])}, "'x' must be (rows, features"),
    ({"x": np.zeros((4, 2), complex), "y": np.array([0, 1, 0, 1])}, "non-numeric"),
    ({"x": np.array(["a", "b"]), "y": np.array([0, 1])}, "non-numeric"),
    ({"a": np.zeros((4, 3)), "b": np.zeros(3)}, "arrays 'x' and 'y'"),
])
def test_npz_with_wrong_arrays(tmp_path, capsys, no_training, arrays, fragment):
    path = _npz(tmp_path, "bad.npz", **arrays)
    run_fails([*RUN, "--data", str(path), "--out", str(tmp_path / "out")], capsys, tmp_path / "out", fragment)


def test_corrupt_idx_files(tmp_path, capsys, no_training):
    folder = _write(tmp_path, "bad_idx", DATA_FILES["bad_idx"])
    argv = [*RUN, "--data", "mnist", "--data-dir", str(folder), "--out", str(tmp_path / "out")]
    run_fails(argv, capsys, tmp_path / "out", "not an IDX file")


@pytest.mark.parametrize("extra, fragments", [
    (["--data", "no-such-data"], ("unknown dataset 'no-such-data'", "digits36")),
    (["--data", "a" * 300], ("File name too long",)),
    (["--set", "data=no-such-data"], ("unknown dataset 'no-such-data'", "digits36")),
    (["--set", "rules=adam,no-such-rule"], ("unknown optimizer 'no-such-rule'", "adam")),
    (["--set", "no_such_key=1"], ("unknown --set key 'no_such_key'", "lr")),
    (["--set", "lr"], ("KEY=VALUE",)),
    (["--set", "lr=-0.1"], ("lr must be > 0",)),
    (["--set", "lr=abc"], ("cannot read 'abc' as float",)),
    (["--set", "lr=nan"], ("cannot read 'nan'",)),
    (["--set", "lr=inf"], ("cannot read 'inf'",)),
    (["--set", "tolerance=-1e-3"], ("tolerance must be >= 0",)),
    (["--set", "max_epochs=2.5"], ("cannot read '2.5' as int",)),
    (["--set", "hidden=20,x"], ("comma-separated ints",)),
    (["--set", "lr=1\n2"], ("cannot read",)),  # a line break in the input still gives one line
    (["--set", "n_train=0"], ("n_train must be >= 1",)),
    (["--set", "seed_chunk=0"], ("seed_chunk must be >= 1",)),
    (["--set", "hidden=20,0"], ("hidden widths must all be >= 1", "20,0")),
    (["--seeds", "0"], ("--seeds must be >= 1",)),
    (["--seeds", "two"], ("--seeds", "invalid int value")),
    (["--workers", "0"], ("--workers must be >= 1",)),
    (["--scale", "huge"], ("invalid choice: 'huge'", "smoke")),
    (["--backend", "spark"], ("unknown backend 'spark'", "dask, local")),
    (["--scheduler", "tcp://127.0.0.1:8786"], ("--scheduler needs --backend dask",)),
    (["--engine", "fast"], ("invalid choice: 'fast'", "batched")),
    (["--no-such-flag"], ("unrecognized arguments",)),
])
def test_bad_option(tmp_path, capsys, no_training, extra, fragments):
    run_fails([*RUN, *extra, "--out", str(tmp_path / "out")], capsys, tmp_path / "out", *fragments)


def test_unknown_study_alone_or_among_valid_ones(tmp_path, capsys, no_training):
    out = tmp_path / "out"
    run_fails(["run", "no-such-study", "--out", str(out)], capsys, out, "unknown study 'no-such-study'", "optimizers")
    run_fails(["run", "optimizers", "no-such-study", "--out", str(out)], capsys, out, "unknown study")


def test_bad_set_key_for_a_later_study_fails_before_the_first_trains(tmp_path, capsys, no_training):
    load_studies()
    other = next((n for n in STUDIES.names() if n != "optimizers"
                  and "rules" not in STUDIES.get(n).presets["smoke"].__dataclass_fields__), None)
    if other is None:
        pytest.skip("needs a second study without a 'rules' setting")
    out = tmp_path / "out"
    run_fails([*RUN[:2], other, *RUN[2:], "--set", "rules=adam", "--out", str(out)], capsys, out, "unknown --set key 'rules'")


def test_output_folder_that_cannot_be_written(tmp_path, capsys, no_training):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    for out in (blocker, blocker / "below"):
        assert main([*RUN, "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("dlstudies: error: --out") and "Not a directory" in err and err.count("\n") == 1
    assert blocker.read_text() == "not a folder"


def test_report_on_a_folder_without_results(tmp_path, capsys):
    for folder in (tmp_path, tmp_path / "missing"):
        assert main(["report", str(folder)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("dlstudies: error: no results in") and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_unreachable_dask_scheduler(tmp_path, capsys, no_training):
    import dask
    import distributed  # noqa: F401  (loads the distributed.* settings that dask.config.set changes)
    argv = [*RUN, "--backend", "dask", "--scheduler", "tcp://127.0.0.1:9", "--out", str(tmp_path / "out")]
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("dlstudies: error: --scheduler: cannot reach a dask scheduler at 'tcp://127.0.0.1:9'")
    assert err.count("\n") == 1


def test_the_installed_command_exits_2_without_traceback(tmp_path):
    """The real entry point, as a user's shell runs it: exit status and stderr, not main()'s return."""
    proc = subprocess.run([sys.executable, "-m", "dlstudies", "run", "optimizers", "--seeds", "two",
                           "--out", str(tmp_path / "out")], check=False, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr == "dlstudies: error: argument --seeds: invalid int value: 'two'\n"
    assert proc.stdout == "" and not (tmp_path / "out").exists()
