"""Finished work units on disk: one JSON file each, written atomically.

A unit's file name is a hash of what it computes (study, unit parameters, config, runtime and
code version), so a run that was interrupted resumes by skipping the units already stored, and a
changed setting never reuses a stale result.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dlstudies import __version__
from dlstudies.errors import UsageError


def unit_key(payload: dict) -> str:
    text = json.dumps({**payload, "version": __version__}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def write_atomic(path: Path, data: str | bytes, parents: bool = True) -> None:
    """Write a temporary file beside `path`, then rename it over `path`: a reader (or a run that
    was killed mid-write, or whose disk filled up) never sees half a file, and no temporary file
    is left behind. `parents`: create the missing folders above `path`."""
    path = Path(path)
    if parents:
        path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; an output folder is meant to be shared
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):  # on a read-only or vanished folder the error to report is the first
            Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, data: Any, parents: bool = True) -> None:
    write_atomic(path, json.dumps(data, indent=1, allow_nan=False), parents)


class UnitStore:
    def __init__(self, folder: Path):
        self.folder = folder
        # Made once, here: a unit folder that vanishes mid-run is then an error at the next save,
        # not silently made again (and the units that vanished with it reported as kept).
        folder.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.json"

    def load(self, key: str) -> dict | None:
        return read_json(self.path(key))

    def save(self, key: str, result: dict) -> None:
        write_json(self.path(key), result, parents=False)


def units_kept(out: Path) -> int:
    """Finished units stored under `out` (every study), counted as a resume would find them."""
    return sum(1 for f in Path(out).glob("*/units/*.json") if read_json(f) is not None)


def read_json(path: Path) -> dict | None:
    """The JSON object in `path`, or None where it is absent or damaged."""
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):  # ValueError: bad JSON, or bytes that are not UTF-8
        return None  # absent, or damaged by something outside dlstudies: recompute it


# errno -> (what happened, what the user does before running the same command again)
OUTPUT_FAULTS = {
    errno.ENOSPC: ("no space left on the device", "free space"),
    errno.EDQUOT: ("disk quota exceeded", "free space"),
    errno.EFBIG: ("file too large for the file system", "free space"),
    errno.EROFS: ("the file system is read-only", "make it writable"),
    errno.EACCES: ("permission denied", "make it writable"),
    errno.EPERM: ("operation not permitted", "make it writable"),
    errno.ENOENT: ("the folder vanished while the run wrote it", "keep it in place"),
    errno.ESTALE: ("the folder vanished while the run wrote it (stale file handle)", "keep it in place"),
    errno.EIO: ("input/output error", "check the disk"),
}


@contextlib.contextmanager
def output_faults(out: Path) -> Iterator[None]:
    """An OSError writing under `out` becomes one line: the folder, what happened, the units kept.

    Every result file is written atomically, so what is on disk after the error is whole: the same
    command, once the cause is gone, resumes from the units kept.
    """
    try:
        yield
    except OSError as err:
        if err.errno not in OUTPUT_FAULTS or not _under(err.filename, out):
            raise
        what, remedy = OUTPUT_FAULTS[err.errno]
        kept = units_kept(out) if Path(out).is_dir() else 0
        raise UsageError(f"--out {out}: {what}; {kept} units kept; {remedy} and run the same command to resume") from None


def _under(filename, out: Path) -> bool:
    """Whether the failed path is in `out` (a write or fsync error names no path: it is ours)."""
    if filename is None:
        return True
    try:
        return Path(os.path.abspath(filename)).is_relative_to(Path(os.path.abspath(out)))
    except (TypeError, ValueError):
        return False
