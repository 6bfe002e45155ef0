"""Finished work units on disk: one JSON file each, written atomically.

A unit's file name is a hash of what it computes (study, unit parameters, config, runtime and
code version), so a run that was interrupted resumes by skipping the units already stored, and a
changed setting never reuses a stale result.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from dlstudies import __version__


def unit_key(payload: dict) -> str:
    text = json.dumps({**payload, "version": __version__}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write a temporary file beside `path`, then rename it over `path`: a reader (or a run that
    was killed mid-write) never sees half a file."""
    path = Path(path)
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
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, data: Any) -> None:
    write_atomic(path, json.dumps(data, indent=1, allow_nan=False))


class UnitStore:
    def __init__(self, folder: Path):
        self.folder = folder

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.json"

    def load(self, key: str) -> dict | None:
        try:
            return json.loads(self.path(key).read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None  # absent, or damaged by something outside dlstudies: recompute it

    def save(self, key: str, result: dict) -> None:
        write_json(self.path(key), result)
