"""Hostile `--set` values for every field of every study, and a driver that feeds them to the CLI.

Run as a script it prints the figure the README's reliability section gives:

    PYTHONPATH=src python tests/hostile_inputs.py
    -> "N bad inputs tried, all clean (exit 2, one line); M extreme values accepted"

Each value goes through `dlstudies run STUDY --scale smoke --set FIELD=VALUE` up to the moment the
first unit would train (validation only: no training), and must end in one of two ways: accepted
(the run would start), or exit 2 with one `dlstudies: error:` line and no traceback.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import sys
import tempfile
import types
import typing
from pathlib import Path

# Extreme, negative, zero, huge, NaN-like and malformed spellings, by the field's scalar type.
INTS = ["0", "-1", "1", "2", "-2147483649", "1000000000", "99999999999999999999", "1e3", "2.5", "", " ", "abc",
        "0x10", "1_000", "nan", "inf", "none", "١", "1,2", "\n", "--1"]
FLOATS = ["0", "-0", "-1e-300", "1e-320", "1e300", "1e308", "1e309", "999.9", "1000", "nan", "-nan", "inf",
          "-inf", "abc", "", "none", "0x1p3", "1e", "1,2", "1 2"]
STRS = ["", " ", "x" * 5000, "a\nb", "\x00", "../../no/such/path", "none", "-1", "ünïcode", "%s%n"]
BOOLS = ["maybe", "", "2", "TRUE", "none", "-1"]
TUPLES = ["", ",", ",,", "1,,2", "0", "-1,2", ",".join(["1"] * 100), "99999999999,1", "nan,1", "a,b", "1;2",
          "1e309,1", "none"]
BY_TYPE = {int: INTS, float: FLOATS, str: STRS, bool: BOOLS}


def scalar_type(hint) -> type:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return scalar_type(next(a for a in args if a is not type(None)))
    return scalar_type(args[0]) if origin is tuple else hint


def hostile_values(hint) -> list[str]:
    values = BY_TYPE[scalar_type(hint)]
    return values + TUPLES if typing.get_origin(hint) is tuple else values


def study_fields() -> list[tuple[str, str]]:
    """(study, field) for every field of every study's smoke Config."""
    from dlstudies.studies import STUDIES, load_studies
    load_studies()
    return [(n, f.name) for n in sorted(STUDIES.names()) for f in dataclasses.fields(STUDIES.get(n).presets["smoke"])]


def field_hint(study: str, name: str):
    from dlstudies.studies import STUDIES
    return typing.get_type_hints(type(STUDIES.get(study).presets["smoke"]))[name]


class Accepted(Exception):
    """Raised where the first unit would train: the value passed every check."""


def _refuse_training(unit):
    raise Accepted(unit.study)


@contextlib.contextmanager
def validation_only():
    """Within: a run stops with Accepted where its first unit would train."""
    import dlstudies.runner
    saved = dlstudies.runner.execute_unit
    dlstudies.runner.execute_unit = _refuse_training
    try:
        yield
    finally:
        dlstudies.runner.execute_unit = saved


def try_setting(study: str, key: str, text: str, out: Path) -> tuple[str, str]:
    """('accepted' | 'rejected' | 'unclean', stderr) of `run STUDY --set KEY=TEXT` (within validation_only)."""
    from dlstudies.cli import main
    argv = ["run", study, "--scale", "smoke", "--seeds", "1", "--workers", "1", "--set", f"{key}={text}",
            "--out", str(out)]
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main(argv)
    except Accepted:
        return "accepted", err.getvalue()
    except Exception as exc:  # a traceback the user would see
        return "unclean", f"{type(exc).__name__}: {exc}"
    return ("rejected" if code == 2 and clean(err.getvalue()) else "unclean"), err.getvalue()


def clean(err: str) -> bool:
    """One `dlstudies: error:` line, no traceback (lines before it, such as a resume note, are not printed yet)."""
    return err.startswith("dlstudies: error: ") and err.count("\n") == 1 and "Traceback" not in err


def tally() -> dict[str, list]:
    outcomes: dict[str, list] = {"accepted": [], "rejected": [], "unclean": []}
    with tempfile.TemporaryDirectory() as tmp, validation_only():
        for study, key in study_fields():
            for text in hostile_values(field_hint(study, key)):
                outcome, err = try_setting(study, key, text, Path(tmp) / "out")
                outcomes[outcome].append((study, key, text, err.strip()))
    return outcomes


def sigterm_first_attempt(item: tuple[str, int]) -> int:
    """A work unit (for an executor) whose first attempt at item 2 stops its own worker by SIGTERM,
    as a cluster stops a job; a marker file in `folder` tells the retry from the first attempt."""
    import os
    import signal
    import time
    folder, i = item
    marker = Path(folder) / f"{i}.started"
    if i == 2 and not marker.exists():
        marker.touch()
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(60)  # the signal ends the process here
    return 10 * i


if __name__ == "__main__":
    result = tally()
    for study, key, text, err in result["unclean"]:
        print(f"UNCLEAN {study} {key}={text!r}: {err}")
    verdict = "all clean (exit 2, one line)" if not result["unclean"] else f"{len(result['unclean'])} NOT clean"
    print(f"{len(result['rejected']) + len(result['unclean'])} bad inputs tried, {verdict}; "
          f"{len(result['accepted'])} extreme values accepted")
    sys.exit(1 if result["unclean"] else 0)
